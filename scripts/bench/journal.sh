#!/bin/bash
# Journal benchmark: one run, ratios against raw writes to the same file.
#   usage: scripts/bench/journal.sh [BUILD_DIR]
# Goals (docs/JOURNAL.md): commit-two/raw >= 0.45, commit-one/raw >= 0.9,
# group-8/group-1 >= 4, large/raw-seq >= 0.8.
set -euo pipefail
BUILD=${1:-build}
BIN="$BUILD/cext3-bench-journal"
[ -x "$BIN" ] || { echo "journal bench: $BIN not built; run make first"; exit 1; }
DIR=$(mktemp -d "${TMPDIR:-$BUILD}/jbench.XXXXXX"); trap 'rm -rf "$DIR"' EXIT
OUT="$DIR/out.txt"
"$BIN" "$DIR/file" --seconds "${SECONDS_PER_PHASE:-1.5}" | tee "$OUT"
v() { awk -v k="$1" '$1 == k {print $2}' "$OUT"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }'; }
echo "filesystem under the scratch file: $(df -T "$DIR" | awk 'NR==2 {print $2}')"
echo "single-block commits, two flushes / raw O_DIRECT|O_DSYNC 4K writes: $(ratio "$(v commit-two)" "$(v raw-dsync)")  (goal >= 0.45)"
echo "single-block commits, one flush (csum_v3) / raw:                   $(ratio "$(v commit-one)" "$(v raw-dsync)")  (goal >= 0.9)"
echo "8 committers / 1 committer (group commit, one flush):              $(ratio "$(v group-8)" "$(v group-1)")  (goal >= 4)"
echo "8 committers / 1 committer (group commit, two flushes):            $(ratio "$(v group-8-two)" "$(v commit-two)")"
echo "4 MiB transactions, two flushes / sequential O_DIRECT MB/s:        $(ratio "$(v large-two)" "$(v raw-seq)")  (goal >= 0.8)"
echo "4 MiB transactions, one flush / sequential O_DIRECT MB/s:          $(ratio "$(v large-one)" "$(v raw-seq)")"
