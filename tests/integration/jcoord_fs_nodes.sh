#!/bin/bash
# Three jcoord nodes write one ext3 at the same time through the engine:
#  1. each builds a random tree in its own directory (files through
#     indirect blocks, sparse files, fast and slow symlinks, hard links);
#     then every node reads every other node's tree, byte-identical;
#  2. all three create, rename, link and unlink in ONE shared directory
#     (large enough to be several blocks); each node works on its own names,
#     so the final directory must equal the union of the three oracles;
#  3. after a clean stop: e2fsck -fn exits 0, clusterify verify -n exits 0,
#     and the kernel's loop mount (or, where mount is not permitted, a
#     debugfs rdump - said so) shows exactly the oracles' trees.
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cfy_setup jcoord-fs-nodes
. "$CEXT3_SRC/tests/support/jcoord_cluster.sh"
FS="$PY $CEXT3_SRC/tests/support/cext3fs.py"
COUNT=${CEXT3_FS_COUNT:-60}
SHARED=${CEXT3_FS_SHARED:-150}

JC_DISK="$W/disk.img"
jc_make_disk "$JC_DISK" 4 256M
for n in n1 n2 n3; do jc_start "$n"; done
for n in n1 n2 n3; do jc_wait_ready "$n" 30; done
jc_wait_all 'len([s for s in j["slots"] if s["liveness"] == "live"]) == 3' 30 n1 n2 n3

echo "== 1. three trees at once"
pids=()
i=0
for n in n1 n2 n3; do
  i=$((i + 1))
  $FS tree "$(jc_socket $n)" "/tree_$n" "$i" "$COUNT" "$W/tree_$n.json" >"$W/drv_$n.log" 2>&1 &
  pids+=($!)
done
for p in "${pids[@]}"; do wait "$p" || { cat "$W"/drv_*.log; fail "a tree builder failed"; }; done
for n in n1 n2 n3; do
  $FS check "$(jc_socket $n)" "$W"/tree_n1.json "$W"/tree_n2.json "$W"/tree_n3.json ||
    fail "node $n does not read the other nodes' trees as written"
done

echo "== 2. one shared directory, three nodes"
pids=()
i=10
for n in n1 n2 n3; do
  i=$((i + 1))
  $FS shared "$(jc_socket $n)" /shared "${n}_" "$i" "$SHARED" "$W/shared_$n.json" >"$W/drv_s_$n.log" 2>&1 &
  pids+=($!)
done
for p in "${pids[@]}"; do wait "$p" || { cat "$W"/drv_s_*.log; fail "a shared-directory worker failed"; }; done
# The union of the three oracles, as a tree oracle (path -> file sha, size).
$PY - "$W" <<'EOF' || fail "cannot build the shared oracle"
import json, sys, glob
w = sys.argv[1]
o = {"/shared": ["dir"]}
sizes = {}
for f in glob.glob(f"{w}/shared_n*.json"):
    for name, digest in json.load(open(f)).items():
        o[f"/shared/{name}"] = ["file", digest, None]
json.dump(o, open(f"{w}/shared_oracle.json", "w"))
EOF
for n in n1 n2 n3; do
  $FS dump "$(jc_socket $n)" /shared >"$W/shared_seen_$n.json" || fail "dump of /shared through $n"
done
$PY - "$W" <<'EOF' || fail "the shared directory differs from the acknowledged operations"
import json, sys
w = sys.argv[1]
want = json.load(open(f"{w}/shared_oracle.json"))
del want["/shared"]
for n in ("n1", "n2", "n3"):
    got = json.load(open(f"{w}/shared_seen_{n}.json"))
    got = {p: [v[0], v[1], None] for p, v in got.items()}
    if got != want:
        missing = sorted(set(want) - set(got))[:5]
        extra = sorted(set(got) - set(want))[:5]
        diff = [p for p in want if p in got and got[p] != want[p]][:5]
        print(f"{n}: {len(got)} names, oracle {len(want)}; missing {missing} extra {extra} differing {diff}")
        sys.exit(1)
print(f"/shared: {len(want)} names on every node, as acknowledged")
EOF

echo "== 3. clean stop: e2fsck, verify, kernel"
jc_stop_all
e2fsck -fn "$JC_DISK" >"$W/fsck.log" 2>&1 || { cat "$W/fsck.log"; fail "e2fsck -fn after a clean stop of three writing nodes"; }
"$C" verify -n "$JC_DISK" >"$W/verify.log" 2>&1 || { cat "$W/verify.log"; fail "clusterify verify -n after a clean stop"; }
oracles=("$W"/tree_n1.json "$W"/tree_n2.json "$W"/tree_n3.json)
cfy_probe_mount
if [ "$CAN_MOUNT" = 1 ]; then
  # ext4 driver: the disk carries the MMP feature, which "-t ext3" refuses.
  cfy_mount "$JC_DISK" ext4 ro || fail "the kernel refuses to mount the disk the nodes wrote"
  $FS local-check "$MNT" "${oracles[@]}" || fail "the kernel's mount does not show what the nodes wrote"
  ls "$MNT/shared" | sort >"$W/kernel_shared.txt"
  umount "$MNT"
else
  echo "NOTE: loop mount is not permitted here; checking with debugfs rdump instead of the kernel"
  mkdir -p "$W/rdump"
  for t in tree_n1 tree_n2 tree_n3 shared; do
    debugfs -R "rdump /$t $W/rdump" "$JC_DISK" >/dev/null 2>&1 || fail "debugfs rdump /$t"
  done
  $FS local-check "$W/rdump" "${oracles[@]}" || fail "debugfs does not show what the nodes wrote"
  ls "$W/rdump/shared" | sort >"$W/kernel_shared.txt"
fi
$PY -c 'import json,sys; print("\n".join(sorted(p.split("/")[-1] for p in json.load(open(sys.argv[1])) if p != "/shared")))' \
  "$W/shared_oracle.json" >"$W/oracle_shared.txt"
cmp -s "$W/kernel_shared.txt" "$W/oracle_shared.txt" || fail "the shared directory read by the kernel/debugfs differs from the oracle"
dsize=$(debugfs -R "stat /shared" "$JC_DISK" 2>/dev/null | awk '/Size:/ {for (i = 1; i <= NF; i++) if ($i == "Size:") print $(i + 1); exit}')
echo "/shared: $(wc -l <"$W/oracle_shared.txt") names in ${dsize:-?} bytes of directory blocks"
echo "PASS: three nodes wrote one ext3 at once; every node, e2fsck and the kernel agree"
