#!/bin/bash
# What the offline tools do with the traces a running cluster leaves on disk
# (written here byte by byte with python/dd, as jcoord would, docs/FORMAT.md):
#  * MMP sequence EXT4_MMP_SEQ_FSCK with node "cext3:<node>" = in use by the
#    cluster: info says so; verify -n reports it without writing; revert and
#    slots --set refuse byte-identical;
#  * a heartbeat that keeps changing = a live slot: revert and verify -y
#    refuse (verify -y repairs nothing, MMP stays in use);
#  * a heartbeat with the "stopped" flag (bit 1) = a clean leave: not live;
#    verify -y then writes the clean MMP sequence and says so, e2fsck -fn
#    exits 0 again;
#  * a lease held by a node whose heartbeat no longer changes = abandoned:
#    verify -n reports it, revert refuses, verify -y releases the lease and
#    the MMP block, and revert then works.
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cfy_setup online
SRC=/usr/include/linux
[ -d "$SRC" ] || { echo "skip: $SRC (source tree for test content) is missing"; exit 77; }
I="$W/img"
truncate -s 64M "$I"
mke2fs -q -t ext3 -b 1024 -d "$SRC/netfilter" "$I" || fail mke2fs
"$C" convert "$I" --slots 3 >/dev/null || fail convert
e2fsck -fn "$I" >/dev/null 2>&1 || fail "e2fsck -fn after convert"

BS=1024
MMP=$(dumpe2fs -h "$I" 2>/dev/null | sed -n 's/^MMP block number: *//p')
HB=$(debugfs -R "blocks /.cext3/heartbeat" "$I" 2>/dev/null | awk '{print $1}')
LK=$(debugfs -R "blocks /.cext3/locks" "$I" 2>/dev/null | awk '{print $1}')
[ -n "$MMP" ] && [ -n "$HB" ] && [ -n "$LK" ] || fail "cannot locate MMP ($MMP), heartbeat ($HB) or locks ($LK)"

# Record writer, independent of libcext3: CRC-32C (Castagnoli) in python.
cat >"$W/rec.py" <<'PY'
import struct, sys, time
T = []
for i in range(256):
    c = i
    for _ in range(8):
        c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
    T.append(c)
def crc32c(b):
    c = 0xFFFFFFFF
    for x in b:
        c = T[(c ^ x) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF
assert crc32c(b"123456789") == 0xE3069283
def name(s):
    return s.encode().ljust(64, b"\0")
def seal(r):
    r = r.ljust(508, b"\0")
    return r + struct.pack("<I", crc32c(r))
def put(img, off, data):
    with open(img, "r+b") as f:
        f.seek(off)
        f.write(data)
        f.flush()
cmd, img = sys.argv[1], sys.argv[2]
if cmd == "mmp":  # mmp IMG OFFSET SEQ NODE
    off, seq, node = int(sys.argv[3]), int(sys.argv[4], 16), sys.argv[5]
    put(img, off + 4, struct.pack("<I", seq))
    put(img, off + 16, name(node))
elif cmd == "hb":  # hb IMG HB_OFFSET SLOT SEQ GEN FLAGS NODE
    off, slot, seq, gen, flags, node = (int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]),
                                        int(sys.argv[7]), sys.argv[8])
    r = b"CX3HBEAT" + struct.pack("<IIQQQQ", slot, flags, seq, gen, time.time_ns(), time.time_ns() + 2 * 10**9)
    r += name(node) + name("127.0.0.1:7400")
    put(img, off + slot * 512, seal(r))
elif cmd == "beat":  # beat IMG HB_OFFSET SLOT STOPFILE NODE: a live node until STOPFILE exists (60 s at most)
    import os
    off, slot, stop, node = int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], sys.argv[6]
    end, seq = time.time() + 60, 100
    while time.time() < end and not os.path.exists(stop):
        r = b"CX3HBEAT" + struct.pack("<IIQQQQ", slot, 1, seq, 77, time.time_ns(), time.time_ns() + 2 * 10**9)
        put(img, off + slot * 512, seal(r + name(node) + name("127.0.0.1:7400")))
        seq += 1
        time.sleep(0.25)
elif cmd == "lease":  # lease IMG LK_OFFSET SLOT OWNED GEN OWNER DIRTY
    off, slot, owned, gen, owner, dirty = (int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]),
                                           sys.argv[7], int(sys.argv[8]))
    r = b"CX3LEASE" + struct.pack("<IIQQ", slot, owned, gen, time.time_ns() + 4 * 10**9) + name(owner)
    r += struct.pack("<QI", 0, dirty)
    put(img, off + (slot + 1) * 512, seal(r))
PY
R() { "$PY" "$W/rec.py" "$@" || fail "record writer: $*"; }
mmp_seq() { od -An -tx4 -j $((MMP * BS + 4)) -N4 "$I" | tr -d ' '; }

# --- 1. MMP in use by the cluster, nothing else: every tool says so, none writes.
R mmp "$I" $((MMP * BS)) E24D4D50 cext3:n1
before=$(sha "$I")
"$C" info "$I" >"$W/out" 2>&1 || { cat "$W/out"; fail "info exit $?"; }
grep -q "MMP: .*in use by the cluster (last written by node 'n1')" "$W/out" || { cat "$W/out"; fail "info MMP line"; }
"$C" info --json "$I" | "$PY" -c 'import json,sys; m=json.load(sys.stdin)["mmp"]; assert m["in_use_by_cluster"] and not m["clean"], m' ||
  fail "info --json mmp"
