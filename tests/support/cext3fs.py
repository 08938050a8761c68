#!/usr/bin/env python3
"""Filesystem workloads against running jcoord nodes (the `exec` requests of
the control socket, docs/jcoord.8), with an oracle of acknowledged results.

  cext3fs.py tree SOCKET DIR SEED COUNT LOG
      build a random tree under DIR (created): dirs, files of random sizes
      (sparse ones too), symlinks, hard links; the oracle (path -> kind and
      sha256 / target) goes to LOG as JSON.
  cext3fs.py check SOCKET ORACLE...
      every path of every oracle reads back identical through SOCKET; and
      each oracle's directory lists exactly its names. Exit 1 on a difference.
  cext3fs.py shared SOCKET DIR PREFIX SEED COUNT LOG
      create/rename/link/unlink names PREFIX* in the shared DIR; the final
      set of names this node made (with contents) goes to LOG.
  cext3fs.py random SOCKET DIR SEED LOG
      until killed or SIGTERM: random operations under DIR, every
      acknowledged one appended to LOG (one JSON line, flushed) BEFORE the
      next request; an operation in flight is logged as "pending" first.
  cext3fs.py replay-check SOCKET DIR LOG
      the state LOG's acknowledged operations imply equals what SOCKET
      shows under DIR; the last pending operation may be there or not.
  cext3fs.py local-check ROOT ORACLE...
      like check, on a directory of this machine holding the filesystem's
      tree (a kernel mount of the image, or a debugfs rdump of it).
  cext3fs.py local-check-log ROOT DIR LOG
      like replay-check, on a directory of this machine.
  cext3fs.py dump SOCKET DIR
      print the tree under DIR as JSON (path -> kind, sha256 / target).
Every request is acknowledged only once durable (the node's default).
"""
import hashlib
import json
import os
import random
import socket
import stat
import sys


class FsError(Exception):
    def __init__(self, errname, msg):
        super().__init__(f"{errname}: {msg}")
        self.errname = errname


class Node:
    def __init__(self, path, durable=True):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.connect(path)
        self.buf = b""
        self.req("set durable " + ("on" if durable else "off"))

    def req(self, line):
        self.s.sendall(line.encode() + b"\n")
        while b"\n" not in self.buf:
            chunk = self.s.recv(1 << 20)
            if not chunk:
                raise ConnectionError("jcoord closed the control socket")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        j = json.loads(line)
        if not j.get("ok"):
            raise FsError(j.get("errname") or "EIO", j.get("error", ""))
        return j

    # -- names are percent-encoded on the wire
    @staticmethod
    def enc(name):
        out = []
        for b in name.encode():
            c = chr(b)
            out.append(c if c.isalnum() and b < 128 or c in "._~/+=,:@-" else "%%%02X" % b)
        return "".join(out)

    def lookup(self, parent, name):
        return self.req(f"exec lookup {parent} {self.enc(name)}")

    def resolve(self, path):
        ino = 2
        attr = self.req("exec getattr 2")
        for part in [p for p in path.split("/") if p]:
            attr = self.lookup(ino, part)
            ino = attr["ino"]
        return attr

    def parent_of(self, path):
        d, name = path.rsplit("/", 1)
        return self.resolve(d or "/")["ino"], name

    def mkdir(self, path, mode=0o755):
        p, n = self.parent_of(path)
        return self.req(f"exec mkdir {p} {self.enc(n)} {mode:o}")

    def create(self, path, mode=0o644):
        p, n = self.parent_of(path)
        return self.req(f"exec create {p} {self.enc(n)} {mode:o}")

    def write(self, ino, off, data):
        for i in range(0, max(len(data), 1), 1 << 20):
            chunk = data[i:i + (1 << 20)]
            self.req(f"exec write {ino} {off + i} {chunk.hex() or '-'}")

    def read_all(self, ino, size):
        out = b""
        while len(out) < size:
            j = self.req(f"exec read {ino} {len(out)} {min(size - len(out), 1 << 20)}")
            data = bytes.fromhex(j["data"])
            if not data:
                break
            out += data
        return out

    def truncate(self, ino, size):
        return self.req(f"exec setattr {ino} size={size}")

    def symlink(self, path, target):
        p, n = self.parent_of(path)
        return self.req(f"exec symlink {p} {self.enc(n)} {self.enc(target)}")

    def link(self, existing, path):
        ino = self.resolve(existing)["ino"]
        p, n = self.parent_of(path)
        return self.req(f"exec link {ino} {p} {self.enc(n)}")

    def unlink(self, path):
        p, n = self.parent_of(path)
        return self.req(f"exec unlink {p} {self.enc(n)}")

    def rmdir(self, path):
        p, n = self.parent_of(path)
        return self.req(f"exec rmdir {p} {self.enc(n)}")

    def rename(self, src, dst):
        p, n = self.parent_of(src)
        q, m = self.parent_of(dst)
        return self.req(f"exec rename {p} {self.enc(n)} {q} {self.enc(m)}")

    def readdir(self, ino):
        names, off = [], 0
        while True:
            j = self.req(f"exec readdir {ino} {off} 1000")
            if not j["entries"]:
                return names
            for e in j["entries"]:
                names.append((self.dec(e["name"]), e["ino"], e["type"]))
            off = j["entries"][-1]["next"]

    @staticmethod
    def dec(s):
        b, i = bytearray(), 0
        while i < len(s):
            if s[i] == "%":
                b.append(int(s[i + 1:i + 3], 16))
                i += 3
            else:
                b.append(ord(s[i]))
                i += 1
        return b.decode(errors="surrogateescape")


