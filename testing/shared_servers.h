// Servers shared by all tests of one test binary: each starts on first use and stops when the
// binary exits, so a binary pays each server's start-up once. Tests that kill, pause or
// reconfigure a server must start their own instead (ZooKeeperServer::Start, ...), and tests
// sharing a server must use distinct key prefixes or paths.
//
// Thread-safe: the first call starts the server; later calls return it. A failed start is
// remembered and returned again.
#pragma once

#include "testing/etcd_server.h"
#include "testing/redis_server.h"
#include "testing/zookeeper_server.h"

namespace zk2etcd::testing {

FixtureResult<ZooKeeperServer*> SharedZooKeeper();
FixtureResult<EtcdServer*> SharedEtcd();
FixtureResult<RedisServer*> SharedRedis();

// A fresh name for a test's private ZooKeeper path or etcd prefix: "/<label>-<n>".
std::string UniquePath(const std::string& label);

}  // namespace zk2etcd::testing
