// Every metric zk2etcd exposes, in one list: name, labels, buckets and help. The engine, the
// clients and /metrics all take their families from Zk2etcdMetrics, filled in once at start-up by
// RegisterZk2etcdMetrics(). The first five keep the Go tool's names and labels so that its
// Grafana dashboards keep working; durations are in seconds (the Go tool recorded whole seconds,
// which put every sample in the first bucket).
//
// Label values are fixed small sets, never free text:
//   op, status   the clients' operation names and error labels (zk/zk_client.h, ZkErrorLabel;
//                etcd/etcd_client.h, ErrorLabel); status "success" on success
//   type         "put" or "delete"
//   status       of zk2etcd_etcd_refused_writes_total: an etcd error label (ErrorLabel)
//   result       "success" or "failure"
//   kind         DifferenceKindName() in sync/differ.h: missing, changed, extra, foreign,
//                orphan_meta (unclaimed is not a difference)
//   queue        the engine's queue names
//
// Thread-safe as the families are (see metrics.h); RegisterZk2etcdMetrics is called once.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "ops/metrics.h"

namespace zk2etcd::ops {

// Buckets (seconds) for the time from a ZooKeeper change to its etcd commit: 1 ms to 5 min, since
// a backlog after a reconnect can hold changes for minutes.
std::vector<double> SyncDelayBuckets();
// Buckets (seconds) for full syncs: 10 ms (a tiny subtree) to 1 h (millions of nodes).
std::vector<double> FullSyncDurationBuckets();

// The list. Each entry is one of
//   COUNTER(member, "name", "label,label", "help")
//   GAUGE(member, "name", "label,label", "help")
//   HISTOGRAM(member, "name", "label,label", buckets(), "help")
// with "" for no labels.
// clang-format off
#define ZK2ETCD_METRICS(COUNTER, GAUGE, HISTOGRAM)                                                \
  COUNTER(zk_op_total, "zk2etcd_zk_op_total", "op,status",                                        \
          "ZooKeeper requests completed, by operation and status (success or the error class).") \
  HISTOGRAM(zk_op_duration_seconds, "zk2etcd_zk_op_duration_seconds", "op,status",                \
            DefaultDurationBuckets(), "Duration of ZooKeeper requests, by operation and status.") \
  COUNTER(etcd_op_total, "zk2etcd_etcd_op_total", "op,status",                                    \
          "etcd requests completed, by operation and status (success or the error class).")      \
  HISTOGRAM(etcd_op_duration_seconds, "zk2etcd_etcd_op_duration_seconds", "op,status",            \
            DefaultDurationBuckets(), "Duration of etcd requests, by operation and status.")     \
  COUNTER(fixed_total, "zk2etcd_fixed_total", "type",                                             \
          "Differences repaired in etcd by full syncs, by type (put or delete).")                \
  COUNTER(etcd_refused_writes_total, "zk2etcd_etcd_refused_writes_total", "status",             \
          "Writes etcd refused on their own (e.g. a request too large), by error class.")        \
  HISTOGRAM(sync_delay_seconds, "zk2etcd_sync_delay_seconds", "", SyncDelayBuckets(),             \
            "Time from receiving a ZooKeeper change to its write being committed in etcd.")      \
  HISTOGRAM(reconcile_duration_seconds, "zk2etcd_reconcile_duration_seconds", "",                 \
            FullSyncDurationBuckets(), "Duration of full syncs (walk, compare and repair).")     \
  COUNTER(reconcile_total, "zk2etcd_reconcile_total", "result",                                   \
          "Full syncs finished, by result (success or failure).")                                \
  GAUGE(reconcile_last_success_timestamp_seconds,                                                 \
        "zk2etcd_reconcile_last_success_timestamp_seconds", "",                                   \
        "Unix time at which the last successful full sync finished.")                            \
  GAUGE(differences, "zk2etcd_differences", "kind",                                               \
        "Differences between ZooKeeper and etcd found by the last full sync, by kind.")          \
  GAUGE(watches, "zk2etcd_watches", "", "ZooKeeper watches currently registered.")                \
  GAUGE(zk_session_connected, "zk2etcd_zk_session_connected", "",                                 \
        "1 while the ZooKeeper session is connected, 0 otherwise.")                              \
  GAUGE(leader, "zk2etcd_leader", "",                                                             \
        "1 while this instance is the leader that writes to etcd, 0 otherwise.")                 \
  GAUGE(queue_depth, "zk2etcd_queue_depth", "queue", "Items waiting in each internal queue.")     \
  GAUGE(build_info, "zk2etcd_build_info", "version,commit",                                       \
        "Always 1; the labels carry the version and git commit of this build.")
// clang-format on

// The metrics of an etcd2etcd mirror (`zk2etcd etcd2etcd sync`), in a registry of their own
// (a process runs one job). Labels:
//   side         "source" or "dest"
//   op, status   as zk2etcd_etcd_op_total
//   outcome      what a write of a source change did: applied, stale (a newer write was there),
//                foreign (the key is not the mirror's), absent (a delete found nothing), failed
//   cause        why a reconciliation ran: start, compaction, periodic, requested
//                (sync::ReconcileCauseName)
//   result       "success" or "failure"
//   type, kind   as zk2etcd_fixed_total and zk2etcd_differences
// clang-format off
#define ZK2ETCD_MIRROR_METRICS(COUNTER, GAUGE, HISTOGRAM)                                         \
  COUNTER(etcd_op_total, "zk2etcd_mirror_etcd_op_total", "side,op,status",                        \
          "etcd requests completed, by side (source or dest), operation and status.")            \
  HISTOGRAM(etcd_op_duration_seconds, "zk2etcd_mirror_etcd_op_duration_seconds", "side,op,status",\
            DefaultDurationBuckets(), "Duration of etcd requests, by side, operation and status.")\
  COUNTER(events_applied_total, "zk2etcd_mirror_events_applied_total", "outcome",                 \
          "Writes of source changes to the destination, by outcome.")                            \
  COUNTER(change_sets_applied_total, "zk2etcd_mirror_change_sets_applied_total", "",              \
          "Source revisions (one transaction each) applied to the destination, atomically.")     \
  HISTOGRAM(apply_delay_seconds, "zk2etcd_mirror_apply_delay_seconds", "", SyncDelayBuckets(),    \
            "Time from receiving a source change to its commit in the destination.")             \
  GAUGE(lag_revisions, "zk2etcd_mirror_lag_revisions", "",                                        \
        "Source revisions received but not yet applied: the newest received minus the checkpoint.")\
  GAUGE(lag_seconds, "zk2etcd_mirror_lag_seconds", "",                                            \
        "How long the oldest source change not yet applied has waited (0 when caught up).")      \
  GAUGE(checkpoint_revision, "zk2etcd_mirror_checkpoint_revision", "",                            \
        "The source revision recorded in the destination with the data: a restart resumes after it.")\
  COUNTER(reconciliations_total, "zk2etcd_mirror_reconciliations_total", "cause,result",          \
          "Reconciliations (compare the whole range and repair), by cause and result.")          \
  HISTOGRAM(reconcile_duration_seconds, "zk2etcd_mirror_reconcile_duration_seconds", "",          \
            FullSyncDurationBuckets(), "Duration of reconciliations (read, compare and repair).")\
  GAUGE(reconcile_last_success_timestamp_seconds,                                                 \
        "zk2etcd_mirror_reconcile_last_success_timestamp_seconds", "",                            \
        "Unix time at which the last successful reconciliation finished.")                       \
  COUNTER(fixed_total, "zk2etcd_mirror_fixed_total", "type",                                      \
          "Differences repaired in the destination by reconciliations, by type (put or delete).")\
  GAUGE(differences, "zk2etcd_mirror_differences", "kind",                                        \
        "Differences between source and destination found by the last reconciliation, by kind.") \
  GAUGE(source_connected, "zk2etcd_mirror_source_connected", "",                                  \
        "1 while the source's change stream is connected, 0 otherwise.")                         \
  GAUGE(leader, "zk2etcd_mirror_leader", "",                                                      \
        "1 while this instance is the mirror's leader (the one that writes), 0 otherwise.")      \
  GAUGE(election_seconds, "zk2etcd_mirror_election_seconds", "",                                  \
        "How long the last won campaign took (a standby's takeover time).")                      \
  GAUGE(queued_change_sets, "zk2etcd_mirror_queued_change_sets", "",                              \
        "Source revisions received and waiting to be applied.")                                  \
  GAUGE(build_info, "zk2etcd_build_info", "version,commit",                                       \
        "Always 1; the labels carry the version and git commit of this build.")
// clang-format on

// The metrics of a zk2zk job (`zk2etcd zk2zk sync`), in a registry of their own. Labels:
//   side         "source" or "target": the ensemble a request went to
//   op, status   as zk2etcd_zk_op_total
//   direction    "forward" (source to target) or "reverse" (the target's ephemerals to the source)
//   type         "put", "delete" or "adopt" (a write's kind)
//   outcome      what a write did: applied, stale (a newer write was there), foreign (not the
//                job's node: left alone), already_absent, failed, not_leader
//   status       of zk2etcd_zk2zk_refused_writes_total: the sink's error label
//   result       "success" or "failure"
//   kind         as zk2etcd_differences
//   queue        dirty_paths, pending_writes
// clang-format off
#define ZK2ETCD_ZK2ZK_METRICS(COUNTER, GAUGE, HISTOGRAM)                                          \
  COUNTER(zk_op_total, "zk2etcd_zk2zk_zk_op_total", "side,op,status",                             \
          "ZooKeeper requests completed, by ensemble (source or target), operation and status.") \
  HISTOGRAM(zk_op_duration_seconds, "zk2etcd_zk2zk_zk_op_duration_seconds", "side,op,status",     \
            DefaultDurationBuckets(), "Duration of ZooKeeper requests, by ensemble, op and status.")\
  COUNTER(writes_total, "zk2etcd_zk2zk_writes_total", "direction,type,outcome",                   \
          "Writes of changes and repairs, by direction, type and outcome.")                     \
  COUNTER(refused_writes_total, "zk2etcd_zk2zk_refused_writes_total", "direction,status",         \
          "Writes the ensemble refused on their own (not permitted, too large), by error label.")\
  HISTOGRAM(sync_delay_seconds, "zk2etcd_zk2zk_sync_delay_seconds", "direction", SyncDelayBuckets(),\
            "Time from receiving a change to its write being applied on the other ensemble.")    \
  COUNTER(reconcile_total, "zk2etcd_zk2zk_reconcile_total", "direction,result",                   \
          "Full syncs (compare the whole scope and repair) finished, by direction and result.")  \
  HISTOGRAM(reconcile_duration_seconds, "zk2etcd_zk2zk_reconcile_duration_seconds", "direction",  \
            FullSyncDurationBuckets(), "Duration of full syncs, by direction.")                 \
  GAUGE(reconcile_last_success_timestamp_seconds,                                                 \
        "zk2etcd_zk2zk_reconcile_last_success_timestamp_seconds", "direction",                    \
        "Unix time at which the last successful full sync of the direction finished.")          \
  COUNTER(fixed_total, "zk2etcd_zk2zk_fixed_total", "direction,type",                             \
          "Differences repaired by full syncs, by direction and type (put or delete).")          \
  GAUGE(differences, "zk2etcd_zk2zk_differences", "direction,kind",                               \
        "Differences the last full sync of the direction found, by kind.")                       \
  GAUGE(nodes, "zk2etcd_zk2zk_nodes", "side",                                                     \
        "Nodes in scope on each ensemble, as the last full sync counted them (the source's "     \
        "without the reverse copies).")                                                          \
  GAUGE(owned_nodes, "zk2etcd_zk2zk_owned_nodes", "direction",                                    \
        "Nodes the direction wrote and owns (it deletes them when their original goes).")        \
  GAUGE(session_connected, "zk2etcd_zk2zk_session_connected", "direction",                        \
        "1 while the session the direction reads changes from is connected, 0 otherwise.")      \
  GAUGE(leader, "zk2etcd_zk2zk_leader", "",                                                       \
        "1 while this instance is the job's leader (the one that writes), 0 otherwise.")         \
  GAUGE(queue_depth, "zk2etcd_zk2zk_queue_depth", "direction,queue",                              \
        "Items waiting in each internal queue of the direction.")                                \
  GAUGE(build_info, "zk2etcd_build_info", "version,commit",                                       \
        "Always 1; the labels carry the version and git commit of this build.")
// clang-format on

// The families, one member per entry of ZK2ETCD_METRICS; owned by the Registry.
struct Zk2etcdMetrics {
#define ZK2ETCD_METRIC_COUNTER_MEMBER(member, name, labels, help) CounterFamily* member = nullptr;
#define ZK2ETCD_METRIC_GAUGE_MEMBER(member, name, labels, help) GaugeFamily* member = nullptr;
#define ZK2ETCD_METRIC_HISTOGRAM_MEMBER(member, name, labels, buckets, help) \
  HistogramFamily* member = nullptr;
  ZK2ETCD_METRICS(ZK2ETCD_METRIC_COUNTER_MEMBER, ZK2ETCD_METRIC_GAUGE_MEMBER,
                  ZK2ETCD_METRIC_HISTOGRAM_MEMBER)
#undef ZK2ETCD_METRIC_COUNTER_MEMBER
#undef ZK2ETCD_METRIC_GAUGE_MEMBER
#undef ZK2ETCD_METRIC_HISTOGRAM_MEMBER
};

// Registers every family of ZK2ETCD_METRICS and sets zk2etcd_build_info{version,commit} to 1.
// Errors only if `registry` already holds one of the names.
Result<Zk2etcdMetrics, std::string> RegisterZk2etcdMetrics(Registry& registry,
                                                           std::string_view version,
                                                           std::string_view commit);

// The families of an etcd2etcd mirror, one member per entry of ZK2ETCD_MIRROR_METRICS.
struct MirrorMetrics {
#define ZK2ETCD_METRIC_COUNTER_MEMBER(member, name, labels, help) CounterFamily* member = nullptr;
#define ZK2ETCD_METRIC_GAUGE_MEMBER(member, name, labels, help) GaugeFamily* member = nullptr;
#define ZK2ETCD_METRIC_HISTOGRAM_MEMBER(member, name, labels, buckets, help) \
  HistogramFamily* member = nullptr;
  ZK2ETCD_MIRROR_METRICS(ZK2ETCD_METRIC_COUNTER_MEMBER, ZK2ETCD_METRIC_GAUGE_MEMBER,
                         ZK2ETCD_METRIC_HISTOGRAM_MEMBER)
#undef ZK2ETCD_METRIC_COUNTER_MEMBER
#undef ZK2ETCD_METRIC_GAUGE_MEMBER
#undef ZK2ETCD_METRIC_HISTOGRAM_MEMBER
};

// Registers every family of ZK2ETCD_MIRROR_METRICS and sets zk2etcd_build_info to 1. Errors only
// if `registry` already holds one of the names.
Result<MirrorMetrics, std::string> RegisterMirrorMetrics(Registry& registry,
                                                         std::string_view version,
                                                         std::string_view commit);

// The families of a zk2zk job, one member per entry of ZK2ETCD_ZK2ZK_METRICS.
struct Zk2ZkMetrics {
#define ZK2ETCD_METRIC_COUNTER_MEMBER(member, name, labels, help) CounterFamily* member = nullptr;
#define ZK2ETCD_METRIC_GAUGE_MEMBER(member, name, labels, help) GaugeFamily* member = nullptr;
#define ZK2ETCD_METRIC_HISTOGRAM_MEMBER(member, name, labels, buckets, help) \
  HistogramFamily* member = nullptr;
  ZK2ETCD_ZK2ZK_METRICS(ZK2ETCD_METRIC_COUNTER_MEMBER, ZK2ETCD_METRIC_GAUGE_MEMBER,
                        ZK2ETCD_METRIC_HISTOGRAM_MEMBER)
#undef ZK2ETCD_METRIC_COUNTER_MEMBER
#undef ZK2ETCD_METRIC_GAUGE_MEMBER
#undef ZK2ETCD_METRIC_HISTOGRAM_MEMBER
};

// Registers every family of ZK2ETCD_ZK2ZK_METRICS and sets zk2etcd_build_info to 1. Errors only
// if `registry` already holds one of the names.
Result<Zk2ZkMetrics, std::string> RegisterZk2ZkMetrics(Registry& registry, std::string_view version,
                                                       std::string_view commit);

}  // namespace zk2etcd::ops
