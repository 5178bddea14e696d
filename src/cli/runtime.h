// What `sync` and `diff` need at run time besides the engine: the logger, and clients that are
// retried with backoff until they connect (forever, or until a deadline) while saying so in the
// log. Not thread-safe; used by the command's main thread.
#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <optional>
#include <string>

#include "cli/config.h"
#include "common/clock.h"
#include "etcd/etcd_client.h"
#include "ops/log.h"
#include "zk/zk_client.h"

namespace zk2etcd::cli {

// Logs to stderr, or to --log-file (rotated); fails when the file cannot be opened.
Result<std::unique_ptr<ops::Logger>, std::string> MakeLogger(const Config& config,
                                                             const Clock& clock);

// Dials etcd until it answers, `deadline` passes (nullopt: never) or `stop` is set.
Result<std::unique_ptr<etcd::EtcdClient>, std::string> ConnectEtcd(
    const Config& config, ops::Logger& logger, const Clock& clock,
    std::optional<std::chrono::steady_clock::time_point> deadline,
    const std::atomic<bool>& stop);

// Opens a ZooKeeper session and checks it with a read, retrying likewise.
Result<std::unique_ptr<zk::ZkClient>, std::string> ConnectZooKeeper(
    const Config& config, ops::Logger& logger, const Clock& clock,
    std::optional<std::chrono::steady_clock::time_point> deadline,
    const std::atomic<bool>& stop);

}  // namespace zk2etcd::cli
