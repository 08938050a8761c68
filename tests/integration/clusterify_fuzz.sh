#!/bin/bash
# Hostile input: clusterify on damaged filesystems. Copies of small real ext3
# images (and of converted ones) get bytes flipped in the superblock, group
# descriptors, bitmaps, inode tables and directory blocks (and, on converted
# images, in the cluster header, heartbeat and lock records, a slot journal's
# superblock and the MMP block); located with dumpe2fs and debugfs, not with
# the code under test. On each copy run info, verify -n and convert (revert
# or slots --set on converted images) and require:
#  * no crash: exit code < 128, no sanitizer report, no hang (60 s);
#  * info and verify -n never write; a refused convert/revert/slots never
#    writes (sha256 before/after);
#  * if e2fsck -fn accepted the copy (exit 0) and the change succeeded,
#    e2fsck -fn still exits 0 afterwards.
# Seeded and deterministic: CEXT3_FUZZ_SEED (default 1), CEXT3_FUZZ_CASES
# (default 8, about a minute in make test); CEXT3_FUZZ_ONLY=N runs case N alone and
# keeps its images in $CEXT3_SCRATCH/fuzz-case-N for a look.
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cfy_setup fuzz
SEED=${CEXT3_FUZZ_SEED:-1}
CASES=${CEXT3_FUZZ_CASES:-8}
ONLY=${CEXT3_FUZZ_ONLY:-}
SRC=/usr/include/linux
[ -d "$SRC" ] || { echo "skip: $SRC (source tree for test content) is missing"; exit 77; }
for t in mke2fs e2fsck debugfs dumpe2fs "$PY" timeout; do
  command -v $t >/dev/null || { echo "skip: $t is not installed"; exit 77; }
done
export E2FSPROGS_FAKE_TIME=1700000000

# ---------------------------------------------------------------- base images
# A small tree with what directories and inodes can hold: many entries (a
# multi-block directory), hard links, fast and slow symlinks, a sparse file,
# xattrs, device nodes.
T="$W/tree"
mkdir -p "$T/inc" "$T/many" "$T/links" "$T/dev"
find "$SRC" -maxdepth 1 -type f -name '[a-f]*' | head -n 120 | xargs cp -t "$T/inc"
for i in $(seq 1 300); do printf 'file %d\n' "$i" >"$T/many/entry-with-a-longish-name-$i"; done
echo shared >"$T/links/a" && ln "$T/links/a" "$T/links/b"
ln -s a "$T/links/fast"
ln -s "$(printf 'x%.0s' $(seq 1 100))" "$T/links/slow"
truncate -s 3M "$T/sparse" && echo tail >>"$T/sparse"
setfattr -n user.note -v "$(printf 'v%.0s' $(seq 1 300))" "$T/links/a" 2>/dev/null || true
mknod "$T/dev/null" c 1 3 2>/dev/null || true

mkbase() {  # name size mke2fs-args...
  local n=$1 s=$2
  shift 2
  truncate -s "$s" "$W/$n.img"
  mke2fs -q -F -t ext3 -U 6b1c2d3e-0000-4000-8000-00000000f022 -E hash_seed=6b1c2d3e-0000-4000-8000-00000000f023 \
    "$@" -d "$T" "$W/$n.img" >/dev/null 2>&1 || fail "mke2fs $n $*"
  e2fsck -fn "$W/$n.img" >/dev/null 2>&1 || fail "base image $n is not clean"
}
mkbase b1k 16M -b 1024 -g 2048 -I 128
mkbase b4k 40M -b 4096 -g 2048 -I 256 -O ^resize_inode,^dir_index
mkbase b2k 24M -b 2048 -g 2048 -I 256
# Converted bases (for revert, slots, and damage to the cluster metadata).
cp --sparse=always "$W/b1k.img" "$W/c1k.img"
"$C" convert "$W/c1k.img" --slots 3 --group-policy balanced >/dev/null 2>&1 || fail "convert c1k"
cp --sparse=always "$W/b4k.img" "$W/c4k.img"
"$C" convert "$W/c4k.img" --slots 2 >/dev/null 2>&1 || fail "convert c4k"

# Where each structure lives, from dumpe2fs and debugfs (JSON per image).
cat >"$W/fuzz.py" <<'PY'
import json, random, re, subprocess, sys

def out(cmd):
    return subprocess.run(cmd, capture_output=True, text=True, errors="replace").stdout

