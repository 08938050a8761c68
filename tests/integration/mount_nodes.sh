#!/bin/bash
# Two, then three jcoord nodes, each serving one clusterified image at its
# own FUSE mount, all at once:
#  A. data: a file written (and closed) on one node reads byte-identical on
#     every other (cmp, sha256sum), also after an overwrite and an append
#     made elsewhere (no stale cache); a tree made on one node (dirs,
#     symlink, hard link, rename, unlink) looks the same everywhere; `stat`
#     (inode number, size, links, mode, owner, mtime) agrees across nodes;
#  B. record locks across nodes: a write lock held on one node conflicts on
#     the others (F_SETLK EAGAIN, F_GETLK reports it) and is free once
#     released; O_APPEND writers on every node, each record under an fcntl
#     write lock (F_SETLKW), leave every record exactly once;
#     cext3-plock-pingpong between two nodes' mounts (lost-update check,
#     rate printed, next to the same tool within one node's mount);
#  C. every node unmounts and exits 0; e2fsck -fn exits 0; the kernel's
#     read-only mount (-t ext4: MMP) reads the same files.
# Every part runs even when an earlier one failed; the failures are listed
# at the end (record locks across nodes are new: their failures name them).
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cfy_setup mount-nodes
. "$CEXT3_SRC/tests/support/jcoord_cluster.sh"
. "$CEXT3_SRC/tests/support/mount_cluster.sh"
PP="$BIN/cext3-plock-pingpong"
[ -x "$PP" ] || fail "$PP is not built"
ROUNDS=${CEXT3_PINGPONG_ROUNDS:-300}
RECORDS=${CEXT3_APPEND_RECORDS:-150}
jm_require_fuse
jm_watchdog 600
BAD=()
bad() { echo "  FAILED: $*"; BAD+=("$*"); }

cat >"$W/locktool.py" <<'EOF'
# locktool.py hold PATH: write-lock byte 0, say "held"; a line "unlock" on
#   stdin unlocks it explicitly (then "unlocked"); at EOF it exits (the
#   close releases whatever it still holds).
# locktool.py probe PATH: F_GETLK's view of byte 0, then "conflict" or
#   "granted" for F_SETLK on it (a granted lock is unlocked explicitly).
# locktool.py append PATH TAG N: N records under F_SETLKW of the whole file.
import fcntl, os, struct, sys
mode, path = sys.argv[1], sys.argv[2]
if mode == "hold":
    fd = os.open(path, os.O_RDWR)
    fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, 0, os.SEEK_SET)
    print("held", flush=True)
    for line in sys.stdin:
        if line.strip() == "unlock":
            fcntl.lockf(fd, fcntl.LOCK_UN, 1, 0, os.SEEK_SET)
            print("unlocked", flush=True)
elif mode == "probe":
    fd = os.open(path, os.O_RDWR)
    flock = struct.pack("hhqqixxxx", fcntl.F_WRLCK, os.SEEK_SET, 0, 1, 0)
    t = struct.unpack("hhqqixxxx", fcntl.fcntl(fd, fcntl.F_GETLK, flock))[0]
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, 0, os.SEEK_SET)
        fcntl.lockf(fd, fcntl.LOCK_UN, 1, 0, os.SEEK_SET)
        print("granted", end=" ")
    except OSError:
        print("conflict", end=" ")
    print("getlk:unlocked" if t == fcntl.F_UNLCK else "getlk:locked")
elif mode == "append":
    tag, n = sys.argv[3], int(sys.argv[4])
    fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    for i in range(n):
        fcntl.lockf(fd, fcntl.LOCK_EX, 0, 0, os.SEEK_SET)
        os.write(fd, f"{tag} {i:06d} {'r' * 40}\n".encode())
        fcntl.lockf(fd, fcntl.LOCK_UN, 0, 0, os.SEEK_SET)
EOF
LT="$PY $W/locktool.py"

JC_DISK="$W/disk.img"
if [ "${JM_ON_KERNEL:-0}" = 1 ]; then
  # Debugging the test itself: one kernel loop mount of a plain ext3, and
  # every "node" a bind mount of it (so every check must pass).
  echo "NOTE: JM_ON_KERNEL=1: the nodes are bind mounts of one kernel ext3 mount (debugging the test)"
  mke2fs -q -F -t ext3 -b 1024 "$JC_DISK" 256M || fail "mke2fs"
  cfy_mount "$JC_DISK" ext3 || fail "loop mount"
  node_up() { mkdir -p "$W/m_$1" && mount --bind "$MNT" "$W/m_$1" && cfy_on_exit "umount $W/m_$1 2>/dev/null"; }
  nodes_down() { local n; for n in n1 n2 n3; do umount "$W/m_$n"; done; umount "$MNT"; }
