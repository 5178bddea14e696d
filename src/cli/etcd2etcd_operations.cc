#include "cli/etcd2etcd_operations.h"

#include "common/build_values.h"

namespace zk2etcd::cli {

MirrorOperations::MirrorOperations(ops::Logger& logger)
    : server_(logger, registry_, [this] { return Ready(); }) {
  server_.Handle("POST", "/reconcile", [this, &logger](const ops::HttpRequest&) {
    sync::MirrorService* service = service_.load();
    if (service == nullptr) return ops::HttpResponse::Text(503, "starting\n");
    service->RequestReconcile();
    logger.Warn("reconciliation requested through /reconcile");
    return ops::HttpResponse::Text(200, "reconciliation requested\n");
  });
}

Result<std::unique_ptr<MirrorOperations>, std::string> MirrorOperations::Create(
    ops::Logger& logger) {
  std::unique_ptr<MirrorOperations> operations(new MirrorOperations(logger));
  auto metrics = ops::RegisterMirrorMetrics(operations->registry_, build_values::kVersion,
                                            build_values::kGitCommit);
  if (!metrics.ok()) return Unexpected{metrics.error()};
  operations->metrics_ = *metrics;
  operations->source_observer_ = std::make_unique<ops::MetricsOpObserver>(
      *metrics->etcd_op_total, *metrics->etcd_op_duration_seconds, "source");
  operations->dest_observer_ = std::make_unique<ops::MetricsOpObserver>(
      *metrics->etcd_op_total, *metrics->etcd_op_duration_seconds, "dest");
  return operations;
}

MirrorOperations::~MirrorOperations() { Stop(); }

void MirrorOperations::OnApplied(const sync::AppliedBatch& batch) {
  for (const auto& [outcome, count] :
       {std::pair{"applied", batch.applied}, std::pair{"stale", batch.stale},
        std::pair{"foreign", batch.foreign}, std::pair{"absent", batch.absent},
        std::pair{"failed", batch.failed}}) {
    if (count > 0)
      metrics_.events_applied_total->WithLabels({outcome}).Inc(static_cast<double>(count));
  }
  metrics_.change_sets_applied_total->Get().Inc(static_cast<double>(batch.change_sets));
  if (batch.change_sets > 0) metrics_.apply_delay_seconds->Get().ObserveDuration(batch.delay);
}

void MirrorOperations::OnReconcile(
    sync::ReconcileCause cause, const Result<sync::ReconcileReport, sync::ReconcileError>& result,
    std::chrono::system_clock::time_point now) {
  const std::string_view cause_name = sync::ReconcileCauseName(cause);
  if (!result.ok()) {
    metrics_.reconciliations_total->WithLabels({cause_name, "failure"}).Inc();
    return;
  }
  const sync::ReconcileReport& report = *result;
  metrics_.reconciliations_total->WithLabels({cause_name, "success"}).Inc();
  RecordReconcileSuccess(metrics_, report, now);
}

void MirrorOperations::OnElected(std::chrono::nanoseconds took) {
  metrics_.election_seconds->Get().Set(std::chrono::duration<double>(took).count());
}

void MirrorOperations::Attach(sync::MirrorService* service, const sync::FencedWriter* writer) {
  writer_.store(writer);
  service_.store(service);
  metrics_.leader->SetCallback({}, [service] { return service->Status().leader ? 1.0 : 0.0; });
  metrics_.source_connected->SetCallback(
      {}, [service] { return service->Status().source_connected ? 1.0 : 0.0; });
  metrics_.checkpoint_revision->SetCallback(
      {}, [service] { return static_cast<double>(service->Status().checkpoint); });
  metrics_.lag_revisions->SetCallback({}, [service] {
    const sync::MirrorStatus status = service->Status();
    return static_cast<double>(std::max<int64_t>(0, status.latest_point - status.checkpoint));
  });
  metrics_.lag_seconds->SetCallback({}, [service] {
    return std::chrono::duration<double>(service->Status().oldest_queued_age).count();
  });
  metrics_.queued_change_sets->SetCallback(
      {}, [service] { return static_cast<double>(service->Status().queued_change_sets); });
}

// A batch of changes unanswered this long makes the leader not ready.
constexpr std::chrono::seconds kUnanswered{5};

ops::HttpResponse MirrorOperations::Ready() const {
  const sync::MirrorService* service = service_.load();
  const sync::FencedWriter* writer = writer_.load();
  if (service == nullptr) return server_.StartingResponse();
  const sync::MirrorStatus status = service->Status();
  std::vector<std::string> missing;
  // A failed write waiting to be retried, or a batch unanswered for a while (the client retries
  // a call against a destination that does not answer until its deadline). Said whether or not
  // the lease still holds: a lease that ended while the batch waits is why it ended.
  const bool dest_failing = (writer != nullptr && writer->retrying()) || status.sink_failing ||
                            status.unanswered_for >= kUnanswered;
  if (status.leader) {
    if (!status.source_connected) missing.push_back("source etcd not connected");
    if (dest_failing) missing.push_back("destination etcd not answering");
    if (!status.first_sync_done) missing.push_back("not caught up yet");
  } else if (!status.campaigning) {
    missing.push_back("neither leading nor campaigning");
    if (dest_failing) missing.push_back("destination etcd not answering");
  }
  return ReadyResponse(status.leader, missing);
}

void MirrorOperations::Stop() {
  server_.Stop();
  if (service_.load() != nullptr) {
    for (ops::GaugeFamily* gauge :
         {metrics_.leader, metrics_.source_connected, metrics_.checkpoint_revision,
          metrics_.lag_revisions, metrics_.lag_seconds, metrics_.queued_change_sets}) {
      gauge->ClearCallback({});
    }
    service_.store(nullptr);
    writer_.store(nullptr);
  }
}

}  // namespace zk2etcd::cli
