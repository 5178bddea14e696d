#include "ops/metrics_catalog.h"

#include "common/strings.h"

namespace zk2etcd::ops {

std::vector<double> SyncDelayBuckets() {
  return {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300};
}

std::vector<double> FullSyncDurationBuckets() {
  return {0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 120, 300, 600, 1800, 3600};
}

namespace {

// Fills `metrics`' members from a list macro (ZK2ETCD_METRICS, ZK2ETCD_MIRROR_METRICS).
#define ZK2ETCD_REGISTER(member, add_call)               \
  {                                                      \
    auto family = add_call;                              \
    if (!family.ok()) return Unexpected{family.error()}; \
    metrics.member = family.value();                     \
  }
#define ZK2ETCD_REGISTER_COUNTER(member, name, labels, help) \
  ZK2ETCD_REGISTER(member, registry.AddCounter(name, help, SplitCommaList(labels)))
#define ZK2ETCD_REGISTER_GAUGE(member, name, labels, help) \
  ZK2ETCD_REGISTER(member, registry.AddGauge(name, help, SplitCommaList(labels)))
#define ZK2ETCD_REGISTER_HISTOGRAM(member, name, labels, buckets, help) \
  ZK2ETCD_REGISTER(member, registry.AddHistogram(name, help, SplitCommaList(labels), buckets))

}  // namespace

Result<Zk2etcdMetrics, std::string> RegisterZk2etcdMetrics(Registry& registry,
                                                           std::string_view version,
                                                           std::string_view commit) {
  Zk2etcdMetrics metrics;
  ZK2ETCD_METRICS(ZK2ETCD_REGISTER_COUNTER, ZK2ETCD_REGISTER_GAUGE, ZK2ETCD_REGISTER_HISTOGRAM)
  metrics.build_info->WithLabels({version, commit}).Set(1);
  return metrics;
}

Result<MirrorMetrics, std::string> RegisterMirrorMetrics(Registry& registry,
                                                         std::string_view version,
                                                         std::string_view commit) {
  MirrorMetrics metrics;
  ZK2ETCD_MIRROR_METRICS(ZK2ETCD_REGISTER_COUNTER, ZK2ETCD_REGISTER_GAUGE,
                         ZK2ETCD_REGISTER_HISTOGRAM)
  metrics.build_info->WithLabels({version, commit}).Set(1);
  return metrics;
}

Result<Zk2ZkMetrics, std::string> RegisterZk2ZkMetrics(Registry& registry, std::string_view version,
                                                       std::string_view commit) {
  Zk2ZkMetrics metrics;
  ZK2ETCD_ZK2ZK_METRICS(ZK2ETCD_REGISTER_COUNTER, ZK2ETCD_REGISTER_GAUGE,
                        ZK2ETCD_REGISTER_HISTOGRAM)
  metrics.build_info->WithLabels({version, commit}).Set(1);
  return metrics;
}

#undef ZK2ETCD_REGISTER_COUNTER
#undef ZK2ETCD_REGISTER_GAUGE
#undef ZK2ETCD_REGISTER_HISTOGRAM
#undef ZK2ETCD_REGISTER

}  // namespace zk2etcd::ops
