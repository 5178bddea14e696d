// A real Redis 7 server (Debian's redis-server) for integration tests, on a free loopback port
// with its data in a temporary directory. The append-only file is synced on every write, so data
// survives kill -9 and restart. Optionally protected by a password for the default user, and/or
// an ACL user. Not thread-safe: one test thread drives a server.
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "testing/process.h"
#include "testing/temp_dir.h"

namespace zk2etcd::testing {

struct RedisOptions {
  std::string password;       // requirepass for the default user; empty for none
  std::string acl_user;       // an extra ACL user with all permissions; empty for none
  std::string acl_password;
  std::chrono::milliseconds start_timeout = std::chrono::seconds(30);
};

class RedisServer {
 public:
  static FixtureResult<std::unique_ptr<RedisServer>> Start(RedisOptions options = {});
  ~RedisServer();

  int port() const { return port_; }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  const std::string& log_path() const { return log_path_; }

  void Kill9();
  // REQUIRES: not running.
  FixtureResult<void> Restart();
  void Stop();
  void Pause();
  void Resume();
  bool running() const { return process_.running(); }
  // Answers PING (or asks for authentication, which also means it serves).
  bool IsServing() const;

 private:
  RedisServer(RedisOptions options, TempDir dir);
  FixtureResult<void> Launch();

  RedisOptions options_;
  TempDir dir_;
  std::string log_path_;
  int port_ = 0;
  ChildProcess process_;
};

}  // namespace zk2etcd::testing
