#!/bin/bash
# Lock service stress: N processes x 2 clients x M random lock/convert/unlock
# operations on a few resources over loopback TCP; every client logs what it
# saw and cext3-lock-check (an independent checker) verifies that no two
# incompatible holds overlapped and every request was granted in time.
#   run 1: fixed coordinator (slot 0);
#   run 2: the coordinator process is killed (SIGKILL) mid-run; the survivors
#          get a new view (coordinator 1, epoch 2, slot 0 unrecovered), and
#          after a short delay a view where slot 0 is recovered;
#   then:  the checker must FAIL on hand-made logs with an overlap and with a
#          request never granted (it can fail).
# Env: CEXT3_BIN (programs), CEXT3_SCRATCH (scratch dir); LOCKS_STRESS_OPS
# (operations per client, default 150), LOCKS_STRESS_KEEP=1 (keep the logs).
set -euo pipefail
BIN=${CEXT3_BIN:?CEXT3_BIN must name the build directory}
NODE="$BIN/cext3-bench-locks"
CHECK="$BIN/cext3-lock-check"
for p in "$NODE" "$CHECK"; do
  [ -x "$p" ] || { echo "locks_stress: $p is not built: build the tools first (make)"; exit 1; }
done
mkdir -p "${CEXT3_SCRATCH:?CEXT3_SCRATCH must name a scratch directory}"
WORK=$(mktemp -d "$CEXT3_SCRATCH/locks_stress.XXXXXX")
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  # LOCKS_STRESS_KEEP=1 keeps the logs for a post-mortem.
  if [ -z "${LOCKS_STRESS_KEEP:-}" ]; then rm -rf "$WORK"; else echo "logs kept in $WORK"; fi
}
trap cleanup EXIT
NODES=4
OPS=${LOCKS_STRESS_OPS:-150}
MAX_WAIT_MS=8000

write_view() {  # dir epoch coordinator "live..." "unrecovered..."
  printf 'epoch %s\ncoordinator %s\nlive %s\nunrecovered %s\n' "$2" "$3" "$4" "$5" >"$1/view.tmp"
  mv "$1/view.tmp" "$1/view"
}

start_nodes() {  # dir seed
  PIDS=()
  for s in $(seq 0 $((NODES - 1))); do
    "$NODE" stress-node --dir "$1" --slot "$s" --nodes "$NODES" --ops "$OPS" --threads 2 --resources 5 \
      --seed "$2" --log "$1/events.$s" --timeout-ms 15000 >"$1/out.$s" 2>&1 &
    PIDS+=($!)
  done
}

wait_nodes() {  # dir first-slot: every survivor must exit 0
  local rc=0
  for s in $(seq "$2" $((NODES - 1))); do
    if ! wait "${PIDS[$s]}"; then echo "locks_stress: node $s failed:"; cat "$1/out.$s"; rc=1; fi
  done
  return $rc
}

# ---- run 1: fixed coordinator
R1="$WORK/run1"; mkdir -p "$R1"
write_view "$R1" 1 0 "0 1 2 3" ""
start_nodes "$R1" 11
wait_nodes "$R1" 0 || exit 1
cat "$R1"/out.*
echo "run 1 (fixed coordinator): checking $(cat "$R1"/events.* | wc -l) events"
"$CHECK" --max-wait-ms $MAX_WAIT_MS "$R1"/events.* || { echo "locks_stress: run 1 violates lock guarantees"; exit 1; }

# ---- run 2: the coordinator is killed mid-run
R2="$WORK/run2"; mkdir -p "$R2"
write_view "$R2" 1 0 "0 1 2 3" ""
start_nodes "$R2" 22
# Wait until the coordinator has done some work, then kill it.
for _ in $(seq 1 200); do
  [ -f "$R2/events.0" ] && [ "$(wc -l <"$R2/events.0")" -ge 60 ] && break
  sleep 0.02
done
kill -9 "${PIDS[0]}"
wait "${PIDS[0]}" 2>/dev/null || true
echo "run 2: killed the coordinator (slot 0) after $(wc -l <"$R2/events.0") of its events"
write_view "$R2" 2 1 "1 2 3" "0"
sleep 0.5   # the simulated journal replay of slot 0
write_view "$R2" 2 1 "1 2 3" ""
wait_nodes "$R2" 1 || exit 1
cat "$R2"/out.[123]
grep -q recovered "$R2"/events.* || { echo "locks_stress: no survivor logged slot 0's recovery"; exit 1; }
echo "run 2 (coordinator killed): checking $(cat "$R2"/events.* | wc -l) events"
"$CHECK" --max-wait-ms $MAX_WAIT_MS "$R2"/events.* || { echo "locks_stress: run 2 violates lock guarantees"; exit 1; }

# ---- the checker can fail
N="$WORK/neg"; mkdir -p "$N"
printf '%s\n' "100 n0 0 r request EX" "110 n0 0 r grant EX" "200 n0 0 r release -" >"$N/a"
printf '%s\n' "150 n1 0 r request PR" "160 n1 0 r grant PR" "300 n1 0 r release -" >"$N/b"
if "$CHECK" "$N/a" "$N/b"; then echo "locks_stress: the checker accepted an EX/PR overlap"; exit 1; fi
printf '%s\n' "100 n0 0 r request EX" "110 n0 0 r grant EX" "120 n1 1 r request EX" >"$N/c"
if "$CHECK" "$N/c"; then echo "locks_stress: the checker accepted a request never granted"; exit 1; fi
# ... and a dead node's hold must end at its recovery, not before.
printf '%s\n' "100 n0 0 r request EX" "110 n0 0 r grant EX" "150 n1 0 r request EX" "160 n1 0 r grant EX" \
  "170 n1 0 r release -" "200 n0 - - recovered -" >"$N/d"
if "$CHECK" "$N/d"; then echo "locks_stress: the checker accepted a grant before the dead holder's recovery"; exit 1; fi
echo "locks_stress: both runs clean; the checker rejects overlapping, unserved and pre-recovery grants"
