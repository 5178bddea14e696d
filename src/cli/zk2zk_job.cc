#include "cli/zk2zk_job.h"

#include <utility>

#include "zk/asio_zk_client.h"

namespace zk2etcd::cli {

namespace {

std::unique_ptr<zk::ZkClientFactory> Factory(zk::ZkClientOptions options, ops::Logger& logger,
                                             const Clock& clock, OpObserver* observer) {
  options.clock = &clock;
  options.logger = &logger;
  options.observer = observer;
  return zk::NewAsioZkClientFactory(std::move(options));
}

}  // namespace

core::LeaderElection* Zk2ZkJob::forward_election() const {
  return shared_election ? &shared_election->member(0) : nullptr;
}

core::LeaderElection* Zk2ZkJob::reverse_election() const {
  return shared_election && reverse_source ? &shared_election->member(1) : nullptr;
}

Zk2ZkJob MakeZk2ZkJob(const Zk2ZkConfig& config, ops::Logger& logger, const Clock& clock,
                      const Zk2ZkJobOptions& options) {
  Zk2ZkJob job;
  job.source_factory = Factory(config.source, logger, clock, options.source_observer);
  job.target_factory = Factory(config.target, logger, clock, options.target_observer);

  // Each sink's creates read the original node (ACL, type) through the other sink's client: the
  // reverse sink's talks to the source ensemble, the forward sink's to the target. The reverse
  // sink is built first, so it reaches the forward sink through a slot filled right after.
  auto forward_slot = std::make_shared<connectors::ZooKeeperSink*>(nullptr);
  connectors::ZooKeeperSinkOptions reverse_options;
  reverse_options.meta_root = config.MetaRoot();
  // The election runs on the target: the source ensemble carries a fencing token instead.
  reverse_options.fence_mode = connectors::FenceMode::kToken;
  reverse_options.copy_acl = config.copy_acl;
  reverse_options.source_info = [forward_slot](const std::string& path, auto done) {
    (*forward_slot)->ReadNodeInfo(path, std::move(done));
  };
  // Parents a registration on the target needed are plain nodes here, as the client that
  // registers would have made them on the source.
  reverse_options.own_created_parents = false;
  // The source ensemble's own nodes never concern the reverse direction: its listings walk the
  // meta subtree alone (the forward direction lists the source in full).
  reverse_options.list_owned_only = true;
  reverse_options.advance_sequence_counters = config.advance_sequence_counters;
  job.reverse_sink = std::make_unique<connectors::ZooKeeperSink>(*job.source_factory, config.scope,
                                                                 logger, reverse_options);
  connectors::ZooKeeperSink* reverse_sink = job.reverse_sink.get();

  connectors::ZooKeeperSinkOptions forward_options;
  forward_options.meta_root = config.MetaRoot();
  forward_options.fence_mode = connectors::FenceMode::kNodeExists;  // the lock node
  forward_options.copy_acl = config.copy_acl;
  forward_options.source_info = [reverse_sink](const std::string& path, auto done) {
    reverse_sink->ReadNodeInfo(path, std::move(done));
  };
  forward_options.own_created_parents = true;
  // The reverse source skips the forward copies by Owns(): a copy being deleted is no longer
  // one, so that an ephemeral a client registers in its place at once is not skipped.
  forward_options.unown_before_delete = true;
  forward_options.advance_sequence_counters = config.advance_sequence_counters;
  job.forward_sink = std::make_unique<connectors::ZooKeeperSink>(*job.target_factory, config.scope,
                                                                 logger, forward_options);
  *forward_slot = job.forward_sink.get();

  connectors::ZooKeeperSourceOptions forward_source;
  forward_source.watch_mode = config.watch_mode;
  forward_source.change_stream = options.change_stream;
  forward_source.chroot = ChrootOf(config.source.connect_string);
  forward_source.multi_read_batch = 15;
  // Never copy forward what the reverse direction wrote: the copies of the target's ephemerals
  // (and the nodes its sequence counter moves make for a moment).
  forward_source.include = [reverse_sink](const std::string& path, const zk::Stat& /*stat*/) {
    return !reverse_sink->Owns(path) && !connectors::ZooKeeperSink::IsTransientNode(path);
  };
  job.forward_source = std::make_unique<connectors::ZooKeeperSource>(
      *job.source_factory, config.scope, logger, forward_source);

  if (config.reverse_ephemerals) {
    connectors::ZooKeeperSourceOptions reverse_source;
    reverse_source.watch_mode = config.watch_mode;
    reverse_source.change_stream = options.change_stream;
    reverse_source.chroot = ChrootOf(config.target.connect_string);
    // Only the target's ephemerals: the forward copies are persistent, so they never go back.
    reverse_source.include = [](const std::string& path, const zk::Stat& stat) {
      return zk::NodeKindOf(stat) == zk::NodeKind::kEphemeral &&
             !connectors::ZooKeeperSink::IsTransientNode(path);
    };
    // The forward copies' own creates, changes and deletes on the target are the forward
    // direction's echo: skipped when the event comes, without a read (they are persistent, so
    // the read would leave them out anyway). This halves the work of a busy forward direction.
    connectors::ZooKeeperSink* forward_sink = job.forward_sink.get();
    reverse_source.announce = [forward_sink](const std::string& path, zk::WatchEventType type) {
      if (connectors::ZooKeeperSink::IsTransientNode(path)) return false;
      if (type == zk::WatchEventType::kNodeDeleted) {
        return !forward_sink->Owns(path) && !forward_sink->DeletedRecently(path);
      }
      if (forward_sink->Owns(path)) return false;
      // Not a copy: a client's node (after a copy was deleted there, its own delete counts).
      forward_sink->ForgetDeleted(path);
      return true;
    };
    job.reverse_source = std::make_unique<connectors::ZooKeeperSource>(
        *job.target_factory, config.scope, logger, reverse_source);
  }

  if (options.election && config.leader_elect) {
    job.election = std::make_unique<connectors::ZooKeeperElection>(
        *job.target_factory, logger,
        connectors::ZooKeeperElectionOptions{.lock_path = config.ElectionPath(),
                                             .identity = config.identity});
    job.shared_election =
        std::make_unique<sync::SharedElection>(*job.election, config.reverse_ephemerals ? 2 : 1);
  }
  return job;
}

}  // namespace zk2etcd::cli
