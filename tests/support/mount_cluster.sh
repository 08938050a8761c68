#!/bin/bash
# Helpers for tests that mount jcoord nodes through FUSE. Sourced after
# tests/integration/lib.sh's cfy_setup and tests/support/jcoord_cluster.sh:
#
#   jm_require_fuse               exit 77 (reason printed) when this machine
#                                 cannot make a FUSE mount
#   jm_start NAME MNTDIR [SLOT]   start a node serving its filesystem at MNTDIR
#                                 (--mount; JM_VIA_CONFIG=1: the config's
#                                 `mount:` key instead), log in $W/NAME.log
#   jm_wait_mounted MNTDIR [SECONDS]  until MNTDIR is a fuse mount
#   jm_umount MNTDIR [SECONDS]    umount, then the node must exit 0 in time
#   jm_umount_all                 jm_umount every mount still up
#   jm_fstype MNTDIR              the mount's type ("" when not mounted)
#   fail MSG                      as lib.sh's, and keeps the logs first
#   jm_watchdog SECONDS           after SECONDS, unmount (lazily) and kill
#                                 every node: a hung FUSE request then fails
#                                 with ENOTCONN instead of hanging the test
# On exit (also on failure) every mount still up is lazily unmounted before
# the nodes are killed, so a failing test leaves no dead mount behind.

declare -A JM_NODE=()  # mount dir -> node name