def regions(img):
    d = out(["dumpe2fs", img])
    bs = int(re.search(r"^Block size:\s+(\d+)", d, re.M).group(1))
    ipg = int(re.search(r"^Inodes per group:\s+(\d+)", d, re.M).group(1))
    isz = int(re.search(r"^Inode size:\s+(\d+)", d, re.M).group(1))
    r = {"bs": bs, "superblock": [], "gdt": [], "block_bitmap": [], "inode_bitmap": [], "inode_table": [], "dir": []}
    # byte ranges [start, end)
    first_sb = 1024
    r["superblock"].append([first_sb, first_sb + 0x180])          # the fields ext3 uses
    for g in re.finditer(r"^Group (\d+):.*?(?=^Group |\Z)", d, re.M | re.S):
        txt = g.group(0)
        m = re.search(r"Primary superblock at (\d+), Group descriptors at (\d+)-(\d+)", txt)
        if m:
            r["gdt"].append([int(m.group(2)) * bs, (int(m.group(3)) + 1) * bs])
        for key, pat in (("block_bitmap", r"Block bitmap at (\d+)"), ("inode_bitmap", r"Inode bitmap at (\d+)")):
            m = re.search(pat, txt)
            if m:
                r[key].append([int(m.group(1)) * bs, int(m.group(1)) * bs + bs])
        m = re.search(r"Inode table at (\d+)-(\d+)", txt)
        fi = re.search(r"(\d+) free inodes", txt)
        if m and fi and int(fi.group(1)) < ipg:
            used = ipg - int(fi.group(1))
            a = int(m.group(1)) * bs
            r["inode_table"].append([a, a + min(used + 2, ipg) * isz])
    # the gdt of a 1-group descriptor block lists the descriptors actually used
    ngroups = len(re.findall(r"^Group \d+:", d, re.M))
    if r["gdt"]:
        r["gdt"] = [[r["gdt"][0][0], r["gdt"][0][0] + ngroups * 32]]
    for path in ["/", "/inc", "/many", "/links", "/lost+found", "/.cext3"]:
        for b in out(["debugfs", "-R", "blocks " + path, img]).split():
            if b.isdigit():
                r["dir"].append([int(b) * bs, int(b) * bs + bs])
    cl = out(["debugfs", "-R", "blocks /.cext3/cluster", img]).split()
    if cl and cl[0].isdigit():
        r["cluster_header"] = [[int(cl[0]) * bs, int(cl[0]) * bs + 256]]
        half = len([b for b in cl if b.isdigit()]) // 2
        r["cluster_header"].append([int(cl[half]) * bs, int(cl[half]) * bs + 256])
        for name, key in (("heartbeat", "heartbeat"), ("locks", "locks")):
            b = out(["debugfs", "-R", "blocks /.cext3/" + name, img]).split()
            r[key] = [[int(b[0]) * bs, int(b[0]) * bs + 4 * 512]]
        j = out(["debugfs", "-R", "blocks /.cext3/journal.00", img]).split()
        r["slot_journal"] = [[int(j[0]) * bs, int(j[0]) * bs + 1024]]
        m = re.search(r"^MMP block number:\s+(\d+)", d, re.M)
        if m:
            r["mmp"] = [[int(m.group(1)) * bs, int(m.group(1)) * bs + 128]]
    return r

def mutate(img, reg, seed, case):
    rnd = random.Random(seed * 1000003 + case)
    kinds = [k for k in reg if k != "bs" and reg[k]]
    kind = rnd.choice(kinds)
    lo, hi = rnd.choice(reg[kind])
    how = []
    with open(img, "r+b") as f:
        for _ in range(rnd.choice([1, 1, 2, 3])):
            off = rnd.randrange(lo, hi)
            if rnd.random() < 0.3:
                off -= off % 4                       # a whole 32-bit field
                val = rnd.choice([0, 0xFFFFFFFF, 0x80000000, 0x7FFFFFFF, 1, rnd.getrandbits(32)])
                f.seek(off)
                f.write(val.to_bytes(4, "little"))
                how.append("u32@%d=0x%x" % (off, val))
            else:
                f.seek(off)
                old = f.read(1)[0]
                new = old ^ rnd.randrange(1, 256)
                f.seek(off)
                f.write(bytes([new]))
                how.append("byte@%d:%02x->%02x" % (off, old, new))
    return kind, " ".join(how)

if sys.argv[1] == "regions":
    print(json.dumps(regions(sys.argv[2])))
else:
    _, _, img, regfile, seed, case = sys.argv
    kind, how = mutate(img, json.load(open(regfile)), int(seed), int(case))
    print(kind, how)
PY
BASES=(b1k b4k b2k c1k c4k)
for b in "${BASES[@]}"; do
  "$PY" "$W/fuzz.py" regions "$W/$b.img" >"$W/$b.regions" || fail "locating the structures of $b"
done

