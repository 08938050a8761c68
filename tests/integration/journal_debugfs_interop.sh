#!/bin/bash
# Journals written by debugfs (jo/jw/jc: several transactions, revokes, an
# uncommitted one, with and without checksums) are replayed by
# `clusterify journal replay` to exactly the image `e2fsck -fy` produces
# (both images then go through the same `e2fsck -fy`, clock pinned, and are
# compared byte for byte). Also: `clusterify journal dump` lists what
# `debugfs logdump` lists.
# debugfs 1.47.0 loses the commit block of a non-checksummed `jw -b ... -r ...`
# (the next transaction overwrites it), so revokes go in their own `jw -r`.
# debugfs never wraps the log; wrap is covered by journal_writer_interop.sh.
set -euo pipefail
BIN=${CEXT3_BIN:?}; SCRATCH=${CEXT3_SCRATCH:-/tmp}
for t in mke2fs e2fsck debugfs cmp; do
  command -v $t >/dev/null || { echo "skip: $t not installed"; exit 77; }
done
mkdir -p "$SCRATCH"; W=$(mktemp -d "$SCRATCH/jdbg.XXXXXX"); trap 'rm -rf "$W"' EXIT
export E2FSCK_TIME=1700000000   # e2fsck stamps s_lastcheck/s_wtime with this
CL="$BIN/clusterify"

run_case() {  # name blocksize jo-flags mke2fs-options...
  local name=$1 bs=$2 joflags=$3 img=$W/$1.img
  shift 3
  mke2fs -q -F "$@" -b "$bs" "$img" 16M
  debugfs -w -R "ssv kbytes_written 0" "$img" >/dev/null 2>&1  # e2fsck adds I/O counts to it
  head -c $((bs * 100)) /dev/urandom > "$W/data"
  # Block 0 of the data starts with the jbd2 magic: debugfs must escape it.
  printf '\xc0\x3b\x39\x98' | dd of="$W/data" bs=1 seek=$((bs * 3)) conv=notrunc status=none
  local base=$((bs == 1024 ? 9000 : 3000))
  debugfs -w -f - "$img" >/dev/null 2>"$W/dbg.err" <<CMDS
jo $joflags
jw -b $base,$((base+1)),$((base+2)),$((base+3)) $W/data
jw -b $((base+10)),$((base+11)) $W/data
jw -r $((base+1)) $W/data
jw -b $((base+1)),$((base+20)) $W/data
jw -r $((base+20)),$((base+2)) $W/data
jw -b $((base+2)) $W/data
jw -b $((base+30)),$((base+31)) $W/data
jw -b $((base+40)) -c $W/data
jc
CMDS
  if grep -qi "error\|No space" "$W/dbg.err"; then echo "debugfs failed:"; cat "$W/dbg.err"; exit 1; fi
  # dump lists the same transactions and blocks as logdump.
  debugfs -R "logdump" "$img" 2>/dev/null | grep -E "^Found|^No magic" > "$W/logdump.txt"
  "$CL" journal dump "$img" --main | grep -E "^Found|^No magic" > "$W/ours.txt"
  if ! diff -u "$W/logdump.txt" "$W/ours.txt"; then echo "FAIL $name: dump differs from logdump"; exit 1; fi
  [ -s "$W/ours.txt" ] || { echo "FAIL $name: empty dump"; exit 1; }
  cp "$img" "$W/A.img"; cp "$img" "$W/B.img"
  rc=0; e2fsck -fy "$W/A.img" >"$W/A.log" 2>&1 || rc=$?
  [ $rc -le 1 ] || { echo "FAIL $name: e2fsck -fy on the reference exited $rc"; cat "$W/A.log"; exit 1; }
  "$CL" journal replay "$W/B.img" --main
  rc=0; e2fsck -fy "$W/B.img" >"$W/B.log" 2>&1 || rc=$?
  [ $rc -eq 0 ] || { echo "FAIL $name: e2fsck after our replay exited $rc"; cat "$W/B.log"; exit 1; }
  if ! cmp "$W/A.img" "$W/B.img"; then
    echo "FAIL $name: our replay differs from e2fsck's"; cmp -l "$W/A.img" "$W/B.img" | head; exit 1
  fi
  # The replay did something: the logged blocks are not the zeros mke2fs left.
  if cmp -s <(dd if="$W/B.img" bs="$bs" skip=$base count=1 status=none) <(head -c "$bs" /dev/zero); then
    echo "FAIL $name: block $base was not replayed"; exit 1
  fi
  echo "ok $name: replay byte-identical to e2fsck -fy"
}

run_case plain-4k 4096 "" -t ext3
run_case plain-1k 1024 "" -t ext3
# debugfs picks journal checksums v2/v3 only on metadata_csum filesystems;
# ext4 defaults add 64bit, so the v3 case also covers 64-bit tags.
run_case csum-v3-64bit-4k 4096 "-c" -t ext4 -O metadata_csum
run_case csum-v2-1k 1024 "-v 2 -c" -t ext4 -O metadata_csum,^64bit
# needs_recovery set on a clean journal: both move the sequence on and clear it.
img=$W/flag.img
mke2fs -q -F -t ext3 -b 4096 "$img" 16M
debugfs -w -R "ssv kbytes_written 0" "$img" >/dev/null 2>&1
debugfs -w -R "feature needs_recovery" "$img" >/dev/null 2>&1
cp "$img" "$W/A.img"; cp "$img" "$W/B.img"
e2fsck -fy "$W/A.img" >/dev/null 2>&1 || true
"$CL" journal replay "$W/B.img" --main
rc=0; e2fsck -fy "$W/B.img" >"$W/B.log" 2>&1 || rc=$?
[ $rc -eq 0 ] || { echo "FAIL flag: e2fsck after our replay exited $rc"; cat "$W/B.log"; exit 1; }
cmp "$W/A.img" "$W/B.img" || { echo "FAIL flag: differs from e2fsck"; exit 1; }
echo "ok needs_recovery on a clean journal"
echo PASS
