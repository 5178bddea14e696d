#!/usr/bin/env bash
# False failovers under load: two replicas of `zk2etcd sync` with the default lease (5 s), a full
# sync every 10 s and four busy loops on the machine's cores, for 150 s; prints how often each
# replica was elected and lost the leadership (a healthy run: one election, no loss). Run it
# inside zk2etcd-devenv, which starts the servers and sets ZK2ETCD_ZOOKEEPER_SERVERS and
# ZK2ETCD_ETCD_SERVERS:
#   build/release/testing/zk2etcd-devenv --interfaces 8000 -- \
#       bench/sync/failover_under_load.sh build/release/src/zk2etcd
# Bounded: the replicas and the busy loops stop by themselves after 150 s.
set -u
binary=$(realpath "${1:?usage: failover_under_load.sh ZK2ETCD_BINARY}")
logs=$(mktemp -d)
cd "$logs" || exit 2
"$binary" sync --leader-elect-identity=replica-a --http-addr=127.0.0.1:0 --fullsync-interval=10s \
  --log-format=text >a.log 2>&1 &
first=$!
sleep 3
"$binary" sync --leader-elect-identity=replica-b --http-addr=127.0.0.1:0 --fullsync-interval=10s \
  --log-format=text >b.log 2>&1 &
second=$!
for _ in 1 2 3 4; do timeout 150 sh -c 'while :; do :; done' & done
sleep 150
kill "$first" "$second"
wait "$first" "$second" 2>/dev/null
echo "elected: a=$(grep -c 'elected leader' a.log) b=$(grep -c 'elected leader' b.log)"
echo "lost: a=$(grep -c 'leadership lost' a.log) b=$(grep -c 'leadership lost' b.log)"
echo "full syncs: a=$(grep -c 'reconciliation done' a.log) b=$(grep -c 'reconciliation done' b.log)"
echo "logs: $logs"
