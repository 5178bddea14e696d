// `zk2etcd zk2zk`: hot migration between ZooKeeper ensembles.
//
//   sync  runs the zk2zk job (zk2zk_job.h) until SIGTERM or SIGINT: one sync::SyncService per
//         direction (forward; reverse with --reverse-ephemerals), each on its own thread with its
//         own FencedWriter, following one election (sync::SharedElection) with --leader-elect;
//         the endpoints of Zk2ZkOperations, the audit log, the progress line. SIGHUP re-reads
//         --config's log-level and fullsync-interval;
//   diff  compares each direction once (sync::Reconciler) and with --fix repairs the differences
//         through the job's fenced writes, never touching a node the job did not write. Exit
//         status: 0 in sync, 1 differences remain, 2 usage error, an ensemble unreachable for
//         --connect-timeout, or --fix while a sync of that --name runs.
#include <atomic>
#include <chrono>
#include <mutex>
#include <optional>
#include <sstream>
#include <thread>

#include "cli/audit_log.h"
#include "cli/cli.h"
#include "cli/config.h"
#include "cli/config_file.h"
#include "cli/diff_report.h"
#include "cli/runtime.h"
#include "cli/signals.h"
#include "cli/subcommand.h"
#include "cli/zk2zk_config.h"
#include "cli/zk2zk_job.h"
#include "cli/zk2zk_operations.h"
#include "common/backoff.h"
#include "common/periodic_task.h"
#include "common/strings.h"
#include "sync/fenced_writer.h"
#include "sync/reconciler.h"
#include "sync/sync_service.h"
#include "zk/asio_zk_client.h"

namespace zk2etcd::cli {

namespace {

constexpr std::string_view kSyncName = "zk2etcd zk2zk sync";
constexpr std::string_view kDiffName = "zk2etcd zk2zk diff";

// Parses the --config file and validates; prints the one-line error and returns nullopt.
std::optional<Zk2ZkConfig> Validated(const Zk2ZkFlags& flags, FlagSet& flag_set,
                                     Zk2ZkCommandKind command, std::string_view name,
                                     std::ostream& err) {
  return ConfigFromFlags(flag_set, flags.config, name, err,
                         [&] { return ValidateZk2ZkFlags(flags, command, Hostname()); });
}

// Both directions' services, stopped together (by a signal, or when one of them fails).
class Services {
 public:
  explicit Services(std::chrono::nanoseconds fullsync_interval) : interval_(fullsync_interval) {}
  void Set(sync::SyncService* forward, sync::SyncService* reverse) {
    std::lock_guard lock(mutex_);
    forward_ = forward;
    reverse_ = reverse;
    for (sync::SyncService* service : {forward_, reverse_}) {
      if (service != nullptr) service->SetFullSyncInterval(interval_);
    }
  }
  void Stop() {
    std::lock_guard lock(mutex_);
    StopCampaigningLocked();
    if (forward_ != nullptr) forward_->Stop();
    if (reverse_ != nullptr) reverse_->Stop();
  }
  // Neither campaigns again when the other, stopping or failing first, resigns their shared
  // election (SyncServiceOptions::on_leaving).
  void StopCampaigning() {
    std::lock_guard lock(mutex_);
    StopCampaigningLocked();
  }
  // Also for the services Set later (a SIGHUP may come while the command starts). False when
  // the interval is the one in use already.
  bool SetFullSyncInterval(std::chrono::nanoseconds interval) {
    std::lock_guard lock(mutex_);
    if (interval == interval_) return false;
    interval_ = interval;
    if (forward_ != nullptr) forward_->SetFullSyncInterval(interval);
    if (reverse_ != nullptr) reverse_->SetFullSyncInterval(interval);
    return true;
  }

 private:
  void StopCampaigningLocked() {
    for (sync::SyncService* service : {forward_, reverse_}) {
      if (service != nullptr) service->StopCampaigning();
    }
  }

