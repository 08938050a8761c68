#!/usr/bin/env bash
# Build the ext3 test-image corpus: positive images (clean ext3 of many
# geometries filled with a real tree and the edge cases), negative images
# (what clusterify must refuse), one manifest per positive image, and an index.
#
#   test-images/build-corpus.sh OUTDIR [--profile quick|full] [--populate kernel|mkfs|auto]
#                               [--manifest-tool PATH]
#
# Images already built by this same script version (and populate method) are
# reused. See docs/CORPUS.md for the contents, the index columns and the
# manifest format. Needs root (mknod, chown, chattr; loop mounts for "kernel").
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PROG=build-corpus.sh

die() { echo "$PROG: $*" >&2; exit 1; }
usage() {
  echo "usage: $PROG OUTDIR [--profile quick|full] [--populate kernel|mkfs|auto] [--manifest-tool PATH]" >&2
  exit 2
}

OUTDIR=""
PROFILE=quick
POPULATE=auto
MANIFEST_TOOL=${CEXT3_MANIFEST:-}
while [ $# -gt 0 ]; do
  case "$1" in
    --profile) PROFILE=${2:-}; shift 2 || usage ;;
    --populate) POPULATE=${2:-}; shift 2 || usage ;;
    --manifest-tool) MANIFEST_TOOL=${2:-}; shift 2 || usage ;;
    -h|--help) usage ;;
    -*) echo "$PROG: unknown option $1" >&2; usage ;;
    *) [ -z "$OUTDIR" ] || usage; OUTDIR=$1; shift ;;
  esac
done
[ -n "$OUTDIR" ] || usage
case "$PROFILE" in quick|full) ;; *) die "--profile must be quick or full, not '$PROFILE'" ;; esac
case "$POPULATE" in kernel|mkfs|auto) ;; *) die "--populate must be kernel, mkfs or auto, not '$POPULATE'" ;; esac

if [ -z "$MANIFEST_TOOL" ]; then
  for cand in ${CEXT3_BIN:+"$CEXT3_BIN/cext3-manifest"} "$HERE/../build/cext3-manifest"; do
    if [ -x "$cand" ]; then MANIFEST_TOOL=$cand; break; fi
  done
fi
[ -n "$MANIFEST_TOOL" ] && [ -x "$MANIFEST_TOOL" ] ||
  die "cannot find the cext3-manifest program; build it (make) and pass --manifest-tool PATH or set CEXT3_BIN"
[ "$(id -u)" = 0 ] || die "must run as root: the corpus needs mknod, chown and chattr (and loop mounts for --populate kernel); rerun with sudo"
for tool in mke2fs e2fsck debugfs dumpe2fs setfacl chattr python3 flock; do
  command -v "$tool" >/dev/null || die "$tool not found; install e2fsprogs, acl, attr, python3 and util-linux"
done

mkdir -p "$OUTDIR"
OUTDIR=$(cd "$OUTDIR" && pwd)
# One builder at a time per corpus directory (tests may run in parallel).
exec 9>"$OUTDIR/.lock"
flock 9

# Anything that changes what an image contains changes this version.
SCRIPT_VERSION=$(cat "$HERE/build-corpus.sh" "$HERE/populate.py" | sha256sum | cut -c1-16)
START=$(date +%s)
echo "$PROG: building the $PROFILE profile into $OUTDIR (script version $SCRIPT_VERSION)"

