#!/bin/bash
# clusterify convert on real ext3 images of several geometries, checked by
# the real tools: e2fsck -fn exits 0, debugfs reads every slot journal, the
# kernel mounts it (-t ext4 with MMP, -t ext3 with --no-mmp) and every file
# reads back identical to the source tree.
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cfy_setup convert

SRC=/usr/include/linux
[ -d "$SRC" ] || { echo "skip: $SRC (source tree for test content) is missing"; exit 77; }

cfy_probe_mount
[ $CAN_MOUNT = 1 ] || echo "note: loop mount not permitted here; kernel read-back checks are skipped"

check_case() {  # blocksize size slots policy mmp(1/0) [blocks-per-group]
  local bs=$1 size=$2 slots=$3 policy=$4 mmp=$5 bpg=${6:-}
  local img="$W/img-$bs-$slots-$policy-$mmp.img"
  echo "== case: block size $bs, $size, $slots slots, $policy, mmp=$mmp"
  truncate -s "$size" "$img"
  mke2fs -q -t ext3 -b "$bs" ${bpg:+-g $bpg} -d "$SRC" "$img" || fail "mke2fs"
  local extra=()
  [ "$mmp" = 0 ] && extra+=(--no-mmp)
  "$C" convert "$img" --slots "$slots" --group-policy "$policy" "${extra[@]}" >"$W/out" 2>"$W/err" ||
    { cat "$W/out" "$W/err"; fail "convert exited non-zero"; }
  e2fsck -fn "$img" >"$W/fsck" 2>&1 || { cat "$W/fsck"; fail "e2fsck -fn after convert"; }
  # The feature set: ext3's plus mmp, nothing invented.
  local feats
  feats=$(dumpe2fs -h "$img" 2>/dev/null | sed -n 's/^Filesystem features: *//p')
  for f in $feats; do
    case $f in has_journal|ext_attr|resize_inode|dir_index|filetype|sparse_super|large_file) ;;
      mmp) [ "$mmp" = 1 ] || fail "mmp set despite --no-mmp" ;;
      *) fail "unexpected feature $f" ;;
    esac
  done
  if [ "$mmp" = 1 ]; then echo "$feats" | grep -qw mmp || fail "mmp missing"; fi
  # System directory and files.
  debugfs -R "stat /.cext3" "$img" 2>/dev/null | grep -q "Mode:  0700" || fail "/.cext3 mode is not 0700"
  debugfs -R "stat /.cext3" "$img" 2>/dev/null | grep -q "Flags: 0x10" || fail "/.cext3 is not immutable"
  local s
  for ((s = 0; s < slots; s++)); do
    local j
    j=$(printf 'journal.%02d' $s)
    local ino
    ino=$(debugfs -R "stat /.cext3/$j" "$img" 2>/dev/null | sed -n 's/^Inode: \([0-9]*\).*/\1/p')
    [ -n "$ino" ] && [ "$ino" -ge 11 ] || fail "$j missing or reserved inode"
    # logdump -i runs on it (looks the inode's blocks up in the ext3 journal),
    # and logdump -f reads the slot journal itself: a valid jbd2 superblock.
    debugfs -R "logdump -i <$ino>" "$img" >"$W/ld" 2>&1 || fail "logdump -i <$ino>"
    debugfs -R "dump <$ino> $W/$j" "$img" >/dev/null 2>&1 || fail "dump $j"
    debugfs -R "logdump -f $W/$j" "$img" >"$W/ld" 2>&1
    grep -q "Journal starts at block 0, transaction" "$W/ld" || { cat "$W/ld"; fail "logdump -f $j: not a clean jbd2 journal"; }
    rm -f "$W/$j"
  done
  if [ $CAN_MOUNT = 1 ]; then
    local type=ext3
    [ "$mmp" = 1 ] && type=ext4
    cfy_mount "$img" $type ro || fail "mount -t $type"
    diff -r "$SRC" "$MNT" -x .cext3 -x lost+found >"$W/diff" 2>&1 || { head "$W/diff"; fail "content differs after convert"; }
    umount "$MNT"
    # And read-write with the kernel, then e2fsck again.
    cfy_mount "$img" $type || fail "rw mount -t $type"
    echo hello >"$MNT/new-file"
    umount "$MNT"
    e2fsck -fn "$img" >"$W/fsck" 2>&1 || { cat "$W/fsck"; fail "e2fsck -fn after a kernel rw mount"; }
  fi
  rm -f "$img"
}

check_case 1024 64M 4 contiguous 1
check_case 1024 96M 3 balanced 0
check_case 4096 256M 2 contiguous 0
check_case 4096 256M 8 balanced 1 4096
echo "PASS"
