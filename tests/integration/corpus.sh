#!/usr/bin/env bash
# The test-image corpus: builds the quick profile into $CEXT3_SCRATCH/corpus
# (kept there for the other tests; reused when already built), then checks it
# against the real tools: every positive image passes e2fsck -fn and has the
# geometry the index claims; every negative image is broken in exactly the way
# the index says; every manifest is there and lists the edge cases with the
# values they were created with (hard-link counts, symlink targets, device
# numbers, xattr digests computed here with sha256sum, the 20,000 entries).
set -euo pipefail

: "${CEXT3_BIN:?set CEXT3_BIN to the build directory}"
: "${CEXT3_SRC:?set CEXT3_SRC to the source root}"
: "${CEXT3_SCRATCH:?set CEXT3_SCRATCH to a scratch directory}"
MANIFEST=$CEXT3_BIN/cext3-manifest
[ -x "$MANIFEST" ] || { echo "FAIL: $MANIFEST not built; build the cext3-manifest target"; exit 1; }
if [ "$(id -u)" != 0 ]; then
  echo "SKIP: building the corpus needs root (mknod, chown, chattr, loop mounts)"; exit 77
fi
mkdir -p "$CEXT3_SCRATCH"
CORPUS=$CEXT3_SCRATCH/corpus
WORK=$(mktemp -d "$CEXT3_SCRATCH/corpus-test.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

FAILURES=0
fail() { echo "FAIL: $*"; FAILURES=$((FAILURES + 1)); }

BUILD=(bash "$CEXT3_SRC/test-images/build-corpus.sh" "$CORPUS" --profile quick --manifest-tool "$MANIFEST"
       --populate "${CEXT3_CORPUS_POPULATE:-auto}")
t0=$(date +%s)
"${BUILD[@]}" | tee "$WORK/build1.log"
echo "corpus build took $(( $(date +%s) - t0 ))s"
# Second run must reuse everything (idempotent).
"${BUILD[@]}" >"$WORK/build2.log"
grep -q '(0 built, 13 reused)' "$WORK/build2.log" ||
  fail "a second build-corpus.sh run rebuilt images: $(tail -1 "$WORK/build2.log")"
grep -q '^build-corpus.sh: populate method: \(kernel\|mkfs\) (' "$WORK/build1.log" ||
  fail "build-corpus.sh did not say which populate method it used and why"

INDEX=$CORPUS/index.tsv
[ -s "$INDEX" ] || { echo "FAIL: no $INDEX"; exit 1; }
[ "$(head -1 "$INDEX" | cut -f1-13 | tr '\t' ' ')" = \
  "name kind block_size inode_size resize_inode dir_index size_bytes populate content flags_preserved expect manifest notes" ] ||
  fail "index.tsv header changed: $(head -1 "$INDEX")"

feature_list() { dumpe2fs -h "$1" 2>/dev/null | sed -n 's/^Filesystem features: *//p'; }
has_feature() { feature_list "$1" | tr ' ' '\n' | grep -qx "$2"; }
sb_field() { dumpe2fs -h "$1" 2>/dev/null | awk -F: -v k="$2" '$1 == k { gsub(/[ \t]/, "", $2); print $2 }'; }

# Field N (1-based, path is 1) of the manifest line for PATH.
mfield() { awk -F'\t' -v p="$2" -v n="$3" '$1 == p { print $n; found = 1 } END { if (!found) print "<missing>" }' "$1"; }
expect_field() {  # MANIFEST PATH FIELD_NUMBER EXPECTED WHAT
  local got; got=$(mfield "$1" "$2" "$3")
  [ "$got" = "$4" ] || fail "$(basename "$1"): $2: $5 is '$got', expected '$4'"
}

sha_of() { printf '%s' "$1" | sha256sum | cut -c1-64; }

check_edge_entries() {  # MANIFEST BLOCK_SIZE INODE_SIZE FLAGS_PRESERVED POPULATE
  local m=$1 bs=$2 isz=$3 flags=$4 populate=$5
  # Field numbers: 2 type 3 mode 4 uid 5 gid 6 size 7 mtime 8 nlink 9 flags 10 xattrs 11 target 12 rdev 13 data
  expect_field "$m" /edge/links/pair_a 8 2 "link count"
  expect_field "$m" /edge/links/pair_b 8 2 "link count"
  expect_field "$m" /edge/links/sub/triple_3 8 3 "link count"
  [ "$(mfield "$m" /edge/links/pair_a 13)" = "$(mfield "$m" /edge/links/pair_b 13)" ] ||
    fail "$(basename "$m"): the two names of one inode have different data digests"
  expect_field "$m" /edge/symlinks/fast 11 ../links/pair_a "fast symlink target"
  expect_field "$m" /edge/symlinks/fast_59 11 "$(printf 't%.0s' $(seq 59))" "59-byte symlink target"
  expect_field "$m" /edge/symlinks/slow_60 11 "$(printf 't%.0s' $(seq 60))" "60-byte (slow) symlink target"
  expect_field "$m" /edge/symlinks/dangling 11 does/not/exist "dangling symlink target"
  expect_field "$m" /edge/symlinks/fast 2 lnk "type"
  expect_field "$m" /edge/special/char_1_3 12 1:3 "char device rdev"
  expect_field "$m" /edge/special/block_8_1 12 8:1 "block device rdev"
  expect_field "$m" /edge/special/char_big 12 300:70000 "char device rdev (new encoding)"
  expect_field "$m" /edge/special/block_8_1 2 blk "type"
  expect_field "$m" /edge/special/fifo 2 fifo "type"
  expect_field "$m" /edge/special/socket 2 sock "type"
  expect_field "$m" /edge/special/empty_file 6 0 "size"
  expect_field "$m" /edge/special/empty_file 13 "$(printf '\0\0\0\0\0\0\0\0' | sha256sum | cut -c1-64)" "digest of an empty file"
  expect_field "$m" /edge/xattr/small 10 \
    "user.comment=$(sha_of hello),user.empty=$(sha_of '')" "xattrs"
  expect_field "$m" /edge/xattr/shared_1 10 "user.shared=$(sha_of 'same value in both files')" "xattrs"
  mfield "$m" /edge/xattr/acl_file 10 | grep -q '^system\.posix_acl_access=[0-9a-f]\{64\}$' ||
    fail "$(basename "$m"): /edge/xattr/acl_file has no POSIX ACL xattr line"
  mfield "$m" /edge/xattr/acl_dir 10 | grep -q 'system\.posix_acl_default=[0-9a-f]\{64\}' ||
    fail "$(basename "$m"): /edge/xattr/acl_dir has no default ACL"
  expect_field "$m" /edge/owners/uid32 4 123456 "uid"
  expect_field "$m" /edge/owners/uid32 5 654321 "gid"
  expect_field "$m" /edge/owners/setuid 3 4755 "mode"
  expect_field "$m" /edge/owners/sticky_dir 3 1777 "mode"
  # mke2fs -d (1.47.0) copies whole seconds only; the kernel keeps nanoseconds
  # wherever the inode has room for them.
  local nsec=987654321
  [ "$populate" = mkfs ] && nsec=000000000
  expect_field "$m" /edge/times/before_1970 7 "$([ "$isz" -gt 128 ] && echo "-1000000.$nsec" || echo -1000000)" "mtime"
  grep -q "^/edge/names/$(printf 'n%.0s' $(seq 255))	reg	" "$m" || fail "$(basename "$m"): no 255-byte name"
  grep -q '^/edge/names/new\\x0aline	' "$m" || fail "$(basename "$m"): newline in a name not escaped as \\x0a"
  grep -q '^/edge/deep/l01/.*/l64/bottom	reg	' "$m" || fail "$(basename "$m"): no 64-level deep file"
  # The triple-indirect file really extends past the triple-indirect threshold.
  local p=$((bs / 4))
  local tind_bytes=$(( (12 + p + p * p) * bs ))
  local size; size=$(mfield "$m" /edge/sparse/tind 6)
  [ "$size" != "<missing>" ] && [ "$size" -gt "$tind_bytes" ] ||
    fail "$(basename "$m"): /edge/sparse/tind is $size bytes, not past the triple-indirect offset $tind_bytes"
  if [ "$flags" = yes ]; then
    expect_field "$m" /edge/flags/immutable 9 0x10 "flags"
    expect_field "$m" /edge/flags/append_only 9 0x20 "flags"
  fi
}

positives=0
negatives=0
saw_bigdir=0
while IFS=$'\t' read -r name kind bs isz ri di size populate content flags expect manifest notes; do
  img=$CORPUS/$name
  [ -f "$img" ] || { fail "$name is in the index but not in $CORPUS"; continue; }
  [ "$(stat -c %s "$img")" = "$size" ] || fail "$name: size $(stat -c %s "$img") differs from the index ($size)"
  if [ "$kind" = positive ]; then
    positives=$((positives + 1))
    rc=0; e2fsck -fn "$img" >"$WORK/fsck.out" 2>&1 || rc=$?
    [ "$rc" = 0 ] || { tail -5 "$WORK/fsck.out"; fail "$name: e2fsck -fn exited $rc"; }
    has_feature "$img" has_journal || fail "$name: no has_journal"
    has_feature "$img" needs_recovery && fail "$name: needs_recovery set"
    has_feature "$img" extent && fail "$name: extents on a positive ext3 image"
    [ "$(sb_field "$img" 'Block size')" = "$bs" ] || fail "$name: block size is not $bs"
    [ "$(sb_field "$img" 'Inode size')" = "$isz" ] || fail "$name: inode size is not $isz"
    if has_feature "$img" resize_inode; then got=1; else got=0; fi
    [ "$got" = "$ri" ] || fail "$name: resize_inode is $got, index says $ri"
    if has_feature "$img" dir_index; then got=1; else got=0; fi
    [ "$got" = "$di" ] || fail "$name: dir_index is $got, index says $di"
    m=$CORPUS/$manifest
    [ -s "$m" ] || { fail "$name: manifest $manifest missing or empty"; continue; }
    head -1 "$m" | grep -q '^/	dir	' || fail "$name: manifest does not start with the root directory"
    [ "$(awk -F'\t' 'NF != 13' "$m" | wc -l)" = 0 ] || fail "$name: manifest lines without exactly 13 fields"
    # The edge-case lines only, so the many look-ups below stay cheap.
    grep '^/edge/' "$m" >"$WORK/$manifest" || true
    case ",$content," in *,edge,*) check_edge_entries "$WORK/$manifest" "$bs" "$isz" "$flags" "$populate" ;; esac
    case "$content" in
      *bigdir=*)
        saw_bigdir=1
        want=$(echo "$content" | sed 's/.*bigdir=\([0-9]*\).*/\1/')
        got=$(grep -c '^/bigdir/' "$m" || true)
        [ "$got" = "$want" ] || fail "$name: /bigdir has $got entries in the manifest, index says $want"
        if [ "$di" = 1 ] && [ "$populate" = kernel ]; then
          debugfs -R "stat /bigdir" "$img" 2>/dev/null | grep -q 'Flags: 0x0*1000' ||
            fail "$name: /bigdir is not an htree directory although dir_index is on"
        fi
        ;;
    esac
    case "$content" in
      *fill*)
        total=$(sb_field "$img" 'Block count'); free=$(sb_field "$img" 'Free blocks')
        [ $(( (total - free) * 100 / total )) -ge 95 ] || fail "$name: only $(( (total - free) * 100 / total ))% used, expected >= 95%"
        ;;
    esac
    # --exclude drops the subtree and the parent's link count for it.
    "$MANIFEST" "$img" --exclude /lost+found >"$WORK/excl.txt"
    grep -q '^/lost+found' "$WORK/excl.txt" && fail "$name: --exclude /lost+found still lists it"
    [ "$(mfield "$WORK/excl.txt" / 8)" = "$(( $(mfield "$m" / 8) - 1 ))" ] ||
      fail "$name: --exclude of a directory did not lower the root's link count by one"
  else
    negatives=$((negatives + 1))
    [ "$manifest" = - ] || fail "$name: negative image with a manifest"
    case "$expect" in
      refuse:no-journal)
        has_feature "$img" has_journal && fail "$name: has a journal"
        has_feature "$img" filetype || fail "$name: not an ext2 filesystem" ;;
      refuse:unsupported-feature)
        has_feature "$img" extent || fail "$name: no extent feature" ;;
      refuse:needs-recovery)
        has_feature "$img" needs_recovery || fail "$name: needs_recovery not set"
        debugfs -R logdump "$img" 2>/dev/null | grep -q 'commit block' || fail "$name: no committed transaction in the journal" ;;
      refuse:bad-superblock)
        rc=0; e2fsck -fn "$img" >"$WORK/fsck.out" 2>&1 || rc=$?
        case "$name" in
          neg-bad-magic*)  # e2fsck recovers from a backup; the primary is what is bad
            dumpe2fs -h "$img" >/dev/null 2>&1 && fail "$name: dumpe2fs reads its primary superblock"
            grep -q 'Bad magic number in super-block' "$WORK/fsck.out" || fail "$name: e2fsck does not report the bad magic" ;;
          *)
            [ "$(sb_field "$img" 'Reserved block count')" = "$(sb_field "$img" 'Block count')" ] ||
              fail "$name: reserved block count is not the (bad) full block count"
            [ "$rc" != 0 ] || fail "$name: e2fsck -fn accepts it" ;;
        esac ;;
      refuse:truncated)
        total=$(sb_field "$img" 'Block count'); blk=$(sb_field "$img" 'Block size')
        [ "$(stat -c %s "$img")" -lt $((total * blk)) ] || fail "$name: not shorter than its filesystem" ;;
      refuse:not-ext)
        magic=$(od -An -tx1 -j1080 -N2 "$img" | tr -d ' ')
        [ "$magic" != 53ef ] || fail "$name: has the ext2 magic"
        dumpe2fs -h "$img" >/dev/null 2>&1 && fail "$name: dumpe2fs accepts it" ;;
      *) fail "$name: unknown expectation $expect" ;;
    esac
    case "$expect" in
      refuse:not-ext|refuse:bad-superblock)
        [ "$name" = neg-bad-superblock.img ] && continue  # libext2fs opens it; only e2fsck's checks catch it
        "$MANIFEST" "$img" >/dev/null 2>"$WORK/err" && fail "$name: cext3-manifest accepted it"
        [ "$(wc -l <"$WORK/err")" = 1 ] && grep -q 'cannot open' "$WORK/err" ||
          fail "$name: cext3-manifest's error is not one clear line: $(cat "$WORK/err")" ;;
    esac
  fi
done < <(tail -n +2 "$INDEX")

[ "$positives" -ge 6 ] || fail "only $positives positive images in the quick profile"
[ "$negatives" = 7 ] || fail "$negatives negative images, expected 7"
[ "$saw_bigdir" = 1 ] || fail "no image with the big directory"
if [ "$FAILURES" -gt 0 ]; then
  echo "FAIL: $FAILURES check(s) failed on the corpus in $CORPUS"
  exit 1
fi
echo "PASS: $positives positive and $negatives negative images in $CORPUS check out"
