// A real ZooKeeper 3.8 server (Debian's package, run as a plain JVM process) for integration
// tests: standalone, on a free loopback port, with its data in a temporary directory.
//
// The server can be killed with SIGKILL and restarted on the same port and data directory,
// paused (SIGSTOP) and resumed. Setup helpers use the official C client (libzookeeper-mt), which
// is independent of zk2etcd's own client. Not thread-safe: one test thread drives a server.
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "testing/process.h"
#include "testing/temp_dir.h"

namespace zk2etcd::testing {

struct ZooKeeperOptions {
  // ZooKeeper checks session expiry once per tick; a short tick makes expiry tests quick.
  int tick_ms = 200;
  int min_session_timeout_ms = 1000;
  int max_session_timeout_ms = 60000;
  // The JVM's heap limit (-Xmx): 1 GiB holds a few hundred thousand Dubbo nodes; a million
  // needs about 4 GiB or the server spends its time collecting garbage.
  std::string max_heap = "1g";
  // Starts the JVM with zookeeper.extendedTypesEnabled=true, which TTL nodes need (ZooKeeper's
  // default is off: TTL creates then fail with Unimplemented).
  bool extended_types = false;
  std::chrono::milliseconds start_timeout = std::chrono::seconds(60);
};

class ZooKeeperServer {
 public:
  static FixtureResult<std::unique_ptr<ZooKeeperServer>> Start(ZooKeeperOptions options = {});
  ~ZooKeeperServer();

  int port() const { return port_; }
  // "127.0.0.1:<port>", a connection string for clients.
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  const std::string& data_dir() const { return data_dir_; }
  const std::string& log_path() const { return log_path_; }

  void Kill9();
  // Starts the server again on the same port and data directory and waits until it serves.
  // REQUIRES: not running (after Kill9 or Stop).
  FixtureResult<void> Restart();
  void Stop();
  void Pause();
  void Resume();
  bool running() const { return process_.running(); }
  // Answers `srvr` as a serving standalone server.
  bool IsServing() const;

  // Creates `path` (parents must exist) with `data`, readable and writable only by the digest
  // identity user:password, through a C-client session that authenticated as it.
  FixtureResult<void> CreateDigestProtectedNode(const std::string& path, const std::string& data,
                                                const std::string& user,
                                                const std::string& password);

 private:
  ZooKeeperServer(ZooKeeperOptions options, TempDir dir);
  FixtureResult<void> Launch();

  ZooKeeperOptions options_;
  TempDir dir_;
  std::string data_dir_;
  std::string log_path_;
  int port_ = 0;
  ChildProcess process_;
};

}  // namespace zk2etcd::testing
