#include "testing/shared_servers.h"

#include <atomic>
#include <cstdlib>
#include <mutex>
#include <optional>

namespace zk2etcd::testing {

namespace {

template <typename Server, typename Options>
FixtureResult<Server*> StartOnce(Options options) {
  // Deleted by an atexit hook rather than a static destructor so that the order is explicit;
  // if the process dies instead, PR_SET_PDEATHSIG kills the server and the next test binary's
  // TempDir sweep removes its files.
  static std::mutex mutex;
  static Server* server = nullptr;
  static std::optional<FixtureError> failure;
  std::lock_guard lock(mutex);
  if (server != nullptr) return server;
  if (failure) return Unexpected{*failure};
  auto started = Server::Start(options);
  if (!started.ok()) {
    failure = started.error();
    return Unexpected{*failure};
  }
  server = std::move(started).value().release();
  std::atexit([] { delete server; });
  return server;
}

}  // namespace

FixtureResult<ZooKeeperServer*> SharedZooKeeper() {
  return StartOnce<ZooKeeperServer>(ZooKeeperOptions{});
}

FixtureResult<EtcdServer*> SharedEtcd() { return StartOnce<EtcdServer>(EtcdOptions{}); }

FixtureResult<RedisServer*> SharedRedis() { return StartOnce<RedisServer>(RedisOptions{}); }

std::string UniquePath(const std::string& label) {
  static std::atomic<int> counter{0};
  return "/" + label + "-" + std::to_string(++counter);
}

}  // namespace zk2etcd::testing
