#!/usr/bin/env bash
# Command 1 of the README: installs what is needed, builds zk2etcd in Release, starts a local
# ZooKeeper and etcd (temporary, on free loopback ports) with a small sample Dubbo tree, and runs
# zk2etcd's main job against them. Ctrl-C stops it; the servers and their data are removed.
#
# Any arguments replace the default command, e.g.: scripts/try.sh zk2etcd version
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh
build_dir=${BUILD_DIR:-build/release}
cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release -DZK2ETCD_BUILD_TESTS=ON \
  -DZK2ETCD_BUILD_BENCHMARKS=OFF >/dev/null
cmake --build "$build_dir" -j "$(nproc)" --target zk2etcd zk2etcd-devenv

zk2etcd=$PWD/$build_dir/src/zk2etcd
if [[ $# -gt 0 ]]; then
  [[ $1 == zk2etcd ]] && shift
  command=("$zk2etcd" "$@")
  exec "$build_dir/testing/zk2etcd-devenv" -- "${command[@]}"
fi
# The main job: a full sync, then real-time sync. The demo adds and removes a provider and shows
# etcd following; on a terminal it keeps syncing until Ctrl-C, otherwise it stops after the demo.
exec "$build_dir/testing/zk2etcd-devenv" --demo -- "$zk2etcd" sync --log-format=text \
  --http-addr=127.0.0.1:0
