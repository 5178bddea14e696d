#include "cli/runtime.h"

#include <unistd.h>

#include <algorithm>
#include <future>
#include <memory>
#include <thread>

#include "cli/config_file.h"
#include "common/backoff.h"

namespace zk2etcd::cli {

namespace {

// Checks a new session with a read of "/"; gives up (nullopt) as soon as `stop` is set, so that a
// SIGTERM does not wait for servers that do not answer (the read itself waits up to the session
// timeout for a connection).
std::optional<zk::ZkResult<zk::ExistsReply>> ProbeUnlessStopped(zk::ZkClient& client,
                                                                const std::atomic<bool>& stop) {
  auto reply = std::make_shared<std::promise<zk::ZkResult<zk::ExistsReply>>>();
  auto answered = reply->get_future();
  client.Exists("/", /*watch=*/false, [reply](zk::ZkResult<zk::ExistsReply> result) {
    reply->set_value(std::move(result));
  });
  while (answered.wait_for(std::chrono::milliseconds(50)) != std::future_status::ready) {
    if (stop.load()) return std::nullopt;
  }
  return answered.get();
}

}  // namespace

bool WaitToRetry(std::chrono::milliseconds delay,
                 std::optional<std::chrono::steady_clock::time_point> deadline,
                 const std::atomic<bool>& stop) {
  const auto wake = std::chrono::steady_clock::now() + delay;
  if (deadline && wake > *deadline) return false;
  while (std::chrono::steady_clock::now() < wake && !stop.load()) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return !stop.load();
}

ConnectRetry::ConnectRetry(ops::Logger& logger, std::string name)
    : logger_(logger),
      name_(std::move(name)),
      failures_(ops::FailureLog::Wording{name_ + " unreachable; retrying",
                                         name_ + " still unreachable; retrying", ""},
                std::chrono::minutes(1)) {}

bool ConnectRetry::AfterFailure(const std::string& error,
                                std::optional<std::chrono::steady_clock::time_point> deadline,
                                const std::atomic<bool>& stop) {
  ++attempts_;
  std::chrono::milliseconds delay = backoff_.Next();
  if (deadline) {
    // A last attempt starts while some of the deadline is left, so that a server that answers
    // just before it is still used; with less than that left, the caller gives up (unlogged:
    // the caller says why).
    constexpr std::chrono::milliseconds kLastAttempt{200};
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        *deadline - std::chrono::steady_clock::now());
    if (left < kLastAttempt) return false;
    delay = std::min(delay, left - kLastAttempt / 2);
  }
  const auto line = failures_.OnFailure(logger_.clock().Now(), error);
  if (line && attempts_ > 1) {
    logger_.Log(line->level, line->message,
                {{"attempt", attempts_},
                 {"error", error},
                 {"unreachable_s", line->failing_s},
                 {"retry_in_ms", delay.count()}});
  } else {
    logger_.Log(line ? line->level : ops::LogLevel::kDebug, name_ + " unreachable; retrying",
                {{"attempt", attempts_}, {"error", error}, {"retry_in_ms", delay.count()}});
  }
  return WaitToRetry(delay, deadline, stop);
}

std::string Hostname() {
  char host[256] = {};
  if (gethostname(host, sizeof(host) - 1) != 0) return "";
  return host;
}

Result<std::unique_ptr<ops::Logger>, std::string> MakeLogger(const LogSettings& settings,
                                                             const Clock& clock) {
  std::shared_ptr<ops::LogSink> sink = std::make_shared<ops::StderrLogSink>();
  if (!settings.file.empty()) {
    auto file = ops::RotatingFileLogSink::Open(settings.file, settings.file_max_bytes,
                                               settings.file_max_backups);
    if (!file.ok()) return Unexpected{"--log-file: " + file.error()};
    sink = std::move(file).value();
  }
  return std::make_unique<ops::Logger>(std::move(sink), settings.format, settings.level, clock);
}

