// `zk2etcd etcd2etcd`: mirrors an etcd key prefix into another etcd (or another prefix of the
// same one).
//
//   sync  runs sync::MirrorService on the etcd2etcd job (etcd2etcd_job.h) until SIGTERM or
//         SIGINT, with the endpoints of MirrorOperations; SIGHUP re-reads --config's log-level;
//   diff  compares the source prefix with the destination once (sync::Reconciler over an exact
//         snapshot), and with --fix repairs the differences through the mirror's fenced writes,
//         never touching a foreign key. Exit status: 0 in sync, 1 differences remain, 2 usage
//         error or servers unreachable for --connect-timeout.
#include <atomic>
#include <chrono>
#include <memory>

#include "cli/cli.h"
#include "cli/config.h"
#include "cli/config_file.h"
#include "cli/diff_report.h"
#include "cli/etcd2etcd_config.h"
#include "cli/etcd2etcd_job.h"
#include "cli/etcd2etcd_operations.h"
#include "cli/runtime.h"
#include "cli/signals.h"
#include "cli/subcommand.h"
#include "common/periodic_task.h"
#include "common/rate_limiter.h"
#include "common/strings.h"
#include "sync/fenced_writer.h"
#include "sync/mirror_service.h"
#include "sync/reconciler.h"

