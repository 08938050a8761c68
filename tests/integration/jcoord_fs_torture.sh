#!/bin/bash
# kill -9 torture of the filesystem engine. Each round:
#   three nodes start; each runs random operations (create, write at any
#   offset, truncate, mkdir, symlink, rename, unlink, rmdir) under its own
#   directory, every acknowledged (durable) one logged by the driver;
#   a random node is killed with SIGKILL at a random moment; the survivors
#   declare it dead and recover its slot;
#   through a survivor, every log's acknowledged operations are all there
#   with the right contents, and the one in flight is all or nothing
#   (tests/support/cext3fs.py replay-check);
#   the survivors stop cleanly; e2fsck -fn and clusterify verify -n exit 0.
# `make test` runs CEXT3_TORTURE_ROUNDS (default 2) rounds; `make torture`
# runs as many as asked and prints rounds and failures.
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cfy_setup jcoord-fs-torture
. "$CEXT3_SRC/tests/support/jcoord_cluster.sh"
FS="$PY $CEXT3_SRC/tests/support/cext3fs.py"
ROUNDS=${CEXT3_TORTURE_ROUNDS:-2}
SEED=${CEXT3_TORTURE_SEED:-$RANDOM}
KEEP_GOING=${CEXT3_TORTURE_KEEP_GOING:-0}
echo "torture: $ROUNDS rounds, seed $SEED (CEXT3_TORTURE_SEED=$SEED repeats the choices)"
RANDOM=$SEED

JC_DISK="$W/disk.img"
jc_make_disk "$JC_DISK" 4 256M
LOGS=()
failures=0
round_fail() {
  echo "ROUND $r FAILED: $*"
  failures=$((failures + 1))
  [ "$KEEP_GOING" = 1 ] || fail "round $r: $*"
}

for r in $(seq 1 "$ROUNDS"); do
  for n in n1 n2 n3; do jc_start "$n"; done
  for n in n1 n2 n3; do jc_wait_ready "$n" 40; done
  jc_wait_all 'len([s for s in j["slots"] if s["liveness"] == "live"]) == 3 and not j["unrecovered"]' 40 n1 n2 n3
  declare -A DRV=()
  for n in n1 n2 n3; do
    log="$W/ops_r${r}_$n.jsonl"
    LOGS+=("$log")
    $FS random "$(jc_socket $n)" "/r${r}_$n" "$((SEED + r * 10 + ${n#n}))" "$log" >"$W/drv_r${r}_$n.log" 2>&1 &
    DRV[$n]=$!
  done
  sleep "$((1 + RANDOM % 3)).$((RANDOM % 10))"
  victim="n$((1 + RANDOM % 3))"
  acked=$(grep -c '"k": "ack"' "$W/ops_r${r}_$victim.jsonl" || true)
  echo "round $r: killing $victim (slot $(jc_get "$victim" 'j["slot"]'), $acked operations acknowledged so far)"
  kill -9 "$(jc_pid "$victim")"
  wait "$(jc_pid "$victim")" 2>/dev/null || true
  unset "JC_PID[$victim]"
  wait "${DRV[$victim]}" 2>/dev/null || true
  survivors=()
  for n in n1 n2 n3; do [ "$n" = "$victim" ] || survivors+=("$n"); done
  t0=$SECONDS
  jc_wait_all "len([s for s in j['slots'] if s['liveness'] == 'live']) == 2 and not j['unrecovered']" 60 "${survivors[@]}"
  echo "round $r: $victim declared dead and recovered after $((SECONDS - t0)) s"
  sleep 1
  for n in "${survivors[@]}"; do kill "${DRV[$n]}" 2>/dev/null || true; wait "${DRV[$n]}" 2>/dev/null || true; done
  for n in "${survivors[@]}"; do
    if grep -q '"k": "error"' "$W/ops_r${r}_$n.jsonl"; then
      cat "$W/drv_r${r}_$n.log"
      round_fail "node $n returned an unexpected error to its driver"
    fi
  done
  # Every log of every round so far, read through one survivor.
  checker=${survivors[$((RANDOM % 2))]}
  for log in "${LOGS[@]}"; do
    base=$(basename "$log" .jsonl)
    top="/${base#ops_}"
    $FS replay-check "$(jc_socket "$checker")" "$top" "$log" || round_fail "$log does not match what $checker shows"
  done
  jc_stop_all
  e2fsck -fn "$JC_DISK" >"$W/fsck.log" 2>&1 || { cat "$W/fsck.log"; round_fail "e2fsck -fn after the round"; }
  "$C" verify -n "$JC_DISK" >"$W/verify.log" 2>&1 || { cat "$W/verify.log"; round_fail "clusterify verify -n after the round"; }
  echo "round $r: ok (e2fsck -fn 0, verify -n 0)"
done
echo "torture: $ROUNDS rounds, $failures failures, seed $SEED"
[ "$failures" -eq 0 ] || fail "$failures of $ROUNDS rounds failed"
echo "PASS: $ROUNDS kill -9 rounds; every acknowledged operation survived"
