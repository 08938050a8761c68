#!/bin/bash
# A mounted node dies with its mount in use:
#  1. three nodes mounted; node3 holds a file open with a write lock on it
#     and writes through its mount; node1 sees the lock (F_SETLK: EAGAIN);
#  2. node3's jcoord gets kill -9: an access under node3's mount point fails
#     (ENOTCONN, or ECONNABORTED on newer kernels) at once instead of hanging;
#  3. the survivors recover node3: node1 then gets the write lock node3 held
#     (a dead node's record locks are released after its recovery), and the
#     survivors' mounts keep reading and writing, each seeing the other's
#     files and every file node3 had closed before it died;
#  4. the survivors unmount and exit 0; e2fsck -fn exits 0.
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cfy_setup mount-kill
. "$CEXT3_SRC/tests/support/jcoord_cluster.sh"
. "$CEXT3_SRC/tests/support/mount_cluster.sh"
jm_require_fuse
jm_watchdog 300

cat >"$W/lock.py" <<'EOF'
# lock.py hold PATH: write-lock the whole file, write to it, print "held", sleep.
# lock.py try PATH: print "granted" or "conflict" for a non-blocking write lock.
# lock.py wait PATH SECONDS: a blocking write lock; "granted" or "timeout".
import fcntl, os, signal, sys, time
mode, path = sys.argv[1], sys.argv[2]
fd = os.open(path, os.O_RDWR)
if mode == "hold":
    fcntl.lockf(fd, fcntl.LOCK_EX)
    os.write(fd, b"node3 was here\n")
    print("held", flush=True)
    time.sleep(3600)
elif mode == "try":
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        print("granted")
    except OSError:
        print("conflict")
else:
    signal.signal(signal.SIGALRM, lambda *a: None)
    signal.alarm(int(sys.argv[3]))
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX)
        print("granted")
    except OSError:
        print("timeout")
EOF

JC_DISK="$W/disk.img"
jc_make_disk "$JC_DISK" 4 256M
for n in n1 n2 n3; do jm_start "$n" "$W/m_$n"; done
for n in n1 n2 n3; do jm_wait_mounted "$W/m_$n" 60; done

echo "== 1. node3 writes and holds a record lock"
head -c 300000 /dev/urandom >"$W/before.bin"
cp "$W/before.bin" "$W/m_n3/closed_by_n3" || fail "write through node3's mount"
echo "shared" >"$W/m_n1/locked" || fail "create through node1's mount"
$PY "$W/lock.py" hold "$W/m_n3/locked" >"$W/hold.out" 2>&1 &
HOLDER=$!
cfy_on_exit "kill -9 $HOLDER 2>/dev/null"
for _ in $(seq 100); do grep -q held "$W/hold.out" && break; sleep 0.1; done
grep -q held "$W/hold.out" || { cat "$W/hold.out"; fail "node3's process could not take its lock"; }
got=$($PY "$W/lock.py" try "$W/m_n1/locked")
[ "$got" = conflict ] || fail "node1 got '$got' for a lock node3 holds (want conflict)"
echo "node1 sees node3's lock: $got"

echo "== 2. kill -9 node3"
kill -9 "${JC_PID[n3]}"
t0=$SECONDS
if timeout 20 stat "$W/m_n3/closed_by_n3" >/dev/null 2>"$W/stat3.err"; then
  fail "stat under the dead node's mount point succeeded"
fi
rc=$?
[ "$rc" != 124 ] || fail "stat under the dead node's mount point hung for 20 s"
echo "dead node's mount: $(cat "$W/stat3.err") (after $((SECONDS - t0)) s)"
grep -Eq "not connected|connection abort" "$W/stat3.err" || fail "want ENOTCONN or ECONNABORTED under the dead node's mount, got: $(cat "$W/stat3.err")"
umount -l "$W/m_n3" 2>/dev/null || true
unset "JM_NODE[$W/m_n3]"

echo "== 3. recovery: node3's lock goes, the survivors go on"
t0=$SECONDS
got=$($PY "$W/lock.py" wait "$W/m_n1/locked" 60)
[ "$got" = granted ] || fail "node1 did not get node3's lock within 60 s of its death ($got)"
echo "node1 got the dead node's lock $((SECONDS - t0)) s after the kill"
cmp "$W/before.bin" "$W/m_n1/closed_by_n3" || fail "node1 does not read the file node3 closed before dying"
cmp "$W/before.bin" "$W/m_n2/closed_by_n3" || fail "node2 does not read the file node3 closed before dying"
head -c 200000 /dev/urandom >"$W/after.bin"
cp "$W/after.bin" "$W/m_n1/after_kill" || fail "node1 cannot write after the recovery"
cmp "$W/after.bin" "$W/m_n2/after_kill" || fail "node2 does not read node1's file written after the recovery"
mkdir "$W/m_n2/dir_after" && echo ok >"$W/m_n2/dir_after/f" || fail "node2 cannot write after the recovery"
[ "$(cat "$W/m_n1/dir_after/f")" = ok ] || fail "node1 does not see node2's new directory"
kill -9 "$HOLDER" 2>/dev/null

echo "== 4. the survivors leave; e2fsck"
jm_umount "$W/m_n1" 60
jm_umount "$W/m_n2" 60
e2fsck -fn "$JC_DISK" >"$W/fsck.log" 2>&1 || { cat "$W/fsck.log"; fail "e2fsck -fn after the survivors left"; }
echo "PASS: a killed node's mount fails fast, its lock is released after recovery, the survivors go on; e2fsck clean"
