#!/bin/bash
# One cext3 node's FUSE mount against the kernel's ext3 on a loop device of
# the same image size, alternating back-to-back pairs, medians and ratios.
#   usage: scripts/bench/mount.sh [BUILD_DIR]
#   env:   SIZE (default 2G), PAIRS (default 3), DBENCH_SECONDS (default 10),
#          DBENCH_CLIENTS (default 4), FIO_SECONDS (default 10),
#          SCRATCH (default BUILD_DIR/scratch)
# Workloads:
#   dbench   dbench -t DBENCH_SECONDS -D DIR -c /usr/share/dbench/client.txt
#            DBENCH_CLIENTS: its "Throughput" in MB/s
#   tar      extraction of a /usr/include tarball (node.js headers left
#            out), timed as `tar -xf` plus `sync -f` of the filesystem (so
#            both sides have the data on the disk); tar -xf alone printed too
#   fio      fio --rw=randwrite --bs=4k --fsync=1 (psync, one 64 MiB file,
#            FIO_SECONDS time-based): write IOPS
# Goals (the mount's brief): one node >= 0.5x the kernel on dbench and on
# the tarball extraction. Needs root (loop mount, FUSE). Logs are kept in
# the scratch directory when something fails.
# The FUSE floor: the same workloads through bindfs, a FUSE file system
# that only passes each request on to a directory of the kernel's ext3
# mount. It does no file-system work of its own, so its ratio is what the
# kernel's FUSE round trips alone leave of the kernel's speed on this
# machine; "cext3 / floor" is the part of the gap that is cext3's.
set -uo pipefail
BUILD=${1:-build}
BIN=$(cd "$BUILD" && pwd) || { echo "mount bench: no build directory $BUILD"; exit 1; }
for p in jcoord clusterify; do
  [ -x "$BIN/$p" ] || { echo "mount bench: $BIN/$p not built; run make first"; exit 1; }
done
for t in dbench fio tar findmnt bindfs; do
  command -v $t >/dev/null || { echo "mount bench: $t is not installed; run scripts/install-deps.sh"; exit 1; }
