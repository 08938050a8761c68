#!/bin/bash
# Nothing lost, over the quick corpus (test-images/build-corpus.sh): for every
# positive image, the manifest (cext3-manifest, /.cext3 excluded) after
# convert and after revert equals the manifest taken when the image was
# built, and e2fsck -fn exits 0 after each step; a nearly full image may be
# refused for space, byte-identical. Every negative image is refused and left
# byte-identical.
set -u
BIN=${CEXT3_BIN:?}
SRCDIR=${CEXT3_SRC:?}
SCRATCH=${CEXT3_SCRATCH:?}
C="$BIN/clusterify"
MF="$BIN/cext3-manifest"
[ -x "$MF" ] || { echo "skip: $MF is not built"; exit 77; }
[ "$(id -u)" = 0 ] || { echo "skip: building the corpus needs root (mknod, chown, chattr)"; exit 77; }
mkdir -p "$SCRATCH"
CORPUS=$SCRATCH/corpus
W=$(mktemp -d "$SCRATCH/cfy-corpus.XXXXXX")
trap 'rm -rf "$W"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
bash "$SRCDIR/test-images/build-corpus.sh" "$CORPUS" --profile quick --manifest-tool "$MF" >"$W/build.log" 2>&1 ||
  { tail "$W/build.log"; fail "build-corpus.sh"; }
INDEX=$CORPUS/index.tsv
[ -s "$INDEX" ] || fail "no $INDEX"
pos=0 neg=0 refused_full=0
while IFS=$'\t' read -r name kind bs isz ri di size populate content flags expect manifest notes; do
  img="$W/$name"
  cp --sparse=always "$CORPUS/$name" "$img"
  before=$(sha256sum "$img" | cut -d' ' -f1)
  if [ "$kind" = negative ]; then
    "$C" convert "$img" --slots 2 >"$W/out" 2>"$W/err" && fail "$name: negative image accepted"
    [ "$before" = "$(sha256sum "$img" | cut -d' ' -f1)" ] || fail "$name: refused but changed"
    [ "$(wc -l <"$W/err")" -eq 1 ] || { cat "$W/err"; fail "$name: refusal is not one line"; }
    echo "ok: $name ($expect): $(cat "$W/err")"
    neg=$((neg + 1))
    rm -f "$img"
    continue
  fi
  blocks=$(dumpe2fs -h "$img" 2>/dev/null | sed -n 's/^Block count: *//p')
  bpg=$(dumpe2fs -h "$img" 2>/dev/null | sed -n 's/^Blocks per group: *//p')
  groups=$(( (blocks + bpg - 1) / bpg ))
  slots=2
  [ "$groups" -lt 2 ] && slots=1
  if ! "$C" convert "$img" --slots $slots --group-policy balanced >"$W/out" 2>"$W/err"; then
    grep -q "too little free space\|no free block\|contiguous free blocks" "$W/err" || { cat "$W/err"; fail "$name: convert failed"; }
    [ "$before" = "$(sha256sum "$img" | cut -d' ' -f1)" ] || fail "$name: refused for space but changed"
    echo "ok: $name ($expect, $notes): refused for space: $(cat "$W/err")"
    refused_full=$((refused_full + 1))
    rm -f "$img"
    continue
  fi
  e2fsck -fn "$img" >"$W/fsck" 2>&1 || { tail "$W/fsck"; fail "$name: e2fsck -fn after convert"; }
  "$MF" --exclude /.cext3 "$img" >"$W/m1" || fail "$name: manifest after convert"
  diff "$CORPUS/$manifest" "$W/m1" >"$W/d" || { head "$W/d"; fail "$name: manifest changed by convert"; }
  "$C" verify -n "$img" >"$W/v" 2>&1 || { grep -v "ok:" "$W/v"; fail "$name: verify -n after convert"; }
  "$C" revert "$img" >/dev/null 2>"$W/err" || { cat "$W/err"; fail "$name: revert"; }
  e2fsck -fn "$img" >"$W/fsck" 2>&1 || { tail "$W/fsck"; fail "$name: e2fsck -fn after revert"; }
  "$MF" "$img" >"$W/m2" || fail "$name: manifest after revert"
  diff "$CORPUS/$manifest" "$W/m2" >"$W/d" || { head "$W/d"; fail "$name: manifest changed by revert"; }
  echo "ok: $name: convert ($slots slots) and revert keep the manifest; e2fsck -fn 0 after each"
  pos=$((pos + 1))
  rm -f "$img"
done < <(tail -n +2 "$INDEX")
echo "corpus: $pos positive images round-tripped, $refused_full refused for space, $neg negatives refused"
[ $pos -gt 0 ] && [ $neg -gt 0 ] || fail "corpus had no positive or no negative image"
echo PASS