# ------------------------------------------------------------------ cleanup
WORK=$(mktemp -d "$OUTDIR/.work.XXXXXX")
MNT=""
LOOPDEV=""
cleanup() {
  if [ -n "$MNT" ] && mountpoint -q "$MNT"; then umount "$MNT" || umount -l "$MNT" || true; fi
  if [ -n "$LOOPDEV" ]; then losetup -d "$LOOPDEV" 2>/dev/null || true; fi
  if [ -d "$WORK" ]; then
    chattr -R -i -a "$WORK" 2>/dev/null || true
    rm -rf "$WORK"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mount_image() {  # IMAGE DIR: loop-mount read-write as ext3
  LOOPDEV=$(losetup --find --show "$1") || return 1
  MNT=$2
  mkdir -p "$MNT"
  if ! mount -t ext3 "$LOOPDEV" "$MNT" 2>"$WORK/mount.err"; then
    losetup -d "$LOOPDEV"; LOOPDEV=""; MNT=""
    return 1
  fi
}
unmount_image() {
  umount "$MNT"
  losetup -d "$LOOPDEV"
  LOOPDEV=""; MNT=""
}

# ------------------------------------------------------------ populate method
METHOD=$POPULATE
if [ "$POPULATE" != mkfs ]; then
  probe=$WORK/probe.img
  truncate -s 4M "$probe"
  mke2fs -q -F -t ext3 "$probe" >/dev/null 2>&1
  if mount_image "$probe" "$WORK/probe.mnt" 2>"$WORK/probe.err"; then
    unmount_image
    METHOD=kernel
    REASON="a loop mount of a probe image succeeded, so files are written by the kernel's ext3 driver"
  else
    why=$(cat "$WORK/probe.err" "$WORK/mount.err" 2>/dev/null | tr '\n' ' ')
    [ "$POPULATE" = kernel ] && die "--populate kernel: cannot loop-mount an ext3 probe image (${why:-unknown error}); use --populate mkfs or run where loop mounts are permitted"
    METHOD=mkfs
    REASON="loop mounting is not permitted here (${why:-unknown error}); files are staged in a directory and copied by mke2fs -d"
  fi
  rm -f "$probe"
else
  REASON="requested with --populate mkfs: files are staged in a directory and copied by mke2fs -d"
fi
echo "$PROG: populate method: $METHOD ($REASON)"

# ------------------------------------------------------------------ helpers
INDEX_ROWS=()
BUILT=0
REUSED=0

stamp_ok() {  # NAME KEY
  [ -f "$OUTDIR/$1" ] && [ -f "$OUTDIR/$1.stamp" ] && [ "$(cat "$OUTDIR/$1.stamp")" = "$2" ]
}

fs_used_percent() {  # IMAGE -> integer percent of blocks in use
  dumpe2fs -h "$1" 2>/dev/null | awk -F: '
    /^Block count:/ { total = $2 + 0 }
    /^Free blocks:/ { free = $2 + 0 }
    END { if (total > 0) printf "%d\n", (total - free) * 100 / total; else print 0 }'
}

run_mke2fs() {  # NAME ARGS...: quiet unless it fails
  local name=$1; shift
  mke2fs "$@" >"$WORK/mke2fs.out" 2>&1 ||
    { cat "$WORK/mke2fs.out" >&2; die "$name: mke2fs $* failed (above); check the e2fsprogs version and free disk space"; }
}

check_clean() {  # IMAGE NAME
  local out rc=0
  out=$(e2fsck -fn "$1" 2>&1) || rc=$?
  if [ "$rc" != 0 ]; then
    echo "$out" | tail -20 >&2
    die "$2: e2fsck -fn exited $rc on a freshly built positive image; the builder or the kernel produced a broken ext3, investigate before using the corpus"
  fi
}

# Positive image. NAME BS ISZ RESIZE_INODE DIR_INDEX SIZE_MIB CONTENT
build_positive() {
  local name=$1.img bs=$2 isz=$3 ri=$4 di=$5 mib=$6 content=$7
  local img=$OUTDIR/$name tmp=$OUTDIR/$name.tmp
  local key="$SCRIPT_VERSION $METHOD $*"
  local budget=$(( mib * 1024 * 1024 / 4 ))
  [ "$budget" -le $((32 << 20)) ] || budget=$((32 << 20))
  # mke2fs -d inserts directory entries in quadratic time (measured: 45-154 s
  # for 20,000 entries on this class of machine), so the quick profile keeps
  # to 5,000 entries when it has to fall back to mkfs population.
  local bigdir_entries=20000
  [ "$METHOD" = mkfs ] && [ "$PROFILE" = quick ] && bigdir_entries=5000
  local content_desc=${content/bigdir/bigdir=$bigdir_entries}
  key="$key $bigdir_entries"
  local t0; t0=$(date +%s)
  if stamp_ok "$name" "$key"; then
    echo "$PROG: reuse $name (same script version and method)"
    REUSED=$((REUSED + 1))
  else
    rm -f "$img" "$img.stamp" "$img.manifest" "$tmp"
    local feats="has_journal"
    [ "$ri" = 1 ] && feats="$feats,resize_inode" || feats="$feats,^resize_inode"
    [ "$di" = 1 ] && feats="$feats,dir_index" || feats="$feats,^dir_index"
    local mkfs_opts=(-q -F -t ext3 -b "$bs" -I "$isz" -O "$feats" -L "${1:0:16}")
    case ",$content," in *,bigdir,*) mkfs_opts+=(-N 32768) ;; esac
    [ "$mib" -ge 4096 ] && mkfs_opts+=(-i 262144)  # fewer inodes keeps the huge image quick to check
    local pop=(python3 "$HERE/populate.py" --block-size "$bs" --inode-size "$isz" --content "$content"
               --tree-budget "$budget" --bigdir-entries "$bigdir_entries" --seed "$(printf '%s' "$name" | cksum | cut -d' ' -f1)")
    truncate -s "${mib}M" "$tmp"
    if [ "$METHOD" = kernel ]; then
      run_mke2fs "$name" "${mkfs_opts[@]}" "$tmp"
      mount_image "$tmp" "$WORK/mnt" || die "$name: cannot loop-mount the new image: $(cat "$WORK/mount.err")"
      "${pop[@]}" --fill-used-percent 97 "$MNT" | sed "s/^/  $name: /"
      unmount_image
    else
      local stage=$WORK/stage
      mkdir -p "$stage"
      case ",$content," in
        *,fill,*)
          # Size the fill file from a first build without it.
          local nofill=${content//fill/}; nofill=${nofill//,,/,}; nofill=${nofill#,}; nofill=${nofill%,}
          python3 "$HERE/populate.py" --block-size "$bs" --inode-size "$isz" --content "${nofill:-edge}" \
            --tree-budget "$budget" "$stage" | sed "s/^/  $name: /"
          run_mke2fs "$name" "${mkfs_opts[@]}" -d "$stage" "$tmp"
          local total free
          total=$(dumpe2fs -h "$tmp" 2>/dev/null | awk -F: '/^Block count:/ {print $2+0}')
          free=$(dumpe2fs -h "$tmp" 2>/dev/null | awk -F: '/^Free blocks:/ {print $2+0}')
          local ptrs=$((bs / 4))
          local blocks=$(( (free - total * 3 / 100) * ptrs / (ptrs + 1) - 4 ))
          [ "$blocks" -gt 0 ] || blocks=0
          python3 "$HERE/populate.py" --block-size "$bs" --inode-size "$isz" --content fill \
            --fill-bytes $((blocks * bs)) "$stage" | sed "s/^/  $name: /"
          rm -f "$tmp"; truncate -s "${mib}M" "$tmp"
          ;;
        *)
          "${pop[@]}" "$stage" | sed "s/^/  $name: /"
          ;;
      esac
      run_mke2fs "$name" "${mkfs_opts[@]}" -d "$stage" "$tmp"
      chattr -R -i -a "$stage" 2>/dev/null || true
      rm -rf "$stage"
    fi
    check_clean "$tmp" "$name"
    case ",$content," in
      *,fill,*)
        local used; used=$(fs_used_percent "$tmp")
        [ "$used" -ge 95 ] || die "$name: only $used% of blocks are used, the nearly-full image needs >= 95%; fix the fill sizing in populate.py"
        ;;
    esac
    mv "$tmp" "$img"
    echo "$key" >"$img.stamp"
    BUILT=$((BUILT + 1))
    echo "$PROG: built $name ($bs-byte blocks, $isz-byte inodes, resize_inode=$ri, dir_index=$di, ${mib} MiB, $content_desc) in $(( $(date +%s) - t0 ))s, e2fsck -fn clean"
  fi
  if [ ! -s "$img.manifest" ] || [ "$img.manifest" -ot "$img" ] || [ "$img.manifest" -ot "$MANIFEST_TOOL" ]; then
    "$MANIFEST_TOOL" "$img" >"$img.manifest.tmp" || die "$name: cext3-manifest failed on a clean image; see the message above"
    mv "$img.manifest.tmp" "$img.manifest"
  fi
  local flags_kept=n/a
  case ",$content," in
    *,edge,*)
      if grep -qP '^/edge/flags/immutable\treg\t([^\t]*\t){6}0x[0-9a-f]*[13579bdf]0\t' "$img.manifest"; then
        flags_kept=yes
      else
        flags_kept=no
      fi
      ;;
  esac
  local expect=clean
  case ",$content," in *,fill,*) expect=clean-nearly-full ;; esac
  INDEX_ROWS+=("$name	positive	$bs	$isz	$ri	$di	$(stat -c %s "$img")	$METHOD	$content_desc	$flags_kept	$expect	$name.manifest	used=$(fs_used_percent "$img")%")
}