done
LOADFILE=/usr/share/dbench/client.txt
[ -r "$LOADFILE" ] || { echo "mount bench: no $LOADFILE (package dbench); install it"; exit 1; }
[ -c /dev/fuse ] || { echo "mount bench: no /dev/fuse; load the fuse module or run where FUSE is available"; exit 1; }
SCRATCH=${SCRATCH:-$BIN/scratch}
mkdir -p "$SCRATCH"
W=$(mktemp -d "$SCRATCH/mountbench.XXXXXX")
SIZE=${SIZE:-2G}
PAIRS=${PAIRS:-3}
DSECS=${DBENCH_SECONDS:-10}
DCLIENTS=${DBENCH_CLIENTS:-4}
FSECS=${FIO_SECONDS:-10}
KM="$W/kernel"
CM="$W/cext3"
FM="$W/floor"
NODE_PID=""
FAILED=0
cleanup() {
  local rc=$?
  mountpoint -q "$FM" 2>/dev/null && umount "$FM"
  mountpoint -q "$KM" 2>/dev/null && umount "$KM"
  if [ -n "$(findmnt -n -o FSTYPE --mountpoint "$CM" 2>/dev/null)" ]; then umount "$CM" 2>/dev/null || umount -l "$CM"; fi
  [ -n "$NODE_PID" ] && kill -9 "$NODE_PID" 2>/dev/null
  if [ "$rc" = 0 ] && [ "$FAILED" = 0 ]; then rm -rf "$W"; else echo "mount bench: something failed: logs kept in $W"; rm -f "$W"/*.img "$W"/tree.tar; fi
}
trap cleanup EXIT
OUT="$W/results.txt"
: >"$OUT"
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg), $(nproc) cpus; images $SIZE; dbench $DCLIENTS clients ${DSECS} s; fio ${FSECS} s; $PAIRS pairs"

# ---- material
tar -C /usr/include --exclude=node -cf "$W/tree.tar" . || { echo "mount bench: cannot tar /usr/include"; exit 1; }
echo "tarball: $(($(stat -c %s "$W/tree.tar") / 1048576)) MiB, $(tar -tf "$W/tree.tar" | wc -l) entries"

# ---- the kernel's ext3
mkdir -p "$KM" "$CM"
mke2fs -q -F -t ext3 -b 4096 "$W/kernel.img" "$SIZE"
if ! mount -o loop -t ext3 "$W/kernel.img" "$KM" 2>"$W/mount.err"; then
  echo "mount bench: the kernel reference cannot be loop-mounted: $(head -1 "$W/mount.err"); run as root"
  exit 1
fi

# ---- the FUSE floor: bindfs passing everything on to $KM/floor
mkdir -p "$KM/floor" "$FM"
if ! bindfs -o allow_other --multithreaded "$KM/floor" "$FM" 2>"$W/bindfs.err"; then
  echo "mount bench: bindfs cannot mount the FUSE floor: $(head -1 "$W/bindfs.err")"
  exit 1
fi

# ---- one cext3 node, mounted
mke2fs -q -F -t ext3 -b 4096 "$W/cext3.img" "$SIZE"
"$BIN/clusterify" convert "$W/cext3.img" --slots 2 --yes --heartbeat-interval-ms 500 --dead-after-ms 5000 \
  --fence-margin-ms 1500 --io-timeout-ms 1500 >"$W/convert.log" 2>&1 || { cat "$W/convert.log"; exit 1; }
cat >"$W/n1.yaml" <<EOF
device: $W/cext3.img
node:
  name: n1
  slot: auto
listen: 127.0.0.1:0
control_socket: $W/n1.sock
log_level: warn
EOF
"$BIN/jcoord" start --config "$W/n1.yaml" --mount "$CM" 2>"$W/n1.log" &
NODE_PID=$!
for _ in $(seq 1 300); do
  case "$(findmnt -n -o FSTYPE --mountpoint "$CM" 2>/dev/null)" in fuse | fuse.*) break ;; esac
  kill -0 "$NODE_PID" 2>/dev/null || break
  sleep 0.1
done
case "$(findmnt -n -o FSTYPE --mountpoint "$CM" 2>/dev/null)" in
  fuse | fuse.*) echo "cext3 node mounted at $CM ($(findmnt -n -o FSTYPE --mountpoint "$CM"))" ;;
  *) tail -5 "$W/n1.log"; echo "mount bench: the node did not mount $CM within 30 s (log above)"; FAILED=1; exit 1 ;;
esac

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }

run_dbench() {  # SIDE DIR
  local log="$W/dbench-$1-$r.log" tp
  if timeout $((DSECS * 4 + 120)) dbench -t "$DSECS" -D "$2" -c "$LOADFILE" "$DCLIENTS" >"$log" 2>&1; then
    tp=$(awk '/^Throughput/ {print $2}' "$log")
    [ -n "$tp" ] && echo "$1-dbench $tp" | tee -a "$OUT"
  else
    echo "$1: dbench failed (exit $?): $(tail -2 "$log" | tr '\n' ' ')"
    FAILED=1
  fi
  rm -rf "$2/clients"
}

run_tar() {  # SIDE DIR
  local t0 t1 t2
  mkdir -p "$2/tar.$r"
  t0=$(now)
  if timeout 900 tar -C "$2/tar.$r" -xf "$W/tree.tar" 2>"$W/tar-$1-$r.log"; then
    t1=$(now)
    sync -f "$2"
    t2=$(now)
    echo "$1-tar-sync $(elapsed "$t0" "$t2")" | tee -a "$OUT"
    echo "$1-tar-only $(elapsed "$t0" "$t1")" | tee -a "$OUT"
  else
    echo "$1: tar -xf failed: $(head -2 "$W/tar-$1-$r.log" | tr '\n' ' ')"
    FAILED=1
  fi
  rm -rf "$2/tar.$r"
  sync -f "$2"
}

run_fio() {  # SIDE DIR
  local log="$W/fio-$1-$r.json" iops
  mkdir -p "$2/fio"
  if timeout $((FSECS * 4 + 120)) fio --name=randwrite-fsync --directory="$2/fio" --rw=randwrite --bs=4k --size=64M \
    --fsync=1 --ioengine=psync --runtime="$FSECS" --time_based --output-format=json >"$log" 2>"$W/fio-$1-$r.err"; then
    iops=$(python3 -c 'import json,sys; print("%.1f" % json.load(open(sys.argv[1]))["jobs"][0]["write"]["iops"])' "$log" 2>/dev/null)
    [ -n "$iops" ] && echo "$1-fio $iops" | tee -a "$OUT"
  else
    echo "$1: fio failed: $(tail -2 "$W/fio-$1-$r.err" | tr '\n' ' ')"
    FAILED=1
  fi
  rm -rf "$2/fio"
}

# Back-to-back pairs: the shared disk's cost drifts within minutes on this
# machine, so each kernel run sits next to its floor and cext3 runs.
for r in $(seq 1 "$PAIRS"); do
  for wl in dbench tar fio; do
    "run_$wl" kernel "$KM"
    "run_$wl" floor "$FM"
    "run_$wl" cext3 "$CM"
  done
done

umount "$FM"
umount "$KM"
rc=0
umount "$CM" || rc=$?
for _ in $(seq 1 300); do kill -0 "$NODE_PID" 2>/dev/null || break; sleep 0.1; done
node_rc=0
wait "$NODE_PID" || node_rc=$?
NODE_PID=""
[ "$rc" = 0 ] && [ "$node_rc" = 0 ] && echo "umount: the node left and exited 0" || { echo "umount exit $rc, node exit $node_rc"; FAILED=1; }
grep -h "ERROR\|WARN" "$W/n1.log" | head -10
frc=0
e2fsck -fn "$W/cext3.img" >"$W/fsck.log" 2>&1 || frc=$?
if [ "$frc" = 0 ]; then echo "e2fsck -fn after the runs: clean"; else echo "e2fsck -fn after the runs: NOT clean (exit $frc):"; tail -5 "$W/fsck.log"; FAILED=1; fi
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"

# v KEY: the median of KEY's values in this run.
v() { awk -v k="$1" '$1 == k {print $2}' "$OUT" | sort -g | awk '{a[NR] = $1} END { if (NR) print a[int((NR + 1) / 2)] }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || b == 0) print "n/a"; else printf "%.2f", a / b }'; }
echo
echo "medians of $PAIRS runs (kernel / FUSE floor / cext3):"
printf '  %-26s %s / %s / %s MB/s\n' "dbench $DCLIENTS clients:" "$(v kernel-dbench)" "$(v floor-dbench)" "$(v cext3-dbench)"
printf '  %-26s %s / %s / %s s\n' "tar -xf + sync -f:" "$(v kernel-tar-sync)" "$(v floor-tar-sync)" "$(v cext3-tar-sync)"
printf '  %-26s %s / %s / %s s\n' "tar -xf alone:" "$(v kernel-tar-only)" "$(v floor-tar-only)" "$(v cext3-tar-only)"
printf '  %-26s %s / %s / %s IOPS\n' "fio 4K randwrite+fsync:" "$(v kernel-fio)" "$(v floor-fio)" "$(v cext3-fio)"
echo "dbench, 1 node / kernel ext3:                 $(ratio "$(v cext3-dbench)" "$(v kernel-dbench)")  (goal >= 0.5)"
echo "tarball extraction, 1 node / kernel ext3:     $(ratio "$(v kernel-tar-sync)" "$(v cext3-tar-sync)")  (goal >= 0.5; speed = 1/time, tar -xf + sync -f)"
echo "tar -xf alone, 1 node / kernel ext3:          $(ratio "$(v kernel-tar-only)" "$(v cext3-tar-only)")"
echo "fio 4K random write + fsync, 1 node / kernel: $(ratio "$(v cext3-fio)" "$(v kernel-fio)")"
echo "the FUSE floor (bindfs) / kernel ext3:        dbench $(ratio "$(v floor-dbench)" "$(v kernel-dbench)"), tar $(ratio "$(v kernel-tar-sync)" "$(v floor-tar-sync)"), fio $(ratio "$(v floor-fio)" "$(v kernel-fio)")"
echo "cext3 / the FUSE floor:                       dbench $(ratio "$(v cext3-dbench)" "$(v floor-dbench)"), tar $(ratio "$(v floor-tar-sync)" "$(v cext3-tar-sync)"), fio $(ratio "$(v cext3-fio)" "$(v floor-fio)")"
exit "$FAILED"
