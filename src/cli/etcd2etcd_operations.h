// MirrorOperations: what an operator sees of a running `zk2etcd etcd2etcd sync`: the mirror's
// metrics (ZK2ETCD_MIRROR_METRICS in ops/metrics_catalog.h) and the endpoints of
// OperationsServer (operations.h) over them, plus
//
//   GET  /readyz      200 when the leader has caught up once and the destination answers
//                     ("ready: leader"), or while campaigning ("ready: standby"); else 503
//   POST /reconcile   asks the running mirror for a reconciliation (cause "requested")
//
// Thread-safe: the engine's callbacks come on its Run thread, the HTTP server reads the engine
// through its thread-safe accessors.
#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "cli/operations.h"
#include "common/op_observer.h"
#include "ops/log.h"
#include "ops/metrics.h"
#include "ops/metrics_catalog.h"
#include "sync/fenced_writer.h"
#include "sync/mirror_service.h"
#include "sync/reconciler.h"

namespace zk2etcd::cli {

class MirrorOperations {
 public:
  // Registers the metrics; fails only on a programming error in the catalog.
  static Result<std::unique_ptr<MirrorOperations>, std::string> Create(ops::Logger& logger);
  ~MirrorOperations();

  // The clients' observers: zk2etcd_mirror_etcd_op_total{side="source"|"dest",...}.
  OpObserver* source_observer() { return source_observer_.get(); }
  OpObserver* dest_observer() { return dest_observer_.get(); }

  // Engine callbacks (MirrorServiceOptions).
  void OnApplied(const sync::AppliedBatch& batch);
  void OnReconcile(sync::ReconcileCause cause,
                   const Result<sync::ReconcileReport, sync::ReconcileError>& result,
                   std::chrono::system_clock::time_point now);
  void OnElected(std::chrono::nanoseconds took);

  // Lets the endpoints and gauges read the engine. REQUIRES: both outlive Stop().
  void Attach(sync::MirrorService* service, const sync::FencedWriter* writer);
  void SetConfigDump(std::vector<std::string> lines) { server_.SetConfigDump(std::move(lines)); }
  // OperationsServer::SetStarting.
  void SetStarting(std::string what) { server_.SetStarting(std::move(what)); }

  Result<void, std::string> Serve(const std::string& listen_address) {
    return server_.Serve(listen_address);
  }
  uint16_t port() const { return server_.port(); }
  // Stops the HTTP server and detaches the engine.
  void Stop();

  ops::Registry& registry() { return registry_; }

 private:
  explicit MirrorOperations(ops::Logger& logger);
  ops::HttpResponse Ready() const;

  ops::Registry registry_;
  ops::MirrorMetrics metrics_;
  std::unique_ptr<ops::MetricsOpObserver> source_observer_;
  std::unique_ptr<ops::MetricsOpObserver> dest_observer_;
  std::atomic<sync::MirrorService*> service_{nullptr};
  std::atomic<const sync::FencedWriter*> writer_{nullptr};
  OperationsServer server_;
};

}  // namespace zk2etcd::cli
