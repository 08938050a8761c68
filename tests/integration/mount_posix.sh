#!/bin/bash
# The POSIX semantics suite (tests/tools/cext3-posix-suite.cpp) on the
# kernel's ext3 (the reference: a fresh loop-mounted image) and on one cext3
# node's FUSE mount of a clusterified image of the same geometry. Both runs
# must pass every check; every check whose outcome differs between the two
# is printed with both results. After the node unmounts: e2fsck -fn exit 0.
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cfy_setup mount-posix
# The suite's unprivileged checks need every directory above the mounts
# searchable by that uid; mktemp made this one 0700.
chmod 755 "$W"
. "$CEXT3_SRC/tests/support/jcoord_cluster.sh"
. "$CEXT3_SRC/tests/support/mount_cluster.sh"
SUITE="$BIN/cext3-posix-suite"
[ -x "$SUITE" ] || fail "$SUITE is not built"
SIZE=256M
rc_kernel=skipped

echo "== 1. the kernel's ext3 (reference)"
cfy_probe_mount
if [ "$CAN_MOUNT" = 1 ]; then
  mke2fs -q -F -t ext3 -b 1024 "$W/kernel.img" "$SIZE" || fail "mke2fs of the reference image"
  cfy_mount "$W/kernel.img" ext3 || fail "loop mount of the reference image"
  rc_kernel=0
  timeout -k 10 300 "$SUITE" "$MNT" >"$W/kernel.txt" 2>&1 || rc_kernel=$?
  umount "$MNT"
  tail -1 "$W/kernel.txt"
  rm -f "$W/kernel.img"
else
  echo "NOTE: loop mount is not permitted here: no kernel reference run"
fi

echo "== 2. one cext3 node's FUSE mount"
jm_require_fuse
jm_watchdog 600
JC_DISK="$W/disk.img"
jc_make_disk "$JC_DISK" 2 "$SIZE"
# The config's `mount:` key here (the other mount tests use --mount).
JM_VIA_CONFIG=1 jm_start n1 "$W/m1"
jm_wait_mounted "$W/m1" 30
echo "mounted: $(jm_fstype "$W/m1")"
rc_cext3=0
timeout -k 10 300 "$SUITE" "$W/m1" >"$W/cext3.txt" 2>&1 || rc_cext3=$?
tail -1 "$W/cext3.txt"
jm_umount "$W/m1"
fsck_rc=0
e2fsck -fn "$JC_DISK" >"$W/fsck.log" 2>&1 || fsck_rc=$?

echo "== 3. comparison"
# Result per check name: PASS/FAIL/SKIP, the detail after the name.
"$PY" - "$W/kernel.txt" "$W/cext3.txt" <<'EOF'
import os, re, sys
def load(path):
    out = {}
    if not os.path.exists(path):
        return None
    for line in open(path, errors="replace"):
        m = re.match(r"(PASS|FAIL|SKIP) (.*?)( -> (.*))?$", line.rstrip("\n"))
        if m:
            out[m.group(2)] = (m.group(1), line.rstrip("\n"))
    return out
k, c = load(sys.argv[1]), load(sys.argv[2])
ref = k if k is not None else {}
names = list(dict.fromkeys(list(ref) + list(c)))
diff = 0
for n in names:
    ks = ref.get(n, ("(no result)", ""))[0] if k is not None else "(no reference)"
    cs = c.get(n, ("(no result)", ""))[0]
    if ks != cs or cs != "PASS" and cs != "SKIP":
        diff += 1
        print(f"  kernel: {ref.get(n, ('', ks))[1] or ks}")
        print(f"  cext3:  {c.get(n, ('', cs))[1] or cs}")
print(f"{diff} checks differ from the reference or fail on cext3")
EOF
if [ "$rc_cext3" != 0 ]; then
  echo "--- cext3 run, failing lines:"
  grep -v "^PASS" "$W/cext3.txt" | head -80
fi
[ "$rc_kernel" = 0 ] || [ "$rc_kernel" = skipped ] || { grep -v "^PASS" "$W/kernel.txt"; fail "the suite fails on the kernel's ext3 (exit $rc_kernel): the suite's expectation is wrong"; }
[ "$rc_cext3" = 0 ] || fail "the POSIX suite fails on the cext3 mount (exit $rc_cext3; the differing checks are above)"
[ "$fsck_rc" = 0 ] || { tail -20 "$W/fsck.log"; fail "e2fsck -fn exits $fsck_rc after the suite ran on the mount and the node left"; }
echo "PASS: the POSIX suite passes on the kernel's ext3 and on the cext3 mount; e2fsck clean after"
