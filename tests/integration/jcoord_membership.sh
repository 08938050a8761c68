#!/bin/bash
# jcoord membership on one machine, every node its own process, port and
# control socket, all on one shared image:
#  1. 10 nodes started at once on a 10-slot disk get 10 distinct slots;
#     an 11th is refused with one clear line;
#  2. every node sees all 10 live and one coordinator;
#  3. kill -9 of a node: the others report it dead within the bound
#     (dead_after + one heartbeat interval + scheduling slack); the
#     coordinator recovers its slot (lease released);
#  4. SIGSTOP a node past its fence deadline, let the others declare it dead,
#     SIGCONT it: it writes nothing more (its heartbeat sector and its journal
#     are byte-identical afterwards) and exits 3;
#  5. the rest stop cleanly; the last one marks MMP clean; e2fsck -fn exits 0.
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cfy_setup jcoord-membership
. "$CEXT3_SRC/tests/support/jcoord_cluster.sh"

T0=$SECONDS
JC_DISK="$W/disk.img"
jc_make_disk "$JC_DISK" 10

INFO=$("$C" info --json "$JC_DISK") || fail "clusterify info"
DEAD_AFTER=$(jc_json "$INFO" "j['timing']['dead_after_ms']" 2>/dev/null || echo 3000)
INTERVAL=$(jc_json "$INFO" "j['timing']['heartbeat_interval_ms']" 2>/dev/null || echo 500)
echo "timing: heartbeat every $INTERVAL ms, dead after $DEAD_AFTER ms"


echo "== 1. ten nodes at once (t=$((SECONDS - T0)) s)"
for i in $(seq 0 9); do jc_start "n$i"; done
for i in $(seq 0 9); do jc_wait_ready "n$i" 60; done
slots=""
for i in $(seq 0 9); do slots="$slots $(jc_get n$i "j['slot']")"; done
echo "slots:$slots (all ready after $((SECONDS - T0)) s)"
distinct=$(echo $slots | tr ' ' '\n' | sort -u | wc -l)
[ "$distinct" -eq 10 ] || fail "10 nodes got $distinct distinct slots ($slots)"

cfg=$(jc_config n10)
rc=0
"$J" start --config "$cfg" 2>"$W/n10.log" || rc=$?
echo "11th node: exit $rc: $(tail -1 "$W/n10.log")"
[ "$rc" -ne 0 ] || fail "an 11th node on a 10-slot disk was accepted"
grep -q "no free slot" "$W/n10.log" || fail "the 11th node's refusal does not say there is no free slot"
[ "$(grep -c "ERROR" "$W/n10.log")" -eq 1 ] || fail "the refusal is not one line"

echo "== 2. everyone sees everyone (t=$((SECONDS - T0)) s)"
jc_wait_all "sum(1 for s in j['slots'] if s['liveness']=='live')==10" 120 $(seq -f n%g 0 9)
echo "all 10 nodes see 10 live slots (t=$((SECONDS - T0)) s)"
coords=""
for i in $(seq 0 9); do coords="$coords $(jc_get n$i "j['coordinator']['slot']")"; done
[ "$(echo $coords | tr ' ' '\n' | sort -u | wc -l)" -eq 1 ] || fail "nodes disagree on the coordinator:$coords"
coord_slot=$(echo $coords | cut -d' ' -f1)
[ "$coord_slot" != "None" ] || fail "no coordinator elected"
echo "coordinator: slot $coord_slot"

# Pick victims that are not the coordinator (its death is the lock test's).
victims=()
for i in $(seq 0 9); do
  s=$(jc_get n$i "j['slot']")
  [ "$s" != "$coord_slot" ] && victims+=("n$i")
done
K=${victims[0]}
S=${victims[1]}
WATCH=${victims[2]}
coord_node=""
for i in $(seq 0 9); do
  [ "$(jc_get n$i "j['slot']")" = "$coord_slot" ] && coord_node="n$i"
done

