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

Result<std::optional<std::string>, etcd::Error> OtherMirrorOwningKeysInRange(
    etcd::EtcdClient& destination, const Etcd2EtcdConfig& config) {
  std::string root = config.meta_prefix;
  if (!root.empty() && root.back() == '/') root.pop_back();
  root += '/';
  const std::string root_end = etcd::PrefixEnd(root);
  std::string cursor = root;
  while (true) {
    etcd::RangeRequest next;
    next.key = cursor;
    next.range_end = root_end;
    next.limit = 1;
    next.keys_only = true;
    auto found = destination.Range(next);
    if (!found.ok()) return Unexpected{found.error()};
    if (found->kvs.empty()) return std::optional<std::string>();
    const std::string& key = found->kvs.front().key;
    const size_t slash = key.find('/', root.size());
    const std::string name = key.substr(
        root.size(), slash == std::string::npos ? std::string::npos : slash - root.size());
    if (name != config.name && slash != std::string::npos) {
      const std::string records =
          connectors::MirrorKeysFor(config.meta_prefix, name).records_prefix +
          config.DestinationRange();
      etcd::RangeRequest owned = etcd::RangeRequest::Prefix(records);
      owned.limit = 1;
      owned.keys_only = true;
      auto record = destination.Range(owned);
      if (!record.ok()) return Unexpected{record.error()};
      if (!record->kvs.empty()) return std::optional<std::string>(name);
    }
    // The next name: past every key of this one ("name/..."; '0' follows '/').
    cursor = root + name + (slash == std::string::npos ? std::string(1, '\0') : "0");
  }
}

Result<std::optional<std::string>, etcd::Error> OtherMirrorUnlessForbidden(
    etcd::EtcdClient& destination, const Etcd2EtcdConfig& config, ops::Logger& logger) {
  auto other = OtherMirrorOwningKeysInRange(destination, config);
  if (other.ok() || other.error().code != etcd::ErrorCode::kPermissionDenied) return other;
  logger.Warn("cannot look for other mirrors' records; adopting without that check",
              {{"error", other.error().ToString()}});
  return std::optional<std::string>();
}

std::string OtherMirrorMessage(const Etcd2EtcdConfig& config, const std::string& other) {
  const connectors::MirrorKeys keys = connectors::MirrorKeysFor(config.meta_prefix, other);
  std::string base = keys.records_prefix.substr(0, keys.records_prefix.rfind('/') + 1);
  return "mirror \"" + other + "\" owns keys under \"" + config.DestinationRange() +
         "\" on the destination (its records are under " + keys.records_prefix +
         "), and --adopt=" + std::string(sync::AdoptPolicyName(config.adopt)) +
         " would take them: two mirrors must not share keys. Give this mirror another "
         "--dest-prefix, or, once \"" +
         other + "\" is stopped for good, hand its keys over by deleting its keys under " + base;
}

}  // namespace zk2etcd::cli
