#!/usr/bin/env python3
"""Lock stress driver for running jcoord nodes (tests/integration/jcoord_locks.sh).

Each client is one control-socket session on one node. It runs random
lock / convert / unlock operations on a small set of resources and logs every
step to its node's event log, one line per event:

    <CLOCK_MONOTONIC ns> <node> <client> <resource> <event> <mode>

events: request (about to ask), grant (the reply arrived), convert (mode
changed: logged before sending a downgrade, after the reply of an upgrade),
release (logged before sending the unlock), died (the node was killed; all
its holds end here), timeout (a request that was never granted).
Times are CLOCK_MONOTONIC, which all processes on one machine share, so the
merged logs of all nodes can be checked by cext3-lock-check.
Logged hold intervals lie inside what the client believed it held, so an
overlap of two incompatible logged holds is a real violation.
"""
import argparse
import json
import os
import random
import signal
import socket
import threading
import time


class Node:
    def __init__(self, name, sock, pid, log_path):
        self.name, self.sock, self.pid = name, sock, pid
        self.log = open(log_path, "w")
        self.mu = threading.Lock()
        self.dead = False

    def event(self, client, resource, ev, mode):
        with self.mu:
            if self.dead and ev != "died":
                return
            self.log.write(f"{time.monotonic_ns()} {self.name} {client} {resource} {ev} {mode}\n")

    def kill(self):
        with self.mu:
            os.kill(self.pid, signal.SIGKILL)
            self.dead = True
            self.log.write(f"{time.monotonic_ns()} {self.name} - - died -\n")
            self.log.flush()


class Session:
    def __init__(self, path):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.connect(path)
        self.buf = b""

    def call(self, line):
        self.s.sendall(line.encode() + b"\n")
        while b"\n" not in self.buf:
            chunk = self.s.recv(65536)
            if not chunk:
                raise ConnectionError("node closed the session")
            self.buf += chunk
        reply, self.buf = self.buf.split(b"\n", 1)
        return json.loads(reply)


def client(node, cid, args, rng, stats):
    try:
        sess = Session(node.sock)
    except OSError:
        return
    res = [f"res{i}" for i in range(args.resources)]
    try:
        for _ in range(args.ops):
            if node.dead:
                return
            r = rng.choice(res)
            mode = "EX" if rng.random() < args.ex_share else "PR"
            node.event(cid, r, "request", mode)
            rep = sess.call(f"lock {r} {mode} {args.timeout_ms}")
            if not rep["ok"]:
                node.event(cid, r, "timeout", mode)
                stats["errors"].append(f"{node.name}/{cid}: lock {r} {mode}: {rep.get('error')}")
                continue
            node.event(cid, r, "grant", mode)
            stats["grants"] += 1
            lid = rep["id"]
            time.sleep(rng.random() * args.hold_ms / 1000.0)
            if rng.random() < args.convert_share:
                if mode == "EX":
                    node.event(cid, r, "convert", "PR")
                    rep = sess.call(f"convert {lid} PR {args.timeout_ms}")
                    mode = "PR"
                    if not rep["ok"]:
                        stats["errors"].append(f"{node.name}/{cid}: convert {r} PR: {rep.get('error')}")
                else:
                    node.event(cid, r, "request", "EX")
                    rep = sess.call(f"convert {lid} EX {args.timeout_ms}")
                    if rep["ok"]:
                        node.event(cid, r, "convert", "EX")
                        mode = "EX"
                    else:
                        node.event(cid, r, "timeout", "EX")
                        stats["errors"].append(f"{node.name}/{cid}: convert {r} EX: {rep.get('error')}")
                stats["converts"] += 1
                time.sleep(rng.random() * args.hold_ms / 1000.0)
            node.event(cid, r, "release", mode)
            rep = sess.call(f"unlock {lid}")
            if not rep["ok"]:
                stats["errors"].append(f"{node.name}/{cid}: unlock {r}: {rep.get('error')}")
    except (ConnectionError, OSError) as e:
        if not node.dead:
            stats["errors"].append(f"{node.name}/{cid}: session lost: {e}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--node", action="append", required=True, help="NAME:SOCKET:PID")
    ap.add_argument("--log-dir", required=True)
    ap.add_argument("--clients", type=int, default=2, help="sessions per node")
    ap.add_argument("--ops", type=int, default=100, help="operations per client")
    ap.add_argument("--resources", type=int, default=5)
    ap.add_argument("--ex-share", type=float, default=0.5)
    ap.add_argument("--convert-share", type=float, default=0.2)
    ap.add_argument("--hold-ms", type=float, default=2.0)
    ap.add_argument("--timeout-ms", type=int, default=30000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--kill", help="NAME of a node to kill -9 mid-run")
    ap.add_argument("--kill-after-ms", type=int, default=1000)
    args = ap.parse_args()

    nodes = {}
    for spec in args.node:
        name, sock, pid = spec.split(":")
        nodes[name] = Node(name, sock, int(pid), os.path.join(args.log_dir, f"{name}.events"))
    stats = {"grants": 0, "converts": 0, "errors": []}
    threads = []
    seed = args.seed
    for node in nodes.values():
        for c in range(args.clients):
            seed += 1
            t = threading.Thread(target=client, args=(node, f"c{c}", args, random.Random(seed), stats))
            threads.append(t)
    t0 = time.monotonic()
    for t in threads:
        t.start()
    if args.kill:
        time.sleep(args.kill_after_ms / 1000.0)
        nodes[args.kill].kill()
        print(f"killed {args.kill} (pid {nodes[args.kill].pid}) after {args.kill_after_ms} ms")
    for t in threads:
        t.join()
    for node in nodes.values():
        node.log.close()
    dt = time.monotonic() - t0
    print(f"{len(threads)} clients, {stats['grants']} grants, {stats['converts']} converts in {dt:.1f} s "
          f"({stats['grants'] / dt:.0f} grants/s)")
    for e in stats["errors"]:
        print("error:", e)
    return 1 if stats["errors"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