def sha(b):
    return hashlib.sha256(b).hexdigest()


def dump(node, top):
    """path -> ["dir"] | ["file", sha256, size] | ["symlink", target] | [kind]"""
    out = {}
    def walk(path, ino):
        for name, cino, ftype in node.readdir(ino):
            if name in (".", ".."):
                continue
            p = path + "/" + name
            a = node.req(f"exec getattr {cino}")
            m = a["mode"]
            if stat.S_ISDIR(m):
                out[p] = ["dir"]
                walk(p, cino)
            elif stat.S_ISREG(m):
                data = node.read_all(cino, a["size"])
                out[p] = ["file", sha(data), a["size"]]
            elif stat.S_ISLNK(m):
                out[p] = ["symlink", Node.dec(node.req(f"exec readlink {cino}")["target"])]
            else:
                out[p] = ["special"]
    walk(top, node.resolve(top)["ino"])
    return out


def payload(rng, size):
    return bytes(rng.getrandbits(8) for _ in range(min(size, 64))) * (size // 64 + 1)


def rand_size(rng, bs_big):
    r = rng.random()
    if r < 0.3:
        return rng.randrange(0, 100)
    if r < 0.8:
        return rng.randrange(100, 20000)
    return rng.randrange(20000, bs_big)


def cmd_tree(sock, top, seed, count, log):
    node, rng = Node(sock), random.Random(seed)
    node.mkdir(top)
    oracle, dirs, files = {top: ["dir"]}, [top], []
    for i in range(count):
        # One triple-indirect file (tree of seed 1) when CEXT3_FS_DEEP=1:
        # reading 65 MiB back through the socket takes about 20 s per node.
        deep = os.environ.get("CEXT3_FS_DEEP") == "1" and seed == 1 and i == count // 2
        r = 0.5 if deep else rng.random()
        parent = rng.choice(dirs)
        if r < 0.15:
            p = f"{parent}/d{i}"
            node.mkdir(p)
            oracle[p] = ["dir"]
            dirs.append(p)
        elif r < 0.75:
            p = f"{parent}/f{i}"
            a = node.create(p)
            size = rand_size(rng, 400000)
            data = payload(rng, size)[:size]
            if deep or rng.random() < 0.1:
                # Sparse: a hole, then data far out. One file goes past 64 MiB
                # (triple-indirect with 1 KiB blocks); the others stay in the
                # double-indirect range, so reading them back is quick.
                off = rng.randrange(65 << 20, 66 << 20) if deep else rng.randrange(300 << 10, 3 << 20)
                node.write(a["ino"], off, data[:4096])
                data = b"\0" * off + data[:4096]
            else:
                node.write(a["ino"], 0, data)
            oracle[p] = ["file", sha(data), len(data)]
            files.append(p)
        elif r < 0.85:
            p = f"{parent}/s{i}"
            t = "x" * rng.choice([5, 40, 70, 300])  # fast and slow symlinks
            node.symlink(p, t)
            oracle[p] = ["symlink", t]
        elif files:
            src = rng.choice(files)
            p = f"{parent}/h{i}"
            node.link(src, p)
            oracle[p] = list(oracle[src])
    json.dump(oracle, open(log, "w"), indent=0, sort_keys=True)
    return 0


def cmd_check(sock, oracles):
    node, bad = Node(sock), 0
    for o in oracles:
        want = json.load(open(o))
        top = min(want, key=len)
        got = dump(node, top)
        got[top] = ["dir"]
        for p in sorted(set(want) | set(got)):
            if want.get(p) != got.get(p):
                bad += 1
                if bad <= 20:
                    print(f"{sock}: {p}: expected {want.get(p)}, found {got.get(p)}", file=sys.stderr)
    print(f"{sock}: checked {sum(len(json.load(open(o))) for o in oracles)} paths, {bad} differences")
    return 1 if bad else 0


def cmd_shared(sock, top, prefix, seed, count, log):
    node, rng = Node(sock), random.Random(seed)
    try:
        node.mkdir(top)
    except FsError as e:
        if e.errname != "EEXIST":
            raise
    names = {}  # name -> (file identity, content)
    for i in range(count):
        r = rng.random()
        if r < 0.45 or not names:
            n = f"{prefix}{i:05d}" + "_" * rng.randrange(0, 40)
            data = f"{prefix}:{i}".encode() * rng.randrange(1, 30)
            a = node.create(f"{top}/{n}")
            node.write(a["ino"], 0, data)
            names[n] = (i, data)
        elif r < 0.65:
            old = rng.choice(sorted(names))
            new = f"{prefix}r{i:05d}"
            node.rename(f"{top}/{old}", f"{top}/{new}")
            names[new] = names.pop(old)
        elif r < 0.75 and len(names) > 1:
            a, b = rng.sample(sorted(names), 2)  # rename over an existing name
            node.rename(f"{top}/{a}", f"{top}/{b}")
            # POSIX: two links of one file: rename does nothing.
            if names[a][0] != names[b][0]:
                names[b] = names.pop(a)
        elif r < 0.85:
            old = rng.choice(sorted(names))
            new = f"{prefix}l{i:05d}"
            node.link(f"{top}/{old}", f"{top}/{new}")
            names[new] = names[old]
        else:
            old = rng.choice(sorted(names))
            node.unlink(f"{top}/{old}")
            del names[old]
    json.dump({n: sha(d) for n, (_, d) in names.items()}, open(log, "w"), sort_keys=True)
    return 0


# ---------------------------------------------------------------- torture
# The model: path -> ["dir"] | ["file", bytes-as-hex] | ["symlink", target]
# (hard links are not modelled here: `tree` and `shared` cover them).

def apply(model, op):
    k = op["op"]
    if k == "mkdir":
        model[op["path"]] = ["dir"]
    elif k == "create":
        model[op["path"]] = ["file", ""]
    elif k == "write":
        cur = bytearray(bytes.fromhex(model[op["path"]][1]))
        off, data = op["off"], bytes.fromhex(op["data"])
        if len(cur) < off:
            cur += b"\0" * (off - len(cur))
        cur[off:off + len(data)] = data
        model[op["path"]] = ["file", bytes(cur).hex()]
    elif k == "truncate":
        cur = bytes.fromhex(model[op["path"]][1])
        n = op["size"]
        model[op["path"]] = ["file", (cur[:n] + b"\0" * max(0, n - len(cur))).hex()]
    elif k == "symlink":
        model[op["path"]] = ["symlink", op["target"]]
    elif k in ("unlink", "rmdir"):
        del model[op["path"]]
    elif k == "rename":
        src, dst = op["path"], op["dst"]
        moved = {p: v for p, v in model.items() if p == src or p.startswith(src + "/")}
        for p in moved:
            del model[p]
        for p in [p for p in model if p == dst or p.startswith(dst + "/")]:
            del model[p]
        for p, v in moved.items():
            model[dst + p[len(src):]] = v


def do(node, op):
    k = op["op"]
    if k == "mkdir":
        node.mkdir(op["path"])
    elif k == "create":
        node.create(op["path"])
    elif k == "write":
        node.write(node.resolve(op["path"])["ino"], op["off"], bytes.fromhex(op["data"]))
    elif k == "truncate":
        node.truncate(node.resolve(op["path"])["ino"], op["size"])
    elif k == "symlink":
        node.symlink(op["path"], op["target"])
    elif k == "unlink":
        node.unlink(op["path"])
    elif k == "rmdir":
        node.rmdir(op["path"])
    elif k == "rename":
        node.rename(op["path"], op["dst"])


def next_op(rng, model, top, i):
    dirs = [p for p, v in model.items() if v[0] == "dir"]
    files = [p for p, v in model.items() if v[0] == "file"]
    r = rng.random()
    if r < 0.10 or not files:
        return {"op": "mkdir" if rng.random() < 0.4 else "create", "path": f"{rng.choice(dirs)}/n{i}"}
    if r < 0.45:
        f = rng.choice(files)
        size = rng.choice([1, 100, 1000, 5000, 70000])
        off = rng.choice([0, 0, len(bytes.fromhex(model[f][1])), rng.randrange(0, 300000)])
        return {"op": "write", "path": f, "off": off, "data": rng.randbytes(size).hex()}
    if r < 0.55:
        return {"op": "truncate", "path": rng.choice(files), "size": rng.choice([0, 10, 5000, 200000])}
    if r < 0.62:
        return {"op": "symlink", "path": f"{rng.choice(dirs)}/s{i}", "target": "t" * rng.choice([3, 80])}
    if r < 0.80:
        src = rng.choice(files)
        return {"op": "rename", "path": src, "dst": f"{rng.choice(dirs)}/m{i}"}
    if r < 0.93:
        return {"op": "unlink", "path": rng.choice(files)}
    empty = [d for d in dirs if d != top and not any(p.startswith(d + "/") for p in model)]
    if empty:
        return {"op": "rmdir", "path": rng.choice(empty)}
    return {"op": "create", "path": f"{top}/c{i}"}


def cmd_random(sock, top, seed, log):
    rng = random.Random(seed)
    node = Node(sock)
    model = {}
    out = open(log, "a")
    def record(kind, op):
        out.write(json.dumps({"k": kind, **op}) + "\n")
        out.flush()
    op = {"op": "mkdir", "path": top}
    i = 0
    try:
        while True:
            record("pending", op)
            do(node, op)
            record("ack", op)
            apply(model, op)
            i += 1
            op = next_op(rng, model, top, i)
    except (ConnectionError, OSError, KeyboardInterrupt):
        return 0  # the node died or we were stopped: the log says what was acknowledged
    except FsError as e:
        record("error", {**op, "err": str(e)})
        print(f"unexpected error on {op}: {e}", file=sys.stderr)
        return 1


def model_to_dump(model):
    out = {}
    for p, v in model.items():
        if v[0] == "file":
            b = bytes.fromhex(v[1])
            out[p] = ["file", sha(b), len(b)]
        else:
            out[p] = list(v)
    return out


def load_log(log):
    """(model of the acknowledged operations, the operation in flight or None)"""
    model, pending = {}, None
    for line in open(log):
        try:
            e = json.loads(line)
        except ValueError:
            break  # a torn last line: the driver died mid-write
        kind = e.pop("k")
        if kind == "pending":
            pending = e
        elif kind == "ack":
            apply(model, e)
            pending = None
    return model, pending


def compare_with_log(got, top, log, where):
    model, pending = load_log(log)
    got = dict(got)
    if got or model:
        got[top] = ["dir"]
    want = model_to_dump(model)
    if got == want:
        print(f"{where}: {top}: {len(want)} paths, as acknowledged")
        return 0
    if pending is not None:
        alt = dict(model)
        try:
            apply(alt, pending)
            if got == model_to_dump(alt):
                print(f"{where}: {top}: {len(alt)} paths, as acknowledged plus the operation in flight ({pending['op']})")
                return 0
        except (KeyError, ValueError):
            pass
    for p in sorted(set(want) | set(got)):
        if want.get(p) != got.get(p):
            print(f"{where}: {p}: acknowledged {want.get(p)}, found {got.get(p)}", file=sys.stderr)
    print(f"{where}: in flight: {pending}", file=sys.stderr)
    return 1


def cmd_replay_check(sock, top, log):
    node = Node(sock)
    try:
        got = dump(node, top)
    except FsError as e:
        if e.errname != "ENOENT":
            raise
        got = {}
    return compare_with_log(got, top, log, sock)


def cmd_local_check_log(root, top, log):
    got = local_dump(root, top) if os.path.isdir(os.path.join(root, top.lstrip("/"))) else {}
    return compare_with_log(got, top, log, root)

def local_dump(root, top):
    """The same format as dump(), of a directory on this machine (a kernel
    mount of the image, or a debugfs rdump of it): keys are paths inside
    the cext3 filesystem."""
    out = {}
    base = os.path.join(root, top.lstrip("/"))
    for dirpath, dirnames, filenames in os.walk(base):
        rel = "/" + os.path.relpath(dirpath, root) if dirpath != root else ""
        for n in dirnames + filenames:
            full = os.path.join(dirpath, n)
            p = f"{rel}/{n}"
            st = os.lstat(full)
            if stat.S_ISLNK(st.st_mode):
                out[p] = ["symlink", os.readlink(full)]
            elif stat.S_ISDIR(st.st_mode):
                out[p] = ["dir"]
            elif stat.S_ISREG(st.st_mode):
                data = open(full, "rb").read()
                out[p] = ["file", sha(data), len(data)]
            else:
                out[p] = ["special"]
        dirnames[:] = [d for d in dirnames if not os.path.islink(os.path.join(dirpath, d))]
    return out


def cmd_local_check(root, oracles):
    bad = total = 0
    for o in oracles:
        want = json.load(open(o))
        top = min(want, key=len)
        got = local_dump(root, top)
        got[top] = ["dir"]
        total += len(want)
        for p in sorted(set(want) | set(got)):
            if want.get(p) != got.get(p):
                bad += 1
                if bad <= 20:
                    print(f"{root}: {p}: expected {want.get(p)}, found {got.get(p)}", file=sys.stderr)
    print(f"{root}: checked {total} paths, {bad} differences")
    return 1 if bad else 0


def main(argv):
    if len(argv) >= 6 and argv[1] == "tree":
        return cmd_tree(argv[2], argv[3], int(argv[4]), int(argv[5]), argv[6])
    if len(argv) >= 4 and argv[1] == "check":
        return cmd_check(argv[2], argv[3:])
    if len(argv) == 8 and argv[1] == "shared":
        return cmd_shared(argv[2], argv[3], argv[4], int(argv[5]), int(argv[6]), argv[7])
    if len(argv) == 6 and argv[1] == "random":
        return cmd_random(argv[2], argv[3], int(argv[4]), argv[5])
    if len(argv) == 5 and argv[1] == "replay-check":
        return cmd_replay_check(argv[2], argv[3], argv[4])
    if len(argv) >= 4 and argv[1] == "local-check":
        return cmd_local_check(argv[2], argv[3:])
    if len(argv) == 5 and argv[1] == "local-check-log":
        return cmd_local_check_log(argv[2], argv[3], argv[4])
    if len(argv) == 4 and argv[1] == "dump":
        print(json.dumps(dump(Node(argv[2]), argv[3]), sort_keys=True, indent=0))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
