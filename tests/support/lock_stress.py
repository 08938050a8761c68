#!/usr/bin/env python3
"""Lock stress driver for running jcoord nodes (tests/integration/jcoord_locks.sh).

Each client is one control-socket session on one node. It runs random
lock / convert / unlock operations on a small set of resources and logs every
step to its node's event log, one line per event:

    <CLOCK_MONOTONIC ns> <node> <client> <resource> <event> <mode>

events: request (about to ask), grant (the reply arrived), convert (mode
changed: logged before sending a downgrade, after the reply of an upgrade),
release (logged before sending the unlock), timeout (a request that was never
granted), recovered (a killed node's slot was recovered, taken from the
recovering daemon's log: the killed node's holds and requests end there).
Times are CLOCK_MONOTONIC, which all processes on one machine share, so the
merged logs of all nodes can be checked by cext3-lock-check.
Logged hold intervals lie inside what the client believed it held, so an
overlap of two incompatible logged holds is a real violation.
"""
import argparse
import calendar
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

    def recovered_at(self, mono_ns):
        with self.mu:
            self.log.write(f"{mono_ns} {self.name} - - recovered -\n")


def find_recovery(log_dir, slot):
    """CLOCK_MONOTONIC ns of the first daemon log line saying `slot` was
    recovered. Daemon logs carry UTC wall-clock times in ms; the line is
    written before the lock master is told, so the time is never late."""
    offset = time.time_ns() - time.monotonic_ns()
    best = None
    for f in os.listdir(log_dir):
        if not f.endswith(".log"):
            continue
        for line in open(os.path.join(log_dir, f), errors="replace"):
            if f" recovered slot {slot} (" not in line:
                continue
            stamp = line.split(" ", 1)[0]
            t = time.strptime(stamp[:19], "%Y-%m-%dT%H:%M:%S")
            wall_ns = (calendar.timegm(t) * 1000 + int(stamp[20:23])) * 1000000
            mono = wall_ns - offset
            best = mono if best is None else min(best, mono)
    return best


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
                # Downgrade first (EX -> PR or NL, PR -> NL), then maybe
                # upgrade from NL. An upgrade from PR is never asked: two PR
                # holders both upgrading wait for each other forever, a
                # deadlock of the callers that no lock manager can resolve
                # without failing one of them.
                down = "PR" if mode == "EX" and rng.random() < 0.5 else "NL"
                node.event(cid, r, "convert", down)
                rep = sess.call(f"convert {lid} {down} {args.timeout_ms}")
                mode = down
                stats["converts"] += 1
                if not rep["ok"]:
                    stats["errors"].append(f"{node.name}/{cid}: convert {r} {down}: {rep.get('error')}")
                time.sleep(rng.random() * args.hold_ms / 1000.0)
                if mode == "NL" and rng.random() < 0.5:
                    up = "EX" if rng.random() < args.ex_share else "PR"
                    node.event(cid, r, "request", up)
                    rep = sess.call(f"convert {lid} {up} {args.timeout_ms}")
                    stats["converts"] += 1
                    if rep["ok"]:
                        node.event(cid, r, "convert", up)
                        mode = up
                    else:
                        node.event(cid, r, "timeout", up)
                        stats["errors"].append(f"{node.name}/{cid}: convert {r} {up}: {rep.get('error')}")
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
    ap.add_argument("--timeout-ms", type=int, default=20000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--kill", help="NAME of a node to kill -9 mid-run")
    ap.add_argument("--kill-after-grants", type=int, default=0,
                    help="kill once this many grants were seen (default: a quarter of all operations)")
    ap.add_argument("--daemon-logs", help="directory of the daemons' NAME.log files (to find the recovery)")
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
    victim_slot = None
    if args.kill:
        victim_slot = Session(nodes[args.kill].sock).call("status")["slot"]
        at = args.kill_after_grants or len(threads) * args.ops // 4
        while stats["grants"] < at and any(t.is_alive() for t in threads):
            time.sleep(0.001)
        nodes[args.kill].kill()
        print(f"killed {args.kill} (pid {nodes[args.kill].pid}, slot {victim_slot}) after {stats['grants']} grants")
    for t in threads:
        t.join()
    if args.kill:
        rec = None
        for _ in range(100):
            rec = find_recovery(args.daemon_logs, victim_slot)
            if rec is not None:
                break
            time.sleep(0.1)
        if rec is None:
            stats["errors"].append(f"no daemon log says slot {victim_slot} of {args.kill} was recovered")
        else:
            nodes[args.kill].recovered_at(rec)
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