# ------------------------------------------------------------------ the cases
SAN='AddressSanitizer|LeakSanitizer|UndefinedBehaviorSanitizer|runtime error:|Sanitizer'
failures=0
CASE_FAIL=""
bad() { CASE_FAIL+="    $*"$'\n'; }
# run LABEL IMG MAY_WRITE cmd...   sets RC; checks crash and (unless MAY_WRITE) writes
run() {
  local label=$1 img=$2 may_write=$3
  shift 3
  local before after
  before=$(sha "$img")
  timeout 60 "$@" >"$W/out" 2>"$W/err"
  RC=$?
  after=$(sha "$img")
  if [ $RC -eq 124 ]; then bad "$label: hung (killed after 60 s)"
  elif [ $RC -ge 128 ]; then bad "$label: crashed (exit $RC): $(grep -m3 -E "$SAN|ERROR|error" "$W/err" | tr '\n' ' ')"
  fi
  if grep -qE "$SAN" "$W/err"; then bad "$label: sanitizer report: $(grep -m2 -E "$SAN" "$W/err" | tr '\n' ' ')"; fi
  if [ "$may_write" = 0 ] || [ $RC -ne 0 ]; then
    [ "$before" = "$after" ] || bad "$label: exit $RC but the image changed (it must not write$([ "$may_write" = 1 ] && echo " when it refuses"))"
  fi
}
fsck_rc() { e2fsck -fn "$1" >"$W/fsck" 2>&1; echo $?; }

refused=0 changed=0 fsck_rejected=0
for ((i = 0; i < CASES; i++)); do
  [ -n "$ONLY" ] && [ "$i" != "$ONLY" ] && continue
  b=${BASES[$((i % ${#BASES[@]}))]}
  I="$W/case.img"
  cp --sparse=always "$W/$b.img" "$I"
  desc=$("$PY" "$W/fuzz.py" mutate "$I" "$W/$b.regions" "$SEED" "$i") || fail "mutating case $i"
  CASE_FAIL=""
  pre=$(fsck_rc "$I")
  [ "$pre" = 0 ] || fsck_rejected=$((fsck_rejected + 1))
  if ((i % 2)); then run info "$I" 0 "$C" info "$I"; else run "info --json" "$I" 0 "$C" info --json "$I"; fi
  run "verify -n" "$I" 0 "$C" verify -n "$I"
  case $b in
    b*) op=(convert "$I" --slots 2) ;;
    c1k) if ((i % 2)); then op=(revert "$I"); else op=(slots "$I" --set 2); fi ;;
    c4k) if ((i % 2)); then op=(slots "$I" --set 3); else op=(revert "$I"); fi ;;
  esac
  run "${op[0]}" "$I" 1 "$C" "${op[@]}"
  if [ $RC -eq 0 ]; then
    changed=$((changed + 1))
    if [ "$pre" = 0 ]; then
      post=$(fsck_rc "$I")
      [ "$post" = 0 ] || bad "${op[0]}: e2fsck -fn accepted the image before (exit 0) but exits $post after: $(grep -v '^e2fsck\|^Pass' "$W/fsck" | head -3 | tr '\n' ' ')"
    fi
    run "verify -n after ${op[0]}" "$I" 0 "$C" verify -n "$I"
  elif [ $RC -lt 128 ]; then
    refused=$((refused + 1))
  fi
  if [ -n "$CASE_FAIL" ]; then
    failures=$((failures + 1))
    echo "case $i ($b, e2fsck before: $pre, $desc): FAILED"
    printf '%s' "$CASE_FAIL"
    echo "    reproduce: CEXT3_FUZZ_SEED=$SEED CEXT3_FUZZ_CASES=$CASES CEXT3_FUZZ_ONLY=$i bash $0"
  else
    echo "case $i ($b, e2fsck before: $pre, ${op[0]} exit $RC, $desc): ok"
  fi
  if [ -n "$ONLY" ]; then
    keep="$SCRATCH/fuzz-case-$i"
    rm -rf "$keep" && mkdir -p "$keep"
    cp --sparse=always "$W/$b.img" "$keep/base.img"
    cp --sparse=always "$W/$b.img" "$keep/mutated.img"
    "$PY" "$W/fuzz.py" mutate "$keep/mutated.img" "$W/$b.regions" "$SEED" "$i" >/dev/null
    echo "    images kept in $keep (base.img, mutated.img)"
  fi
done
echo "$CASES cases (seed $SEED): $fsck_rejected damaged beyond e2fsck -fn, $refused refused, $changed changed, $failures failed"
[ $failures -eq 0 ] || fail "$failures of $CASES cases failed"
echo PASS