# Negative image. NAME EXPECT NOTE, body in make_negative_NAME TMPFILE
build_negative() {
  local name=$1.img expect=$2 note=$3
  local img=$OUTDIR/$name tmp=$OUTDIR/$name.tmp
  local key="$SCRIPT_VERSION negative $1"
  if stamp_ok "$name" "$key"; then
    echo "$PROG: reuse $name"
    REUSED=$((REUSED + 1))
  else
    rm -f "$img" "$img.stamp" "$tmp"
    "make_$(echo "$1" | tr '-' '_')" "$tmp"
    mv "$tmp" "$img"
    echo "$key" >"$img.stamp"
    BUILT=$((BUILT + 1))
    echo "$PROG: built $name ($note)"
  fi
  local geometry="1024	256	1	1"
  [ "$1" = neg-garbage ] && geometry="-	-	-	-"
  INDEX_ROWS+=("$name	negative	$geometry	$(stat -c %s "$img")	none	-	n/a	$expect	-	$note")
}

small_ext3() {  # FILE [mke2fs options]: a 16 MiB ext3 with a few files
  local f=$1; shift
  local stage=$WORK/neg-stage
  rm -rf "$stage"; mkdir -p "$stage/dir"
  echo "negative image payload" >"$stage/dir/file"
  truncate -s 16M "$f"
  run_mke2fs "$(basename "$f")" -q -F -b 1024 -I 256 -d "$stage" "$@" "$f"
  rm -rf "$stage"
}
make_neg_ext2() { small_ext3 "$1" -t ext2; }
make_neg_ext4_extents() { small_ext3 "$1" -t ext4; }
make_neg_needs_recovery() {
  # A committed but unreplayed journal transaction (debugfs jo/jw/jc): the
  # kernel would replay it on mount, e2fsck -fn skips it and leaves the flag.
  small_ext3 "$1" -t ext3
  local last=$(( (16 << 20) / 1024 - 1 ))
  head -c 2048 /dev/zero | tr '\0' 'R' >"$WORK/jblocks"
  printf 'jo\njw -b %d,%d %s\njc\n' $((last - 1)) "$last" "$WORK/jblocks" >"$WORK/jcmds"
  debugfs -w -f "$WORK/jcmds" "$1" >/dev/null 2>&1
  dumpe2fs -h "$1" 2>/dev/null | grep -q '^Filesystem features:.*needs_recovery' ||
    die "neg-needs-recovery: debugfs did not leave needs_recovery set; check the debugfs journal commands"
}
make_neg_bad_magic() {
  # s_magic (0xEF53) lives at byte 56 of the superblock, which starts at 1024.
  # The backups are intact: e2fsck falls back to them, a tool that trusts
  # the primary superblock must refuse.
  small_ext3 "$1" -t ext3
  printf '\x00\x00' | dd of="$1" bs=1 seek=$((1024 + 56)) conv=notrunc status=none
}
make_neg_bad_superblock() {
  # Bad counts in the primary superblock: s_r_blocks_count (byte 8) set to
  # s_blocks_count (byte 4). ext2fs_open accepts it; e2fsck -fn exits 8.
  small_ext3 "$1" -t ext3
  python3 - "$1" <<'PYEOF'
import struct, sys
with open(sys.argv[1], "r+b") as f:
    f.seek(1024)
    sb = bytearray(f.read(1024))
    struct.pack_into("<I", sb, 8, struct.unpack_from("<I", sb, 4)[0])
    f.seek(1024)
    f.write(sb)
PYEOF
}
make_neg_truncated() {
  small_ext3 "$1" -t ext3
  truncate -s 8M "$1"
}
make_neg_garbage() {
  python3 -c 'import random, sys; sys.stdout.buffer.write(random.Random(1).randbytes(16 << 20))' >"$1"
}

