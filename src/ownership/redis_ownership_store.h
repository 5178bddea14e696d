// RedisOwnershipStore: the Go zk2etcd's ownership layout in Redis (database 0, one string per
// etcd key, named by the key, holding its value), through hiredis.
//
// One connection, used under a mutex; batches are pipelined (all commands sent, then all replies
// read), so a lookup of thousands of keys costs one round trip per batch. A broken connection is
// dropped and re-opened by the next call. Thread-safe.
#pragma once

#include <chrono>
#include <memory>
#include <mutex>
#include <string>

#include "ownership/ownership_store.h"

struct redisContext;

namespace zk2etcd::ownership {

struct RedisOptions {
  std::string address;  // "host:port"
  std::string username;  // Redis 6+ ACL user; empty for the default user
  std::string password;  // empty for none
  std::chrono::milliseconds timeout{3000};
  // Commands per pipelined round trip.
  size_t batch_size = 1000;
};

class RedisOwnershipStore final : public OwnershipStore {
 public:
  // Validates the address; does not connect (the first call does).
  static Result<std::unique_ptr<RedisOwnershipStore>, std::string> Create(RedisOptions options);
  ~RedisOwnershipStore() override;

  OwnershipResult<std::vector<bool>> Lookup(const std::vector<std::string>& keys) override;
  OwnershipResult<void> Record(
      const std::vector<std::pair<std::string, std::string>>& key_values) override;
  OwnershipResult<void> Forget(const std::vector<std::string>& keys) override;
  OwnershipResult<void> Ping() override;

 private:
  RedisOwnershipStore(RedisOptions options, std::string host, int port);
  // REQUIRES: mutex_ held.
  OwnershipResult<void> EnsureConnected();
  // Sends `commands` pipelined and calls `on_reply(index, reply)` for each reply in order.
  // REQUIRES: mutex_ held.
  template <typename OnReply>
  OwnershipResult<void> Pipeline(const std::vector<std::vector<std::string>>& commands,
                                 OnReply on_reply);
  void Disconnect();

  const RedisOptions options_;
  const std::string host_;
  const int port_;
  std::mutex mutex_;
  redisContext* context_ = nullptr;  // guarded by mutex_
};

}  // namespace zk2etcd::ownership
