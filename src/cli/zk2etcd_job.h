// The zk2etcd job's wiring: a ZooKeeper source, an etcd sink and, with --leader-elect, an etcd
// election, built from a validated Config. The `sync` and `diff` commands run the engine
// (sync::SyncService, sync::Reconciler) on what this builds; another job (etcd to etcd,
// ZooKeeper to ZooKeeper) gets a file of its own beside this one.
//
// Not thread-safe to build; the objects it returns are thread-safe as their headers say. The
// etcd client, config, logger and clock passed in must outlive the job.
#pragma once

#include <memory>
#include <optional>

#include "cli/config.h"
#include "common/clock.h"
#include "common/op_observer.h"
#include "connectors/etcd/etcd_election.h"
#include "connectors/etcd/etcd_sink.h"
#include "connectors/zookeeper/zookeeper_source.h"
#include "etcd/etcd_client.h"
#include "ops/log.h"
#include "zk/zk_client.h"

namespace zk2etcd::cli {

struct Zk2EtcdJobOptions {
  connectors::WatchMode watch_mode = connectors::WatchMode::kAuto;
  // False: a snapshot-only source (diff): no watch is registered.
  bool change_stream = true;
  // Set with --leader-elect.
  std::optional<connectors::EtcdElectionOptions> election;
};

struct Zk2EtcdJob {
  std::unique_ptr<zk::ZkClientFactory> zk_factory;  // sessions of the source
  std::unique_ptr<connectors::ZooKeeperSource> source;
  std::unique_ptr<connectors::EtcdSink> sink;
  std::unique_ptr<connectors::EtcdElection> election;  // null without --leader-elect
};

// The ZooKeeper sessions of a sync: AsioZkClients with the config's options, reporting to
// `observer` (may be null). `logger` and `clock` must outlive the factory.
std::unique_ptr<zk::ZkClientFactory> NewZooKeeperSessions(const Config& config, ops::Logger& logger,
                                                          const Clock& clock, OpObserver* observer);

// The job's ZooKeeper side alone (its sessions and source; no sink yet), so that `sync` can open
// the source while it dials etcd (ZooKeeperSource::OpenAhead); AddEtcdSide completes it.
Zk2EtcdJob MakeZk2EtcdSourceSide(const Config& config,
                                 std::unique_ptr<zk::ZkClientFactory> zk_factory,
                                 ops::Logger& logger, const Zk2EtcdJobOptions& options);
// The sink and, with options.election, the election, over `etcd`.
void AddEtcdSide(Zk2EtcdJob& job, const Config& config, etcd::EtcdClient& etcd, ops::Logger& logger,
                 const Zk2EtcdJobOptions& options);

// The job over sessions from `zk_factory` (each Open of the source asks it for one; `sync`
// passes NewZooKeeperSessions, preconnected).
Zk2EtcdJob MakeZk2EtcdJob(const Config& config, etcd::EtcdClient& etcd,
                          std::unique_ptr<zk::ZkClientFactory> zk_factory, ops::Logger& logger,
                          const Zk2EtcdJobOptions& options);

// The job over one ZooKeeper client already connected (diff dials with a deadline first): its
// source can be opened once.
Zk2EtcdJob MakeZk2EtcdJob(const Config& config, etcd::EtcdClient& etcd,
                          std::unique_ptr<zk::ZkClient> connected, ops::Logger& logger,
                          const Zk2EtcdJobOptions& options);

}  // namespace zk2etcd::cli