namespace zk2etcd::cli {

namespace {

using sync::Difference;

constexpr std::string_view kSyncName = "zk2etcd etcd2etcd sync";
constexpr std::string_view kDiffName = "zk2etcd etcd2etcd diff";

LogSettings LogSettingsOf(const Etcd2EtcdConfig& config) {
  return LogSettings{config.log_level, config.log_format, config.log_file,
                     config.log_file_max_bytes, config.log_file_max_backups};
}

// Parses the --config file and validates; prints the one-line error and returns nullopt.
std::optional<Etcd2EtcdConfig> Validated(const Etcd2EtcdFlags& flags, FlagSet& flag_set,
                                         MirrorCommand command, std::string_view name,
                                         std::ostream& err) {
  return ConfigFromFlags(flag_set, flags.config, name, err,
                         [&] { return ValidateEtcd2EtcdFlags(flags, command, Hostname()); });
}

// Asks the mirror to reconcile when destination leases were lost (their copies vanished):
// checked every second while the returned task lives.
std::unique_ptr<PeriodicTask> WatchLeaseLoss(connectors::LeaseMirror& leases,
                                             sync::MirrorService& service, ops::Logger& logger) {
  return std::make_unique<PeriodicTask>(
      std::chrono::seconds(1),
      [&leases, &service, &logger, seen = leases.destination_leases_lost()]() mutable {
        const uint64_t lost = leases.destination_leases_lost();
        if (lost == seen) return;
        logger.Warn("destination leases lost; reconciling",
                    {{"lost", static_cast<int64_t>(lost - seen)}});
        seen = lost;
        service.RequestReconcile();
      });
}

int RunMirrorSync(const Etcd2EtcdFlags& flags, FlagSet& flag_set, std::ostream& err) {
  const std::optional<Etcd2EtcdConfig> validated =
      Validated(flags, flag_set, MirrorCommand::kSync, kSyncName, err);
  if (!validated) return kExitUsage;
  Etcd2EtcdConfig config = *validated;
  SystemClock clock;
  auto made_logger = MakeLogger(LogSettingsOf(config), clock);
  if (!made_logger.ok()) {
    err << kSyncName << ": " << made_logger.error() << "\n";
    return kExitUsage;
  }
  std::unique_ptr<ops::Logger> logger = std::move(made_logger).value();

  SignalWaiter signals;  // before any thread starts
  auto operations = MirrorOperations::Create(*logger);
  if (!operations.ok()) {
    err << kSyncName << ": " << operations.error() << "\n";
    return kExitFailure;
  }
  MirrorOperations* ops = operations->get();
  flag_set.SetDerived("leader-elect-identity", config.identity);
  ops->SetConfigDump(flag_set.Dump());
  if (auto served = ops->Serve(config.http_addr); !served.ok()) {
    err << kSyncName << ": --http-addr: " << served.error() << "\n";
    return kExitUsage;
  }

  std::atomic<bool> stop{false};
  std::atomic<sync::MirrorService*> service_ptr{nullptr};
  ops::Logger* log = logger.get();
  signals.Start(StopOnSignal(*log, stop, service_ptr), [&] {
    // SIGHUP: the file's log-level, unless a flag or variable set it.
    ReloadConfigFile(flags.config, flag_set, *log, {});
  });

  const connectors::MirrorKeys keys = connectors::MirrorKeysFor(config.meta_prefix, config.name);
  logger->Info("zk2etcd etcd2etcd sync starting",
               {{"source", JoinCommaList(config.source.endpoints)},
                {"destination", JoinCommaList(config.dest.endpoints)},
                {"prefix", config.prefix},
                {"dest_prefix", config.dest_prefix ? *config.dest_prefix : config.prefix},
                {"name", config.name},
                {"checkpoint_key", keys.checkpoint_key},
                {"copy_leases", config.copy_leases},
                {"max_write_rate", config.max_write_rate},
                {"reconcile_interval", FormatGoDuration(config.reconcile_interval)},
                {"leader_elect", config.leader_elect},
                {"leader_elect_identity", config.identity},
                {"adopt", sync::AdoptPolicyName(config.adopt)},
                {"concurrent", config.concurrent}});
  logger->Info("http server listening", {{"address", config.http_addr}, {"port", ops->port()}});

  config.source.observer = ops->source_observer();
  config.dest.observer = ops->dest_observer();
  // A running mirror needs its clusters connected, not their Status first (round trips).
  ops->SetStarting("connecting to source etcd");
  auto source = ConnectEtcd(config.source, "source etcd", *logger, clock, std::nullopt, stop,
                            EtcdCheck::kConnected);
  if (!source.ok()) {
    if (stop.load()) {
      logger->Info("zk2etcd etcd2etcd sync stopped", {{"before", "source etcd connected"}});
      return kExitOk;
    }
    logger->Error("cannot start", {{"error", source.error()}});
    return kExitFailure;
  }
  ops->SetStarting("connecting to destination etcd");
  auto dest = ConnectEtcd(config.dest, "destination etcd", *logger, clock, std::nullopt, stop,
                          EtcdCheck::kConnected);
  if (!dest.ok()) {
    if (stop.load()) {
      logger->Info("zk2etcd etcd2etcd sync stopped", {{"before", "destination etcd connected"}});
      return kExitOk;
    }
    logger->Error("cannot start", {{"error", dest.error()}});
    return kExitFailure;
  }
  if (config.adopt != sync::AdoptPolicy::kNone) {
    ops->SetStarting("listing the mirrors of the destination");
    ConnectRetry retry(*logger, "destination etcd");
    while (true) {
      auto other = OtherMirrorUnlessForbidden(**dest, config, *logger);
      if (other.ok() && *other) {
        logger->Error("cannot start", {{"error", OtherMirrorMessage(config, **other)}});
        return kExitUsage;
      }
      if (other.ok()) break;
      if (!retry.AfterFailure(other.error().ToString(), std::nullopt, stop)) {
        logger->Info("zk2etcd etcd2etcd sync stopped", {{"before", "the mirrors were listed"}});
        return kExitOk;
      }
    }
  }
  auto made_job = MakeEtcd2EtcdJob(config, **source, **dest, *logger, clock, {});
  if (!made_job.ok()) {
    logger->Error("cannot start", {{"error", made_job.error()}});
    return kExitFailure;
  }
  Etcd2EtcdJob job = std::move(made_job).value();
  bool reconcile_for_leases = false;
  if (job.leases) {
    auto recovered = job.leases->Recover();
    if (recovered.ok()) {
      logger->Info("lease mappings recovered", {{"adopted", recovered->adopted},
                                                {"expired", recovered->expired},
                                                {"released", recovered->released}});
      reconcile_for_leases = recovered->needs_reconcile();
    } else {
      logger->Warn("lease mappings not recovered; reconciling",
                   {{"error", recovered.error().message}});
      reconcile_for_leases = true;
    }
  }

  // --max-write-rate: one limiter for the repairs (the writer) and the changes (the service).
  std::unique_ptr<RateLimiter> rate_limiter;
  if (config.max_write_rate > 0) {
    rate_limiter = std::make_unique<RateLimiter>(config.max_write_rate, clock);
  }
  sync::FencedWriterOptions writer_options;
  writer_options.max_txns_in_flight = std::min<size_t>(config.concurrent, 64);
  writer_options.rate_limiter = rate_limiter.get();
  writer_options.logger = logger.get();
  writer_options.log_name = "destination etcd";
  sync::FencedWriter writer(*job.sink, writer_options, clock);

  sync::MirrorServiceOptions options;
  options.reconcile_interval = config.reconcile_interval;
  options.concurrent = config.concurrent;
  options.adopt = config.adopt;
  options.rate_limiter = rate_limiter.get();
  // Copies bound to leases expired while no mirror ran: reconcile even when resuming.
  // --adopt=all is a deliberate switch-over: it takes effect at this start, not at the next
  // reconciliation, also when the mirror resumes from its checkpoint.
  options.reconcile_on_resume = reconcile_for_leases || config.adopt == sync::AdoptPolicy::kAll;
  options.drain_timeout = config.shutdown_timeout;
  // Past the drain, a cluster that does not answer must not hold the exit up.
  options.abandon_calls = [&source, &dest] {
    (*source)->Abandon();
    (*dest)->Abandon();
  };
  options.source_name = "source etcd";
  options.sink_name = "destination etcd";
  // The engine logs each reconciliation ("reconciliation done" with its counts, or "reconciliation
  // failed; retrying"); here only the metrics.
  options.on_reconcile = [ops, &clock](sync::ReconcileCause cause, const auto& result) {
    ops->OnReconcile(cause, result, clock.WallNow());
  };
  options.on_applied = [ops](const sync::AppliedBatch& batch) { ops->OnApplied(batch); };
  options.on_elected = [ops, log](std::chrono::nanoseconds took) {
    ops->OnElected(took);
    log->Info("mirror leadership taken",
              {{"takeover_ms", std::chrono::duration<double, std::milli>(took).count()}});
  };
  sync::MirrorService service(*job.scope, *job.source, *job.sink, *job.sink, writer,
                              job.election.get(), *logger, clock, options);
  ops->Attach(&service, &writer);
  service_ptr.store(&service);
  std::unique_ptr<PeriodicTask> lease_watcher;
  if (job.leases) lease_watcher = WatchLeaseLoss(*job.leases, service, *logger);
  if (stop.load()) service.Stop();
  auto result = service.Run();
  service_ptr.store(nullptr);
  lease_watcher.reset();
  ops->Stop();
  writer.Stop();
  if (job.leases) job.leases->Stop();
  if (!result.ok()) {
    logger->Error("zk2etcd etcd2etcd sync failed", {{"error", result.error()}});
    return kExitFailure;
  }
  logger->Info("zk2etcd etcd2etcd sync stopped");
  return kExitOk;
}

constexpr DiffReportNames kReportNames = {.source_label = "source keys",
                                          .sink_label = "destination keys",
                                          .source_field = "source_keys",
                                          .sink_field = "destination_keys",
                                          .revision_field = "destination_revision"};

int RunMirrorDiff(const Etcd2EtcdFlags& flags, FlagSet& flag_set, std::ostream& out,
                  std::ostream& err) {
  const std::optional<Etcd2EtcdConfig> validated =
      Validated(flags, flag_set, MirrorCommand::kDiff, kDiffName, err);
  if (!validated) return kExitUsage;
  const Etcd2EtcdConfig& config = *validated;
  SystemClock clock;
  auto made_logger = MakeLogger(LogSettingsOf(config), clock);
  if (!made_logger.ok()) {
    err << kDiffName << ": " << made_logger.error() << "\n";
    return kExitUsage;
  }
  std::unique_ptr<ops::Logger> logger = std::move(made_logger).value();
  const std::atomic<bool> never_stop{false};
  const auto deadline =
      std::chrono::steady_clock::now() +
      std::chrono::duration_cast<std::chrono::steady_clock::duration>(config.connect_timeout);
  auto source = ConnectEtcd(config.source, "source etcd", *logger, clock, deadline, never_stop);
  if (!source.ok()) {
    err << kDiffName << ": " << source.error() << "\n";
    return kExitUsage;
  }
  auto dest = ConnectEtcd(config.dest, "destination etcd", *logger, clock, deadline, never_stop);
  if (!dest.ok()) {
    err << kDiffName << ": " << dest.error() << "\n";
    return kExitUsage;
  }
  Etcd2EtcdJobOptions job_options;
  job_options.change_stream = false;  // one comparison: nothing to follow
  job_options.election = false;
  auto made_job = MakeEtcd2EtcdJob(config, **source, **dest, *logger, clock, job_options);
  if (!made_job.ok()) {
    err << kDiffName << ": " << made_job.error() << "\n";
    return kExitUsage;
  }
  Etcd2EtcdJob job = std::move(made_job).value();
  if (config.adopt != sync::AdoptPolicy::kNone) {
    auto other = OtherMirrorUnlessForbidden(**dest, config, *logger);
    if (!other.ok()) {
      err << kDiffName << ": destination etcd: " << other.error().ToString() << "\n";
      return kExitUsage;
    }
    if (*other && config.fix) {
      err << kDiffName << ": --fix: " << OtherMirrorMessage(config, **other) << "\n";
      return kExitUsage;
    } else if (*other) {
      logger->Warn("another mirror owns keys in range: what this report would adopt is partly its",
                   {{"mirror", **other}});
    }
  }
  if (config.fix) {
    // A running mirror repairs by itself, and a repair made beside it could bring back a key it
    // deletes meanwhile (the repair writes the snapshot's state): --fix only where none leads.
    auto leader = (*dest)->Leader(job.keys.election_name);
    if (leader.ok()) {
      err << kDiffName << ": --fix: the mirror \"" << config.name
          << "\" is running (its leader is \"" << leader->value
          << "\"); it repairs by itself: ask it with POST /reconcile on its --http-addr, or stop "
             "it and run --fix again\n";
      return kExitUsage;
    }
    if (leader.error().code != etcd::ErrorCode::kNotFound) {
      err << kDiffName << ": --fix: cannot tell whether the mirror \"" << config.name
          << "\" is running: " << leader.error().ToString() << "\n";
      return kExitUsage;
    }
  }
  NoChanges no_changes;
  if (auto opened = job.source->Open(no_changes); !opened.ok()) {
    err << kDiffName << ": source etcd: " << opened.error().message << "\n";
    return kExitUsage;
  }
  std::unique_ptr<sync::FencedWriter> writer;
  if (config.fix) {
    sync::FencedWriterOptions writer_options;
    writer_options.max_txns_in_flight = std::min<size_t>(config.concurrent, 8);
    writer_options.logger = logger.get();
    writer_options.log_name = "destination etcd";
    writer = std::make_unique<sync::FencedWriter>(*job.sink, writer_options, clock);
  }
  sync::Reconciler reconciler(*job.scope, *job.sink, writer.get(), nullptr, *logger, clock);

  const DiffProgress progress("read", "source keys", "keys");
  sync::ReconcileOptions options;
  options.fix = config.fix;
  options.source_window = config.concurrent;
  options.adopt = config.adopt;
  options.on_progress = progress.Callback();
  auto report = reconciler.Run(*job.source, options);
  progress.Clear();
  if (writer) writer->Stop();
  job.source->Close();
  if (job.leases) job.leases->Stop();
  if (!report.ok()) {
    err << kDiffName << ": " << report.error().message << "\n";
    return kExitUsage;
  }
  logger->Info("diff done", {{"differences", report->VisibleDifferences()},
                             {"seconds", std::chrono::duration<double>(report->duration).count()}});

  // Foreign keys are another writer's: reported, never touched, and not differences of the
  // mirror's.
  const bool in_sync = RemainingDifferences(*report, config.fix) == 0;
  if (config.json) {
    PrintDiffJson(*report, config.fix, in_sync, kReportNames, out);
  } else {
    PrintDiffText(*report, config.fix, kReportNames, out);
  }
  return in_sync ? kExitOk : kExitFailure;
}

Subcommand MirrorSyncCommand() {
  return CommandWithFlags<Etcd2EtcdFlags>(
      "sync", "mirror an etcd key prefix into another etcd: a copy, then every change in order",
      [](FlagSet& flags, Etcd2EtcdFlags* values) {
        AddEtcd2EtcdFlags(flags, values, MirrorCommand::kSync);
      },
      [](const Etcd2EtcdFlags& values, FlagSet& flags, std::ostream&, std::ostream& err) {
        return RunMirrorSync(values, flags, err);
      });
}

Subcommand MirrorDiffCommand() {
  return CommandWithFlags<Etcd2EtcdFlags>(
      "diff", "compare the mirrored prefix with the destination; --fix repairs the differences",
      [](FlagSet& flags, Etcd2EtcdFlags* values) {
        AddEtcd2EtcdFlags(flags, values, MirrorCommand::kDiff);
      },
      RunMirrorDiff);
}

}  // namespace

Subcommand Etcd2EtcdCommand() {
  return JobGroup("etcd2etcd", "mirror an etcd key prefix into another etcd (sync, diff)",
                  "Mirrors every key that starts with --prefix from a source etcd into a "
                  "destination etcd (renamed to\n--dest-prefix when given), in the source's order, "
                  "resuming after a restart from a checkpoint kept\nin the destination.",
                  MirrorSyncCommand(), MirrorDiffCommand());
}

}  // namespace zk2etcd::cli
