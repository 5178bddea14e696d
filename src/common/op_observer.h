// OpObserver: how the ZooKeeper and etcd clients report every operation they complete, so that
// metrics (zk2etcd_zk_op_total, zk2etcd_etcd_op_duration_seconds, ...) are recorded in one place
// without the clients knowing about Prometheus.
//
// `op` is a short fixed name ("get", "children", "txn", "range", ...) and `status` is "success" or
// one of a fixed set of error classes of the client ("no_node", "connection_loss", "unavailable",
// ...), never free text, so label cardinality stays bounded. Implementations must be thread-safe
// and cheap: they are called on the clients' completion paths.
#pragma once

#include <chrono>
#include <string_view>

namespace zk2etcd {

class OpObserver {
 public:
  virtual ~OpObserver() = default;
  virtual void OnOp(std::string_view op, std::string_view status,
                    std::chrono::nanoseconds duration) = 0;
};

// Discards everything; the default when nobody observes.
class NullOpObserver final : public OpObserver {
 public:
  void OnOp(std::string_view, std::string_view, std::chrono::nanoseconds) override {}
};

}  // namespace zk2etcd