"$C" verify -n "$I" >"$W/out" 2>&1
rc=$?
[ $rc -ne 0 ] && [ $rc -lt 128 ] || { cat "$W/out"; fail "verify -n on an in-use disk exited $rc"; }
grep -q "PROBLEM: MMP says in use by the cluster" "$W/out" || { cat "$W/out"; fail "verify -n does not report the MMP state"; }
for op in "revert $I" "slots $I --set 2"; do
  "$C" $op >"$W/out" 2>"$W/err" && fail "$op accepted an in-use disk"
  [ "$(wc -l <"$W/err")" -eq 1 ] && grep -q "verify -y" "$W/err" || { cat "$W/err"; fail "$op message"; }
  echo "ok: ${op%% *} refused: $(cat "$W/err")"
done
[ "$before" = "$(sha "$I")" ] || fail "info/verify -n/refusals changed the image"

# --- 2. A live node (heartbeat changing): revert and verify -y refuse, nothing repaired.
R beat "$I" $((HB * BS)) 1 "$W/stop-beating" n1 &
beater=$!
cfy_on_exit "touch $W/stop-beating; wait $beater"
for ((t = 0; t < 100; t++)); do  # until the first beat is on disk (python may start slowly)
  "$C" info --json "$I" 2>/dev/null | "$PY" -c 'import json,sys; sys.exit(0 if json.load(sys.stdin)["slots"][1]["heartbeat"]["sequence"] else 1)' && break
  sleep 0.2
done
"$C" revert "$I" >"$W/out" 2>"$W/err" && fail "revert accepted a live cluster"
grep -q "slot 1 is live (node 'n1'" "$W/err" || { cat "$W/err"; fail "revert live message"; }
echo "ok: revert refused: $(cat "$W/err")"
"$C" verify -y "$I" >"$W/out" 2>&1
rc=$?
[ $rc -eq 4 ] || { cat "$W/out"; fail "verify -y on a live cluster exited $rc, expected 4"; }
grep -q "nothing was repaired" "$W/out" && grep -q "e2fsck: skipped (the cluster is live)" "$W/out" ||
  { cat "$W/out"; fail "verify -y live output"; }
[ "$(mmp_seq)" = e24d4d50 ] || fail "verify -y touched the MMP block of a live cluster"
touch "$W/stop-beating"
wait $beater

# --- 3. The node leaves cleanly (stopped flag): verify -y writes the clean sequence.
R hb "$I" $((HB * BS)) 1 500 77 3 n1
"$C" info --json "$I" | "$PY" -c 'import json,sys; s=json.load(sys.stdin)["slots"][1]; assert s["heartbeat"]["stopped"] and not s["live"], s' ||
  fail "a stopped record is shown live"
"$C" verify -y "$I" >"$W/out" 2>&1
rc=$?
[ $rc -eq 1 ] || { cat "$W/out"; fail "verify -y after a clean leave exited $rc, expected 1 (corrected)"; }
grep -q "FIXED: MMP block $MMP set to clean" "$W/out" || { cat "$W/out"; fail "verify -y does not say it cleaned MMP"; }
[ "$(mmp_seq)" = ff4d4d50 ] || fail "MMP sequence is $(mmp_seq) after verify -y, expected ff4d4d50"
e2fsck -fn "$I" >"$W/fsck" 2>&1 || { cat "$W/fsck"; fail "e2fsck -fn after verify -y"; }
"$C" verify -n "$I" >"$W/out" 2>&1 || { cat "$W/out"; fail "verify -n after the cleanup"; }

# --- 4. A node died holding slot 2 (lease owned, heartbeat frozen): abandoned.
R mmp "$I" $((MMP * BS)) E24D4D50 cext3:n2
R lease "$I" $((LK * BS)) 2 1 4242 n2 0
R hb "$I" $((HB * BS)) 2 9 4242 1 n2
before=$(sha "$I")
"$C" verify -n "$I" >"$W/out" 2>&1
rc=$?
[ $rc -ne 0 ] && [ $rc -lt 128 ] || { cat "$W/out"; fail "verify -n on an abandoned slot exited $rc"; }
grep -q "slot 2 was held by node 'n2', which stopped without leaving cleanly" "$W/out" || { cat "$W/out"; fail "abandoned not reported"; }
"$C" revert "$I" >"$W/out" 2>"$W/err" && fail "revert accepted an abandoned slot"
grep -q "verify -y" "$W/err" || { cat "$W/err"; fail "revert abandoned message"; }
[ "$before" = "$(sha "$I")" ] || fail "verify -n / refused revert changed the image"
"$C" verify -y "$I" >"$W/out" 2>&1
rc=$?
[ $rc -eq 1 ] || { cat "$W/out"; fail "verify -y on an abandoned slot exited $rc, expected 1"; }
grep -q "FIXED: slot 2 lease released" "$W/out" && grep -q "FIXED: MMP block" "$W/out" || { cat "$W/out"; fail "verify -y abandoned output"; }
"$C" revert "$I" >/dev/null || fail "revert after recovery"
e2fsck -fn "$I" >"$W/fsck" 2>&1 || { cat "$W/fsck"; fail "e2fsck -fn after revert"; }
echo PASS
