#!/usr/bin/env bash
# Builds the libFuzzer targets with clang in build/fuzz (only the fuzzers, nothing else) and runs
# each for a bounded time. Exits non-zero if a fuzzer finds a crash, a sanitizer error or a leak;
# the input that triggered it is left in build/fuzz/artifacts/<fuzzer>/.
#
# Usage: scripts/run-fuzzers.sh [seconds per fuzzer, default 60]
# Needs clang and libclang-rt-14-dev (scripts/install-deps.sh installs both).
set -euo pipefail

seconds=${1:-60}
if ! [[ $seconds =~ ^[0-9]+$ ]] || [[ $seconds -lt 1 ]]; then
  echo "run-fuzzers: seconds must be a positive integer, got '$seconds'" >&2
  exit 2
fi

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=$root/build/fuzz
fuzzers=(zk_protocol_fuzzer)

cmake -S "$root" -B "$build" -G Ninja \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
  -DZK2ETCD_FUZZ=ON -DZK2ETCD_BUILD_TESTS=OFF -DZK2ETCD_BUILD_BENCHMARKS=OFF >/dev/null
ninja -C "$build" -j2 "${fuzzers[@]}"

status=0
for fuzzer in "${fuzzers[@]}"; do
  corpus=$build/corpus/$fuzzer
  artifacts=$build/artifacts/$fuzzer
  mkdir -p "$corpus" "$artifacts"
  echo "run-fuzzers: $fuzzer for ${seconds}s (corpus $corpus)"
  if ! "$build/src/zk/$fuzzer" "$corpus" \
      -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
      -artifact_prefix="$artifacts/" -print_final_stats=1 2>"$build/$fuzzer.log"; then
    tail -n 60 "$build/$fuzzer.log" >&2
    echo "run-fuzzers: $fuzzer FAILED; reproducer in $artifacts/" >&2
    status=1
  else
    grep -E "^stat::(number_of_executed_units|peak_rss_mb)|cov:" "$build/$fuzzer.log" | tail -n 3
    echo "run-fuzzers: $fuzzer ok"
  fi
done
exit $status
