#!/bin/bash
# Benchmark: clusterify convert (and revert) against e2fsck -fn on the same
# image in the same run. The image is a sparse 32 GiB ext3 (mke2fs -t ext3
# defaults, 4 KiB blocks) holding at least 20,000 real files copied from
# /usr/include, /usr/share/doc and /usr/share/man. Goal: convert <= 0.5 x
# e2fsck -fn, i.e. the conversion's work grows with the number of block
# groups it touches, not with the data.
# Also printed, as a second reference: writing the slot journals' bytes with
# dd oflag=direct (what a converter that zeroed every slot journal would pay).
#
# Usage: scripts/bench/convert.sh BUILD_DIR [SIZE (default 32G)] [SLOTS (default 4)]
# CEXT3_BENCH_BASELINE=OTHER_BUILD_DIR also times that build's convert on the
# same image first (then reverts it), for before/after numbers in one run.
# Needs about 2x the copied tree in free space under ${TMPDIR:-/tmp}.
set -eu
BUILD=${1:-build}
SIZE=${2:-32G}
SLOTS=${3:-4}
MIN_FILES=20000
C="$BUILD/clusterify"
[ -x "$C" ] || { echo "build first: $C is missing"; exit 1; }
for t in mke2fs e2fsck bc python3; do command -v $t >/dev/null || { echo "$t is missing"; exit 1; }; done
W=$(mktemp -d "${TMPDIR:-/tmp}/cext3-bench-convert.XXXXXX")
trap 'rm -rf "$W"' EXIT
I="$W/img"
T="$W/tree"
mkdir -p "$T"
for d in /usr/include /usr/share/doc /usr/share/man; do
  [ -d "$d" ] && cp -a "$d" "$T/$(basename "$d")" 2>/dev/null || true
done
files=$(find "$T" -type f | wc -l)
# Top up with files of real content (copies of /usr/include headers) if the
# machine's trees are small.
i=0
while [ "$files" -lt $MIN_FILES ]; do
  mkdir -p "$T/extra/$((i / 1000))"
  cp "$(find /usr/include -type f | sed -n "$((i % 500 + 1))p")" "$T/extra/$((i / 1000))/f$i"
  i=$((i + 1))
  files=$((files + 1))
done
truncate -s "$SIZE" "$I"
mke2fs -q -t ext3 -b 4096 -d "$T" "$I"
rm -rf "$T"
groups=$(dumpe2fs -h "$I" 2>/dev/null | awk -F: '/^Block count/ {b=$2} /^Blocks per group/ {g=$2} END {printf "%d", (b+g-1)/g}')
inodes_used=$(dumpe2fs -h "$I" 2>/dev/null | awk -F: '/^Inode count/ {n=$2} /^Free inodes/ {f=$2} END {printf "%d", n-f}')
alloc=$(du -m "$I" | cut -f1)

now() { date +%s.%N; }
sync
t0=$(now); e2fsck -fn "$I" >/dev/null 2>&1; t1=$(now)
fsck_s=$(echo "$t1 - $t0" | bc)
base_s=""
if [ -n "${CEXT3_BENCH_BASELINE:-}" ]; then
  t0=$(now); "$CEXT3_BENCH_BASELINE/clusterify" convert "$I" --slots "$SLOTS" --group-policy balanced >/dev/null; t1=$(now)
  base_s=$(echo "$t1 - $t0" | bc)
  "$C" revert "$I" >/dev/null
fi
t0=$(now); "$C" convert "$I" --slots "$SLOTS" --group-policy balanced >"$W/out"; t1=$(now)
conv_s=$(echo "$t1 - $t0" | bc)
e2fsck -fn "$I" >/dev/null 2>&1 || { echo "e2fsck -fn rejects the converted image"; exit 1; }
jbytes=$("$C" info --json "$I" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(sum(s["journal"]["blocks"] for s in d["slots"]) * d["block_size"])')
t0=$(now); dd if=/dev/zero of="$W/zero" bs=1M count=$((jbytes / 1048576)) oflag=direct status=none; t1=$(now)
zero_s=$(echo "$t1 - $t0" | bc)
rm -f "$W/zero"
t0=$(now); "$C" revert "$I" >/dev/null; t1=$(now)
rev_s=$(echo "$t1 - $t0" | bc)
printf 'image %s (sparse, %s MiB allocated), %s groups, %s files and directories in use, %s slots, %s MiB of slot journals\n' \
  "$SIZE" "$alloc" "$groups" "$inodes_used" "$SLOTS" $((jbytes / 1048576))
printf 'e2fsck -fn           %8.3f s (reference)\n' "$fsck_s"
printf 'zeroing the journals %8.3f s (reference: dd oflag=direct of the journal bytes)\n' "$zero_s"
printf 'clusterify convert   %8.3f s  ratio convert/e2fsck = %.2f (goal <= 0.5), %.2f x zeroing\n' "$conv_s" \
  "$(echo "$conv_s / $fsck_s" | bc -l)" "$(echo "$conv_s / $zero_s" | bc -l)"
[ -n "$base_s" ] && printf 'baseline convert     %8.3f s  ratio convert/e2fsck = %.2f (%s)\n' "$base_s" \
  "$(echo "$base_s / $fsck_s" | bc -l)" "$CEXT3_BENCH_BASELINE"
printf 'clusterify revert    %8.3f s  ratio revert/e2fsck = %.2f\n' "$rev_s" "$(echo "$rev_s / $fsck_s" | bc -l)"
