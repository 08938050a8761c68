#!/bin/bash
# Cluster locks through real jcoord daemons: 4 nodes x 2 sessions x random
# lock / convert / unlock on 5 resources, every step logged with
# CLOCK_MONOTONIC; cext3-lock-check over the merged logs must find no two
# incompatible holds overlapping and no request left waiting. Then the same
# with the coordinator killed -9 mid-run: the survivors elect a new one, it
# recovers the dead slot, and the run completes with the same guarantees.
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cfy_setup jcoord-locks
. "$CEXT3_SRC/tests/support/jcoord_cluster.sh"
CHECK="$BIN/cext3-lock-check"
[ -x "$CHECK" ] || fail "missing $CHECK"

JC_DISK="$W/disk.img"
jc_make_disk "$JC_DISK" 4 128M
for i in 0 1 2 3; do jc_start "n$i"; done
for i in 0 1 2 3; do jc_wait_ready "n$i" 60; done
for i in 0 1 2 3; do jc_wait "n$i" "sum(1 for s in j['slots'] if s['liveness']=='live')==4 and j['coordinator']['slot'] is not None" 30; done

node_args() {
  local a=() n
  for n in "$@"; do a+=(--node "$n:$(jc_socket "$n"):$(jc_pid "$n")"); done
  echo "${a[@]}"
}

echo "== run 1: 4 nodes, no failures"
mkdir -p "$W/run1"
python3 "$CEXT3_SRC/tests/support/lock_stress.py" $(node_args n0 n1 n2 n3) --log-dir "$W/run1" \
  --clients 2 --ops "${CEXT3_LOCK_OPS:-60}" --seed 11 || fail "lock stress run 1 reported errors"
"$CHECK" "$W"/run1/*.events || fail "cext3-lock-check found a violation in run 1"

echo "== run 2: the coordinator is killed -9 mid-run"
coord_slot=$(jc_get n0 "j['coordinator']['slot']")
victim=""
for i in 0 1 2 3; do [ "$(jc_get n$i "j['slot']")" = "$coord_slot" ] && victim="n$i"; done
[ -n "$victim" ] || fail "no node holds the coordinator slot $coord_slot"
echo "coordinator: $victim (slot $coord_slot)"
mkdir -p "$W/run2"
python3 "$CEXT3_SRC/tests/support/lock_stress.py" $(node_args n0 n1 n2 n3) --log-dir "$W/run2" \
  --clients 2 --ops "${CEXT3_LOCK_OPS:-60}" --seed 22 --kill "$victim" --daemon-logs "$W" ||
  fail "lock stress run 2 reported errors"
wait "$(jc_pid "$victim")" 2>/dev/null || true
unset "JC_PID[$victim]"
"$CHECK" "$W"/run2/*.events || fail "cext3-lock-check found a violation in run 2"
survivor=""
for n in "${!JC_PID[@]}"; do survivor=$n; done
new_coord=$(jc_get "$survivor" "j['coordinator']['slot']")
epoch=$(jc_get "$survivor" "j['coordinator']['epoch']")
echo "new coordinator: slot $new_coord, epoch $epoch"
[ "$new_coord" != "$coord_slot" ] || fail "the dead coordinator is still named coordinator"

echo "== clean stop"
jc_stop_all
e2fsck -fn "$JC_DISK" >"$W/e2fsck.log" 2>&1 || { cat "$W/e2fsck.log"; fail "e2fsck -fn after the lock runs"; }
echo "PASS"
