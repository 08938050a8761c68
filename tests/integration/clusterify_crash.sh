#!/bin/bash
# Crash states of clusterify convert: every write and flush of a real
# conversion is recorded (CEXT3_RECORD_LOG), then disk images are rebuilt as
# a crash would have left them and each one is judged by the real tools:
#  * e2fsck -fy (which replays the ext3 journal) exits 0 or 1, then e2fsck
#    -fn exits 0;
#  * the result is either the old filesystem (no /.cext3, no mmp) or the new
#    one (clusterify verify -n exits 0), never a mix;
#  * the manifest of every file (cext3-manifest, /.cext3 excluded) equals the
#    original's.
# make test checks 8 prefix states sampled evenly (first and last included);
# CEXT3_CRASH_FULL=1 runs every prefix plus every reordering inside each
# flush epoch and torn multi-sector writes.
set -u
BIN=${CEXT3_BIN:?}
SCRATCH=${CEXT3_SCRATCH:?}
mkdir -p "$SCRATCH"
W=$(mktemp -d "$SCRATCH/cfy-crash.XXXXXX")
trap 'rm -rf "$W"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
C="$BIN/clusterify"
CS="$BIN/cext3-crashstate"
MF="$BIN/cext3-manifest"
for t in "$CS" "$MF"; do [ -x "$t" ] || { echo "skip: $t is not built"; exit 77; }; done
SRC=/usr/include/linux
[ -d "$SRC" ] || { echo "skip: $SRC (test content) is missing"; exit 77; }

BASE="$W/base.img"
truncate -s 24M "$BASE"
mke2fs -q -t ext3 -b 1024 -g 4096 -d "$SRC" "$BASE" || fail mke2fs
"$MF" --exclude /.cext3 "$BASE" >"$W/base.manifest" || fail "manifest of the original"
cp "$BASE" "$W/work.img"
CEXT3_RECORD_LOG="$W/convert.log" "$C" convert "$W/work.img" --slots 3 >/dev/null || fail "recorded convert"
"$CS" info "$W/convert.log" || fail "crashstate info"

if [ "${CEXT3_CRASH_FULL:-0}" = 1 ]; then
  "$CS" list "$W/convert.log" --reorder --torn >"$W/states" || fail "list states"
else
  "$CS" list "$W/convert.log" >"$W/all" || fail "list states"
  n=$(wc -l <"$W/all")
  # Evenly spaced sample including the first and the last state.
  awk -v n="$n" -v k=8 'n <= k || (NR - 1) % int((n + k - 1) / k) == 0 || NR == n' "$W/all" >"$W/states"
fi
total=$(wc -l <"$W/states")
echo "checking $total crash states"
old=0 new=0
while read -r id; do
  S="$W/state.img"
  "$CS" materialize --base "$BASE" --log "$W/convert.log" --state "$id" --out "$S" >/dev/null ||
    fail "materialize $id"
  e2fsck -fy "$S" >"$W/fsck" 2>&1
  rc=$?
  [ $rc -le 1 ] || { cat "$W/fsck"; fail "state $id: e2fsck -fy exited $rc"; }
  e2fsck -fn "$S" >"$W/fsck" 2>&1 || { cat "$W/fsck"; fail "state $id: e2fsck -fn after -fy"; }
  if debugfs -R "stat /.cext3" "$S" 2>/dev/null | grep -q "^Inode:"; then
    "$C" verify -n "$S" >"$W/v" 2>&1 || { cat "$W/v"; fail "state $id: new filesystem fails verify"; }
    new=$((new + 1))
  else
    dumpe2fs -h "$S" 2>/dev/null | grep "^Filesystem features" | grep -qw mmp && fail "state $id: mmp without /.cext3 (a mix)"
    old=$((old + 1))
  fi
  "$MF" --exclude /.cext3 "$S" >"$W/state.manifest" || fail "state $id: manifest"
  diff "$W/base.manifest" "$W/state.manifest" >"$W/mdiff" || { head "$W/mdiff"; fail "state $id: content changed"; }
  rm -f "$S"
done <"$W/states"
echo "crash states: $total checked, $old old filesystem, $new new filesystem"
[ $old -gt 0 ] && [ $new -gt 0 ] || fail "expected both old and new states among the crash points"
echo PASS