# A failing mount test keeps its logs (the scratch directory itself goes).
jm_save_logs() {
  local keep
  keep="$SCRATCH/logs-$(basename "$W")"
  mkdir -p "$keep" && cp "$W"/*.log "$W"/*.txt "$W"/*.yaml "$keep"/ 2>/dev/null
  echo "logs kept in $keep"
}
fail() {
  echo "FAIL: $*"
  jm_save_logs
  exit 1
}

jm_fstype() { findmnt -n -o FSTYPE --mountpoint "$1" 2>/dev/null | head -1; }

jm_cleanup() {
  local d
  for d in "${!JM_NODE[@]}"; do
    if [ -n "$(jm_fstype "$d")" ]; then
      umount -l "$d" 2>/dev/null || fusermount3 -uz "$d" 2>/dev/null || fusermount -uz "$d" 2>/dev/null || true
    fi
  done
}
# Before jcoord_cluster.sh's kill -9 of the nodes: a killed server leaves a
# mount whose every access fails with ENOTCONN.
CFY_EXIT_HOOKS=("jm_cleanup" "${CFY_EXIT_HOOKS[@]+"${CFY_EXIT_HOOKS[@]}"}")

jm_require_fuse() {
  local why=""
  if [ ! -c /dev/fuse ]; then
    why="there is no /dev/fuse (modprobe fuse, or give the container the device)"
  elif [ ! -r /dev/fuse ] || [ ! -w /dev/fuse ]; then
    why="/dev/fuse is not readable and writable by uid $(id -u)"
  elif [ "$(id -u)" != 0 ] && ! command -v fusermount3 >/dev/null; then
    why="not root and no fusermount3 to mount with"
  elif [ "$(id -u)" = 0 ]; then
    # A real mount(2) of an empty FUSE connection, detached at once: the
    # only sure answer to "may this process mount FUSE here".
    mkdir -p "$W/fuse-probe"
    why=$("$PY" - "$W/fuse-probe" <<'EOF'
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
fd = os.open("/dev/fuse", os.O_RDWR)
opts = f"fd={fd},rootmode=40000,user_id=0,group_id=0".encode()
if libc.mount(b"cext3-probe", sys.argv[1].encode(), b"fuse", 0, opts) != 0:
    print("mount(2) of a FUSE filesystem failed: " + os.strerror(ctypes.get_errno()))
else:
    libc.umount2(sys.argv[1].encode(), 2)  # MNT_DETACH
os.close(fd)
EOF
) || why="the FUSE mount probe failed to run"
    rmdir "$W/fuse-probe" 2>/dev/null || true
  fi
  if [ -n "$why" ]; then
    echo "SKIP: cannot mount FUSE here: $why"
    exit 77
  fi
}

jm_start() {  # NAME MNTDIR [SLOT]
  local cfg
  mkdir -p "$2"
  cfg=$(jc_config "$1" "${3:-}")
  if [ "${JM_VIA_CONFIG:-0}" = 1 ]; then
    echo "mount: $2" >>"$cfg"
    "$J" start --config "$cfg" 2>"$W/$1.log" &
  else
    "$J" start --config "$cfg" --mount "$2" 2>"$W/$1.log" &
  fi
  JC_PID[$1]=$!
  JM_NODE[$2]=$1
  echo "${JC_PID[$1]} $2" >>"$W/jm_nodes.txt"
}

jm_watchdog() {  # SECONDS
  local parent=$$ limit=$((SECONDS + $1))
  (
    while [ $SECONDS -lt $limit ]; do
      kill -0 "$parent" 2>/dev/null || exit 0
      sleep 1
    done
    echo "WATCHDOG: the test still runs after $1 s: unmounting and killing its nodes so it fails instead of hanging" >&2
    [ -f "$W/jm_nodes.txt" ] || exit 0
    while read -r pid dir; do
      umount -l "$dir" 2>/dev/null || true
      # Only a process that is still that jcoord (pids get reused).
      grep -q jcoord "/proc/$pid/cmdline" 2>/dev/null && kill -9 "$pid" 2>/dev/null
    done <"$W/jm_nodes.txt"
  ) &
  JM_WATCHDOG=$!
  cfy_on_exit "kill $JM_WATCHDOG 2>/dev/null"
}

jm_wait_mounted() {  # MNTDIR [SECONDS]
  local d=$1 n=${JM_NODE[$1]:?jm_wait_mounted: no node was started on $1} deadline=$((SECONDS + ${2:-30})) t
  while [ $SECONDS -lt $deadline ]; do
    t=$(jm_fstype "$d")
    case "$t" in fuse | fuse.*) return 0 ;; esac
    if ! kill -0 "${JC_PID[$n]}" 2>/dev/null; then
      if grep -q "not implemented" "$W/$n.log"; then
        echo "SKIP: this jcoord build cannot mount: $(grep -m1 "not implemented" "$W/$n.log")"
        exit 77
      fi
      tail -20 "$W/$n.log"
      fail "node $n exited before $d was mounted"
    fi
    sleep 0.1
  done
  tail -20 "$W/$n.log"
  fail "$d is not a fuse mount ${2:-30} s after node $n started (findmnt says '${t:-not mounted}')"
}

jm_umount() {  # MNTDIR [SECONDS]
  local d=$1 n=${JM_NODE[$1]:?jm_umount: no node was started on $1} pid deadline rc=0
  pid=${JC_PID[$n]}
  umount "$d" || { tail -5 "$W/$n.log"; fail "umount $d (node $n) failed"; }
  deadline=$((SECONDS + ${2:-30}))
  while kill -0 "$pid" 2>/dev/null; do
    [ $SECONDS -lt $deadline ] || { tail -20 "$W/$n.log"; fail "node $n still runs ${2:-30} s after umount $d"; }
    sleep 0.1
  done
  wait "$pid" || rc=$?
  unset "JC_PID[$n]"
  unset "JM_NODE[$d]"
  [ "$rc" = 0 ] || { tail -20 "$W/$n.log"; fail "node $n exited $rc after umount $d (want 0: a clean leave)"; }
  # Exit 0 is not enough: an error logged while leaving means the leave was not clean.
  if sed -n '/leaving the cluster/,$p' "$W/$n.log" | grep -q "ERROR"; then
    fail "node $n exited 0 after umount $d but logged while leaving: $(sed -n '/leaving the cluster/,$p' "$W/$n.log" | grep -m1 ERROR)"
  fi
}

jm_umount_all() {
  local d
  for d in "${!JM_NODE[@]}"; do jm_umount "$d"; done
}
