// `zk2etcd sync`: wires the production clients into the sync engine and runs it until SIGTERM or
// SIGINT.
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <thread>

#include "cli/cli.h"
#include "cli/config.h"
#include "cli/runtime.h"
#include "cli/subcommand.h"
#include "common/strings.h"
#include "ownership/redis_ownership_store.h"
#include "sync/sync_service.h"

namespace zk2etcd::cli {

namespace {

struct SyncFlags {
  CommonFlags common;
  std::chrono::nanoseconds fullsync_interval{};
  bool leader_elect = true;
  std::chrono::nanoseconds lease_duration{};
  std::string election_name;
  std::string watch_mode;
};

std::string Identity() {
  char host[256] = {};
  gethostname(host, sizeof(host) - 1);
  return std::string(host) + "/" + std::to_string(getpid());
}

// Blocks SIGINT and SIGTERM in every thread started from now on, and lets one thread wait for
// them: the only safe way to react to signals in a multi-threaded process.
class SignalWaiter {
 public:
  SignalWaiter() {
    sigemptyset(&set_);
    sigaddset(&set_, SIGINT);
    sigaddset(&set_, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set_, &previous_);
  }
  ~SignalWaiter() {
    if (thread_.joinable()) {
      pthread_kill(thread_.native_handle(), SIGTERM);  // wakes the sigwait if no signal came
      thread_.join();
    }
    pthread_sigmask(SIG_SETMASK, &previous_, nullptr);
  }
  // Calls `on_signal` (on the waiter thread) when a signal arrives.
  void Start(std::function<void(int)> on_signal) {
    thread_ = std::thread([this, on_signal = std::move(on_signal)] {
      int signal = 0;
      if (sigwait(&set_, &signal) == 0 && !done_.load()) on_signal(signal);
    });
  }
  void Done() { done_.store(true); }

