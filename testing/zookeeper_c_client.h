// A small synchronous wrapper of the official ZooKeeper C client (libzookeeper-mt), used by
// tests to set up and check ZooKeeper independently of zk2etcd's own client (an oracle), and by
// benchmarks as the reference client. Thread-safe as the C client is; one session per object.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "testing/process.h"

typedef struct _zhandle zhandle_t;

namespace zk2etcd::testing {

class ZooKeeperCClient {
 public:
  static FixtureResult<std::unique_ptr<ZooKeeperCClient>> Connect(
      const std::string& connect_string, std::chrono::milliseconds session_timeout);
  ~ZooKeeperCClient();
  ZooKeeperCClient(const ZooKeeperCClient&) = delete;
  ZooKeeperCClient& operator=(const ZooKeeperCClient&) = delete;

  FixtureResult<void> AddDigestAuth(const std::string& user, const std::string& password);
  // Creates a persistent node open to everyone (or, if `ephemeral`, an ephemeral one).
  FixtureResult<void> Create(const std::string& path, const std::string& data,
                             bool ephemeral = false);
  // Creates `path` and any missing ancestors (with empty data); an existing node is fine.
  FixtureResult<void> CreateRecursive(const std::string& path, const std::string& data);
  // Creates a node that only the authenticated creator may read or change.
  FixtureResult<void> CreateCreatorOnly(const std::string& path, const std::string& data);
  // Data of `path`, or nullopt if it does not exist.
  FixtureResult<std::optional<std::string>> Get(const std::string& path);
  FixtureResult<void> Set(const std::string& path, const std::string& data);
  // Deletes `path`; a missing node is fine.
  FixtureResult<void> Delete(const std::string& path);
  FixtureResult<std::vector<std::string>> Children(const std::string& path);
  // The session id, to compare across reconnects.
  int64_t session_id() const;
  zhandle_t* handle() const { return handle_; }

  struct SessionState;  // what the session watcher updates

 private:
  ZooKeeperCClient(zhandle_t* handle, std::unique_ptr<SessionState> state);
  FixtureResult<void> CreateWithAcl(const std::string& path, const std::string& data, int flags,
                                    bool creator_only);
  zhandle_t* handle_;
  // The watcher's context; outlives the handle (destroyed after zookeeper_close).
  std::unique_ptr<SessionState> state_;
};

}  // namespace zk2etcd::testing
