// Zk2ZkOperations: what an operator sees of a running `zk2etcd zk2zk sync`: the job's metrics
// (ZK2ETCD_ZK2ZK_METRICS in ops/metrics_catalog.h), the endpoints of OperationsServer
// (operations.h) over them, and the counts of the progress line:
//
//   GET /readyz   200 "ready: leader" once both directions finished their first full sync and
//                 both ensembles answer, 200 "ready: standby" while campaigning; else 503
//
// Thread-safe: the engine's callbacks come on the services' and writers' threads, the HTTP
// server reads the engine through its thread-safe accessors.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "cli/operations.h"
#include "common/op_observer.h"
#include "connectors/zookeeper/zk_walker.h"  // before zookeeper_sink.h's users
#include "connectors/zookeeper/zookeeper_sink.h"
#include "ops/log.h"
#include "ops/metrics.h"
#include "ops/metrics_catalog.h"
#include "sync/fenced_writer.h"
#include "sync/incremental_sync.h"
#include "sync/reconciler.h"
#include "sync/sync_service.h"

namespace zk2etcd::cli {

enum class Direction { kForward, kReverse };
// "forward" or "reverse": the metrics' and the audit log's label.
std::string_view DirectionName(Direction direction);

// What the progress line says: both ensembles' nodes in scope, as the last full sync of each
// direction counted them, and the writes applied since the start.
struct Zk2ZkProgress {
  bool counted = false;          // the forward direction finished a full sync
  size_t source_nodes = 0;       // forward: the source's nodes (without the reverse copies)
  size_t target_nodes = 0;       // forward: the target's nodes in scope
  size_t target_ephemerals = 0;  // reverse: the target's ephemeral nodes
  uint64_t forward_writes = 0;
  uint64_t reverse_writes = 0;
};

class Zk2ZkOperations {
 public:
  // Registers the metrics; fails only on a programming error in the catalog.
  static Result<std::unique_ptr<Zk2ZkOperations>, std::string> Create(ops::Logger& logger);
  ~Zk2ZkOperations();

  // The clients' observers: zk2etcd_zk2zk_zk_op_total{side="source"|"target",...}.
  OpObserver* source_observer() { return source_observer_.get(); }
  OpObserver* target_observer() { return target_observer_.get(); }

  // Engine callbacks (SyncServiceOptions, FencedWriter's refusal observer).
  void OnChange(Direction direction, const sync::AppliedChange& change);
  void OnRepair(Direction direction, const sync::RepairResult& repair);
  void OnReconcile(Direction direction,
                   const Result<sync::ReconcileReport, sync::ReconcileError>& result,
                   std::chrono::system_clock::time_point now);
  void OnRefusedWrite(Direction direction, const core::SinkError& error);

  // Lets the endpoints and gauges read one direction's engine. REQUIRES: they outlive Stop().
  void Attach(Direction direction, const sync::SyncService* service,
              const sync::FencedWriter* writer, const connectors::ZooKeeperSink* sink);
  void SetConfigDump(std::vector<std::string> lines) { server_.SetConfigDump(std::move(lines)); }
  void SetConfigValue(std::string_view name, std::string_view value) {
    server_.SetConfigValue(name, value);
  }
  void SetStarting(std::string what) { server_.SetStarting(std::move(what)); }

  Result<void, std::string> Serve(const std::string& listen_address) {
    return server_.Serve(listen_address);
  }
  uint16_t port() const { return server_.port(); }
  // Stops the HTTP server and detaches the engines.
  void Stop();

  Zk2ZkProgress Progress() const;
  ops::Registry& registry() { return registry_; }

 private:
  struct Attached {
    std::atomic<const sync::SyncService*> service{nullptr};
    std::atomic<const sync::FencedWriter*> writer{nullptr};
  };

  explicit Zk2ZkOperations(ops::Logger& logger);
  ops::HttpResponse Ready() const;
  Attached& Of(Direction direction) { return attached_[static_cast<size_t>(direction)]; }
  const Attached& Of(Direction direction) const {
    return attached_[static_cast<size_t>(direction)];
  }

  ops::Registry registry_;
  ops::Zk2ZkMetrics metrics_;
  std::unique_ptr<ops::MetricsOpObserver> source_observer_;
  std::unique_ptr<ops::MetricsOpObserver> target_observer_;
  Attached attached_[2];
  std::atomic<uint64_t> writes_[2] = {0, 0};  // applied, per direction

  mutable std::mutex mutex_;
  Zk2ZkProgress counts_;  // the node counts; guarded by mutex_

  OperationsServer server_;
};

}  // namespace zk2etcd::cli
