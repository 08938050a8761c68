#!/usr/bin/env bash
# Sequential O_DIRECT write throughput: the cext3 file backend (libaio,
# queue depth 32, 1 MiB requests) against dd oflag=direct on the same file,
# in the same run, alternating, fdatasync included in both.
#
#   scripts/bench/io.sh [BUILD_DIR]        (default: build)
#
# Environment: CEXT3_BENCH_IO_MIB (default 1024), CEXT3_BENCH_IO_REPS
# (default 2), CEXT3_BENCH_IO_QD (default 32), CEXT3_SCRATCH (default
# BUILD_DIR/scratch; keep it on the filesystem you want measured).
# Prints each run, the totals, and "ratio libaio/dd: R" (goal >= 0.9).
set -euo pipefail
export LC_ALL=C

src=$(cd "$(dirname "$0")/../.." && pwd)
build=${1:-build}
[[ $build = /* ]] || build=$src/$build
tool=$build/cext3-bench-io
mib=${CEXT3_BENCH_IO_MIB:-1024}
reps=${CEXT3_BENCH_IO_REPS:-2}
qd=${CEXT3_BENCH_IO_QD:-32}

if [[ ! -x $tool ]]; then
  echo "io.sh: $tool not found; build first (make, or cmake --build $build)" >&2
  exit 1
fi
scratch=${CEXT3_SCRATCH:-$build/scratch}
mkdir -p "$scratch"
dir=$(mktemp -d "$scratch/bench-io.XXXXXX")
trap 'rm -rf "$dir"' EXIT
file=$dir/io.img

avail=$(df -P -m "$dir" | awk 'NR==2 {print $4}')
if (( avail < mib + 256 )); then
  echo "io.sh: only $avail MiB free under $dir, need $((mib + 256)); free space or lower CEXT3_BENCH_IO_MIB" >&2
  exit 1
fi
echo "io.sh: $mib MiB per run, $reps runs each, file $file"
echo "io.sh: on $(df -P -T "$dir" | awk 'NR==2 {print $1 " (" $2 ")"}'); repo on $(df -P "$src" | awk 'NR==2 {print $1}')"

dd_secs_total=0
tool_secs_total=0
for ((i = 1; i <= reps; i++)); do
  # dd exactly as an operator would run it: it truncates the file, then
  # writes it in 1 MiB O_DIRECT writes and fdatasyncs; its own timer covers
  # the writes and the fdatasync.
  out=$(dd if=/dev/zero of="$file" bs=1M count="$mib" oflag=direct conv=fdatasync 2>&1)
  secs=$(awk '/copied/ { for (i = 1; i <= NF; i++) if ($i == "s,") print $(i-1) }' <<<"$out")
  [[ -n $secs ]] || { echo "io.sh: cannot read dd's timing from: $out" >&2; exit 1; }
  printf 'run %d  dd:      %8.1f MiB/s  (%s s)\n' "$i" "$(bc -l <<<"$mib / $secs")" "$secs"
  dd_secs_total=$(bc -l <<<"$dd_secs_total + $secs")

  # The backend under the same conditions: --fresh recreates the file sparse
  # (untimed), so it too allocates blocks while it writes.
  out=$("$tool" "$file" --mib "$mib" --queue-depth "$qd" --fresh)
  secs=$(sed -n 's/.* MiB in \([0-9.]*\) s = .*/\1/p' <<<"$out")
  [[ -n $secs ]] || { echo "io.sh: cannot read the tool's timing from: $out" >&2; exit 1; }
  printf 'run %d  libaio:  %8.1f MiB/s  (%s s)  [%s]\n' "$i" "$(bc -l <<<"$mib / $secs")" "$secs" "${out#cext3-bench-io: }"
  tool_secs_total=$(bc -l <<<"$tool_secs_total + $secs")
done

dd_rate=$(bc -l <<<"$mib * $reps / $dd_secs_total")
tool_rate=$(bc -l <<<"$mib * $reps / $tool_secs_total")
printf 'dd oflag=direct conv=fdatasync: %.1f MiB/s over %d runs\n' "$dd_rate" "$reps"
printf 'cext3 libaio qd %d:             %.1f MiB/s over %d runs\n' "$qd" "$tool_rate" "$reps"
printf 'ratio libaio/dd: %.2f (goal >= 0.9)\n' "$(bc -l <<<"$tool_rate / $dd_rate")"
