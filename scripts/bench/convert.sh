#!/bin/bash
# Benchmark: clusterify convert and revert against references measured in the
# same run on the same image: e2fsck -fn (a full read of the metadata), and
# writing the slot journals' bytes with dd oflag=direct (what a converter that
# zeroes every slot journal would pay).
# Usage: scripts/bench/convert.sh BUILD_DIR [SIZE (default 1G)] [SLOTS (default 4)]
set -eu
BUILD=${1:-build}
SIZE=${2:-1G}
SLOTS=${3:-4}
C="$BUILD/clusterify"
[ -x "$C" ] || { echo "build first: $C is missing"; exit 1; }
W=$(mktemp -d "${TMPDIR:-/tmp}/cext3-bench-convert.XXXXXX")
trap 'rm -rf "$W"' EXIT
I="$W/img"
truncate -s "$SIZE" "$I"
mke2fs -q -t ext3 -b 4096 -d /usr/include "$I"
now() { date +%s.%N; }
t0=$(now); e2fsck -fn "$I" >/dev/null 2>&1; t1=$(now)
fsck_s=$(echo "$t1 - $t0" | bc)
t0=$(now); "$C" convert "$I" --slots "$SLOTS" --group-policy balanced >"$W/out"; t1=$(now)
conv_s=$(echo "$t1 - $t0" | bc)
jbytes=$("$C" info --json "$I" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(sum(s["journal"]["blocks"] for s in d["slots"]) * d["block_size"])')
t0=$(now); dd if=/dev/zero of="$W/zero" bs=1M count=$((jbytes / 1048576)) oflag=direct status=none; t1=$(now)
zero_s=$(echo "$t1 - $t0" | bc)
rm -f "$W/zero"
t0=$(now); "$C" revert "$I" >/dev/null; t1=$(now)
rev_s=$(echo "$t1 - $t0" | bc)
printf 'image %s, %s slots, %s MiB of slot journals\n' "$SIZE" "$SLOTS" $((jbytes / 1048576))
printf 'e2fsck -fn          %8.3f s (reference)\n' "$fsck_s"
printf 'zeroing the journals %7.3f s (reference: dd oflag=direct of the journal bytes)\n' "$zero_s"
printf 'clusterify convert  %8.3f s  = %.2f x e2fsck, %.2f x zeroing\n' "$conv_s" "$(echo "$conv_s / $fsck_s" | bc -l)" "$(echo "$conv_s / $zero_s" | bc -l)"
printf 'clusterify revert   %8.3f s  = %.2f x e2fsck\n' "$rev_s" "$(echo "$rev_s / $fsck_s" | bc -l)"
