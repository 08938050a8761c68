#!/bin/bash
# Every refusal of clusterify convert happens before the first write: the
# image stays byte-identical (sha256sum before/after), the exit code is
# non-zero and the message is one line that says what to do.
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cfy_setup refuse

# expect_refusal NAME IMAGE PATTERN clusterify-args...
expect_refusal() {
  local name=$1 img=$2 pattern=$3
  shift 3
  local before after rc
  before=$(sha "$img")
  "$C" "$@" >"$W/out" 2>"$W/err"
  rc=$?
  after=$(sha "$img")
  [ $rc -ne 0 ] || fail "$name: exit 0, expected a refusal"
  [ "$before" = "$after" ] || fail "$name: the image changed"
  [ "$(wc -l <"$W/err")" -eq 1 ] || { cat "$W/err"; fail "$name: message is not exactly one line"; }
  grep -q -- "$pattern" "$W/err" || { cat "$W/err"; fail "$name: message lacks '$pattern'"; }
  echo "ok: $name: $(cat "$W/err")"
}

mkimg() {  # path size mke2fs-args...
  local p=$1 s=$2
  shift 2
  rm -f "$p"
  truncate -s "$s" "$p"
  mke2fs -q -F "$@" "$p" >/dev/null 2>&1 || fail "mke2fs $*"
}

I="$W/img"

# Bad path: nothing to hash, but one line and non-zero.
"$C" convert "$W/does-not-exist" --slots 2 >"$W/out" 2>"$W/err" && fail "missing path accepted"
[ "$(wc -l <"$W/err")" -eq 1 ] && grep -q "no such file" "$W/err" || { cat "$W/err"; fail "missing path message"; }
echo "ok: missing path: $(cat "$W/err")"

# Not a filesystem at all.
head -c 16M /dev/urandom >"$I"
expect_refusal "random bytes" "$I" "not an ext2/ext3 filesystem" convert "$I" --slots 2

# ext2: no journal.
mkimg "$I" 32M -t ext2
expect_refusal "ext2" "$I" "tune2fs -j" convert "$I" --slots 2

# ext4: features named.
mkimg "$I" 32M -t ext4
expect_refusal "ext4" "$I" "extent" convert "$I" --slots 2
mkimg "$I" 32M -t ext3 -O metadata_csum
expect_refusal "metadata_csum" "$I" "metadata_csum" convert "$I" --slots 2
mkimg "$I" 32M -t ext3 -O flex_bg
expect_refusal "flex_bg" "$I" "flex_bg" convert "$I" --slots 2

# needs_recovery set.
mkimg "$I" 32M -t ext3
debugfs -w -R "feature needs_recovery" "$I" >/dev/null 2>&1
expect_refusal "needs_recovery" "$I" "run e2fsck" convert "$I" --slots 2

# Not clean, and errors recorded.
mkimg "$I" 32M -t ext3
debugfs -w -R "ssv state 0" "$I" >/dev/null 2>&1
expect_refusal "not clean" "$I" "e2fsck -f" convert "$I" --slots 2
mkimg "$I" 32M -t ext3
debugfs -w -R "ssv state 3" "$I" >/dev/null 2>&1
expect_refusal "errors" "$I" "e2fsck -f" convert "$I" --slots 2

# Orphan list.
mkimg "$I" 32M -t ext3
debugfs -w -R "ssv last_orphan 12" "$I" >/dev/null 2>&1
expect_refusal "orphans" "$I" "orphan" convert "$I" --slots 2

# Too few groups: 8 MiB of 1 KiB blocks is one group.
mkimg "$I" 8M -t ext3 -b 1024
expect_refusal "too few groups" "$I" "fewer than the 2 slots" convert "$I" --slots 2

# Too little free space.
mkimg "$I" 64M -t ext3 -b 1024
expect_refusal "too little space" "$I" "too little free space" convert "$I" --slots 4 --journal-size 16

# Already clusterified.
mkimg "$I" 64M -t ext3 -b 1024
"$C" convert "$I" --slots 2 >/dev/null 2>&1 || fail "first convert"
expect_refusal "already clusterified" "$I" "clusterify slots" convert "$I" --slots 2

# A dry run writes nothing either (and succeeds).
mkimg "$I" 64M -t ext3 -b 1024
before=$(sha "$I")
"$C" convert "$I" --slots 3 --dry-run >"$W/out" 2>&1 || { cat "$W/out"; fail "dry run failed"; }
grep -q "nothing was written" "$W/out" || fail "dry run does not say so"
[ "$before" = "$(sha "$I")" ] || fail "dry run changed the image"
echo "ok: dry run leaves the image identical"

# Mounted (through a loop device on the image).
mkimg "$I" 32M -t ext3
if cfy_mount "$I" ext3 ro 2>/dev/null; then
  expect_refusal "mounted" "$I" "is mounted" convert "$I" --slots 2
  umount "$MNT"
else
  echo "note: loop mount not permitted here; the mounted-device refusal is not exercised"
fi
echo PASS
