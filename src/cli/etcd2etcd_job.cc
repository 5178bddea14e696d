#include "cli/etcd2etcd_job.h"

#include <utility>

namespace zk2etcd::cli {

Result<Etcd2EtcdJob, std::string> MakeEtcd2EtcdJob(const Etcd2EtcdConfig& config,
                                                   etcd::EtcdClient& source,
                                                   etcd::EtcdClient& destination,
                                                   ops::Logger& logger, const Clock& clock,
                                                   const Etcd2EtcdJobOptions& options) {
  Etcd2EtcdJob job;
  job.keys = connectors::MirrorKeysFor(config.meta_prefix, config.name);
  auto layout =
      connectors::KeyLayout::ForMirror(config.prefix, config.dest_prefix, job.keys.records_prefix);
  if (!layout.ok()) return Unexpected{layout.error()};
  job.layout = std::make_unique<connectors::KeyLayout>(std::move(layout).value());
  job.scope = std::make_unique<core::Scope>(core::Scope::ForKeyPrefix(config.prefix));

  connectors::EtcdSourceOptions source_options;
  source_options.change_stream = options.change_stream;
  job.source = std::make_unique<connectors::EtcdSource>(source, config.prefix, source_options);

  connectors::EtcdSinkOptions sink_options;
  sink_options.checkpoint_key = job.keys.checkpoint_key;
  if (config.copy_leases) {
    job.leases = std::make_unique<connectors::LeaseMirror>(source, destination,
                                                           job.keys.leases_prefix, clock, logger);
    sink_options.leases = job.leases.get();
  }
  job.sink = std::make_unique<connectors::EtcdSink>(destination, *job.layout, sink_options);
  if (options.election && config.leader_elect) {
    job.election = std::make_unique<connectors::EtcdElection>(
        destination, logger,
        connectors::EtcdElectionOptions{job.keys.election_name, config.identity,
                                        config.lease_duration});
  }
  return job;
}

}  // namespace zk2etcd::cli
