#!/bin/bash
# Lock service benchmark: 3 processes on loopback (slot 0 = coordinator),
# latencies of a cached re-grant, a remote grant, EX ping-pong, and ops/s.
#   usage: scripts/bench/locks.sh [BUILD_DIR]
#   env:   ITERATIONS (default 3000) lock operations per latency sample,
#          PINGPONG_SECONDS (default 2).
# Goal (docs/LOCKS.md, "Benchmark"): remote grant p50 < 100 us, p99 < 1 ms on
# loopback. The machine's load is printed with the numbers: on a shared box a
# busy neighbour shows up in p99 first.
set -euo pipefail
BUILD=${1:-build}
BIN="$BUILD/cext3-bench-locks"
[ -x "$BIN" ] || { echo "locks bench: $BIN not built; run make first"; exit 1; }
OUT=$(mktemp "${TMPDIR:-/tmp}/lbench.XXXXXX"); trap 'rm -f "$OUT"' EXIT
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg), $(nproc) cpus"
"$BIN" bench --iterations "${ITERATIONS:-3000}" --seconds "${PINGPONG_SECONDS:-2}" >"$OUT"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
f() { awk -v k="$1" -v f="$2" '$1 == k { for (i = 2; i < NF; i++) if ($i == f) print $(i + 1) }' "$OUT"; }
echo "cached re-grant (no message):                 p50 $(f cached-regrant p50_us) us   p99 $(f cached-regrant p99_us) us"
echo "remote grant (node 1 -> master on node 0):    p50 $(f remote-grant p50_us) us   p99 $(f remote-grant p99_us) us   (goal: p50 < 100 us, p99 < 1 ms on loopback)"
echo "EX ping-pong node 1 <-> node 2, per handover: p50 $(f pingpong-handover p50_us) us   p99 $(f pingpong-handover p99_us) us   $(f pingpong-handover handovers_per_s) handovers/s"
echo "lock+unlock ops/s: cached $(f ops-cached lock_unlock_per_s), remote (fresh resources) $(f ops-remote lock_unlock_per_s), contended ping-pong $(f ops-pingpong lock_unlock_per_s)"
grep '^goal' "$OUT"