  std::mutex mutex_;
  std::chrono::nanoseconds interval_;  // in use: the flag's, or the last SIGHUP's
  sync::SyncService* forward_ = nullptr;
  sync::SyncService* reverse_ = nullptr;
};

// Logs "progress" every `interval` (both ensembles' nodes, writes since the start) while the
// returned task lives.
std::unique_ptr<PeriodicTask> LogProgress(std::chrono::nanoseconds interval,
                                          const Zk2ZkOperations& operations, ops::Logger& logger) {
  return std::make_unique<PeriodicTask>(interval, [&operations, &logger] {
    const Zk2ZkProgress progress = operations.Progress();
    if (!progress.counted) return;  // no full sync yet (or a standby)
    logger.Info("progress", {{"source_nodes", progress.source_nodes},
                             {"target_nodes", progress.target_nodes},
                             {"target_ephemerals", progress.target_ephemerals},
                             {"writes", progress.forward_writes + progress.reverse_writes},
                             {"forward_writes", progress.forward_writes},
                             {"reverse_writes", progress.reverse_writes}});
  });
}

// Lists the whole scope of the source ensemble for the reverse copies' records (the forward
// source leaves those out), retrying until it works or `stop` is set.
bool LoadReverseOwnership(connectors::ZooKeeperSink& sink, ops::Logger& logger,
                          const std::atomic<bool>& stop) {
  Backoff backoff({.initial = std::chrono::milliseconds(500),
                   .max = std::chrono::milliseconds(10000),
                   .multiplier = 2.0});
  for (int attempt = 1; !stop.load(); ++attempt) {
    auto loaded = sink.LoadOwned();
    if (loaded.ok()) {
      logger.Info("reverse copies' ownership records loaded",
                  {{"owned", sink.owned_count()}, {"attempts", attempt}});
      return true;
    }
    const std::chrono::milliseconds delay = backoff.Next();
    logger.Warn(
        "cannot load the reverse copies' ownership records from the source; retrying",
        {{"attempt", attempt}, {"error", loaded.error().message}, {"retry_in_ms", delay.count()}});
    if (!WaitToRetry(delay, std::nullopt, stop)) return false;
  }
  return false;
}

constexpr DiffReportNames kForwardNames = {.source_label = "source nodes",
                                           .sink_label = "target nodes",
                                           .source_field = "source_nodes",
                                           .sink_field = "target_nodes",
                                           .revision_field = "target_zxid",
                                           .entries = "nodes"};
// The reverse sink lists only the nodes it owns (its copies), not the whole source.
constexpr DiffReportNames kReverseNames = {.source_label = "target ephemerals",
                                           .sink_label = "copies on the source",
                                           .source_field = "target_ephemerals",
                                           .sink_field = "source_copies",
                                           .revision_field = "source_zxid",
                                           .entries = "nodes"};

int RunZk2ZkSync(const Zk2ZkFlags& flags, FlagSet& flag_set, std::ostream& err) {
  const std::optional<Zk2ZkConfig> validated =
      Validated(flags, flag_set, Zk2ZkCommandKind::kSync, kSyncName, err);
  if (!validated) return kExitUsage;
  const Zk2ZkConfig& config = *validated;
  SystemClock clock;
  auto made_logger = MakeLogger(config.log, clock);
  if (!made_logger.ok()) {
    err << kSyncName << ": " << made_logger.error() << "\n";
    return kExitUsage;
  }
  std::unique_ptr<ops::Logger> logger = std::move(made_logger).value();
  std::unique_ptr<AuditLog> audit;
  if (!config.audit_log.empty()) {
    auto opened = AuditLog::Open(config.audit_log, clock, *logger);
    if (!opened.ok()) {
      err << kSyncName << ": " << opened.error() << "\n";
      return kExitUsage;
    }
    audit = std::move(opened).value();
  }

  SignalWaiter signals;  // before any thread starts
  auto operations = Zk2ZkOperations::Create(*logger);
  if (!operations.ok()) {
    err << kSyncName << ": " << operations.error() << "\n";
    return kExitFailure;
  }
  Zk2ZkOperations* ops = operations->get();
  flag_set.SetDerived("leader-elect-identity", config.identity);
  ops->SetConfigDump(flag_set.Dump());
  if (auto served = ops->Serve(config.http_addr); !served.ok()) {
    err << kSyncName << ": --http-addr: " << served.error() << "\n";
    return kExitUsage;
  }

  std::atomic<bool> stop{false};
  Services services(config.fullsync_interval);
  std::atomic<Services*> services_ptr{nullptr};
  ops::Logger* log = logger.get();
  signals.Start(StopOnSignal(*log, stop, services_ptr), [&] {
    // SIGHUP: the file's log-level and fullsync-interval, unless a flag or variable set them.
    ReloadConfigFile(flags.config, flag_set, *log,
                     [&](const std::string& name, const std::string& value) {
                       if (name != "fullsync-interval") return;
                       auto interval = ParseGoDuration(value);
                       if (interval.ok() && interval->count() >= 0) {
                         if (!services.SetFullSyncInterval(*interval)) return;
                         ops->SetConfigValue(name, value);
                         log->Warn("SIGHUP: full sync interval changed", {{"interval", value}});
                       } else {
                         log->Error("SIGHUP: invalid fullsync-interval", {{"value", value}});
                       }
                     });
  });

  logger->Info("zk2etcd zk2zk sync starting",
               {{"source", config.source.connect_string},
                {"target", config.target.connect_string},
                {"paths", JoinCommaList(config.paths)},
                {"excludes", JoinCommaList(config.scope.excludes())},
                {"meta_root", config.MetaRoot()},
                {"reverse_ephemerals", config.reverse_ephemerals},
                {"copy_acl", config.copy_acl},
                {"advance_sequence_counters", config.advance_sequence_counters},
                {"adopt", sync::AdoptPolicyName(config.adopt)},
                {"fullsync_interval", FormatGoDuration(config.fullsync_interval)},
                {"leader_elect", config.leader_elect},
                {"leader_elect_identity", config.identity},
                {"audit_log", config.audit_log},
                {"concurrent", config.concurrent}});
  WarnAboutIgnoredExcludes(config.scope, kZk2ZkScopeFlags, {config.MetaRoot()}, *logger);
  logger->Info("http server listening", {{"address", config.http_addr}, {"port", ops->port()}});

  // Both ensembles answer (and take the credentials) before anything is built: unreachable ones
  // are retried and logged for as long as it runs.
  for (const auto& [options, name] : {std::pair{&config.source, "source zookeeper"},
                                      std::pair{&config.target, "target zookeeper"}}) {
    ops->SetStarting(std::string("connecting to ") + name);
    auto probe = ConnectZooKeeper(*options, name, *logger, clock, std::nullopt, stop);
    if (!probe.ok()) {
      if (stop.load()) {
        logger->Info("zk2etcd zk2zk sync stopped", {{"before", std::string(name) + " connected"}});
        return kExitOk;
      }
      logger->Error("cannot start", {{"error", probe.error()}});
      return kExitFailure;
    }
    (*probe)->Close();
  }

  Zk2ZkJobOptions job_options;
  job_options.source_observer = ops->source_observer();
  job_options.target_observer = ops->target_observer();
  Zk2ZkJob job = MakeZk2ZkJob(config, *logger, clock, job_options);
  ops->SetStarting("reading the records of the reverse copies");
  if (!LoadReverseOwnership(*job.reverse_sink, *logger, stop)) {
    logger->Info("zk2etcd zk2zk sync stopped", {{"before", "reverse copies loaded"}});
    return kExitOk;
  }

  sync::FencedWriterOptions writer_options;
  writer_options.max_txns_in_flight = std::min<size_t>(config.concurrent, 64);
  auto refusals = [ops](Direction direction) {
    return [ops, direction](const core::SinkWrite& /*write*/, const core::SinkError& error) {
      ops->OnRefusedWrite(direction, error);
    };
  };
  writer_options.logger = logger.get();
  writer_options.log_name = "target ZooKeeper";
  sync::FencedWriter forward_writer(*job.forward_sink, writer_options, clock, nullptr,
                                    refusals(Direction::kForward));
  std::unique_ptr<sync::FencedWriter> reverse_writer;
  if (job.reverse_source) {
    writer_options.log_name = "source ZooKeeper";
    reverse_writer = std::make_unique<sync::FencedWriter>(*job.reverse_sink, writer_options, clock,
                                                          nullptr, refusals(Direction::kReverse));
  }

  auto service_options = [&](Direction direction) {
    sync::SyncServiceOptions options;
    options.fullsync_interval = config.fullsync_interval;
    options.concurrent = config.concurrent;
    options.adopt = config.adopt;
    options.drain_timeout = config.shutdown_timeout;
    options.on_leaving = [&services] { services.StopCampaigning(); };
    const DiffReportNames& names = direction == Direction::kForward ? kForwardNames : kReverseNames;
    options.source_entries_field = names.source_field;
    options.sink_entries_field = names.sink_field;
    AuditLog* audit_log = audit.get();
    const std::string_view name = DirectionName(direction);
    options.on_change = [ops, audit_log, direction, name](const sync::AppliedChange& change) {
      ops->OnChange(direction, change);
      if (audit_log != nullptr) audit_log->OnChange(name, change);
    };
    options.on_repair = [ops, audit_log, direction, name](const sync::RepairResult& repair) {
      ops->OnRepair(direction, repair);
      if (audit_log != nullptr) audit_log->OnRepair(name, repair);
    };
    options.on_reconcile = [ops, direction, &clock](const auto& result) {
      ops->OnReconcile(direction, result, clock.WallNow());
    };
    return options;
  };
  sync::SyncService forward(config.scope, *job.forward_source, *job.forward_sink, forward_writer,
                            nullptr, job.forward_election(), *logger, clock,
                            service_options(Direction::kForward));
  std::unique_ptr<sync::SyncService> reverse;
  if (job.reverse_source) {
    reverse = std::make_unique<sync::SyncService>(
        config.scope, *job.reverse_source, *job.reverse_sink, *reverse_writer, nullptr,
        job.reverse_election(), *logger, clock, service_options(Direction::kReverse));
  }
  ops->Attach(Direction::kForward, &forward, &forward_writer, job.forward_sink.get());
  if (reverse)
    ops->Attach(Direction::kReverse, reverse.get(), reverse_writer.get(), job.reverse_sink.get());
  services.Set(&forward, reverse.get());
  services_ptr.store(&services);
  if (stop.load()) services.Stop();

  std::unique_ptr<PeriodicTask> progress = LogProgress(config.progress_interval, *ops, *logger);
  // One thread per direction; when one ends (stopped, or a fatal error), the other is stopped.
  Result<void, std::string> reverse_result;
  std::thread reverse_thread;
  if (reverse) {
    reverse_thread = std::thread([&] {
      reverse_result = reverse->Run();
      services.Stop();
    });
  }
  Result<void, std::string> forward_result = forward.Run();
  services.Stop();
  if (reverse_thread.joinable()) reverse_thread.join();
  services_ptr.store(nullptr);
  services.Set(nullptr, nullptr);
  progress.reset();
  ops->Stop();
  forward_writer.Stop();
  if (reverse_writer) reverse_writer->Stop();
  for (const auto& [result, direction] :
       {std::pair{&forward_result, "forward"}, std::pair{&reverse_result, "reverse"}}) {
    if (!result->ok()) {
      logger->Error("zk2etcd zk2zk sync failed",
                    {{"direction", direction}, {"error", result->error()}});
      return kExitFailure;
    }
  }
  logger->Info("zk2etcd zk2zk sync stopped");
  return kExitOk;
}

// Whether a sync of this job holds (or waits for) the election: the lock's nodes on the target.
// An error when it cannot tell; the lowest lock node's data (the leader's identity) otherwise,
// nullopt when no sync runs.
Result<std::optional<std::string>, std::string> RunningLeader(zk::ZkClient& target,
                                                              const std::string& lock_path) {
  auto children = zk::blocking::GetChildren(target, lock_path);
  if (!children.ok()) {
    if (children.error().code == zk::ZkErrorCode::kNoNode) return std::optional<std::string>();
    return Unexpected{children.error().ToString()};
  }
  std::vector<std::string> locks;
  for (const std::string& child : children->children) {
    if (child.starts_with("lock-")) locks.push_back(child);
  }
  if (locks.empty()) return std::optional<std::string>();
  std::sort(locks.begin(), locks.end());
  for (const std::string& lock : locks) {
    auto data = zk::blocking::GetData(target, lock_path + "/" + lock);
    if (data.ok()) return std::optional<std::string>(data->data);
    if (data.error().code != zk::ZkErrorCode::kNoNode) return Unexpected{data.error().ToString()};
  }
  return std::optional<std::string>();  // every lock node went meanwhile
}

int RunZk2ZkDiff(const Zk2ZkFlags& flags, FlagSet& flag_set, std::ostream& out, std::ostream& err) {
  const std::optional<Zk2ZkConfig> validated =
      Validated(flags, flag_set, Zk2ZkCommandKind::kDiff, kDiffName, err);
  if (!validated) return kExitUsage;
  const Zk2ZkConfig& config = *validated;
  SystemClock clock;
  auto made_logger = MakeLogger(config.log, clock);
  if (!made_logger.ok()) {
    err << kDiffName << ": " << made_logger.error() << "\n";
    return kExitUsage;
  }
  std::unique_ptr<ops::Logger> logger = std::move(made_logger).value();
  WarnAboutIgnoredExcludes(config.scope, kZk2ZkScopeFlags, {config.MetaRoot()}, *logger);
  const std::atomic<bool> never_stop{false};
  const auto deadline =
      std::chrono::steady_clock::now() +
      std::chrono::duration_cast<std::chrono::steady_clock::duration>(config.connect_timeout);
  auto source =
      ConnectZooKeeper(config.source, "source zookeeper", *logger, clock, deadline, never_stop);
  if (!source.ok()) {
    err << kDiffName << ": " << source.error() << "\n";
    return kExitUsage;
  }
  (*source)->Close();
  auto target =
      ConnectZooKeeper(config.target, "target zookeeper", *logger, clock, deadline, never_stop);
  if (!target.ok()) {
    err << kDiffName << ": " << target.error() << "\n";
    return kExitUsage;
  }
  if (config.fix) {
    // A running sync repairs by itself, and a repair made beside it could bring back a node it
    // deletes meanwhile: --fix only where none runs.
    auto leader = RunningLeader(**target, config.ElectionPath());
    if (!leader.ok()) {
      err << kDiffName << ": --fix: cannot tell whether a sync of \"" << config.name
          << "\" is running: " << leader.error() << "\n";
      return kExitUsage;
    }
    if (leader->has_value()) {
      err << kDiffName << ": --fix: a sync of \"" << config.name
          << "\" is running (its leader is \"" << **leader
          << "\"); it repairs by itself: stop it and run --fix again\n";
      return kExitUsage;
    }
  }
  (*target)->Close();

  Zk2ZkJobOptions job_options;
  job_options.change_stream = false;  // one comparison: nothing to follow
  job_options.election = false;
  Zk2ZkJob job = MakeZk2ZkJob(config, *logger, clock, job_options);
  // The forward source leaves out the reverse copies: it needs their records first.
  if (auto loaded = job.reverse_sink->LoadOwned(); !loaded.ok()) {
    err << kDiffName << ": source zookeeper: " << loaded.error().message << "\n";
    return kExitUsage;
  }

  struct DiffDirection {
    std::string_view name;
    connectors::ZooKeeperSource* source;
    connectors::ZooKeeperSink* sink;
    const DiffReportNames* names;
    std::optional<sync::ReconcileReport> report;
  };
  std::vector<DiffDirection> directions = {
      {"forward", job.forward_source.get(), job.forward_sink.get(), &kForwardNames, {}}};
  if (job.reverse_source) {
    directions.push_back(
        {"reverse", job.reverse_source.get(), job.reverse_sink.get(), &kReverseNames, {}});
  }
  for (DiffDirection& direction : directions) {
    NoChanges no_changes;
    if (auto opened = direction.source->Open(no_changes); !opened.ok()) {
      err << kDiffName << ": " << direction.name << ": " << opened.error().message << "\n";
      return kExitUsage;
    }
    std::unique_ptr<sync::FencedWriter> writer;
    if (config.fix) {
      sync::FencedWriterOptions writer_options;
      writer_options.max_txns_in_flight = std::min<size_t>(config.concurrent, 8);
      writer_options.logger = logger.get();
      writer_options.log_name =
          direction.names == &kForwardNames ? "target ZooKeeper" : "source ZooKeeper";
      writer = std::make_unique<sync::FencedWriter>(*direction.sink, writer_options, clock);
    }
    sync::Reconciler reconciler(config.scope, *direction.sink, writer.get(), nullptr, *logger,
                                clock);
    const DiffProgress progress("read", direction.names->source_label, "nodes");
    sync::ReconcileOptions options;
    options.fix = config.fix;
    options.source_window = config.concurrent;
    options.adopt = config.adopt;
    options.on_progress = progress.Callback();
    auto report = reconciler.Run(*direction.source, options);
    progress.Clear();
    if (writer) writer->Stop();
    direction.source->Close();
    if (!report.ok()) {
      err << kDiffName << ": " << direction.name << ": " << report.error().message << "\n";
      return kExitUsage;
    }
    logger->Info("diff done",
                 {{"direction", direction.name},
                  {"differences", report->VisibleDifferences()},
                  {"seconds", std::chrono::duration<double>(report->duration).count()}});
    direction.report = std::move(report).value();
  }

  // Nodes without the job's records are another writer's: reported, never touched, and not
  // differences of the job's.
  bool in_sync = true;
  for (const DiffDirection& direction : directions) {
    if (RemainingDifferences(*direction.report, config.fix) > 0) in_sync = false;
  }
  if (config.json) {
    out << "{";
    for (const DiffDirection& direction : directions) {
      std::ostringstream report;
      PrintDiffJson(*direction.report, config.fix,
                    RemainingDifferences(*direction.report, config.fix) == 0, *direction.names,
                    report);
      std::string text = report.str();
      while (!text.empty() && text.back() == '\n') text.pop_back();
      out << "\"" << direction.name << "\":" << text << ",";
    }
    if (directions.size() == 1) out << "\"reverse\":null,";
    out << "\"consistent\":" << (in_sync ? "true" : "false") << "}\n";
  } else {
    bool first = true;
    for (const DiffDirection& direction : directions) {
      out << (first ? "" : "\n") << direction.name << " ("
          << (direction.name == "forward" ? "source -> target" : "target ephemerals -> source")
          << "):\n";
      first = false;
      PrintDiffText(*direction.report, config.fix, *direction.names, out);
    }
  }
  return in_sync ? kExitOk : kExitFailure;
}

Subcommand Zk2ZkSyncCommand() {
  return CommandWithFlags<Zk2ZkFlags>(
      "sync", "copy subtrees to another ensemble and keep them identical, ephemerals both ways",
      [](FlagSet& flags, Zk2ZkFlags* values) {
        AddZk2ZkFlags(flags, values, Zk2ZkCommandKind::kSync);
      },
      [](const Zk2ZkFlags& values, FlagSet& flags, std::ostream&, std::ostream& err) {
        return RunZk2ZkSync(values, flags, err);
      });
}

Subcommand Zk2ZkDiffCommand() {
  return CommandWithFlags<Zk2ZkFlags>(
      "diff", "compare both ensembles in each direction; --fix repairs the differences",
      [](FlagSet& flags, Zk2ZkFlags* values) {
        AddZk2ZkFlags(flags, values, Zk2ZkCommandKind::kDiff);
      },
      RunZk2ZkDiff);
}

}  // namespace

Subcommand Zk2ZkCommand() {
  return JobGroup("zk2zk", "migrate between ZooKeeper ensembles, ephemeral registrations both ways",
                  "Copies the --path subtrees of a source ZooKeeper ensemble to a target ensemble "
                  "and keeps them identical\n(forward), and copies the ephemeral nodes that exist "
                  "only on the target back to the source (reverse),\nso that clients on either "
                  "side see every provider while they move.",
                  Zk2ZkSyncCommand(), Zk2ZkDiffCommand());
}

}  // namespace zk2etcd::cli
