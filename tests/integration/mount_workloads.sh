#!/bin/bash
# Real programs on one cext3 node's FUSE mount of a clusterified image:
#  1. tar extracts a tarball of /usr/include (made first in the scratch
#     directory); diff -r against the source tree;
#  2. cp -a of /usr/include/linux and rsync -a of a /usr/share/doc subset;
#     diff -r, the same modes/owners/mtimes/sizes/link targets (find
#     -printf), and a second rsync finds nothing to transfer;
#  3. git init / add -A / commit / a second commit / fsck --full / status;
#  4. umount: the node exits 0; e2fsck -fn exits 0; the kernel's read-only
#     loop mount (-t ext4: the disk carries MMP) shows the same trees and
#     git fsck passes there (skipped, said so, where mount is not permitted).
# Sizes and times are printed. env: CEXT3_MOUNT_TREE (default /usr/include),
# CEXT3_MOUNT_DOCS (default /usr/share/doc/[s-z]*, a glob). Debugging the
# test itself: JM_ON_KERNEL=1 runs steps 1-3 on a kernel loop mount instead.
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cfy_setup mount-workloads
. "$CEXT3_SRC/tests/support/jcoord_cluster.sh"
. "$CEXT3_SRC/tests/support/mount_cluster.sh"
TREE=${CEXT3_MOUNT_TREE:-/usr/include}
DOCS=${CEXT3_MOUNT_DOCS:-/usr/share/doc/[s-z]*}
CPTREE=/usr/include/linux
GITTREE=/usr/include/x86_64-linux-gnu
# The whole of /usr/include (6000 entries here) takes minutes through FUSE
# on a loaded machine; tar and diff both leave out every entry with one of
# these names (node.js, llvm, libstdc++, X11 and python headers, and the
# directories the cp -a and git steps use). CEXT3_MOUNT_EXCLUDE="" takes
# everything.
EXCL_NAMES=${CEXT3_MOUNT_EXCLUDE-node llvm-14 llvm-c-14 c++ X11 python3.11 linux x86_64-linux-gnu}
TAR_EXCL=()
DIFF_EXCL=()
for e in $EXCL_NAMES; do TAR_EXCL+=("--exclude=$e"); DIFF_EXCL+=(-x "$e"); done
[ -d "$TREE" ] || { echo "SKIP: no $TREE to copy"; exit 77; }
[ -d "$CPTREE" ] || CPTREE=$TREE
[ -d "$GITTREE" ] || GITTREE=$CPTREE
for t in tar rsync git diff; do command -v $t >/dev/null || fail "$t is not installed (scripts/install-deps.sh)"; done
export GIT_AUTHOR_NAME=cext3 GIT_AUTHOR_EMAIL=cext3@localhost GIT_COMMITTER_NAME=cext3 GIT_COMMITTER_EMAIL=cext3@localhost
export GIT_CONFIG_NOSYSTEM=1 HOME="$W"

t0=0
tick() { t0=$(date +%s.%N); }
tock() { echo "  $1: $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f s", b - a }')"; }
# meta DIR: one line per entry: type, mode, owner, size, mtime, link target,
# path. A directory's size is how its blocks grew on that filesystem, not
# something a copy keeps: left out.
meta() { (cd "$1" && find . -printf '%y|%m|%U:%G|%s|%Ts|%l|%P\n' | awk -F'|' 'BEGIN { OFS = "|" } $1 == "d" { $4 = "-" } 1' | sort -t'|' -k7); }