# ------------------------------------------------------------------ profiles
NEGATIVES=(
  "neg-ext2|refuse:no-journal|ext2: no has_journal"
  "neg-ext4-extents|refuse:unsupported-feature|ext4 with extents"
  "neg-needs-recovery|refuse:needs-recovery|ext3 with a committed unreplayed transaction and needs_recovery set"
  "neg-bad-magic|refuse:bad-superblock|ext3 with the primary s_magic zeroed (offset 1024+56); backups intact"
  "neg-bad-superblock|refuse:bad-superblock|ext3 whose primary superblock has r_blocks_count = blocks_count; e2fsck -fn exits 8"
  "neg-truncated|refuse:truncated|ext3 of 16 MiB cut to 8 MiB"
  "neg-garbage|refuse:not-ext|16 MiB of pseudo-random bytes"
)

if [ "$PROFILE" = quick ]; then
  # Every block size, both inode sizes, both states of resize_inode and of
  # dir_index; one image with the 20,000-entry directory; one nearly full.
  build_positive b1024-i128-r1-d1-64m 1024 128 1 1 64 tree,edge,bigdir
  build_positive b2048-i256-r0-d1-32m 2048 256 0 1 32 tree,edge
  build_positive b4096-i256-r1-d0-64m 4096 256 1 0 64 tree,edge
  build_positive b4096-i128-r0-d0-16m 4096 128 0 0 16 tree,edge
  build_positive b1024-i256-r0-d0-16m 1024 256 0 0 16 tree,edge
  build_positive full95-b1024-i128-r1-d1-16m 1024 128 1 1 16 tree,fill