 private:
  sigset_t set_{};
  sigset_t previous_{};
  std::atomic<bool> done_{false};
  std::thread thread_;
};

int RunSync(const SyncFlags& flags, std::ostream& err) {
  auto validated = ValidateCommonFlags(flags.common);
  if (!validated.ok()) {
    err << "zk2etcd sync: " << validated.error() << "\n";
    return kExitUsage;
  }
  if (auto ok = RequireDuration("fullsync-interval", flags.fullsync_interval, true); !ok.ok()) {
    err << "zk2etcd sync: " << ok.error() << "\n";
    return kExitUsage;
  }
  if (flags.lease_duration < std::chrono::seconds(2)) {
    err << "zk2etcd sync: --leader-elect-lease-duration must be at least 2s, got "
        << FormatGoDuration(flags.lease_duration) << "\n";
    return kExitUsage;
  }
  if (auto name = sync::ValidateZkPath(flags.election_name, "--leader-elect-name"); !name.ok()) {
    err << "zk2etcd sync: " << name.error() << "\n";
    return kExitUsage;
  }
  auto watch_mode = sync::ParseWatchMode(flags.watch_mode);
  if (!watch_mode.ok()) {
    err << "zk2etcd sync: --zookeeper-watch-mode: " << watch_mode.error() << "\n";
    return kExitUsage;
  }
  Config config = std::move(validated).value();
  for (const std::string& prefix : config.scope.prefixes()) {
    const std::string synced = config.layout.KeyFor(prefix);
    if (flags.leader_elect && (sync::IsSameOrBelow(flags.election_name, synced) ||
                               sync::IsSameOrBelow(synced, flags.election_name))) {
      err << "zk2etcd sync: --leader-elect-name \"" << flags.election_name
          << "\" overlaps the synced etcd keys under \"" << synced << "\"\n";
      return kExitUsage;
    }
  }
  SystemClock clock;
  std::unique_ptr<ops::Logger> logger = MakeLogger(config, clock);

  SignalWaiter signals;
  std::atomic<bool> stop{false};
  std::atomic<sync::SyncService*> service_ptr{nullptr};
  signals.Start([&](int signal) {
    logger->Info("signal received; stopping", {{"signal", signal == SIGTERM ? "SIGTERM" : "SIGINT"}});
    stop.store(true);
    if (auto* service = service_ptr.load()) service->Stop();
  });

  logger->Info("zk2etcd sync starting",
               {{"zookeeper", config.zookeeper.connect_string},
                {"prefixes", flags.common.zookeeper_prefix},
                {"excludes", flags.common.zookeeper_exclude_prefix},
                {"etcd", flags.common.etcd_servers},
                {"etcd_key_prefix", config.layout.destination_prefix()},
                {"ownership", config.redis ? "etcd meta records + redis" : "etcd meta records"},
                {"fullsync_interval", FormatGoDuration(flags.fullsync_interval)},
                {"concurrent", config.concurrent}});

  auto etcd = ConnectEtcd(config, *logger, clock, std::nullopt, stop);
  if (!etcd.ok()) {
    if (stop.load()) return kExitOk;
    logger->Error("cannot start", {{"error", etcd.error()}});
    return kExitFailure;
  }
  std::unique_ptr<ownership::RedisOwnershipStore> redis;
  if (config.redis) redis = ownership::RedisOwnershipStore::Create(*config.redis).value();

  zk::ZkClientOptions zk_options = config.zookeeper;
  zk_options.clock = &clock;
  zk_options.logger = logger.get();
  std::unique_ptr<zk::ZkClientFactory> zk_factory = zk::NewAsioZkClientFactory(zk_options);

  sync::FencedWriterOptions writer_options;
  writer_options.max_txns_in_flight = std::min<size_t>(config.concurrent, 64);
  sync::FencedWriter writer(**etcd, writer_options, clock);

  sync::SyncServiceOptions options;
  options.fullsync_interval = flags.fullsync_interval;
  options.watch_mode = *watch_mode;
  if (flags.leader_elect) {
    options.election = sync::ElectionOptions{
        flags.election_name, Identity(),
        std::chrono::duration_cast<std::chrono::seconds>(flags.lease_duration)};
  }
  options.concurrent = config.concurrent;
  if (config.event_log) {
    ops::Logger* log = logger.get();
    options.on_change = [log](const sync::AppliedChange& change) {
      log->Info("etcd mutation",
                {{"op", change.type == sync::FencedWrite::Type::kPut ? "put" : "delete"},
                 {"result", change.outcome ? sync::WriteOutcomeName(*change.outcome) : "failed"},
                 {"key", change.key},
                 {"zxid", change.zxid},
                 {"trace_id", change.trace_id},
                 {"delay_ms", std::chrono::duration<double, std::milli>(change.delay).count()}});
    };
  }
  sync::SyncService service(config.scope, config.layout, *zk_factory, **etcd, writer, redis.get(),
                            *logger, clock, options);
  service_ptr.store(&service);
  if (stop.load()) service.Stop();
  auto result = service.Run();
  service_ptr.store(nullptr);
  signals.Done();
  writer.Stop();
  if (!result.ok()) {
    logger->Error("zk2etcd sync failed", {{"error", result.error()}});
    return kExitFailure;
  }
  logger->Info("zk2etcd sync stopped");
  return kExitOk;
}

}  // namespace

Subcommand SyncCommand() {
  return {"sync",
          "sync data from zookeeper to etcd: a full sync, then real-time incremental sync",
          [](FlagSet& flags) -> CommandRunner {
            auto values = std::make_shared<SyncFlags>();
            AddCommonFlags(flags, &values->common);
            flags.AddDuration("fullsync-interval", &values->fullsync_interval,
                              std::chrono::minutes(5),
                              "the interval of full sync, set to 0s to disable it");
            flags.AddString("zookeeper-watch-mode", &values->watch_mode, "auto",
                            "auto: persistent recursive watches (ZooKeeper 3.6+), else one-shot "
                            "watches on every node; persistent; classic");
            flags.AddBool("leader-elect", &values->leader_elect, true,
                          "elect a leader among replicas through etcd; only the leader writes");
            flags.AddDuration("leader-elect-lease-duration", &values->lease_duration,
                              std::chrono::seconds(15),
                              "leadership lease: a standby takes over within it after the "
                              "leader dies");
            flags.AddString("leader-elect-name", &values->election_name, "/zk2etcd/election",
                            "the election's key prefix in etcd (outside the synced keys)");
            return [values](std::ostream&, std::ostream& err) { return RunSync(*values, err); };
          }};
}

}  // namespace zk2etcd::cli