echo "== 0. material"
tick
tar -C "$TREE" "${TAR_EXCL[@]}" -cf "$W/tree.tar" . || fail "tar of $TREE"
tock "tar of $TREE into the scratch directory"
echo "  tarball: $(($(stat -c %s "$W/tree.tar") / 1048576)) MiB, $(tar -tf "$W/tree.tar" | wc -l) entries"
# shellcheck disable=SC2206 # DOCS is a glob
docs=($DOCS)
[ -e "${docs[0]}" ] || fail "no files match $DOCS"
# One local copy of the subset (a kernel-to-kernel rsync) is the source,
# so source and copy compare as two whole trees.
mkdir -p "$W/docs"
rsync -a "${docs[@]}" "$W/docs/" || fail "rsync of $DOCS to the scratch directory"
echo "  rsync source: ${#docs[@]} entries of $(dirname "${docs[0]}"), $(du -s "$W/docs" | cut -f1) KiB, $(find "$W/docs" | wc -l) files"

M="$W/m1"
if [ "${JM_ON_KERNEL:-0}" = 1 ]; then
  echo "NOTE: JM_ON_KERNEL=1: the workloads run on the kernel's ext3, not on cext3 (debugging the test)"
  cfy_probe_mount
  [ "$CAN_MOUNT" = 1 ] || { echo "SKIP: loop mount not permitted"; exit 77; }
  mke2fs -q -F -t ext3 "$W/kernel.img" 512M || fail "mke2fs"
  mkdir -p "$M"
  mount -o loop -t ext3 "$W/kernel.img" "$M" || fail "loop mount"
  cfy_on_exit "umount $M 2>/dev/null"
else
  jm_require_fuse
  jm_watchdog 600
  JC_DISK="$W/disk.img"
  mke2fs -q -F -t ext3 -b 4096 "$JC_DISK" 512M || fail "mke2fs $JC_DISK"
  # shellcheck disable=SC2086
  "$C" convert "$JC_DISK" --slots 2 --yes $JC_TOLERANT_TIMING >"$W/convert.log" 2>&1 ||
    { cat "$W/convert.log"; fail "clusterify convert $JC_DISK --slots 2"; }
  jm_start n1 "$M"
  jm_wait_mounted "$M" 30
  echo "  mounted: $(jm_fstype "$M") at $M"
fi

echo "== 1. tarball extraction"
mkdir -p "$M/extract" || fail "mkdir in the mount"
tick
tar -C "$M/extract" -xf "$W/tree.tar" || fail "tar -xf into the mount"
tock "tar -xf into the mount"
tick
diff -r --no-dereference "${DIFF_EXCL[@]}" "$TREE" "$M/extract" >"$W/diff1.txt" 2>&1 ||
  { head -20 "$W/diff1.txt"; fail "the extracted tree differs from $TREE"; }
tock "diff -r against $TREE"

echo "== 2. cp -a and rsync -a"
tick
cp -a "$CPTREE" "$M/cpa" || fail "cp -a $CPTREE into the mount"
tock "cp -a $CPTREE"
diff -r --no-dereference "$CPTREE" "$M/cpa" >"$W/diff2.txt" 2>&1 || { head -20 "$W/diff2.txt"; fail "cp -a copy differs"; }
meta "$CPTREE" >"$W/meta_cp_src.txt"
meta "$M/cpa" >"$W/meta_cp_dst.txt"
diff "$W/meta_cp_src.txt" "$W/meta_cp_dst.txt" >"$W/meta_cp.diff" ||
  { head -20 "$W/meta_cp.diff"; fail "cp -a did not keep modes/owners/sizes/mtimes/link targets"; }
tick
rsync -a "$W/docs/" "$M/rs/" || fail "rsync -a into the mount"
tock "rsync -a of the doc subset"
diff -r --no-dereference "$W/docs" "$M/rs" >"$W/diff3.txt" 2>&1 || { head -20 "$W/diff3.txt"; fail "rsync -a copy differs"; }
meta "$W/docs" >"$W/meta_rs_src.txt"
meta "$M/rs" >"$W/meta_rs_dst.txt"
diff "$W/meta_rs_src.txt" "$W/meta_rs_dst.txt" >"$W/meta_rs.diff" ||
  { head -20 "$W/meta_rs.diff"; fail "rsync -a did not keep modes/owners/sizes/mtimes/link targets"; }
