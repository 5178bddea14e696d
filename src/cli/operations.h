// SyncOperations: what an operator sees of a running `zk2etcd sync`: the metrics (the Go tool's
// names, plus the engine's), the HTTP endpoints, and readiness.
//
//   GET  /metrics       Prometheus text format
//   GET  /healthz       200 while the process runs
//   GET  /readyz        200 once the first full sync is done and both servers are reachable
//                       (leader), or while connected and campaigning (healthy standby); else 503
//   POST /log           level=debug|info|warn|error|panic|fatal changes the log level (the Go
//                       tool's endpoint; form or query parameter); unknown levels get 400
//   GET  /log           the current level
//   GET  /debug/config  the effective configuration, passwords redacted
//
// Thread-safe: the HTTP server's thread reads the engine through its thread-safe accessors.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

#include "common/op_observer.h"
#include "core/sink.h"
#include "ops/http_server.h"
#include "ops/log.h"
#include "ops/metrics.h"
#include "ops/metrics_catalog.h"
#include "sync/differ.h"
#include "sync/fenced_writer.h"
#include "sync/incremental_sync.h"
#include "sync/reconciler.h"
#include "sync/sync_service.h"

namespace zk2etcd::cli {

// The HTTP endpoints every long-running command serves, in one place:
//
//   GET  /metrics       the registry, Prometheus text format
//   GET  /healthz       200 while the process runs
//   GET  /readyz        what `ready` answers
//   POST /log, GET /log the log level (see SyncOperations)
//   GET  /debug/config  the lines of SetConfigDump, as SetConfigValue changed them since, with
//                       `log-level` the logger's level now (SIGHUP and POST /log change it)
//
// plus whatever a command adds with Handle. Thread-safe once serving: handlers run on the HTTP
// server's thread. REQUIRES: the logger and registry outlive it; `ready` is thread-safe.
class OperationsServer {
 public:
  OperationsServer(ops::Logger& logger, const ops::Registry& registry,
                   std::function<ops::HttpResponse()> ready);
  ~OperationsServer();

  // Before Serve.
  void SetConfigDump(std::vector<std::string> lines);
  void Handle(std::string method, std::string path, ops::HttpHandler handler);
  // Any time (a SIGHUP that applied a setting): the dump's line of `name` says `value` from now
  // on.
  void SetConfigValue(std::string_view name, std::string_view value);
  // While the command starts (before the engine is attached): what it waits for, which /readyz
  // names ("connecting to etcd"), and that answer.
  void SetStarting(std::string what);
  ops::HttpResponse StartingResponse() const;

  // Starts the HTTP server; the error names the address.
  Result<void, std::string> Serve(const std::string& listen_address);
  uint16_t port() const;
  void Stop();

 private:
  ops::Logger& logger_;
  const ops::Registry& registry_;
  std::function<ops::HttpResponse()> ready_;
  mutable std::mutex mutex_;
  // Guarded by mutex_ once serving (handlers read them on the HTTP server's thread).
  std::vector<std::string> config_dump_;
  std::string starting_;
  std::vector<std::tuple<std::string, std::string, ops::HttpHandler>> extra_;
  std::unique_ptr<ops::HttpServer> http_;
};

// The answer of /readyz: 200 "ready: leader" or "ready: standby" when nothing is `missing`, else
// 503 "not ready: <reason>; <reason>;".
ops::HttpResponse ReadyResponse(bool leader, const std::vector<std::string>& missing);

// What a successful reconciliation records in the families that both catalogs (Zk2etcdMetrics and
// MirrorMetrics) name alike: its duration, the time of this success, the differences of each kind
// (gauges), and the repairs (fixed_total{type="put"|"delete"}). Not the count of
// reconciliations, which the catalogs label differently.
template <typename Metrics>
void RecordReconcileSuccess(const Metrics& metrics, const sync::ReconcileReport& report,
                            std::chrono::system_clock::time_point now) {
  metrics.reconcile_duration_seconds->Get().ObserveDuration(report.duration);
  metrics.reconcile_last_success_timestamp_seconds->Get().Set(
      std::chrono::duration<double>(now.time_since_epoch()).count());
  for (auto kind : {sync::Difference::Kind::kMissing, sync::Difference::Kind::kChanged,
                    sync::Difference::Kind::kExtra, sync::Difference::Kind::kForeign,
                    sync::Difference::Kind::kConflict}) {
    metrics.differences->WithLabels({sync::DifferenceKindName(kind)})
        .Set(static_cast<double>(report.Count(kind)));
  }
  metrics.fixed_total->WithLabels({"put"}).Inc(static_cast<double>(report.fixed_puts));
  metrics.fixed_total->WithLabels({"delete"}).Inc(static_cast<double>(report.fixed_deletes));
}

class SyncOperations {
 public:
  // Registers the metrics; fails only on a programming error in the catalog.
  static Result<std::unique_ptr<SyncOperations>, std::string> Create(ops::Logger& logger);
  ~SyncOperations();

  OpObserver* zk_observer() { return zk_observer_.get(); }
  OpObserver* etcd_observer() { return etcd_observer_.get(); }

  // Engine callbacks.
  void OnChange(const sync::AppliedChange& change);
  void OnReconcile(const Result<sync::ReconcileReport, sync::ReconcileError>& result,
                   std::chrono::system_clock::time_point now);
  // Per write that etcd refused on its own: zk2etcd_etcd_refused_writes_total{status}.
  void OnRefusedWrite(const core::SinkError& error);

  // Lets the endpoints and gauges read the engine. REQUIRES: outlives Stop().
  void Attach(const sync::SyncService* service, const sync::FencedWriter* writer);
  // Lines for /debug/config.
  void SetConfigDump(std::vector<std::string> lines);
  // OperationsServer::SetConfigValue and SetStarting.
  void SetConfigValue(std::string_view name, std::string_view value);
  void SetStarting(std::string what) { server_.SetStarting(std::move(what)); }

  // Starts the HTTP server; the error names the address.
  Result<void, std::string> Serve(const std::string& listen_address);
  uint16_t port() const;
  void Stop();

  ops::Registry& registry() { return registry_; }

 private:
  explicit SyncOperations(ops::Logger& logger);
  ops::HttpResponse Ready() const;

  ops::Registry registry_;
  ops::Zk2etcdMetrics metrics_;
  std::unique_ptr<ops::MetricsOpObserver> zk_observer_;
  std::unique_ptr<ops::MetricsOpObserver> etcd_observer_;
  std::atomic<const sync::SyncService*> service_{nullptr};
  std::atomic<const sync::FencedWriter*> writer_{nullptr};
  OperationsServer server_;
};

}  // namespace zk2etcd::cli
