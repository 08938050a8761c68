#!/bin/bash
# cext3-crashstate end to end: record a scripted sequence of writes and flushes
# on an image file, list its crash states, materialize them, and compare every
# one with cmp against a reference the script builds itself with dd.
set -euo pipefail

: "${CEXT3_BIN:?set CEXT3_BIN to the build directory}"
: "${CEXT3_SCRATCH:?set CEXT3_SCRATCH to a scratch directory}"
TOOL="$CEXT3_BIN/cext3-crashstate"
if [ ! -x "$TOOL" ]; then
  echo "FAIL: $TOOL is missing; build the project first" >&2
  exit 1
fi
mkdir -p "$CEXT3_SCRATCH"
dir=$(mktemp -d "$CEXT3_SCRATCH/crashstate.XXXXXX")
trap 'rm -rf "$dir"' EXIT
cd "$dir"

fails=0
check() {  # check DESCRIPTION COMMAND...
  local what=$1; shift
  if "$@"; then :; else echo "FAIL: $what" >&2; fails=$((fails + 1)); fi
}

# ---------------------------------------------------------------- inputs
head -c $((256 * 1024)) /dev/urandom > base.img
mk() { head -c "$2" /dev/urandom > "$1"; }
mk d0 1024
mk d1 4096       # 8 sectors
mk d2 1024       # overlaps d0's second sector
mk d3 512
mk d4 2048
mk d5 1536
mk d6 1024       # overlaps d3
head -c 2048 /dev/zero | tr '\0' '\253' > d7   # what "fill ... 171" writes
mk d8 512

