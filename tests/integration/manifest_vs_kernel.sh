#!/usr/bin/env bash
# Cross-check of the manifest oracle: cext3-manifest reads images through
# libext2fs; here the Linux kernel reads the same images (read-only loop
# mount) and an independent lister written in Python (stat, readlink,
# listxattr/getxattr, FS_IOC_GETFLAGS, SEEK_DATA/SEEK_HOLE, hashlib) builds
# the same lines. Every field both can see must agree, on every positive
# image of the quick corpus. Skips (77) where loop mounts are not permitted.
set -euo pipefail

: "${CEXT3_BIN:?set CEXT3_BIN to the build directory}"
: "${CEXT3_SRC:?set CEXT3_SRC to the source root}"
: "${CEXT3_SCRATCH:?set CEXT3_SCRATCH to a scratch directory}"
MANIFEST=$CEXT3_BIN/cext3-manifest
[ -x "$MANIFEST" ] || { echo "FAIL: $MANIFEST not built; build the cext3-manifest target"; exit 1; }

if [ "$(id -u)" != 0 ]; then
  echo "SKIP: needs root for loop mounts (and to build the corpus)"; exit 77
fi
mkdir -p "$CEXT3_SCRATCH"
WORK=$(mktemp -d "$CEXT3_SCRATCH/manifest_vs_kernel.XXXXXX")
MNT=$WORK/mnt
LOOPDEV=""
cleanup() {
  if mountpoint -q "$MNT" 2>/dev/null; then umount "$MNT" || umount -l "$MNT" || true; fi
  if [ -n "$LOOPDEV" ]; then losetup -d "$LOOPDEV" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT
mkdir -p "$MNT"

# Can this machine loop-mount at all? Probe on a throwaway image.
truncate -s 4M "$WORK/probe.img"
mke2fs -q -F -t ext3 "$WORK/probe.img" >/dev/null 2>&1
if ! LOOPDEV=$(losetup --find --show --read-only "$WORK/probe.img" 2>"$WORK/err") ||
   ! mount -t ext3 -o ro "$LOOPDEV" "$MNT" 2>>"$WORK/err"; then
  echo "SKIP: loop mount not permitted here ($(tr '\n' ' ' <"$WORK/err")); the kernel cross-check needs it"
  exit 77
fi
umount "$MNT"; losetup -d "$LOOPDEV"; LOOPDEV=""

CORPUS=$CEXT3_SCRATCH/corpus
bash "$CEXT3_SRC/test-images/build-corpus.sh" "$CORPUS" --profile quick --manifest-tool "$MANIFEST" >"$WORK/build.log" 2>&1 ||
  { cat "$WORK/build.log"; echo "FAIL: building the corpus failed"; exit 1; }

cat >"$WORK/kernel_manifest.py" <<'EOF'
# Lists a mounted tree in cext3-manifest's line format (docs/CORPUS.md),
# using only what the kernel shows. "?" marks a field the kernel cannot show
# without side effects (flags of device nodes, fifos, sockets, symlinks).
import fcntl, hashlib, os, stat, struct, sys

root = os.fsencode(sys.argv[1])
large_inode = int(sys.argv[2]) > 128
FS_IOC_GETFLAGS = 0x80086601
INDEX_FL = 0x1000
PAGE = 4096

def esc(raw):
    out = []
    for c in raw:
        if c == 0x5C:
            out.append("\\\\")
        elif 0x20 <= c < 0x7F:
            out.append(chr(c))
        else:
            out.append("\\x%02x" % c)
    return "".join(out)

def sparse_digest(path, size):
    h = hashlib.sha256()
    fd = os.open(path, os.O_RDONLY)
    try:
        pages = []
        off = 0
        while off < size:
            try:
                start = os.lseek(fd, off, os.SEEK_DATA)
            except OSError:
                break  # no data after off
            end = os.lseek(fd, start, os.SEEK_HOLE)
            p = start // PAGE
            while p * PAGE < min(end, size):
                if not pages or pages[-1] != p:
                    pages.append(p)
                p += 1
            off = end
        for p in pages:
            data = os.pread(fd, min(PAGE, size - p * PAGE), p * PAGE)
            if any(data):
                h.update(struct.pack("<Q", p * PAGE))
                h.update(data)
    finally:
        os.close(fd)
    h.update(struct.pack("<Q", size))
    return h.hexdigest()

def flags_of(path, st):
    if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
        return "?"
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    try:
        buf = fcntl.ioctl(fd, FS_IOC_GETFLAGS, b"\0" * 8)
    finally:
        os.close(fd)
    return "0x%x" % (struct.unpack("<l", buf[:4])[0] & 0xFFFFFFFF & ~INDEX_FL)

def line(rel, path):
    st = os.lstat(path)
    m = st.st_mode
    kind = ("reg" if stat.S_ISREG(m) else "dir" if stat.S_ISDIR(m) else "lnk" if stat.S_ISLNK(m) else
            "chr" if stat.S_ISCHR(m) else "blk" if stat.S_ISBLK(m) else "fifo" if stat.S_ISFIFO(m) else
            "sock" if stat.S_ISSOCK(m) else "unknown")
    sec, nsec = divmod(st.st_mtime_ns, 10**9)
    mtime = "%d.%09d" % (sec, nsec) if large_inode else "%d" % sec
    xattrs = []
    for name in os.listxattr(path, follow_symlinks=False):
        value = os.getxattr(path, name, follow_symlinks=False)
        xattrs.append(esc(os.fsencode(name)) + "=" + hashlib.sha256(value).hexdigest())
    fields = [
        esc(rel), kind, "%04o" % stat.S_IMODE(m), str(st.st_uid), str(st.st_gid),
        "-" if kind == "dir" else str(st.st_size), mtime, str(st.st_nlink), flags_of(path, st),
        ",".join(sorted(xattrs)) or "-",
        esc(os.readlink(path)) if kind == "lnk" else "-",
        "%d:%d" % (os.major(st.st_rdev), os.minor(st.st_rdev)) if kind in ("chr", "blk") else "-",
        sparse_digest(path, st.st_size) if kind == "reg" else "-",
    ]
    return "\t".join(fields)

entries = [(b"/", root)]
for dirpath, dirnames, filenames in os.walk(root):
    for name in dirnames + filenames:
        full = os.path.join(dirpath, name)
        entries.append((b"/" + os.path.relpath(full, root), full))
entries.sort()
for rel, full in entries:
    print(line(rel, full))
EOF

cat >"$WORK/compare.py" <<'EOF'
# Compares two manifests field by field; "?" in the kernel's line matches anything.
import sys
names = ["path", "type", "mode", "uid", "gid", "size", "mtime", "nlink", "flags", "xattrs", "target", "rdev", "data"]
ours = [l.rstrip("\n").split("\t") for l in open(sys.argv[1], encoding="ascii")]
kern = [l.rstrip("\n").split("\t") for l in open(sys.argv[2], encoding="ascii")]
problems = []
a = {l[0]: l for l in ours}
b = {l[0]: l for l in kern}
for p in sorted(set(a) - set(b)):
    problems.append(f"only in cext3-manifest: {p}")
for p in sorted(set(b) - set(a)):
    problems.append(f"only in the kernel's view: {p}")
compared = 0
for p in sorted(set(a) & set(b)):
    for i, n in enumerate(names):
        if b[p][i] == "?":
            continue
        compared += 1
        if a[p][i] != b[p][i]:
            problems.append(f"{p}: {n}: cext3-manifest says {a[p][i]!r}, kernel says {b[p][i]!r}")
for msg in problems[:30]:
    print("  " + msg)
print(f"  {len(a)} paths, {compared} fields compared, {len(problems)} differences")
sys.exit(1 if problems or len(a) < 2 else 0)
EOF

failures=0
checked=0
while IFS=$'\t' read -r name kind bs isz _ _ _ _ content _; do
  [ "$kind" = positive ] || continue
  img=$CORPUS/$name
  "$MANIFEST" "$img" >"$WORK/ours.txt"
  LOOPDEV=$(losetup --find --show --read-only "$img")
  mount -t ext3 -o ro "$LOOPDEV" "$MNT"
  python3 "$WORK/kernel_manifest.py" "$MNT" "$isz" >"$WORK/kernel.txt"
  umount "$MNT"; losetup -d "$LOOPDEV"; LOOPDEV=""
  echo "$name ($bs-byte blocks, $isz-byte inodes, $content):"
  if python3 "$WORK/compare.py" "$WORK/ours.txt" "$WORK/kernel.txt"; then
    checked=$((checked + 1))
  else
    echo "FAIL: $name: cext3-manifest and the kernel disagree (above)"
    failures=$((failures + 1))
  fi
done < <(tail -n +2 "$CORPUS/index.tsv")

[ "$checked" -ge 5 ] || [ "$failures" -gt 0 ] || { echo "FAIL: only $checked positive images found in $CORPUS/index.tsv"; exit 1; }
if [ "$failures" -gt 0 ]; then
  echo "FAIL: $failures image(s) differ between cext3-manifest and the kernel's view"
  exit 1
fi
echo "PASS: cext3-manifest agrees with the kernel on every field of $checked images"