Result<std::unique_ptr<ops::Logger>, std::string> MakeLogger(const Config& config,
                                                             const Clock& clock) {
  return MakeLogger(LogSettings{config.log_level, config.log_format, config.log_file,
                                config.log_file_max_bytes, config.log_file_max_backups},
                    clock);
}

Result<std::unique_ptr<etcd::EtcdClient>, std::string> ConnectEtcd(
    const Config& config, ops::Logger& logger, const Clock& clock,
    std::optional<std::chrono::steady_clock::time_point> deadline, const std::atomic<bool>& stop,
    EtcdCheck check) {
  return ConnectEtcd(config.etcd, "etcd", logger, clock, deadline, stop, check);
}

namespace {

void LogReachable(ops::Logger& logger, const std::string& label,
                  const etcd::StatusResponse& status) {
  logger.Info(
      label + " reachable",
      {{"endpoint", status.endpoint}, {"version", status.version}, {"revision", status.revision}});
}

}  // namespace

Result<std::unique_ptr<etcd::EtcdClient>, std::string> ConnectEtcd(
    const etcd::GrpcEtcdClientOptions& etcd_options, std::string_view name, ops::Logger& logger,
    const Clock& clock, std::optional<std::chrono::steady_clock::time_point> deadline,
    const std::atomic<bool>& stop, EtcdCheck check) {
  const std::string label(name);
  if (etcd_options.dial_timeout.count() <= 0) check = EtcdCheck::kAnswered;
  ConnectRetry retry(logger, label);
  while (true) {
    etcd::GrpcEtcdClientOptions options = etcd_options;
    options.logger = &logger;
    options.cancel_dial = &stop;
    if (deadline && options.dial_timeout.count() > 0) {
      // One attempt may not outlast the caller's deadline (diff's --connect-timeout).
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          *deadline - std::chrono::steady_clock::now());
      options.dial_timeout =
          std::max(std::chrono::milliseconds(100), std::min(options.dial_timeout, left));
    }
    auto client = etcd::NewGrpcEtcdClient(options, clock);
    if (client.ok() && check == EtcdCheck::kConnected) {
      (*client)->StatusAsync([&logger, label](etcd::EtcdResult<etcd::StatusResponse> status) {
        if (status.ok()) {
          LogReachable(logger, label, *status);
        } else if (status.error().code != etcd::ErrorCode::kCancelled) {
          logger.Warn(label + " connected but its Status call failed",
                      {{"error", status.error().ToString()}});
        }
      });
      return std::move(client).value();
    }
    if (client.ok()) {
      auto status = (*client)->Status();
      if (status.ok()) {
        LogReachable(logger, label, *status);
        return std::move(client).value();
      }
      client = Unexpected{status.error()};
    }
    const etcd::Error& error = client.error();
    if (stop.load()) return Unexpected{label + ": stopped while connecting"};
    if (error.code == etcd::ErrorCode::kInvalidArgument ||
        error.code == etcd::ErrorCode::kAuthFailed) {
      return Unexpected{label + ": " + error.ToString()};  // retrying cannot fix these
    }
    if (!retry.AfterFailure(error.ToString(), deadline, stop)) {
      return Unexpected{label + " unreachable: " + error.ToString()};
    }
  }
}

Result<void, std::string> WaitForOwnershipStore(
    ownership::OwnershipStore& store, std::string_view address, ops::Logger& logger,
    std::optional<std::chrono::steady_clock::time_point> deadline, const std::atomic<bool>& stop) {
  ConnectRetry retry(logger, "redis");
  while (true) {
    auto ping = store.Ping();
    if (ping.ok()) {
      logger.Info("redis reachable", {{"address", address}});
      return {};
    }
    if (ping.error().code == ownership::OwnershipErrorCode::kAuthFailed) {
      return Unexpected{"redis: " + ping.error().message};  // retrying cannot fix it
    }
    if (stop.load()) return Unexpected{std::string("redis: stopped while connecting")};
    if (!retry.AfterFailure(ping.error().message, deadline, stop)) {
      return Unexpected{"redis unreachable: " + ping.error().message};
    }
  }
}