cat > script.txt <<'EOF'
# epoch 0
write 0 d0
write 4096 d1
write 512 d2
flush
# epoch 1: a batch of two in the middle
write 8192 d3
batch
write 65536 d4
write 0x20000 d5
end
write 8192 d6
flush
flush            # epoch 2 is empty
# epoch 3: never flushed
fill 196608 2048 171
write 0 d8
EOF
# The writes in order, as "offset file", for the references below.
W_OFF=(0 4096 512 8192 65536 131072 8192 196608 0)
W_FILE=(d0 d1 d2 d3 d4 d5 d6 d7 d8)
EPOCH_FIRST=(0 3 7 7)
EPOCH_COUNT=(3 4 0 2)
NW=${#W_OFF[@]}

apply() {  # apply IMG INDEX [SECTORS]: lay write INDEX (or its first SECTORS sectors) over IMG
  local count=()
  [ $# -ge 3 ] && count=(count="$3")
  dd if="${W_FILE[$2]}" of="$1" bs=512 seek=$((W_OFF[$2] / 512)) "${count[@]}" conv=notrunc status=none
}
prefix_ref() {  # prefix_ref OUT K
  cp base.img "$1"
  local i
  for ((i = 0; i < $2; i++)); do apply "$1" "$i"; done
}

# ---------------------------------------------------------------- record
cp base.img dev.img
check "record exits 0" "$TOOL" record --device dev.img --log run.log --script script.txt
prefix_ref all.ref "$NW"
check "the recorded device holds every write" cmp -s dev.img all.ref

"$TOOL" info run.log > info.txt
check "info counts writes" grep -qx "writes: 9" info.txt
check "info counts flushes" grep -qx "flushes: 3" info.txt
check "info counts epochs" grep -qx "epochs: 4" info.txt
bytes=0
for f in "${W_FILE[@]}"; do bytes=$((bytes + $(stat -c %s "$f"))); done
check "info counts bytes" grep -qx "bytes_written: $bytes" info.txt
check "info sees no power loss" grep -qx "power_loss: no" info.txt

# ---------------------------------------------------------------- prefixes
"$TOOL" list run.log > prefixes.txt
check "list gives p0..p$NW" diff <(for ((k = 0; k <= NW; k++)); do echo "p$k"; done) prefixes.txt
for ((k = 0; k <= NW; k++)); do
  prefix_ref ref.img "$k"
  "$TOOL" materialize --base base.img --log run.log --state "p$k" --out state.img
  check "p$k matches the first $k writes" cmp -s state.img ref.img
done

# ---------------------------------------------------------------- reorder
"$TOOL" list run.log --reorder > all.txt
grep '^e' all.txt > reorder.txt || true
# Expected per epoch: 2^w - (w + 1) subsets that are not a prefix of the epoch.
want=0
for ((e = 0; e < ${#EPOCH_COUNT[@]}; e++)); do
  w=${EPOCH_COUNT[$e]}
  n=$(( (1 << w) - w - 1 ))
  [ "$w" -eq 0 ] && n=0
  got=$(grep -c "^e$e:" reorder.txt || true)
  check "epoch $e has $n reorder states (got $got)" [ "$got" -eq "$n" ]
  want=$((want + n))
done
check "reorder list has $want subset states" [ "$(wc -l < reorder.txt)" -eq "$want" ]
check "reorder list keeps the prefixes" [ "$(grep -c '^p' all.txt)" -eq $((NW + 1)) ]
check "reorder ids are unique" [ "$(sort all.txt | uniq -d | wc -l)" -eq 0 ]

subset_ref() {  # subset_ref OUT ID  (ID = e<E>:s0x<mask>)
  local e=${2%%:*}; e=${e#e}
  local mask=$((16#${2##*:s0x}))
  prefix_ref "$1" "${EPOCH_FIRST[$e]}"
  local i
  for ((i = 0; i < EPOCH_COUNT[e]; i++)); do
    if (( (mask >> i) & 1 )); then apply "$1" $((EPOCH_FIRST[e] + i)); fi
  done
}
while read -r id; do
  subset_ref ref.img "$id"
  "$TOOL" materialize --base base.img --log run.log --state "$id" --out state.img
  check "$id matches earlier epochs plus its subset" cmp -s state.img ref.img
done < reorder.txt

# A cap below the epoch's subset count: a seeded, repeatable sample.
"$TOOL" list run.log --reorder --max-subsets 5 --seed 9 > capped1.txt
"$TOOL" list run.log --reorder --max-subsets 5 --seed 9 > capped2.txt
check "sampling is repeatable" cmp -s capped1.txt capped2.txt
check "epoch 1 is capped at 5" [ "$(grep -c '^e1:' capped1.txt)" -eq 5 ]
while read -r id; do
  subset_ref ref.img "$id"
  "$TOOL" materialize --base base.img --log run.log --state "$id" --out state.img
  check "sampled $id matches" cmp -s state.img ref.img
done < <(grep '^e1:' capped1.txt)

# ---------------------------------------------------------------- torn
"$TOOL" list run.log --torn > torn.txt
for j in 1 2 3 4 5 6 7; do
  check "p1t$j is listed" grep -qx "p1t$j" torn.txt
done
check "a 1-sector write is never torn" [ "$(grep -c '^p3t' torn.txt || true)" -eq 0 ]
prefix_ref ref.img 1
apply ref.img 1 3
"$TOOL" materialize --base base.img --log run.log --state p1t3 --out state.img
check "p1t3 holds the first 3 sectors of write 1" cmp -s state.img ref.img

# ---------------------------------------------------------------- refusals
if "$TOOL" materialize --base base.img --log run.log --state p99 --out state.img 2> err.txt; then
  check "an unknown state is refused" false
fi
check "the refusal is one line" [ "$(wc -l < err.txt)" -eq 1 ]
head -c 4096 /dev/zero > small.img
if "$TOOL" materialize --base small.img --log run.log --state p1 --out state.img 2> /dev/null; then
  check "a base of the wrong size is refused" false
fi
printf 'CX3RLOG\0garbage' > junk.log
if "$TOOL" info junk.log 2> /dev/null; then check "a damaged log is refused" false; fi

# ---------------------------------------------------------------- faults
# Power loss after 4 writes: the image holds exactly the first 4.
cp base.img dev.img
set +e
"$TOOL" record --device dev.img --log pl.log --script script.txt --power-loss-after 4 2> pl.err
rc=$?
set -e
check "power loss makes record exit 1 (got $rc)" [ "$rc" -eq 1 ]
prefix_ref ref.img 4
check "after power loss the image holds the first 4 writes" cmp -s dev.img ref.img
"$TOOL" info pl.log > info.txt
check "power-loss log has 4 writes" grep -qx "writes: 4" info.txt
check "power-loss log says so" grep -qx "power_loss: yes" info.txt

# The 2nd write fails with EIO: every other write lands.
cp base.img dev.img
set +e
"$TOOL" record --device dev.img --log fw.log --script script.txt --fail-write 2 2> fw.err
rc=$?
set -e
check "a failed write makes record exit 1 (got $rc)" [ "$rc" -eq 1 ]
check "the failure is reported once" [ "$(wc -l < fw.err)" -eq 1 ]
cp base.img ref.img
for ((i = 0; i < NW; i++)); do if [ "$i" -ne 1 ]; then apply ref.img "$i"; fi; done
check "only the failed write is missing" cmp -s dev.img ref.img
"$TOOL" info fw.log > info.txt
check "the failed write is logged as injected" grep -qx "failed_writes: 1 (injected 1)" info.txt

if [ "$fails" -ne 0 ]; then
  echo "crashstate_tool: $fails check(s) failed" >&2
  exit 1
fi
echo "crashstate_tool: all checks passed ($(wc -l < all.txt) states listed with --reorder)"
