// What the commands (`sync`, `diff`, `etcd2etcd`) need at run time besides the engine: the logger,
// and clients that are retried with backoff until they connect (forever, or until a deadline) while
// saying so in the log. Not thread-safe; used by the command's main thread.
#pragma once

#include <atomic>
#include <chrono>
#include <csignal>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "cli/config.h"
#include "common/backoff.h"
#include "common/clock.h"
#include "etcd/etcd_client.h"
#include "etcd/grpc_etcd_client.h"
#include "ops/failure_log.h"
#include "ops/log.h"
#include "zk/zk_client.h"

namespace zk2etcd::cli {

// This machine's hostname (a Kubernetes pod's name), empty when unknown: the default election
// identity (ElectionIdentity in config.h).
std::string Hostname();

// Where and how a command logs (the --log-* flags).
struct LogSettings {
  ops::LogLevel level = ops::LogLevel::kInfo;
  ops::LogFormat format = ops::LogFormat::kJson;
  std::string file;  // empty: stderr
  uint64_t file_max_bytes = 0;
  int file_max_backups = 0;
};

// Logs to stderr, or to --log-file (rotated); fails when the file cannot be opened.
Result<std::unique_ptr<ops::Logger>, std::string> MakeLogger(const LogSettings& settings,
                                                             const Clock& clock);
Result<std::unique_ptr<ops::Logger>, std::string> MakeLogger(const Config& config,
                                                             const Clock& clock);

// Connection attempts at start: 500 ms, then 1 s apart, without jitter, so that a server that
// comes back (or starts after this process) is used within about a second of answering.
inline constexpr BackoffOptions kConnectBackoff{.initial = std::chrono::milliseconds(500),
                                                .max = std::chrono::milliseconds(1000),
                                                .multiplier = 2.0};

// The retries of one server's connection at start: waits kConnectBackoff's delays between
// attempts, and logs a run of failed attempts as ops::FailureLog does: "<name> unreachable;
// retrying" (a warning: attempt, error, retry_in_ms) at the first, "<name> still unreachable;
// retrying" (also unreachable_s) at most once a minute after it, and each other attempt as the
// first line at debug level (the minute on the logger's clock). Not thread-safe.
class ConnectRetry {
 public:
  // `name` names the server in the lines ("etcd", "target zookeeper", ...).
  ConnectRetry(ops::Logger& logger, std::string name);

  // After a failed attempt: logs it and sleeps until the next. False when `stop` is set or less
  // than 200 ms of `deadline` is left (then nothing is logged): the caller gives up. The wait
  // is cut so that the last attempt starts 100 ms before the deadline.
  bool AfterFailure(const std::string& error,
                    std::optional<std::chrono::steady_clock::time_point> deadline,
                    const std::atomic<bool>& stop);

 private:
  ops::Logger& logger_;
  const std::string name_;
  Backoff backoff_{kConnectBackoff};
  ops::FailureLog failures_;
  int attempts_ = 0;
};

// Sleeps up to `delay`, waking early when `stop` is set; false when `stop` is set or the
// deadline would pass before the next attempt.
bool WaitToRetry(std::chrono::milliseconds delay,
                 std::optional<std::chrono::steady_clock::time_point> deadline,
                 const std::atomic<bool>& stop);

// When ConnectEtcd counts a cluster as reachable.
enum class EtcdCheck {
  // Its Status call answered (a one-shot command reports what it finds).
  kAnswered,
  // A connection is up (the client's dial waited for it); the Status call goes on while the
  // caller starts, and its answer is logged when it comes: a long-running command starts a round
  // trip sooner. As kAnswered when the options' dial_timeout is 0 (the client does not dial).
  kConnected,
};

// Dials an etcd cluster with `options` (the logger is set here) until it is reachable (`check`),
// `deadline` passes (nullopt: never) or `stop` is set. Log lines and errors call the cluster
// `name` ("etcd", "source etcd", ...): "<name> reachable" (with its version),
// "<name> unreachable; retrying". Credentials refused and invalid options are not retried. An
// attempt's dial timeout is cut to what is left before `deadline`. With kConnected, `logger` must
// outlive the client.
Result<std::unique_ptr<etcd::EtcdClient>, std::string> ConnectEtcd(
    const etcd::GrpcEtcdClientOptions& options, std::string_view name, ops::Logger& logger,
    const Clock& clock, std::optional<std::chrono::steady_clock::time_point> deadline,
    const std::atomic<bool>& stop, EtcdCheck check = EtcdCheck::kAnswered);
// The zk2etcd job's etcd (Config::etcd), named "etcd".
Result<std::unique_ptr<etcd::EtcdClient>, std::string> ConnectEtcd(
    const Config& config, ops::Logger& logger, const Clock& clock,
    std::optional<std::chrono::steady_clock::time_point> deadline, const std::atomic<bool>& stop,
    EtcdCheck check = EtcdCheck::kAnswered);

// Pings the ownership store until it answers ("redis reachable", with `address`), `deadline`
// passes or `stop` is set, retrying as ConnectRetry says ("redis unreachable; retrying"). For a
// one-shot command whose report rests on the store's records (diff): without them, the keys that
// only the store records would read as foreign or in conflict.
Result<void, std::string> WaitForOwnershipStore(
    ownership::OwnershipStore& store, std::string_view address, ops::Logger& logger,
    std::optional<std::chrono::steady_clock::time_point> deadline, const std::atomic<bool>& stop);

// Opens a ZooKeeper session with `options` (clock and logger set here) and checks it with a
// read, retrying likewise; log lines and errors call the ensemble `name` ("zookeeper", "source
// zookeeper", ...). Refused credentials and invalid options are not retried.
Result<std::unique_ptr<zk::ZkClient>, std::string> ConnectZooKeeper(
    const zk::ZkClientOptions& options, std::string_view name, ops::Logger& logger,
    const Clock& clock, std::optional<std::chrono::steady_clock::time_point> deadline,
    const std::atomic<bool>& stop);
// The zk2etcd job's ensemble (Config::zookeeper), named "zookeeper".
Result<std::unique_ptr<zk::ZkClient>, std::string> ConnectZooKeeper(
    const Config& config, ops::Logger& logger, const Clock& clock,
    std::optional<std::chrono::steady_clock::time_point> deadline, const std::atomic<bool>& stop);

// SignalWaiter's on_stop (signals.h) for a command that runs one service: logs "signal received;
// stopping", sets `stop` (which ends a connect loop) and stops the service if it runs yet.
// REQUIRES: `logger`, `stop` and `service` outlive the handler.
template <typename Service>
std::function<void(int)> StopOnSignal(ops::Logger& logger, std::atomic<bool>& stop,
                                      std::atomic<Service*>& service) {
  return [&logger, &stop, &service](int signal) {
    logger.Info("signal received; stopping",
                {{"signal", signal == SIGTERM ? "SIGTERM" : "SIGINT"}});
    stop.store(true);
    if (Service* running = service.load()) running->Stop();
  };
}

// SIGHUP's reload: reads `config_file` again and applies each of its entries that no flag or
// environment variable set (flag_set.WasSet): log-level to `logger`, any other to `apply` (may be
// empty), which logs what it changes. Without a config file, or when it cannot be read, logs why
// and changes nothing. On the signal thread: `apply` must be thread-safe.
void ReloadConfigFile(
    const std::string& config_file, const FlagSet& flag_set, ops::Logger& logger,
    const std::function<void(const std::string& name, const std::string& value)>& apply);

}  // namespace zk2etcd::cli
