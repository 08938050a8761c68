#!/usr/bin/env python3
"""Fill a directory with the corpus contents.

The same code fills a kernel-mounted image (populate method "kernel") and a
staging directory that `mke2fs -d` then copies into a fresh image (method
"mkfs"), so both methods put the same tree on disk.

Content parts (--content, comma separated):
  tree    a slice of a real directory tree of this machine (/usr/include,
          else /usr/share/doc), files taken in sorted order up to --tree-budget
  edge    the edge cases: hard links, fast/slow symlinks, sparse files up to
          triple-indirect offsets, a dense file reaching double-indirect
          blocks, xattrs and POSIX ACLs, device nodes, fifo, socket, empty
          files, odd names, 255-byte names, 64-level nesting, owners, modes,
          timestamps, and (last) immutable/append-only/nodump flags
  bigdir  one directory with --bigdir-entries entries (htree with dir_index)
  fill    one file of pseudo-random bytes, --fill-bytes long, or sized so
          that --fill-used-percent of the mounted target is in use

Usage: populate.py TARGET --block-size N --inode-size N --content LIST [...]
"""
import argparse
import os
import random
import socket
import stat
import subprocess
import sys

# Block pointers per indirect block is block_size / 4. The direct blocks are 12.
DIRECT_BLOCKS = 12


def fail(msg):
    print(f"populate.py: {msg}", file=sys.stderr)
    sys.exit(1)


def run(cmd):
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        fail(f"{' '.join(cmd)} failed: {r.stderr.strip()}; install the attr/acl/e2fsprogs packages or check the target")


def pattern(rng, n):
    return rng.randbytes(n)


def write_at(path, chunks, size=None):
    """Creates path with each (offset, bytes) written; holes elsewhere."""
    with open(path, "wb") as f:
        for off, data in chunks:
            f.seek(off)
            f.write(data)
        if size is not None:
            f.truncate(size)