Result<std::unique_ptr<zk::ZkClient>, std::string> ConnectZooKeeper(
    const Config& config, ops::Logger& logger, const Clock& clock,
    std::optional<std::chrono::steady_clock::time_point> deadline, const std::atomic<bool>& stop) {
  return ConnectZooKeeper(config.zookeeper, "zookeeper", logger, clock, deadline, stop);
}

Result<std::unique_ptr<zk::ZkClient>, std::string> ConnectZooKeeper(
    const zk::ZkClientOptions& zk_options, std::string_view name, ops::Logger& logger,
    const Clock& clock, std::optional<std::chrono::steady_clock::time_point> deadline,
    const std::atomic<bool>& stop) {
  const std::string label(name);
  ConnectRetry retry(logger, label);
  while (true) {
    zk::ZkClientOptions options = zk_options;
    options.clock = &clock;
    options.logger = &logger;
    if (deadline) {
      // A read waits for a connection up to the session timeout; keep it within the deadline.
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          *deadline - std::chrono::steady_clock::now());
      options.session_timeout =
          std::max(std::chrono::milliseconds(1000), std::min(options.session_timeout, left));
    }
    auto client = zk::NewAsioZkClient(options, {});
    std::string error;
    if (client.ok()) {
      auto answered = ProbeUnlessStopped(**client, stop);
      if (!answered) {
        (*client)->Close();  // answers the probe with a connection loss
        return Unexpected{label + ": stopped while connecting"};
      }
      auto& probe = *answered;
      if (probe.ok() && !probe->stat) {
        // "/" is the chroot: without it every path would be created (or read as absent) in a
        // tree that is not there.
        (*client)->Close();
        return Unexpected{label + ": the chroot " + ChrootOf(options.connect_string) +
                          " of the connect string does not exist on that ensemble (create it, "
                          "or fix the connect string)"};
      }
      if (probe.ok()) {
        const zk::SessionInfo session = (*client)->session();
        logger.Info(label + " reachable",
                    {{"server", session.server}, {"session_id", session.session_id}});
        return std::move(client).value();
      }
      error = probe.error().ToString();
      if (probe.error().code == zk::ZkErrorCode::kAuthFailed) {
        return Unexpected{label + ": " + error};
      }
      (*client)->Close();
    } else {
      error = client.error().ToString();
      if (client.error().code == zk::ZkErrorCode::kInvalidArgument) {
        return Unexpected{label + ": " + error};
      }
    }
    if (!retry.AfterFailure(error, deadline, stop)) {
      return Unexpected{label + " unreachable: " + error};
    }
  }
}

void ReloadConfigFile(
    const std::string& config_file, const FlagSet& flag_set, ops::Logger& logger,
    const std::function<void(const std::string& name, const std::string& value)>& apply) {
  if (config_file.empty()) {
    logger.Warn("SIGHUP ignored: no --config file");
    return;
  }
  auto values = LoadConfigFile(config_file);
  if (!values.ok()) {
    logger.Error("SIGHUP: cannot reload the configuration", {{"error", values.error()}});
    return;
  }
  for (const auto& [name, value] : *values) {
    if (flag_set.WasSet(name)) continue;
    if (name == "log-level") {
      if (auto level = ops::ParseLogLevel(value); !level.ok()) {
        logger.Error("SIGHUP: invalid log-level", {{"error", level.error()}});
      } else if (*level != logger.level()) {
        logger.SetLevel(*level);
        logger.Warn("SIGHUP: log level changed", {{"level", value}});
      }
    } else if (apply) {
      apply(name, value);
    }
  }
  // A warning, as the lines above, so that it shows at any level: the operator sees the signal
  // taken even when nothing changed.
  logger.Warn("SIGHUP: configuration file read", {{"file", config_file}});
}

}  // namespace zk2etcd::cli