else
  jc_make_disk "$JC_DISK" 4 256M
  node_up() { jm_start "$1" "$W/m_$1" && jm_wait_mounted "$W/m_$1" 30; }
  nodes_down() { jm_umount_all; }
fi
node_up n1
node_up n2
echo "two nodes mounted: $(jm_fstype "$W/m_n1"), $(jm_fstype "$W/m_n2")"

# same_everywhere WHAT NODES...: stat lines of every path under /tree and
# the data files agree on all named nodes.
stat_all() {  # MNT: one line per path: name, inode, size, links, mode, owner, mtime
  (cd "$1" && find tree data -print0 2>/dev/null | sort -z | xargs -0 stat -c '%n %i %s %h %f %u:%g %Y')
}

# part_a NODES...: the writer is every node in turn.
part_a() {
  local nodes=("$@") w r f want got
  echo "== A. data across ${#nodes[@]} nodes (${nodes[*]})"
  mkdir -p "$W/m_${nodes[0]}/data" || bad "mkdir data on ${nodes[0]}"
  for w in "${nodes[@]}"; do
    f="$W/src_${w}_${#nodes[@]}.bin"
    head -c $((2 * 1048576 + 12345)) /dev/urandom >"$f"
    cp "$f" "$W/m_$w/data/from_${w}_${#nodes[@]}" || { bad "write of a 2 MiB file on $w"; continue; }
    want=$(sha "$f")
    for r in "${nodes[@]}"; do
      [ "$r" = "$w" ] && continue
      if cmp -s "$f" "$W/m_$r/data/from_${w}_${#nodes[@]}"; then
        got=$(sha "$W/m_$r/data/from_${w}_${#nodes[@]}")
        [ "$got" = "$want" ] || bad "sha256 of $w's file read on $r differs"
      else
        sleep 2
        if cmp -s "$f" "$W/m_$r/data/from_${w}_${#nodes[@]}"; then
          bad "$r reads $w's just-closed file only after a delay (stale cache on $r)"
        else
          bad "$r does not read the file $w wrote (cmp: $(cmp "$f" "$W/m_$r/data/from_${w}_${#nodes[@]}" 2>&1 | head -1))"
        fi
      fi
    done
  done
  # Overwrite and append on the last node a file every node has read (cached).
  local last=${nodes[-1]} first=${nodes[0]}
  printf 'OVERWRITTEN-BY-%s' "$last" | dd of="$W/m_$last/data/from_${first}_${#nodes[@]}" bs=1 seek=1000 conv=notrunc status=none ||
    bad "overwrite on $last"
  printf 'APPENDED-BY-%s\n' "$last" >>"$W/m_$last/data/from_${first}_${#nodes[@]}" || bad "append on $last"
  want=$(sha "$W/m_$last/data/from_${first}_${#nodes[@]}")
  for r in "${nodes[@]}"; do
    got=$(sha "$W/m_$r/data/from_${first}_${#nodes[@]}")
    [ "$got" = "$want" ] || bad "$r reads stale data after $last overwrote and appended to a file it had read (size $(stat -c %s "$W/m_$r/data/from_${first}_${#nodes[@]}") on $r, $(stat -c %s "$W/m_$last/data/from_${first}_${#nodes[@]}") on $last)"
  done
  # A tree made on the first node, changed on the last.
  local k=${#nodes[@]}
  (cd "$W/m_$first" && mkdir -p tree/a/b/c "tree/gone_$k" && echo one >tree/a/one && ln -sfn a/one tree/link &&
    ln -f tree/a/one tree/a/b/hard && echo x >"tree/a/b/c/x_$k") || bad "tree on $first"
  (cd "$W/m_$last" && mv "tree/a/b/c/x_$k" "tree/x_$k" && rmdir "tree/gone_$k" && echo "n$k" >"tree/by_$last") ||
    bad "rename/rmdir/create on $last of what $first made"
  for r in "${nodes[@]}"; do
    [ -e "$W/m_$r/tree/x_$k" ] && [ ! -e "$W/m_$r/tree/a/b/c/x_$k" ] || bad "$r does not see the rename made on $last"
    [ ! -e "$W/m_$r/tree/gone_$k" ] || bad "$r still sees a directory removed on $last"
    [ "$(readlink "$W/m_$r/tree/link")" = a/one ] && [ "$(cat "$W/m_$r/tree/link")" = one ] || bad "symlink on $r"
    [ "$(stat -c %h "$W/m_$r/tree/a/one")" = 2 ] || bad "the hard link count on $r is not 2"
  done
  for r in "${nodes[@]}"; do stat_all "$W/m_$r" >"$W/stat_$r.txt"; done
  for r in "${nodes[@]:1}"; do
    if ! diff "$W/stat_${nodes[0]}.txt" "$W/stat_$r.txt" >"$W/stat_diff.txt"; then
      bad "stat (inode, size, links, mode, owner, mtime) differs between ${nodes[0]} and $r: $(head -4 "$W/stat_diff.txt" | tr '\n' ' ')"
    fi
  done
  echo "  $(wc -l <"$W/stat_${nodes[0]}.txt") paths stat alike on ${#nodes[@]} nodes unless said above"
}

# part_b NODES...: record locks across nodes.
part_b() {
  local nodes=("$@") a=$1 b=$2 n out pids=() want
  echo "== B. record locks across ${#nodes[@]} nodes"
  # Fresh files per round: what one round leaves must not decide the next.
  local k=${#nodes[@]} lf="lockfile_${#nodes[@]}"
  touch "$W/m_$a/$lf" || bad "create $lf"
  # hold_on NODE: a holder on NODE, its stdin on fd 7.
  hold_on() {
    rm -f "$W/hold.fifo"
    mkfifo "$W/hold.fifo"
    timeout -k 5 60 $LT hold "$W/m_$1/$lf" <"$W/hold.fifo" >"$W/hold.out" 2>&1 &
    hold=$!
    exec 7>"$W/hold.fifo"
    wait_out held
  }
  wait_out() { for _ in $(seq 1 100); do grep -q "$1" "$W/hold.out" && return 0; sleep 0.1; done; return 1; }
  local hold
  if hold_on "$a"; then
    out=$(timeout -k 5 20 $LT probe "$W/m_$a/$lf" 2>&1)
    [ "$out" = "conflict getlk:locked" ] || bad "a second process on the holding node $a does not see the write lock ($out)"
    for n in "${nodes[@]:1}"; do
      out=$(timeout -k 5 20 $LT probe "$W/m_$n/$lf" 2>&1)
      echo "  lock held on $a, probe on $n: $out"
      [ "$out" = "conflict getlk:locked" ] || bad "record locks across nodes: a write lock held on $a is not seen on $n (F_SETLK/F_GETLK there: $out; want: conflict getlk:locked)"
    done
    echo unlock >&7
    if wait_out unlocked; then
      for n in "${nodes[@]:1}"; do
        out=$(timeout -k 5 20 $LT probe "$W/m_$n/$lf" 2>&1)
        echo "  explicitly unlocked on $a, probe on $n: $out"
        [ "$out" = "granted getlk:unlocked" ] || bad "record locks across nodes: after an explicit F_UNLCK on $a, $n still cannot lock ($out)"
      done
    else
      bad "explicit unlock on $a: $(cat "$W/hold.out")"
    fi
  else
    bad "cannot take a write lock on $a: $(tail -1 "$W/hold.out")"
  fi
  exec 7>&-
  wait "$hold" 2>/dev/null || true
  # A lock whose owner closes the file (here: exits) without unlocking.
  if hold_on "$a"; then
    exec 7>&-
    wait "$hold" 2>/dev/null || true
    for n in "${nodes[@]}"; do
      out=$(timeout -k 5 20 $LT probe "$W/m_$n/$lf" 2>&1)
      echo "  holder on $a exited without unlocking, probe on $n: $out"
      [ "$out" = "granted getlk:unlocked" ] || bad "record locks: a lock held on $a is not released when its owner closes the file and exits: $n still sees it ($out)"
    done
  else
    exec 7>&-
    bad "cannot take a write lock on $a for the close test: $(tail -1 "$W/hold.out")"
  fi

  # O_APPEND under F_SETLKW from every node at once.
  touch "$W/m_$a/appends_$k.log"
  for n in "${nodes[@]}"; do
    timeout -k 5 120 $LT append "$W/m_$n/appends_$k.log" "$n" "$RECORDS" >"$W/append_$n.log" 2>&1 &
    pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p" || bad "an appender failed or hung (exit $?): $(cat "$W"/append_*.log | head -3)"; done
  want=$((RECORDS * ${#nodes[@]}))
  for n in "${nodes[@]}"; do
    "$PY" - "$W/m_$n/appends_$k.log" "$RECORDS" "${nodes[@]}" >"$W/append_check_$n.txt" 2>&1 <<'EOF' ||
import collections, sys
path, n, tags = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
data = open(path, "rb").read()
lines = data.split(b"\n")
tail = lines.pop()
want = {f"{t} {i:06d} {'r' * 40}".encode() for t in tags for i in range(n)}
count = collections.Counter(lines)
missing = len(want - set(count))
dup = sum(c - 1 for l, c in count.items() if l in want and c > 1)
junk = sum(c for l, c in count.items() if l not in want) + (1 if tail else 0)
print(f"{len(data)} bytes, {len(lines)} records: {missing} missing, {dup} duplicated, {junk} torn or foreign")
sys.exit(0 if not (missing or dup or junk) else 1)
EOF
      bad "record locks across nodes: O_APPEND under F_SETLKW from ${#nodes[@]} nodes, read on $n: $(cat "$W/append_check_$n.txt")"
  done
  echo "  appends: $want records from ${#nodes[@]} nodes; read on $a: $(cat "$W/append_check_$a.txt")"

  # Lock ping-pong: within one node's mount (reference), then across nodes.
  out=$(timeout -k 5 120 "$PP" "$W/m_$a/pp_local" "$W/m_$a/pp_local" --rounds "$ROUNDS" --timeout 20 2>&1) || bad "plock ping-pong within node $a: $out"
  echo "  within $a: ${out##*$'\n'}"
  out=$(timeout -k 5 120 "$PP" "$W/m_$a/pp_$b" "$W/m_$b/pp_$b" --rounds "$ROUNDS" --timeout 20 2>&1) ||
    bad "record locks across nodes: plock ping-pong between $a and $b: $(echo "$out" | tr '\n' ' ')"
  echo "  between $a and $b: ${out##*$'\n'}"
}

part_a n1 n2
part_b n1 n2

echo "== a third node"
node_up n3
part_a n1 n2 n3
part_b n3 n1 n2

echo "== C. umount every node, e2fsck, the kernel"
for n in n1 n2 n3; do stat_all "$W/m_$n" >"$W/final_$n.txt"; done
nodes_down
e2fsck -fn "$JC_DISK" >"$W/fsck.log" 2>&1 || { tail -20 "$W/fsck.log"; bad "e2fsck -fn after every node unmounted"; }
cfy_probe_mount
if [ "$CAN_MOUNT" = 1 ]; then
  if cfy_mount "$JC_DISK" ext4 ro; then
    for f in "$W"/src_n?_?.bin; do
      b=$(basename "$f" .bin)
      [ "$b" = src_n1_2 ] || [ "$b" = src_n1_3 ] && continue  # overwritten on purpose
      cmp -s "$f" "$MNT/data/from_${b#src_}" || bad "the kernel reads data/from_${b#src_} differently"
    done
    (cd "$MNT" && find tree -print0 | sort -z | xargs -0 stat -c '%n %s %h %f %u:%g %Y') >"$W/kernel_tree.txt"
    awk '$1 ~ /^tree/ {print $1, $3, $4, $5, $6, $7}' "$W/final_n1.txt" >"$W/node_tree.txt"
    diff "$W/node_tree.txt" "$W/kernel_tree.txt" >/dev/null || bad "the kernel's view of /tree differs from the nodes'"
    umount "$MNT"
    echo "  the kernel's ro mount reads the same data"
  else
    bad "the kernel refuses to mount the disk after every node left (-t ext4 ro)"
  fi
else
  echo "NOTE: loop mount is not permitted here: the kernel's view is not checked"
fi

if [ ${#BAD[@]} -gt 0 ]; then
  echo "${#BAD[@]} failures:"
  printf '  - %s\n' "${BAD[@]}"
  fail "mount_nodes: ${#BAD[@]} checks failed (above)"
fi
echo "PASS: two and three nodes mounted at once read each other's writes, share record locks, and leave a clean ext3"
