// `zk2etcd sync`: wires the production clients, the engine and the operational endpoints
// together, and runs until SIGTERM or SIGINT. SIGHUP re-reads --config.
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <thread>

#include "cli/cli.h"
#include "cli/config.h"
#include "cli/config_file.h"
#include "cli/operations.h"
#include "cli/runtime.h"
#include "cli/signals.h"
#include "cli/subcommand.h"
#include "cli/zk2etcd_job.h"
#include "common/strings.h"
#include "ownership/redis_ownership_store.h"
#include "sync/sync_service.h"
#include "zk/preconnecting_client_factory.h"

namespace zk2etcd::cli {

namespace {

struct SyncFlags {
  CommonFlags common;
  std::chrono::nanoseconds fullsync_interval{};
  bool leader_elect = true;
  std::chrono::nanoseconds lease_duration{};
  std::string election_name;
  std::string election_identity;
  std::string watch_mode;
  std::string http_addr;
  std::chrono::nanoseconds shutdown_timeout{};
};

int RunSync(const SyncFlags& flags, FlagSet& flag_set, std::ostream& err) {
  auto validated = ConfigFromFlags(flag_set, flags.common.config, "zk2etcd sync", err,
                                   [&] { return ValidateCommonFlags(flags.common); });
  if (!validated) return kExitUsage;
  for (const auto& [name, value, zero_ok] :
       {std::tuple{"fullsync-interval", flags.fullsync_interval, true},
        std::tuple{"shutdown-timeout", flags.shutdown_timeout, false}}) {
    if (auto ok = RequireDuration(name, value, zero_ok); !ok.ok()) {
      err << "zk2etcd sync: " << ok.error() << "\n";
      return kExitUsage;
    }
  }
  if (flags.lease_duration < std::chrono::seconds(2)) {
    err << "zk2etcd sync: --leader-elect-lease-duration must be at least 2s, got "
        << FormatGoDuration(flags.lease_duration) << "\n";
    return kExitUsage;
  }
  if (auto name = core::ValidateZkPath(flags.election_name, "--leader-elect-name"); !name.ok()) {
    err << "zk2etcd sync: " << name.error() << "\n";
    return kExitUsage;
  }
  auto identity = ElectionIdentity(flags.election_identity, Hostname());
  if (flags.leader_elect && !identity.ok()) {
    err << "zk2etcd sync: " << identity.error() << "\n";
    return kExitUsage;
  }
  auto watch_mode = connectors::ParseWatchMode(flags.watch_mode);
  if (!watch_mode.ok()) {
    err << "zk2etcd sync: --zookeeper-watch-mode: " << watch_mode.error() << "\n";
    return kExitUsage;
  }
  Config config = std::move(*validated);
  for (const std::string& prefix : config.scope.prefixes()) {
    const std::string synced = config.layout.KeyFor(prefix);
    if (flags.leader_elect && (core::IsSameOrBelow(flags.election_name, synced) ||
                               core::IsSameOrBelow(synced, flags.election_name))) {
      err << "zk2etcd sync: --leader-elect-name \"" << flags.election_name
          << "\" overlaps the synced etcd keys under \"" << synced << "\"\n";
      return kExitUsage;
    }
  }
  SystemClock clock;
  auto made_logger = MakeLogger(config, clock);
  if (!made_logger.ok()) {
    err << "zk2etcd sync: " << made_logger.error() << "\n";
    return kExitUsage;
  }
  std::unique_ptr<ops::Logger> logger = std::move(made_logger).value();

  SignalWaiter signals;  // before any thread starts
  auto operations = SyncOperations::Create(*logger);
  if (!operations.ok()) {
    err << "zk2etcd sync: " << operations.error() << "\n";
    return kExitFailure;
  }
  if (identity.ok()) flag_set.SetDerived("leader-elect-identity", *identity);
  (*operations)->SetConfigDump(flag_set.Dump());
  if (auto served = (*operations)->Serve(flags.http_addr); !served.ok()) {
    err << "zk2etcd sync: --http-addr: " << served.error() << "\n";
    return kExitUsage;
  }

  std::atomic<bool> stop{false};
  std::atomic<sync::SyncService*> service_ptr{nullptr};
  ops::Logger* log = logger.get();
  // The interval SIGHUP set last (it may come before the service exists, which then takes it).
  std::atomic<int64_t> fullsync_ns{flags.fullsync_interval.count()};
  signals.Start(StopOnSignal(*log, stop, service_ptr), [&] {
    // SIGHUP: the file's log-level and fullsync-interval, unless a flag or variable set them.
    ReloadConfigFile(flags.common.config, flag_set, *log,
                     [&](const std::string& name, const std::string& value) {
                       if (name != "fullsync-interval") return;
                       auto interval = ParseGoDuration(value);
                       if (interval.ok() && interval->count() == fullsync_ns.load()) return;
                       if (interval.ok() && interval->count() >= 0) {
                         fullsync_ns.store(interval->count());
                         if (auto* service = service_ptr.load()) {
                           service->SetFullSyncInterval(*interval);
                         }
                         (*operations)->SetConfigValue(name, value);
                         log->Warn("SIGHUP: full sync interval changed", {{"interval", value}});
                       } else {
                         log->Error("SIGHUP: invalid fullsync-interval", {{"value", value}});
                       }
                     });
  });

  logger->Info("zk2etcd sync starting",
               {{"zookeeper", config.zookeeper.connect_string},
                {"prefixes", flags.common.zookeeper_prefix},
                {"excludes", flags.common.zookeeper_exclude_prefix},
                {"etcd", flags.common.etcd_servers},
                {"etcd_key_prefix", config.layout.destination_prefix()},
                {"ownership", config.redis ? "etcd meta records + redis" : "etcd meta records"},
                {"fullsync_interval", FormatGoDuration(flags.fullsync_interval)},
                {"leader_elect", flags.leader_elect},
                {"adopt", sync::AdoptPolicyName(config.adopt)},
                {"leader_elect_identity", identity.ok() ? *identity : ""},
                {"concurrent", config.concurrent}});
  WarnAboutIgnoredExcludes(config.scope, {}, ExcludesNotChosen(flags.common), *logger);
  logger->Info("http server listening",
               {{"address", flags.http_addr}, {"port", (*operations)->port()}});

  Zk2EtcdJobOptions job_options;
  job_options.watch_mode = *watch_mode;
  if (flags.leader_elect) {
    job_options.election = connectors::EtcdElectionOptions{
        flags.election_name, *identity,
        std::chrono::duration_cast<std::chrono::seconds>(flags.lease_duration)};
  }
  // The ZooKeeper session opens, and the source with it, while etcd is dialled: the watches and
  // the walk's first requests go behind the session's handshake, so that the source is open when
  // etcd is. Through a 30 ms round trip the reconciliation started 0.036 s after the start
  // instead of 0.066 s (docs/BENCHMARKS.md, "The opening behind the session's handshake").
  auto zk_sessions = std::make_unique<zk::PreconnectingZkClientFactory>(
      NewZooKeeperSessions(config, *logger, clock, (*operations)->zk_observer()));
  zk_sessions->Preconnect();
  std::unique_ptr<etcd::EtcdClient> etcd;  // outlives the job: its sink and election use it
  Zk2EtcdJob job = MakeZk2EtcdSourceSide(config, std::move(zk_sessions), *logger, job_options);
  job.source->OpenAhead();
  config.etcd.observer = (*operations)->etcd_observer();
  // A running sync needs etcd connected, not its Status first (a round trip at every start).
  (*operations)->SetStarting("connecting to etcd");
  auto connected = ConnectEtcd(config, *logger, clock, std::nullopt, stop, EtcdCheck::kConnected);
  if (!connected.ok()) {
    if (stop.load()) {
      logger->Info("zk2etcd sync stopped", {{"before", "etcd connected"}});
      return kExitOk;
    }
    logger->Error("cannot start", {{"error", connected.error()}});
    return kExitFailure;
  }
  etcd = std::move(connected).value();
  (*operations)->SetStarting("");
  std::unique_ptr<ownership::RedisOwnershipStore> redis;
  if (config.redis) redis = ownership::RedisOwnershipStore::Create(*config.redis).value();
  AddEtcdSide(job, config, *etcd, *logger, job_options);

  sync::FencedWriterOptions writer_options;
  // At most as many transactions in flight as the etcd client sends at once (--concurrent, at
  // most 64); within that the writer sizes its window by bandwidth-delay: 8 near etcd, more
  // when it is far (docs/BENCHMARKS.md, weak network).
  writer_options.max_txns_in_flight = std::min<size_t>(config.concurrent, 64);
  writer_options.logger = logger.get();
  SyncOperations* ops = operations->get();
  // Transactions are counted by the etcd client's observer (zk2etcd_etcd_op_total{op="txn"}),
  // once each: the writer's own count made it twice.
  sync::FencedWriter writer(*job.sink, writer_options, clock, nullptr,
                            [ops](const core::SinkWrite& /*write*/, const core::SinkError& error) {
                              ops->OnRefusedWrite(error);
                            });

  sync::SyncServiceOptions options;
  options.fullsync_interval = flags.fullsync_interval;
  options.concurrent = config.concurrent;
  options.adopt = config.adopt;
  options.drain_timeout =
      std::chrono::duration_cast<std::chrono::milliseconds>(flags.shutdown_timeout);
  // Past the drain, an etcd that does not answer must not hold the exit up (request timeouts and
  // their retries: 39 s with the defaults).
  options.abandon_calls = [&etcd] { etcd->Abandon(); };
  const bool event_log = config.event_log;
  options.on_change = [ops, log, event_log](const sync::AppliedChange& change) {
    ops->OnChange(change);
    if (!event_log) return;
    log->Info("etcd mutation",
              {{"op", change.type == core::SinkWrite::Type::kPut ? "put" : "delete"},
               {"result", change.outcome ? core::WriteOutcomeName(*change.outcome) : "failed"},
               {"key", change.key},
               {"zxid", change.version},
               {"trace_id", change.trace_id},
               {"delay_ms", std::chrono::duration<double, std::milli>(change.delay).count()},
               {"read_ms", std::chrono::duration<double, std::milli>(change.read_delay).count()}});
  };
  options.on_reconcile = [ops, &clock](const auto& result) {
    ops->OnReconcile(result, clock.WallNow());
  };
  sync::SyncService service(config.scope, *job.source, *job.sink, writer, redis.get(),
                            job.election.get(), *logger, clock, options);
  ops->Attach(&service, &writer);
  service_ptr.store(&service);
  service.SetFullSyncInterval(std::chrono::nanoseconds(fullsync_ns.load()));
  if (stop.load()) service.Stop();
  auto result = service.Run();
  service_ptr.store(nullptr);
  ops->Stop();
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
  return {
      "sync", "sync data from zookeeper to etcd: a full sync, then real-time incremental sync",
      [](FlagSet& flags) -> CommandRunner {
        auto values = std::make_shared<SyncFlags>();
        AddCommonFlags(flags, &values->common);
        flags.AddDuration("fullsync-interval", &values->fullsync_interval, std::chrono::minutes(5),
                          "the interval of full sync, set to 0s to disable it");
        flags.AddString("zookeeper-watch-mode", &values->watch_mode, "auto",
                        "auto: persistent recursive watches (ZooKeeper 3.6+), else one-shot "
                        "watches on every node; persistent; classic");
        flags.AddBool("leader-elect", &values->leader_elect, true,
                      "elect a leader among replicas through etcd; only the leader writes");
        flags.AddDuration("leader-elect-lease-duration", &values->lease_duration,
                          std::chrono::seconds(5),
                          "leadership lease: a standby takes over within it after the "
                          "leader dies");
        flags.AddString("leader-elect-name", &values->election_name, "/zk2etcd/election",
                        "the election's key prefix in etcd (outside the synced keys)");
        flags.AddString("leader-elect-identity", &values->election_identity, "",
                        "this replica in the election, stable across its restarts; a "
                        "restart takes over its own stale leadership at once (default: the "
                        "hostname, a Kubernetes pod's name)");
        flags.AddString("http-addr", &values->http_addr, ":80",
                        "listen address of /metrics, /healthz, /readyz, /log and /debug/config");
        flags.AddDuration("shutdown-timeout", &values->shutdown_timeout, std::chrono::seconds(10),
                          "on SIGTERM, how long queued writes may take to finish");
        FlagSet* set = &flags;
        return
            [values, set](std::ostream&, std::ostream& err) { return RunSync(*values, *set, err); };
      }};
}

}  // namespace zk2etcd::cli
