// The zk2zk job's wiring, built from a validated Zk2ZkConfig: two ZooKeeper ensembles, each both
// a source and a sink, and with --leader-elect a lock on the target shared by both directions.
//
//   forward   ZooKeeperSource on the source ensemble -> ZooKeeperSink on the target
//             (fence: the lock node exists; ancestors it creates are its own). The source leaves
//             out the nodes the reverse direction wrote (reverse_sink->Owns), so nothing loops.
//   reverse   ZooKeeperSource on the target ensemble, holding only its ephemeral nodes ->
//             ZooKeeperSink on the source (fence: a token in the meta subtree; ancestors it has to
//             create are plain nodes, as a client registering there would make them). The
//             forward copies are persistent, so they never come back.
//
// Each sink's creates read the original node's ACL and type through the other sink's client
// (ReadNodeInfo): the reverse sink's client talks to the source ensemble, the forward sink's to
// the target. Both sinks keep their records under <meta-path>/<name> of their own ensemble.
//
// The `zk2zk sync` command runs a sync::SyncService per direction on it, `zk2zk diff` a
// sync::Reconciler per direction.
//
// Not thread-safe to build; the objects it returns are thread-safe as their headers say. The
// config, logger and clock passed in must outlive the job. Members are destroyed in reverse
// order: the election first, the factories last.
#pragma once

#include <memory>

#include "cli/zk2zk_config.h"
#include "common/clock.h"
#include "common/op_observer.h"
#include "connectors/zookeeper/zk_walker.h"  // before zookeeper_source.h, which needs NodeFilter
#include "connectors/zookeeper/zookeeper_election.h"
#include "connectors/zookeeper/zookeeper_sink.h"
#include "connectors/zookeeper/zookeeper_source.h"
#include "core/leader_election.h"
#include "ops/log.h"
#include "sync/shared_election.h"
#include "zk/zk_client.h"

namespace zk2etcd::cli {

struct Zk2ZkJobOptions {
  // False: snapshot-only sources (diff): no watch is registered.
  bool change_stream = true;
  // Build the election (sync with --leader-elect).
  bool election = true;
  // Report every request to the source and to the target ensemble (metrics); may be null.
  OpObserver* source_observer = nullptr;
  OpObserver* target_observer = nullptr;
};

struct Zk2ZkJob {
  std::unique_ptr<zk::ZkClientFactory> source_factory;  // sessions on the source ensemble
  std::unique_ptr<zk::ZkClientFactory> target_factory;  // sessions on the target ensemble
  // The source ensemble as the reverse direction's sink; also the forward creates' view of the
  // originals, and the forward source's filter (Owns). Built even without --reverse-ephemerals:
  // the copies an earlier run made back are still never copied forward.
  std::unique_ptr<connectors::ZooKeeperSink> reverse_sink;
  std::unique_ptr<connectors::ZooKeeperSink> forward_sink;  // the target ensemble
  std::unique_ptr<connectors::ZooKeeperSource> forward_source;
  std::unique_ptr<connectors::ZooKeeperSource> reverse_source;  // null without reverse
  std::unique_ptr<connectors::ZooKeeperElection> election;      // null without an election
  std::unique_ptr<sync::SharedElection> shared_election;        // with `election`

  // What each direction's service campaigns with: null without an election.
  core::LeaderElection* forward_election() const;
  core::LeaderElection* reverse_election() const;
};

Zk2ZkJob MakeZk2ZkJob(const Zk2ZkConfig& config, ops::Logger& logger, const Clock& clock,
                      const Zk2ZkJobOptions& options);

}  // namespace zk2etcd::cli
