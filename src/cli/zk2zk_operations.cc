#include "cli/zk2zk_operations.h"

#include <algorithm>

#include "common/build_values.h"

namespace zk2etcd::cli {

namespace {

std::string_view TypeLabel(core::SinkWrite::Type type) {
  switch (type) {
    case core::SinkWrite::Type::kPut:
      return "put";
    case core::SinkWrite::Type::kDelete:
      return "delete";
    case core::SinkWrite::Type::kAdopt:
      return "adopt";
  }
  return "put";
}

constexpr Direction kDirections[] = {Direction::kForward, Direction::kReverse};

}  // namespace

std::string_view DirectionName(Direction direction) {
  return direction == Direction::kForward ? "forward" : "reverse";
}

Zk2ZkOperations::Zk2ZkOperations(ops::Logger& logger)
    : server_(logger, registry_, [this] { return Ready(); }) {}

Result<std::unique_ptr<Zk2ZkOperations>, std::string> Zk2ZkOperations::Create(ops::Logger& logger) {
  std::unique_ptr<Zk2ZkOperations> operations(new Zk2ZkOperations(logger));
  auto metrics = ops::RegisterZk2ZkMetrics(operations->registry_, build_values::kVersion,
                                           build_values::kGitCommit);
  if (!metrics.ok()) return Unexpected{metrics.error()};
  operations->metrics_ = *metrics;
  operations->source_observer_ = std::make_unique<ops::MetricsOpObserver>(
      *metrics->zk_op_total, *metrics->zk_op_duration_seconds, "source");
  operations->target_observer_ = std::make_unique<ops::MetricsOpObserver>(
      *metrics->zk_op_total, *metrics->zk_op_duration_seconds, "target");
  return operations;
}

Zk2ZkOperations::~Zk2ZkOperations() { Stop(); }

void Zk2ZkOperations::OnChange(Direction direction, const sync::AppliedChange& change) {
  std::string_view outcome = "failed";
  if (change.outcome) {
    outcome = core::WriteOutcomeName(*change.outcome);
  } else if (change.not_leader) {
    outcome = "not_leader";
  }
  const std::string_view name = DirectionName(direction);
  metrics_.writes_total->WithLabels({name, TypeLabel(change.type), outcome}).Inc();
  if (change.outcome) metrics_.sync_delay_seconds->WithLabels({name}).ObserveDuration(change.delay);
  if (change.outcome == core::WriteOutcome::kApplied) ++writes_[static_cast<size_t>(direction)];
}

void Zk2ZkOperations::OnRepair(Direction direction, const sync::RepairResult& repair) {
  std::string_view outcome = "failed";
  if (repair.result.ok()) {
    outcome = core::WriteOutcomeName(*repair.result);
  } else if (repair.result.error().code == sync::WriteError::Code::kNotLeader) {
    outcome = "not_leader";
  }
  metrics_.writes_total->WithLabels({DirectionName(direction), TypeLabel(repair.type), outcome})
      .Inc();
  if (repair.result.ok() && *repair.result == core::WriteOutcome::kApplied) {
    ++writes_[static_cast<size_t>(direction)];
  }
}

void Zk2ZkOperations::OnRefusedWrite(Direction direction, const core::SinkError& error) {
  metrics_.refused_writes_total->WithLabels({DirectionName(direction), error.label}).Inc();
}

void Zk2ZkOperations::OnReconcile(Direction direction,
                                  const Result<sync::ReconcileReport, sync::ReconcileError>& result,
                                  std::chrono::system_clock::time_point now) {
  const std::string_view name = DirectionName(direction);
  if (!result.ok()) {
    metrics_.reconcile_total->WithLabels({name, "failure"}).Inc();
    return;
  }
  const sync::ReconcileReport& report = *result;
  metrics_.reconcile_total->WithLabels({name, "success"}).Inc();
  metrics_.reconcile_duration_seconds->WithLabels({name}).ObserveDuration(report.duration);
  metrics_.reconcile_last_success_timestamp_seconds->WithLabels({name}).Set(
      std::chrono::duration<double>(now.time_since_epoch()).count());
  for (auto kind : {sync::Difference::Kind::kMissing, sync::Difference::Kind::kChanged,
                    sync::Difference::Kind::kExtra, sync::Difference::Kind::kForeign,
                    sync::Difference::Kind::kConflict}) {
    metrics_.differences->WithLabels({name, sync::DifferenceKindName(kind)})
        .Set(static_cast<double>(report.Count(kind)));
  }
  metrics_.fixed_total->WithLabels({name, "put"}).Inc(static_cast<double>(report.fixed_puts));
  metrics_.fixed_total->WithLabels({name, "delete"}).Inc(static_cast<double>(report.fixed_deletes));
  std::lock_guard lock(mutex_);
  if (direction == Direction::kForward) {
    counts_.counted = true;
    counts_.source_nodes = report.source_entries;
    // What the target holds once the repairs are done: a first copy into an empty target
    // counts its creates, not the empty listing.
    const size_t removed =
        std::min(report.fixed_deletes, report.sink_entries + report.fixed_creates);
    counts_.target_nodes = report.sink_entries + report.fixed_creates - removed;
    metrics_.nodes->WithLabels({"source"}).Set(static_cast<double>(report.source_entries));
    metrics_.nodes->WithLabels({"target"}).Set(static_cast<double>(counts_.target_nodes));
  } else {
    counts_.target_ephemerals = report.source_entries;
  }
}

Zk2ZkProgress Zk2ZkOperations::Progress() const {
  Zk2ZkProgress progress;
  {
    std::lock_guard lock(mutex_);
    progress = counts_;
  }
  progress.forward_writes = writes_[0].load();
  progress.reverse_writes = writes_[1].load();
  return progress;
}

void Zk2ZkOperations::Attach(Direction direction, const sync::SyncService* service,
                             const sync::FencedWriter* writer,
                             const connectors::ZooKeeperSink* sink) {
  Attached& attached = Of(direction);
  attached.writer.store(writer);
  attached.service.store(service);
  const std::string_view name = DirectionName(direction);
  metrics_.session_connected->SetCallback(
      {name}, [service] { return service->Status().source_connected ? 1.0 : 0.0; });
  metrics_.queue_depth->SetCallback({name, "dirty_paths"}, [service] {
    return static_cast<double>(service->Status().queue_depth);
  });
  metrics_.queue_depth->SetCallback({name, "pending_writes"},
                                    [writer] { return static_cast<double>(writer->pending()); });
  metrics_.owned_nodes->SetCallback({name},
                                    [sink] { return static_cast<double>(sink->owned_count()); });
  if (direction == Direction::kForward) {
    metrics_.leader->SetCallback({}, [service] { return service->Status().leader ? 1.0 : 0.0; });
  }
}

ops::HttpResponse Zk2ZkOperations::Ready() const {
  const sync::SyncService* forward = Of(Direction::kForward).service.load();
  if (forward == nullptr) return server_.StartingResponse();
  const bool leader = forward->Status().leader;
  std::vector<std::string> missing;
  for (Direction direction : kDirections) {
    const sync::SyncService* service = Of(direction).service.load();
    const sync::FencedWriter* writer = Of(direction).writer.load();
    if (service == nullptr) continue;
    const sync::SyncStatus status = service->Status();
    const bool forward_side = direction == Direction::kForward;
    const std::string reads = forward_side ? "source" : "target";
    const std::string writes = forward_side ? "target" : "source";
    if (!status.source_connected) missing.push_back(reads + " zookeeper not connected");
    if (!status.leader) {
      if (!status.campaigning) {
        missing.push_back(std::string(DirectionName(direction)) +
                          ": neither leading nor campaigning");
      }
      continue;
    }
    if (writer != nullptr && writer->retrying()) {
      missing.push_back(writes + " zookeeper not answering");
    }
    if (!status.first_sync_done) {
      missing.push_back(std::string(DirectionName(direction)) + ": first full sync not done");
    }
  }
  return ReadyResponse(leader, missing);
}

void Zk2ZkOperations::Stop() {
  server_.Stop();
  for (Direction direction : kDirections) {
    Attached& attached = Of(direction);
    if (attached.service.load() == nullptr) continue;
    const std::string_view name = DirectionName(direction);
    metrics_.session_connected->ClearCallback({name});
    metrics_.queue_depth->ClearCallback({name, "dirty_paths"});
    metrics_.queue_depth->ClearCallback({name, "pending_writes"});
    metrics_.owned_nodes->ClearCallback({name});
    if (direction == Direction::kForward) metrics_.leader->ClearCallback({});
    attached.service.store(nullptr);
    attached.writer.store(nullptr);
  }
}

}  // namespace zk2etcd::cli