else
  sizes=(16 64 128 256)
  i=0
  for bs in 1024 2048 4096; do
    for isz in 128 256; do
      for ri in 1 0; do
        for di in 1 0; do
          mib=${sizes[$((i % 4))]}
          content=tree,edge
          [ "$mib" -ge 64 ] && content=tree,edge,bigdir
          build_positive "b$bs-i$isz-r$ri-d$di-${mib}m" "$bs" "$isz" "$ri" "$di" "$mib" "$content"
          i=$((i + 1))
        done
      done
    done
  done
  build_positive full95-b1024-i128-r1-d1-16m 1024 128 1 1 16 tree,fill
  build_positive full95-b4096-i256-r0-d1-64m 4096 256 0 1 64 tree,fill
  build_positive big-b4096-i256-r1-d1-32g 4096 256 1 1 32768 tree,edge,bigdir
fi
for n in "${NEGATIVES[@]}"; do
  IFS='|' read -r nname nexpect nnote <<<"$n"
  build_negative "$nname" "$nexpect" "$nnote"
done

# ------------------------------------------------------------------ index
{
  printf 'name\tkind\tblock_size\tinode_size\tresize_inode\tdir_index\tsize_bytes\tpopulate\tcontent\tflags_preserved\texpect\tmanifest\tnotes\n'
  printf '%s\n' "${INDEX_ROWS[@]}"
} >"$OUTDIR/index.tsv.tmp"
mv "$OUTDIR/index.tsv.tmp" "$OUTDIR/index.tsv"
echo "$PROG: done in $(( $(date +%s) - START ))s: ${#INDEX_ROWS[@]} images ($BUILT built, $REUSED reused), index $OUTDIR/index.tsv, method $METHOD"