echo "== 3. kill -9 $K (t=$((SECONDS - T0)) s)"
kslot=$(jc_get $K "j['slot']")
t0=$(date +%s%N)
kill -9 "$(jc_pid $K)"
wait "$(jc_pid $K)" 2>/dev/null || true
unset "JC_PID[$K]"
jc_wait "$WATCH" "[s for s in j['slots'] if s['slot']==$kslot][0]['liveness'] in ('dead','stopped')" 30
# The coordinator's log line says when it declared the node dead (it then
# recovers the slot and marks it stopped, so other watchers may see the slot
# go straight to "stopped").
jc_wait "$coord_node" "not [s for s in j['slots'] if s['slot']==$kslot][0]['lease']['owned']" 20
t1=$(grep -m1 "node dead: slot $kslot " "$W/$coord_node.log" | cut -d' ' -f1)
[ -n "$t1" ] || fail "$coord_node did not log the death of slot $kslot"
ms=$(python3 -c 'import sys,datetime; t=datetime.datetime.strptime(sys.argv[1],"%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=datetime.timezone.utc); print(int(t.timestamp()*1000) - int(sys.argv[2])//1000000)' "$t1" "$t0")
# dead_after after the last change seen, which is at most one interval old
# at the kill; plus one read interval and 1 s for a loaded shared machine.
bound=$((DEAD_AFTER + 2 * INTERVAL + 1000))
echo "measured: $coord_node (coordinator) declared $K (slot $kslot) dead ${ms} ms after kill -9 (configured dead_after ${DEAD_AFTER} ms, interval ${INTERVAL} ms; bound ${bound} ms)"
[ "$ms" -le "$bound" ] || fail "death detection took $ms ms, bound $bound ms"
jc_wait "$coord_node" "not [s for s in j['slots'] if s['slot']==$kslot][0]['lease']['owned']" 20
grep -q "recovered slot $kslot" "$W/$coord_node.log" || fail "the coordinator did not log the recovery of slot $kslot"

echo "== 4. SIGSTOP $S past its fence deadline (t=$((SECONDS - T0)) s)"
sslot=$(jc_get $S "j['slot']")
hb_first=$(debugfs -R "bmap /.cext3/heartbeat 0" "$JC_DISK" 2>/dev/null)
j_first=$(debugfs -R "bmap /.cext3/journal.$(printf %02d "$sslot") 0" "$JC_DISK" 2>/dev/null)
BS=$(dumpe2fs -h "$JC_DISK" 2>/dev/null | awk '/^Block size:/{print $3}')
j_bytes=$(debugfs -R "stat /.cext3/journal.$(printf %02d "$sslot")" "$JC_DISK" 2>/dev/null |
  grep -o "Size: [0-9]*" | head -1 | cut -d' ' -f2)
j_blocks=$((j_bytes / BS))
[ -n "$hb_first" ] && [ -n "$j_first" ] && [ "$j_blocks" -gt 0 ] || fail "cannot locate slot $sslot's system files"
snap() {  # the bytes node S may write: its heartbeat sector and its journal
  { dd if="$JC_DISK" bs=512 skip=$((hb_first * BS / 512 + sslot)) count=1 status=none
    dd if="$JC_DISK" bs="$BS" skip="$j_first" count="$j_blocks" status=none; } | sha256sum | cut -d' ' -f1
}
kill -STOP "$(jc_pid $S)"
jc_wait "$WATCH" "[s for s in j['slots'] if s['slot']==$sslot][0]['liveness'] in ('dead','stopped')" 30
# Recovered: the coordinator replayed its journal, marked its heartbeat
# stopped and freed its lease. From here on, nothing may change.
jc_wait "$coord_node" "not [s for s in j['slots'] if s['slot']==$sslot][0]['lease']['owned']" 20
before=$(snap)
kill -CONT "$(jc_pid $S)"
rc=0
wait "$(jc_pid $S)" || rc=$?
unset "JC_PID[$S]"
echo "resumed node exited with $rc: $(grep -m1 fenced "$W/$S.log")"
[ "$rc" -eq 3 ] || { cat "$W/$S.log"; fail "the resumed node exited $rc, expected 3 (fenced)"; }
sleep 1
[ "$(snap)" = "$before" ] || fail "the fenced node wrote to its heartbeat sector or journal after SIGCONT"
echo "fenced node wrote nothing after resuming (heartbeat sector and journal unchanged)"

echo "== 5. clean stop of the rest (t=$((SECONDS - T0)) s)"
mmp_seq() { debugfs -R dump_mmp "$JC_DISK" 2>/dev/null | awk '/^sequence:/{print $2}'; }
seq_live=$(mmp_seq)
echo "MMP sequence while live: $seq_live"
[ -z "$seq_live" ] || [ "$seq_live" = "e24d4d50" ] || fail "MMP not marked in use while the cluster is live ($seq_live)"
rc=0
e2fsck -fn "$JC_DISK" >"$W/e2fsck-live.log" 2>&1 || rc=$?
[ "$rc" -ne 0 ] || fail "e2fsck accepted the disk while the cluster is live"
jc_stop_all
[ -z "$seq_live" ] || [ "$(mmp_seq)" = "ff4d4d50" ] || fail "MMP not clean after the last node left ($(mmp_seq))"
e2fsck -fn "$JC_DISK" >"$W/e2fsck.log" 2>&1 || { cat "$W/e2fsck.log"; fail "e2fsck -fn after a clean stop"; }
"$C" verify -n "$JC_DISK" >"$W/verify.log" 2>&1 || { cat "$W/verify.log"; fail "clusterify verify -n after a clean stop"; }
echo "PASS"
