#!/usr/bin/env bash
# Command 2 of the README: installs what is needed, builds everything with AddressSanitizer and
# UndefinedBehaviorSanitizer (warnings are errors), and runs the whole test suite, integration
# tests against real ZooKeeper, etcd and Redis servers included. .ci/run calls exactly this.
#
# Environment: BUILD_DIR (default build/asan), JOBS (default: number of cores),
# FUZZ_SECONDS (default 30; 0 skips the fuzzers).
set -euo pipefail
cd "$(dirname "$0")/.."
started=$(date +%s)

bash scripts/install-deps.sh

build_dir=${BUILD_DIR:-build/asan}
jobs=${JOBS:-$(nproc)}
cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Debug \
  -DZK2ETCD_ASAN_UBSAN=ON -DZK2ETCD_WERROR=ON -DZK2ETCD_BUILD_TESTS=ON \
  -DZK2ETCD_BUILD_BENCHMARKS=ON >/dev/null
cmake --build "$build_dir" -j "$jobs"
built=$(date +%s)
echo "test.sh: built in $((built - started)) s (installs included)"

# LeakSanitizer must see leaks; UBSan must fail the test on any report.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:strict_string_checks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
# With CI=true a missing server fails a test instead of skipping it.
(cd "$build_dir" && ctest --output-on-failure -j "$jobs")

if [[ -x scripts/run-fuzzers.sh && ${FUZZ_SECONDS:-30} -gt 0 ]]; then
  bash scripts/run-fuzzers.sh "${FUZZ_SECONDS:-30}"
fi
echo "test.sh: all tests passed in $(($(date +%s) - started)) s"
