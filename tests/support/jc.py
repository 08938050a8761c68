#!/usr/bin/env python3
"""Query running jcoord nodes over their control sockets (for test scripts).

  jc.py get SOCKET EXPR               print EXPR evaluated over the status JSON `j`
  jc.py wait EXPR TIMEOUT SOCKET...   until EXPR is true on every socket's status
                                      (exit 1 with the last status on timeout)
One process polls every socket directly, so waiting on ten nodes costs no
process start per check.
"""
import json
import socket
import sys
import time


def status(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(5)
    try:
        s.connect(path)
        s.sendall(b"status\n")
        buf = b""
        while b"\n" not in buf:
            chunk = s.recv(1 << 16)
            if not chunk:
                return None
            buf += chunk
        return json.loads(buf.split(b"\n", 1)[0])
    except (OSError, ValueError):
        return None
    finally:
        s.close()


def main():
    if len(sys.argv) >= 4 and sys.argv[1] == "get":
        j = status(sys.argv[2])
        if j is None:
            print(f"no status from {sys.argv[2]}", file=sys.stderr)
            return 1
        print(eval(sys.argv[3], {}, {"j": j}))
        return 0
    if len(sys.argv) >= 5 and sys.argv[1] == "wait":
        expr, deadline, socks = sys.argv[2], time.monotonic() + float(sys.argv[3]), sys.argv[4:]
        pending, last = list(socks), {}
        while pending and time.monotonic() < deadline:
            for p in list(pending):
                j = status(p)
                last[p] = j
                if j is not None and eval(expr, {}, {"j": j}):
                    pending.remove(p)
            if pending:
                time.sleep(0.05)
        for p in pending:
            print(f"{p}: '{expr}' still false; last status: {json.dumps(last.get(p))}", file=sys.stderr)
        return 1 if pending else 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
