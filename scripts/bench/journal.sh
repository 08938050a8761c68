#!/bin/bash
# Journal benchmark: one run, ratios against raw writes to the same file.
#   usage: scripts/bench/journal.sh [BUILD_DIR]
#   env:   SECONDS_PER_PHASE (default 3), ROUNDS (default 5): each phase runs
#          ROUNDS slices of SECONDS_PER_PHASE/ROUNDS, alternating with the
#          other phases of its group; the medians are compared.
#          GOAL_MIB (default 32): transaction size of the large-transaction
#          goal line (see below); 4 MiB transactions are measured too.
# Goals (docs/JOURNAL.md, "Measurements", says what each ratio measures):
# commit-two/raw >= 0.45, commit-one/raw >= 0.9, group-8/group-1 >= 4,
# large transactions / sequential O_DIRECT >= 0.8, measured with GOAL_MIB
# transactions: 32 MiB is the most a Linux jbd2 transaction carries in the
# default 128 MiB journal (j_max_transaction_buffers = journal blocks / 4),
# and what it carries under a sustained write load.
set -euo pipefail
BUILD=${1:-build}
BIN="$BUILD/cext3-bench-journal"
GOAL_MIB=${GOAL_MIB:-32}
[ -x "$BIN" ] || { echo "journal bench: $BIN not built; run make first"; exit 1; }
DIR=$(mktemp -d "${TMPDIR:-$BUILD}/jbench.XXXXXX"); trap 'rm -rf "$DIR"' EXIT
OUT="$DIR/out.txt"
OUT_GOAL="$DIR/out-goal.txt"
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
"$BIN" "$DIR/file" --seconds "${SECONDS_PER_PHASE:-3}" --rounds "${ROUNDS:-5}" 2>"$DIR/rounds.txt" | tee "$OUT"
grep -v '^round' "$DIR/rounds.txt" || true
echo "load between: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "large transactions of $GOAL_MIB MiB:"
"$BIN" "$DIR/file" --phases large --large-mib "$GOAL_MIB" --seconds "${SECONDS_PER_PHASE:-3}" \
  --rounds "${ROUNDS:-5}" 2>"$DIR/rounds-goal.txt" | tee "$OUT_GOAL"
grep -v '^round' "$DIR/rounds-goal.txt" || true
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
v() { awk -v k="$1" '$1 == k {print $2}' "${2:-$OUT}"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }'; }
g() { v "$1" "$OUT_GOAL"; }
echo "filesystem under the scratch file: $(df -T "$DIR" | awk 'NR==2 {print $2}')"
echo "single-block commits, two flushes / raw O_DIRECT|O_DSYNC 4K writes: $(ratio "$(v commit-two)" "$(v raw-dsync)")  (goal >= 0.45)"
echo "single-block commits, one flush (csum_v3) / raw:                   $(ratio "$(v commit-one)" "$(v raw-dsync)")  (goal >= 0.9)"
echo "  (floors: write+flush() / raw $(ratio "$(v dev-write-flush)" "$(v raw-dsync)"), durable write / raw $(ratio "$(v dev-write-durable)" "$(v raw-dsync)"))"
echo "8 committers / 1 committer (group commit, one flush):              $(ratio "$(v group-8)" "$(v group-1)")  (goal >= 4)"
echo "8 committers / 1 committer (group commit, two flushes):            $(ratio "$(v group-8-two)" "$(v commit-two)")"
echo "4 MiB transactions, two flushes / sequential O_DIRECT MB/s:        $(ratio "$(v large-two)" "$(v raw-seq)")"
echo "4 MiB transactions, one flush / sequential O_DIRECT MB/s:          $(ratio "$(v large-one)" "$(v raw-seq)")"
echo "4 MiB transactions, two flushes / sequential, 32 in flight:       $(ratio "$(v large-two)" "$(v raw-seq-deep)")"
echo "4 MiB transactions, one flush / sequential, 32 in flight:         $(ratio "$(v large-one)" "$(v raw-seq-deep)")"
echo "4 MiB transactions, two flushes / sequential, fdatasync per 4 MiB: $(ratio "$(v large-two)" "$(v raw-seq-sync)")"
echo "4 MiB transactions, one flush / sequential, fdatasync per 4 MiB:   $(ratio "$(v large-one)" "$(v raw-seq-sync)")"
echo "  (including building each Transaction: two $(ratio "$(v large-two-e2e)" "$(v raw-seq)"), one $(ratio "$(v large-one-e2e)" "$(v raw-seq)") of sequential)"
echo "$GOAL_MIB MiB transactions, two flushes / sequential O_DIRECT MB/s:       $(ratio "$(g large-two)" "$(g raw-seq)")  (goal >= 0.8)"
echo "$GOAL_MIB MiB transactions, one flush / sequential O_DIRECT MB/s:         $(ratio "$(g large-one)" "$(g raw-seq)")  (goal >= 0.8)"
echo "$GOAL_MIB MiB transactions, two flushes / sequential, 32 requests in flight: $(ratio "$(g large-two)" "$(g raw-seq-deep)")"
echo "$GOAL_MIB MiB transactions, one flush / sequential, 32 requests in flight:   $(ratio "$(g large-one)" "$(g raw-seq-deep)")"
echo "$GOAL_MIB MiB transactions, two flushes / sequential, fdatasync per $GOAL_MIB MiB: $(ratio "$(g large-two)" "$(g raw-seq-sync)")"
echo "$GOAL_MIB MiB transactions, one flush / sequential, fdatasync per $GOAL_MIB MiB:   $(ratio "$(g large-one)" "$(g raw-seq-sync)")"
echo "  (including building each Transaction: two $(ratio "$(g large-two-e2e)" "$(g raw-seq)"), one $(ratio "$(g large-one-e2e)" "$(g raw-seq)") of sequential)"
