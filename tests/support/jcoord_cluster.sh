#!/bin/bash
# Helpers for tests that run several jcoord nodes on one machine, each its
# own process, port and control socket, all on one shared image. Sourced
# after tests/integration/lib.sh's cfy_setup (which provides W, BIN, fail and
# the cleanup trap):
#
#   jc_make_disk IMG SLOTS [SIZE]   ext3 + clusterify convert --slots SLOTS
#   jc_start NAME [SLOT]            start a node (background), log in $W/NAME.log
#   jc_wait_ready NAME [SECONDS]    until its control socket answers
#   jc_status NAME                  its `status` JSON on stdout
#   jc_json JSON PYEXPR             evaluate PYEXPR over the parsed JSON `j`
#   jc_wait NAME PYEXPR [SECONDS]   until PYEXPR over NAME's status is True
#   jc_pid NAME                     its process id
# Every node still running when the test ends is killed (SIGKILL), so a
# failing test never leaves daemons behind.

J="$BIN/jcoord"
JC_TOLERANT_TIMING="--heartbeat-interval-ms 500 --dead-after-ms 5000 --fence-margin-ms 1500 --io-timeout-ms 1500"
declare -A JC_PID=()

jc_cleanup_nodes() {
  local n
  # Errors the daemons logged are the first thing to read when a test fails.
  grep -H "ERROR\|fenced" "$W"/*.log 2>/dev/null | grep -v "^$W/n10.log\|bad.yaml\|b.log" | head -20
  for n in "${!JC_PID[@]}"; do kill -9 "${JC_PID[$n]}" 2>/dev/null || true; done
  for n in "${!JC_PID[@]}"; do wait "${JC_PID[$n]}" 2>/dev/null || true; done
}
cfy_on_exit jc_cleanup_nodes

jc_make_disk() {  # IMG SLOTS [SIZE]
  rm -f "$1"
  # 1 KiB blocks: 8 MiB groups, so even a small image has enough groups for many slots.
  mke2fs -q -F -t ext3 -b 1024 "$1" "${3:-128M}" || fail "mke2fs $1"
  # Timing: tests run many daemons on a small shared machine (and under the
  # sanitizers), where a 2 s scheduling stall is not rare; with the defaults
  # (dead after 2.5 s) such a stall fences a healthy node. Tests that need
  # the defaults set JC_TIMING="".
  # shellcheck disable=SC2086
  "$BIN/clusterify" convert "$1" --slots "$2" --yes ${JC_TIMING-$JC_TOLERANT_TIMING} >"$W/convert.log" 2>&1 ||
    { cat "$W/convert.log"; fail "clusterify convert $1 --slots $2"; }
}

jc_socket() { echo "$W/$1.sock"; }

jc_config() {  # NAME [SLOT] -> path of a fresh config
  local cfg="$W/$1.yaml"
  {
    echo "device: $JC_DISK"
    echo "node:"
    echo "  name: $1"
    echo "  slot: ${2:-auto}"
    echo "listen: 127.0.0.1:0"
    echo "control_socket: $(jc_socket "$1")"
    echo "log_level: ${JC_LOG_LEVEL:-info}"
  } >"$cfg"
  echo "$cfg"
}

jc_start() {  # NAME [SLOT]
  local cfg
  cfg=$(jc_config "$1" "${2:-}")
  "$J" start --config "$cfg" 2>"$W/$1.log" &
  JC_PID[$1]=$!
}

jc_pid() { echo "${JC_PID[$1]}"; }

JCPY="python3 $CEXT3_SRC/tests/support/jc.py"

jc_status() { "$J" status --json --socket "$(jc_socket "$1")" 2>/dev/null; }

# jc_get NAME PYEXPR: EXPR over NAME's status `j`, one process.
jc_get() { $JCPY get "$(jc_socket "$1")" "$2"; }

jc_json() {  # JSON PYEXPR
  python3 -c 'import json,sys; j=json.loads(sys.argv[1]); print(eval(sys.argv[2]))' "$1" "$2"
}

jc_wait_ready() {  # NAME [SECONDS]
  local deadline=$((SECONDS + ${2:-20}))
  while [ $SECONDS -lt $deadline ]; do
    jc_status "$1" >/dev/null && return 0
    kill -0 "${JC_PID[$1]}" 2>/dev/null || { cat "$W/$1.log"; fail "node $1 exited before it was ready"; }
    sleep 0.1
  done
  cat "$W/$1.log"
  fail "node $1 not ready after ${2:-20} s"
}

jc_wait() {  # NAME PYEXPR [SECONDS]
  $JCPY wait "$2" "${3:-20}" "$(jc_socket "$1")" || fail "node $1: '$2' not true after ${3:-20} s"
}

# jc_stop_all: `jcoord stop` every running node; each must exit 0.
jc_stop_all() {
  local n rc
  for n in "${!JC_PID[@]}"; do "$J" stop --socket "$(jc_socket "$n")" || fail "jcoord stop $n"; done
  for n in "${!JC_PID[@]}"; do
    rc=0
    wait "${JC_PID[$n]}" || rc=$?
    [ "$rc" -eq 0 ] || { tail -5 "$W/$n.log"; fail "node $n exited $rc on a clean stop"; }
  done
  JC_PID=()
}

# jc_wait_all PYEXPR SECONDS NAME...: one poller for many nodes.
jc_wait_all() {
  local expr=$1 secs=$2 socks=() n
  shift 2
  for n in "$@"; do socks+=("$(jc_socket "$n")"); done
  $JCPY wait "$expr" "$secs" "${socks[@]}" || fail "'$expr' not true on every node after $secs s"
}


