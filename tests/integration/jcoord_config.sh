#!/bin/bash
# jcoord refuses what it cannot do, with one clear line and a non-zero exit,
# and leaves the disk byte-identical: bad configuration files, a plain ext3
# that was never converted, a slot beyond the slot count, features not in
# this build. Then a good start/stop round trip leaves e2fsck clean.
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cfy_setup jcoord-config
. "$CEXT3_SRC/tests/support/jcoord_cluster.sh"

JC_DISK="$W/disk.img"
jc_make_disk "$JC_DISK" 2 64M
PLAIN="$W/plain.img"
mke2fs -q -F -t ext3 -b 4096 "$PLAIN" 32M || fail "mke2fs"

# refuse CONFIG_TEXT EXPECTED_RC MUST_MENTION
refuse() {
  local cfg="$W/bad.yaml" before after rc=0 lines
  printf '%s\n' "$1" >"$cfg"
  before="$(sha "$JC_DISK") $(sha "$PLAIN")"
  "$J" start --config "$cfg" >"$W/out.log" 2>"$W/err.log" || rc=$?
  after="$(sha "$JC_DISK") $(sha "$PLAIN")"
  [ "$rc" -eq "$2" ] || { cat "$W/err.log"; fail "config <<$1>>: exit $rc, expected $2"; }
  grep -q -- "$3" "$W/err.log" || { cat "$W/err.log"; fail "config <<$1>>: message does not mention '$3'"; }
  lines=$(grep -c . "$W/err.log")
  [ "$lines" -eq 1 ] || { cat "$W/err.log"; fail "config <<$1>>: $lines lines of errors, expected one"; }
  [ "$before" = "$after" ] || fail "config <<$1>>: a refused start changed a disk"
  echo "refused ($rc): $(cat "$W/err.log")"
}

S="control_socket: $W/x.sock"
refuse "device: $JC_DISK
colour: blue" 1 "colour"
refuse "node: {name: a}" 1 "device"
refuse "device: $JC_DISK
node: {slot: seven}
$S" 1 "node.slot"
refuse "device: $JC_DISK
timing: {dead_after_ms: 9000}
$S" 1 "dead_after_ms"
refuse "device: $JC_DISK
coordination: {backend: etcd}
$S" 1 "not implemented"
refuse "device: $JC_DISK
mount: $W/no-such-dir
$S" 1 "is not a directory"
refuse "device: $W/does-not-exist.img
$S" 1 "does-not-exist"
refuse "device: $PLAIN
$S" 1 "clusterify"
refuse "device: $JC_DISK
node: {slot: 5}
$S" 1 "slot 5"

rc=0
"$J" start --config "$W/missing.yaml" 2>"$W/err.log" || rc=$?
[ "$rc" -eq 1 ] && grep -q "missing.yaml" "$W/err.log" || fail "a missing config file is not named ($rc)"
rc=0
"$J" exec --socket "$W/x.sock" mkdir /x 2>"$W/err.log" || rc=$?
[ "$rc" -eq 1 ] && grep -q "is the node running" "$W/err.log" || fail "exec without a node: $rc $(cat "$W/err.log")"
rc=0
"$J" exec --socket "$W/x.sock" frobnicate /x 2>"$W/err.log" || rc=$?
[ "$rc" -eq 1 ] || [ "$rc" -eq 2 ] || fail "exec of an unknown operation: $rc"
[ "$(wc -l <"$W/err.log")" -eq 1 ] || fail "exec of an unknown operation: not one line: $(cat "$W/err.log")"
rc=0
"$J" status --socket "$W/nobody.sock" 2>"$W/err.log" || rc=$?
[ "$rc" -eq 1 ] && grep -q "is the node running" "$W/err.log" || fail "status without a node: $rc $(cat "$W/err.log")"

echo "== a slot held by a live node is refused, naming the holder"
jc_start a 1
jc_wait_ready a 30
cfg=$(jc_config b 1)
rc=0
"$J" start --config "$cfg" 2>"$W/b.log" || rc=$?
[ "$rc" -eq 1 ] && grep -q "'a'" "$W/b.log" || { cat "$W/b.log"; fail "slot 1 held by a: second claim exit $rc"; }
echo "refused: $(grep ERROR "$W/b.log")"
"$J" status --socket "$(jc_socket a)" >"$W/status.txt" || fail "jcoord status"
grep -q "^1 .*live\*" "$W/status.txt" || { cat "$W/status.txt"; fail "status does not show slot 1 live (this node)"; }
"$J" lock demo EX --hold-ms 10 --socket "$(jc_socket a)" >"$W/lock.txt" || { cat "$W/lock.txt"; fail "jcoord lock"; }
grep -q '"ok":true' "$W/lock.txt" || fail "jcoord lock output"
"$J" stop --wait --socket "$(jc_socket a)" || fail "jcoord stop --wait"
rc=0
wait "$(jc_pid a)" || rc=$?
[ "$rc" -eq 0 ] || fail "node a exited $rc after stop"
JC_PID=()
e2fsck -fn "$JC_DISK" >"$W/e2fsck.log" 2>&1 || { cat "$W/e2fsck.log"; fail "e2fsck -fn after start/stop"; }
echo "PASS"
