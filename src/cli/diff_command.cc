// `zk2etcd diff`: compares ZooKeeper with etcd and reports (or, with --fix, repairs) the
// differences. Exit status: 0 in sync, 1 differences remain, 2 usage error or servers unreachable.
// Foreign keys (another writer's, with no znode) are listed but do not count as differences;
// conflicts (another writer's value where a znode exists) do.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <future>
#include <map>
#include <set>
#include <thread>

#include "cli/cli.h"
#include "cli/config.h"
#include "cli/diff_report.h"
#include "cli/runtime.h"
#include "cli/subcommand.h"
#include "cli/zk2etcd_job.h"
#include "common/strings.h"
#include "ownership/redis_ownership_store.h"
#include "sync/reconciler.h"

namespace zk2etcd::cli {

namespace {

using sync::Difference;

struct DiffFlags {
  CommonFlags common;
  bool fix = false;
  uint64_t max_round = 1;
  std::chrono::nanoseconds round_interval{};
  std::string output;
  std::chrono::nanoseconds connect_timeout{};
};

constexpr DiffReportNames kReportNames = {.source_label = "zookeeper nodes",
                                          .sink_label = "etcd keys",
                                          .source_field = "zk_nodes",
                                          .sink_field = "etcd_keys",
                                          .revision_field = "etcd_revision",
                                          .deferred_deletes = true};

int RunDiff(const DiffFlags& flags, FlagSet& flag_set, std::ostream& out, std::ostream& err) {
  auto validated = ConfigFromFlags(flag_set, flags.common.config, "zk2etcd diff", err,
                                   [&] { return ValidateCommonFlags(flags.common); });
  if (!validated) return kExitUsage;
  if (flags.max_round < 1) {
    err << "zk2etcd diff: --max-round must be >= 1\n";
    return kExitUsage;
  }
  for (const auto& [name, value] : {std::pair{"round-interval", flags.round_interval},
                                    std::pair{"connect-timeout", flags.connect_timeout}}) {
    if (auto ok = RequireDuration(name, value, std::string_view(name) == "round-interval");
        !ok.ok()) {
      err << "zk2etcd diff: " << ok.error() << "\n";
      return kExitUsage;
    }
  }
  if (flags.output != "text" && flags.output != "json") {
    err << "zk2etcd diff: --output must be text or json, got \"" << flags.output << "\"\n";
    return kExitUsage;
  }
  Config config = std::move(*validated);
  SystemClock clock;
  auto made_logger = MakeLogger(config, clock);
  if (!made_logger.ok()) {
    err << "zk2etcd diff: " << made_logger.error() << "\n";
    return kExitUsage;
  }
  std::unique_ptr<ops::Logger> logger = std::move(made_logger).value();
  WarnAboutIgnoredExcludes(config.scope, {}, ExcludesNotChosen(flags.common), *logger);
  const std::atomic<bool> never_stop{false};
  const auto deadline =
      std::chrono::steady_clock::now() +
      std::chrono::duration_cast<std::chrono::steady_clock::duration>(flags.connect_timeout);
  // Both sides are dialled at once (through a long round trip, the second costs no time).
  auto connecting_zookeeper = std::async(std::launch::async, [&] {
    return ConnectZooKeeper(config, *logger, clock, deadline, never_stop);
  });
  auto etcd = ConnectEtcd(config, *logger, clock, deadline, never_stop);
  auto zookeeper = connecting_zookeeper.get();
  if (!etcd.ok()) {
    err << "zk2etcd diff: " << etcd.error() << "\n";
    return kExitUsage;
  }
  if (!zookeeper.ok()) {
    err << "zk2etcd diff: " << zookeeper.error() << "\n";
    return kExitUsage;
  }
  std::unique_ptr<ownership::RedisOwnershipStore> redis;
  if (config.redis) {
    redis = ownership::RedisOwnershipStore::Create(*config.redis).value();
    // The Go tool's records are in Redis: a report without them would call its keys foreign.
    if (auto answered =
            WaitForOwnershipStore(*redis, config.redis->address, *logger, deadline, never_stop);
        !answered.ok()) {
      err << "zk2etcd diff: " << answered.error() << "\n";
      return kExitUsage;
    }
  }
  Zk2EtcdJobOptions job_options;
  job_options.change_stream = false;  // one comparison: nothing to follow
  Zk2EtcdJob job =
      MakeZk2EtcdJob(config, **etcd, std::move(zookeeper).value(), *logger, job_options);
  NoChanges no_changes;
  if (auto opened = job.source->Open(no_changes); !opened.ok()) {
    err << "zk2etcd diff: zookeeper: " << opened.error().message << "\n";
    return kExitUsage;
  }
  std::unique_ptr<sync::FencedWriter> writer;
  if (flags.fix) {
    sync::FencedWriterOptions writer_options;
    // As sync's: the window is sized by bandwidth-delay within this (window_sizer.h).
    writer_options.max_txns_in_flight = std::min<size_t>(config.concurrent, 64);
    writer_options.logger = logger.get();
    writer = std::make_unique<sync::FencedWriter>(*job.sink, writer_options, clock);
  }
  sync::Reconciler reconciler(config.scope, *job.sink, writer.get(), redis.get(), *logger, clock);

  const DiffProgress progress("scanned", "zookeeper nodes", "nodes");
  sync::ReconcileOptions options;
  options.fix = false;
  options.source_window = config.concurrent;
  options.adopt = config.adopt;
  options.on_progress = progress.Callback();

  // Rounds: a difference counts only if every round sees it (the Go tool's --max-round).
  std::optional<sync::ReconcileReport> report;
  for (uint64_t round = 1; round <= flags.max_round; ++round) {
    if (round > 1) {
      std::this_thread::sleep_for(flags.round_interval);
    }
    auto result = reconciler.Run(*job.source, options);
    progress.Clear();
    if (!result.ok()) {
      err << "zk2etcd diff: " << result.error().message << "\n";
      return kExitUsage;
    }
    logger->Info("diff round done",
                 {{"round", round},
                  {"differences", result->VisibleDifferences()},
                  {"of_which_foreign", result->Count(Difference::Kind::kForeign)},
                  {"seconds", std::chrono::duration<double>(result->duration).count()}});
    if (!report) {
      report = std::move(*result);
      continue;
    }
    std::set<std::pair<std::string, Difference::Kind>> seen;
    for (const auto& difference : result->differences)
      seen.insert({difference.key, difference.kind});
    std::vector<sync::ConfirmedDifference> kept;
    for (auto& difference : report->differences) {
      if (seen.count({difference.key, difference.kind}) > 0) kept.push_back(std::move(difference));
    }
    // Keep the newest observation of each surviving difference (for the repair).
    std::map<std::string, sync::ConfirmedDifference*> latest;
    for (auto& difference : result->differences) latest[difference.key] = &difference;
    for (auto& difference : kept) difference = *latest[difference.key];
    const sync::ReconcileReport counts = std::move(*result);
    report->differences = std::move(kept);
    report->RecountFromList();
    report->source_entries = counts.source_entries;
    report->sink_entries = counts.sink_entries;
    report->in_sync = counts.in_sync;
    report->sink_point = counts.sink_point;
    // Equal unowned keys are counted, not listed: those of every round are at most the fewest.
    report->unclaimed = std::min(report->unclaimed, counts.unclaimed);
  }
  if (flags.fix) reconciler.Repair(*report);

  // Foreign keys are reported but, as in the Go tool, are not differences of zk2etcd's: they
  // belong to another writer and never change the exit status.
  const bool in_sync = RemainingDifferences(*report, flags.fix) == 0;
  if (flags.output == "json") {
    PrintDiffJson(*report, flags.fix, in_sync, kReportNames, out);
  } else {
    PrintDiffText(*report, flags.fix, kReportNames, out);
  }
  if (writer) writer->Stop();
  job.source->Close();
  return in_sync ? kExitOk : kExitFailure;
}

}  // namespace

Subcommand DiffCommand() {
  return {"diff", "compare keys between zk and etcd; --fix repairs the differences once",
          [](FlagSet& flags) -> CommandRunner {
            auto values = std::make_shared<DiffFlags>();
            AddCommonFlags(flags, &values->common);
            flags.AddBool("fix", &values->fix, false,
                          "set to true will fix the data diff between zk and etcd");
            flags.AddUint("max-round", &values->max_round, 1,
                          "max diff round, must >= 1: a difference counts if every round sees it");
            flags.AddDuration("round-interval", &values->round_interval, std::chrono::seconds(3),
                              "the interval of every diff round");
            flags.AddString("output", &values->output, "text", "report format: text or json");
            flags.AddDuration("connect-timeout", &values->connect_timeout, std::chrono::seconds(30),
                              "give up (exit 2) when the servers cannot be reached for this long");
            FlagSet* set = &flags;
            return [values, set](std::ostream& out, std::ostream& err) {
              return RunDiff(*values, *set, out, err);
            };
          }};
}

}  // namespace zk2etcd::cli
