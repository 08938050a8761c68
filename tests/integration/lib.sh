#!/bin/bash
# Shared preamble of the clusterify integration tests. Sourced, never run:
#
#   . "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
#   cfy_setup NAME          # W (scratch dir), MNT, cleanup trap, C (clusterify)
#
# What it gives a test:
#   BIN, SCRATCH, C         the build directory, the scratch root, clusterify
#   PY                      python3 (the system one when there is one: it starts fastest)
#   W, MNT                  a fresh directory under SCRATCH and a mount point in it
#   fail MSG                print "FAIL: MSG" and exit 1
#   sha FILE                sha256 of FILE
#   cfy_probe_mount         sets CAN_MOUNT=1 if this machine can loop-mount ext3
#   cfy_mount IMG TYPE [OPTS]  loop-mount IMG on MNT (the loop device is detached
#                           on umount; cleanup unmounts whatever is still mounted)
#   cfy_losetup IMG         attach a loop device, set LOOPDEV; cleanup detaches it
#   cfy_on_exit CMD         one more cleanup command (run before W is removed)
# Loop devices are a shared, finite resource: every one this file attaches is
# detached by the EXIT trap, also when a test fails half-way.

# ctest turns every tests/integration/*.sh into a test; this one is a library.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  echo "lib.sh is sourced by other tests, not a test"
  exit 77
fi

set -u
BIN=${CEXT3_BIN:?set CEXT3_BIN to the build directory holding clusterify}
SCRATCH=${CEXT3_SCRATCH:?set CEXT3_SCRATCH to a scratch directory}
C="$BIN/clusterify"
# The system python starts in 0.2 s; a pyenv shim can take 2 s per call.
PY=/usr/bin/python3
[ -x "$PY" ] || PY=$(command -v python3)
W=""
MNT=""
CAN_MOUNT=0
CFY_LOOPS=()
CFY_EXIT_HOOKS=()

fail() { echo "FAIL: $*"; exit 1; }
sha() { sha256sum "$1" | cut -d' ' -f1; }

cfy_cleanup() {
  local h d
  for h in "${CFY_EXIT_HOOKS[@]+"${CFY_EXIT_HOOKS[@]}"}"; do eval "$h" || true; done
  if [ -n "$MNT" ] && mountpoint -q "$MNT" 2>/dev/null; then umount "$MNT" 2>/dev/null || umount -l "$MNT" || true; fi
  for d in "${CFY_LOOPS[@]+"${CFY_LOOPS[@]}"}"; do losetup -d "$d" 2>/dev/null || true; done
  [ -n "$W" ] && rm -rf "$W"
}

cfy_on_exit() { CFY_EXIT_HOOKS+=("$*"); }

cfy_setup() {  # NAME
  mkdir -p "$SCRATCH"
  W=$(mktemp -d "$SCRATCH/cfy-$1.XXXXXX") || { echo "FAIL: cannot make a scratch directory in $SCRATCH"; exit 1; }
  MNT="$W/mnt"
  mkdir -p "$MNT"
  trap cfy_cleanup EXIT
  trap 'exit 130' INT TERM
}

cfy_probe_mount() {
  local probe="$W/probe.img"
  CAN_MOUNT=0
  truncate -s 8M "$probe" && mke2fs -q -t ext3 "$probe" &&
    mount -o loop,ro -t ext3 "$probe" "$MNT" 2>/dev/null && umount "$MNT" && CAN_MOUNT=1
  rm -f "$probe"
  return 0
}

cfy_mount() {  # IMG TYPE [OPTS]
  mount -o "loop${3:+,$3}" -t "$2" "$1" "$MNT"
}

cfy_losetup() {  # IMG -> LOOPDEV (not in a subshell: the device must be recorded here)
  LOOPDEV=$(losetup --find --show "$1") || return 1
  CFY_LOOPS+=("$LOOPDEV")
}