rsync -ai --dry-run "$W/docs/" "$M/rs/" >"$W/rsync2.txt" || fail "second rsync -a"
[ ! -s "$W/rsync2.txt" ] || { head -10 "$W/rsync2.txt"; fail "a second rsync -a still finds differences (metadata not kept)"; }

echo "== 3. git"
tick
cp -r "$GITTREE" "$M/repo" || fail "cp -r $GITTREE for the repository"
(
  cd "$M/repo" &&
    git init -q &&
    git add -A &&
    git commit -q -m "first" &&
    echo "/* changed */" >>"$(git ls-files | head -1)" &&
    git commit -q -a -m "second" &&
    git fsck --full --strict &&
    [ "$(git rev-list --count HEAD)" = 2 ] &&
    [ -z "$(git status --porcelain)" ]
) >"$W/git.log" 2>&1 || { tail -20 "$W/git.log"; fail "git init/add/commit/fsck in the mount"; }
git -C "$M/repo" rev-parse HEAD >"$W/git_head.txt"
tock "git init, add -A ($(git -C "$M/repo" ls-files | wc -l) files), 2 commits, fsck --full"
du -sh "$M" | sed 's/^/  used in the mount: /'

if [ "${JM_ON_KERNEL:-0}" = 1 ]; then
  umount "$M"
  e2fsck -fn "$W/kernel.img" >"$W/fsck.log" 2>&1 || { tail "$W/fsck.log"; fail "e2fsck -fn"; }
  echo "PASS (kernel run, JM_ON_KERNEL=1): workloads behave on the kernel's ext3"
  exit 0
fi

echo "== 4. umount, e2fsck, the kernel's view"
tick
jm_umount "$M" 60
tock "umount and the node's clean exit"
e2fsck -fn "$JC_DISK" >"$W/fsck.log" 2>&1 || { tail -20 "$W/fsck.log"; fail "e2fsck -fn exits non-zero after the workloads and a clean umount"; }
echo "  e2fsck -fn: clean"
cfy_probe_mount
if [ "$CAN_MOUNT" = 1 ]; then
  cfy_mount "$JC_DISK" ext4 ro || fail "the kernel refuses to mount the disk after the node left (-t ext4 ro)"
  diff -r --no-dereference "${DIFF_EXCL[@]}" "$TREE" "$MNT/extract" >"$W/kdiff1.txt" 2>&1 || { head "$W/kdiff1.txt"; fail "the kernel sees a different extracted tree"; }
  meta "$MNT/cpa" >"$W/meta_cp_kernel.txt"
  diff "$W/meta_cp_src.txt" "$W/meta_cp_kernel.txt" >/dev/null || fail "the kernel sees different metadata for the cp -a copy"
  diff -r --no-dereference "$CPTREE" "$MNT/cpa" >/dev/null 2>&1 || fail "the kernel sees a different cp -a copy"
  meta "$MNT/rs" >"$W/meta_rs_kernel.txt"
  diff "$W/meta_rs_src.txt" "$W/meta_rs_kernel.txt" >/dev/null || fail "the kernel sees different metadata for the rsync copy"
  GIT_OPTIONAL_LOCKS=0 git -c safe.directory='*' -C "$MNT/repo" fsck --full --strict >"$W/kgit.log" 2>&1 || { tail "$W/kgit.log"; fail "git fsck on the kernel's mount"; }
  [ "$(git -c safe.directory='*' -C "$MNT/repo" rev-parse HEAD)" = "$(cat "$W/git_head.txt")" ] || fail "the kernel sees another git HEAD"
  umount "$MNT"
  echo "  the kernel's read-only mount shows the same trees; git fsck passes there"
else
  echo "NOTE: loop mount is not permitted here: the kernel's view is not checked"
fi
echo "PASS: tar, cp -a, rsync -a and git on the cext3 mount; e2fsck clean and the kernel agrees"