def copy_tree_slice(target, budget, block_size):
    """Copies files of a real tree in sorted order until `budget` bytes of
    blocks are used. Returns (source, files copied)."""
    for src in ("/usr/include", "/usr/share/doc"):
        if os.path.isdir(src):
            break
    else:
        fail("neither /usr/include nor /usr/share/doc exists; install libc6-dev or pass a content list without 'tree'")
    dest_root = os.path.join(target, "tree")
    os.makedirs(dest_root)
    used = 0
    copied = 0
    for dirpath, dirnames, filenames in os.walk(src):
        dirnames.sort()
        rel = os.path.relpath(dirpath, src)
        ddir = os.path.normpath(os.path.join(dest_root, rel))
        os.makedirs(ddir, exist_ok=True)
        for name in sorted(filenames):
            s = os.path.join(dirpath, name)
            d = os.path.join(ddir, name)
            st = os.lstat(s)
            if stat.S_ISLNK(st.st_mode):
                os.symlink(os.readlink(s), d)
                used += block_size
            elif stat.S_ISREG(st.st_mode):
                cost = ((st.st_size + block_size - 1) // block_size + 1) * block_size
                if used + cost > budget:
                    return src, copied
                with open(s, "rb") as fi, open(d, "wb") as fo:
                    fo.write(fi.read())
                os.chmod(d, stat.S_IMODE(st.st_mode))
                os.utime(d, ns=(st.st_atime_ns, st.st_mtime_ns))
                used += cost
                copied += 1
        used += block_size
        if used > budget:
            break
    return src, copied


def make_edge(target, block_size, inode_size, rng):
    e = os.path.join(target, "edge")
    os.makedirs(e)
    ptrs = block_size // 4

    # Hard links: a pair, and a triple across directories.
    links = os.path.join(e, "links")
    os.makedirs(os.path.join(links, "sub"))
    write_at(os.path.join(links, "pair_a"), [(0, b"two names, one inode\n")])
    os.link(os.path.join(links, "pair_a"), os.path.join(links, "pair_b"))
    write_at(os.path.join(links, "triple"), [(0, pattern(rng, 5000))])
    os.link(os.path.join(links, "triple"), os.path.join(links, "triple_2"))
    os.link(os.path.join(links, "triple"), os.path.join(links, "sub", "triple_3"))

    # Symlinks: fast ones keep the target in the inode (< 60 bytes), slow ones
    # in a data block. 59 and 60 bytes sit on either side of the boundary.
    sl = os.path.join(e, "symlinks")
    os.makedirs(sl)
    os.symlink("../links/pair_a", os.path.join(sl, "fast"))
    os.symlink("t" * 59, os.path.join(sl, "fast_59"))
    os.symlink("t" * 60, os.path.join(sl, "slow_60"))
    os.symlink("/" + "/".join(["long-component"] * 60)[: min(block_size - 2, 1000)], os.path.join(sl, "slow_long"))
    os.symlink("does/not/exist", os.path.join(sl, "dangling"))
    os.symlink("..", os.path.join(sl, "to_dir"))

    # Sparse and indirect-block files. Thresholds in blocks:
    #   single indirect from 12, double from 12 + p, triple from 12 + p + p^2.
    ind = DIRECT_BLOCKS
    dind = DIRECT_BLOCKS + ptrs
    tind = DIRECT_BLOCKS + ptrs + ptrs * ptrs
    sp = os.path.join(e, "sparse")
    os.makedirs(sp)
    bs = block_size
    write_at(os.path.join(sp, "hole_middle"), [(0, pattern(rng, 3000)), (10 * bs * 40, pattern(rng, 777))])
    write_at(os.path.join(sp, "all_hole"), [], size=10 << 20)
    write_at(os.path.join(sp, "tail_hole"), [(0, pattern(rng, 100))], size=5 * bs + 1)
    write_at(os.path.join(sp, "ind"), [(0, b"head"), ((ind + 3) * bs, pattern(rng, bs))])
    write_at(os.path.join(sp, "dind"),
             [(0, b"head"), ((ind + 1) * bs, pattern(rng, 10)), ((dind + ptrs + 5) * bs + 17, pattern(rng, 2 * bs))])
    # Data in the triple-indirect range: with 1 KiB blocks past ~64 MiB, with
    # 4 KiB blocks past ~4 GiB; only a handful of blocks are allocated.
    write_at(os.path.join(sp, "tind"),
             [(0, b"head"), ((dind + 2) * bs, pattern(rng, 100)), ((tind + 2 * ptrs * ptrs + 3 * ptrs + 1) * bs + 5,
                                                                     pattern(rng, 3 * bs))])
    # A zero-filled but allocated region must digest like a hole.
    write_at(os.path.join(sp, "allocated_zeros"), [(0, b"\0" * (8 * bs)), (8 * bs, b"end")])
    # Dense file whose last blocks are mapped through a double-indirect block.
    write_at(os.path.join(e, "dense_dind"), [(0, pattern(rng, (dind + 3) * bs + 123))])

    # Extended attributes and ACLs. Two files with identical xattrs may share
    # one xattr block (refcount 2).
    xa = os.path.join(e, "xattr")
    os.makedirs(xa)
    for name in ("small", "shared_1", "shared_2", "big"):
        write_at(os.path.join(xa, name), [(0, name.encode() + b"\n")])
    os.setxattr(os.path.join(xa, "small"), "user.comment", b"hello")
    os.setxattr(os.path.join(xa, "small"), "user.empty", b"")
    for n in ("shared_1", "shared_2"):
        os.setxattr(os.path.join(xa, n), "user.shared", b"same value in both files")
    os.setxattr(os.path.join(xa, "big"), "user.big", bytes(rng.randrange(1, 256) for _ in range(min(900, bs - 200))))
    os.setxattr(os.path.join(xa, "big"), "user.binary", bytes(range(256))[: 100])
    os.makedirs(os.path.join(xa, "acl_dir"))
    write_at(os.path.join(xa, "acl_file"), [(0, b"acl\n")])
    run(["setfacl", "-m", "u:1234:rw,g:4321:r,m::rw", os.path.join(xa, "acl_file")])
    run(["setfacl", "-m", "u:1234:rwx", "-d", "-m", "u:1234:rx,g::r", os.path.join(xa, "acl_dir")])
    write_at(os.path.join(xa, "acl_dir", "inherits_default_acl"), [(0, b"x")])
    os.setxattr(os.path.join(xa, "acl_dir"), "user.on_a_dir", b"dir attr")

    # Special files.
    sf = os.path.join(e, "special")
    os.makedirs(sf)
    os.mknod(os.path.join(sf, "char_1_3"), stat.S_IFCHR | 0o666, os.makedev(1, 3))
    os.mknod(os.path.join(sf, "block_8_1"), stat.S_IFBLK | 0o660, os.makedev(8, 1))
    os.mknod(os.path.join(sf, "char_big"), stat.S_IFCHR | 0o600, os.makedev(300, 70000))  # needs the new encoding
    os.mkfifo(os.path.join(sf, "fifo"), 0o640)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(os.path.join(sf, "socket"))
    s.close()
    write_at(os.path.join(sf, "empty_file"), [])
    os.makedirs(os.path.join(sf, "empty_dir"))

    # Names: 255 bytes (the maximum), odd bytes that need escaping.
    nm = os.path.join(e, "names")
    os.makedirs(nm)
    write_at(os.path.join(nm, "n" * 255), [(0, b"255\n")])
    os.makedirs(os.path.join(nm, "d" * 255))
    write_at(os.path.join(nm, "d" * 255, "f" * 255), [(0, b"deep name\n")])
    for raw in (b"with space", b"tab\there", b"new\nline", b"back\\slash", b"caf\xc3\xa9", b"raw\xff\xfe", b"-dash"):
        write_at(os.path.join(os.fsencode(nm), raw), [(0, raw)])

    # 64 levels of nesting.
    d = os.path.join(e, "deep")
    for level in range(1, 65):
        d = os.path.join(d, f"l{level:02d}")
    os.makedirs(d)
    write_at(os.path.join(d, "bottom"), [(0, b"level 64\n")])

    # Owners, modes and timestamps.
    ow = os.path.join(e, "owners")
    os.makedirs(ow)
    for name, uid, gid, mode in (("user1000", 1000, 1000, 0o644), ("nobody", 65534, 65534, 0o600),
                                 ("uid32", 123456, 654321, 0o640), ("setuid", 0, 0, 0o4755),
                                 ("setgid", 0, 50, 0o2755), ("nomode", 0, 0, 0o000)):
        p = os.path.join(ow, name)
        write_at(p, [(0, name.encode())])
        os.chown(p, uid, gid)
        os.chmod(p, mode)
    os.makedirs(os.path.join(ow, "sticky_dir"))
    os.chmod(os.path.join(ow, "sticky_dir"), 0o1777)
    tm = os.path.join(e, "times")
    os.makedirs(tm)
    times = [("epoch", 0), ("before_1970", -1000000), ("y2033", 2000000000)]
    if inode_size > 128:
        times.append(("after_2038", 4102444800))  # needs the epoch bits of the large inode
    for name, sec in times:
        p = os.path.join(tm, name)
        write_at(p, [(0, name.encode())])
        os.utime(p, ns=(sec * 10**9 + 123456789, sec * 10**9 + 987654321))

    # Flags last: an immutable file cannot be changed afterwards.
    fl = os.path.join(e, "flags")
    os.makedirs(fl)
    for name, flag in (("immutable", "+i"), ("append_only", "+a"), ("nodump", "+d"), ("noatime", "+A")):
        p = os.path.join(fl, name)
        write_at(p, [(0, name.encode() + b"\n")])
        run(["chattr", flag, p])


def make_bigdir(target, entries):
    d = os.path.join(target, "bigdir")
    os.makedirs(d)
    # Names of ~40 bytes make enough leaf blocks that the htree needs two
    # index levels with 1 KiB blocks.
    for i in range(entries):
        fd = os.open(os.path.join(d, f"entry-{i:05d}-padding-to-forty-bytes-xx"), os.O_CREAT | os.O_WRONLY, 0o644)
        os.close(fd)


def fill(target, block_size, fill_bytes, used_percent, rng):
    """Writes one file of pseudo-random bytes: fill_bytes long, or (for a
    mounted target) long enough that used_percent of the blocks are in use,
    counting the indirect blocks the file itself needs."""
    if fill_bytes <= 0 and used_percent > 0:
        st = os.statvfs(target)
        keep_free = int(st.f_blocks * (100 - used_percent) / 100)
        blocks = st.f_bfree - keep_free
        ptrs = block_size // 4
        blocks = blocks * ptrs // (ptrs + 1) - 4  # leave room for its own indirect blocks
        fill_bytes = max(0, blocks) * block_size
    with open(os.path.join(target, "fill"), "wb") as f:
        left = fill_bytes
        while left > 0:
            n = min(left, 1 << 20)
            f.write(rng.randbytes(n))
            left -= n
    print(f"populate: fill: {fill_bytes} bytes")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("target")
    ap.add_argument("--block-size", type=int, required=True)
    ap.add_argument("--inode-size", type=int, required=True)
    ap.add_argument("--content", required=True)
    ap.add_argument("--tree-budget", type=int, default=8 << 20)
    ap.add_argument("--bigdir-entries", type=int, default=20000)
    ap.add_argument("--fill-bytes", type=int, default=0)
    ap.add_argument("--fill-used-percent", type=float, default=0,
                    help="with a mounted target: fill until this share of the blocks is used")
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    parts = set(a.content.split(","))
    unknown = parts - {"tree", "edge", "bigdir", "fill"}
    if unknown:
        fail(f"unknown content part(s) {','.join(sorted(unknown))}; use tree, edge, bigdir, fill")
    rng = random.Random(a.seed)
    os.umask(0o022)
    if "tree" in parts:
        src, n = copy_tree_slice(a.target, a.tree_budget, a.block_size)
        print(f"populate: tree: {n} files from {src} (budget {a.tree_budget} bytes)")
    if "bigdir" in parts:
        make_bigdir(a.target, a.bigdir_entries)
        print(f"populate: bigdir: {a.bigdir_entries} entries")
    if "edge" in parts:
        make_edge(a.target, a.block_size, a.inode_size, rng)
        print("populate: edge cases")
    if "fill" in parts:
        fill(a.target, a.block_size, a.fill_bytes, a.fill_used_percent, rng)


if __name__ == "__main__":
    main()
