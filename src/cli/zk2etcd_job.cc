#include "cli/zk2etcd_job.h"

#include <utility>

#include "zk/asio_zk_client.h"

namespace zk2etcd::cli {

namespace {

// Hands out one client that is already connected, once.
class ConnectedClientFactory : public zk::ZkClientFactory {
 public:
  explicit ConnectedClientFactory(std::unique_ptr<zk::ZkClient> client)
      : client_(std::move(client)) {}
  zk::ZkResult<std::unique_ptr<zk::ZkClient>> NewClient(zk::ZkEventHandlers /*handlers*/) override {
    if (client_ == nullptr) {
      return Unexpected{zk::ZkError{zk::ZkErrorCode::kClosed, "the connected client was used"}};
    }
    return std::move(client_);
  }

 private:
  std::unique_ptr<zk::ZkClient> client_;
};

Zk2EtcdJob Assemble(const Config& config, etcd::EtcdClient& etcd,
                    std::unique_ptr<zk::ZkClientFactory> factory, ops::Logger& logger,
                    const Zk2EtcdJobOptions& options) {
  Zk2EtcdJob job = MakeZk2EtcdSourceSide(config, std::move(factory), logger, options);
  AddEtcdSide(job, config, etcd, logger, options);
  return job;
}

}  // namespace

std::unique_ptr<zk::ZkClientFactory> NewZooKeeperSessions(const Config& config, ops::Logger& logger,
                                                          const Clock& clock,
                                                          OpObserver* observer) {
  zk::ZkClientOptions zk_options = config.zookeeper;
  zk_options.clock = &clock;
  zk_options.logger = &logger;
  zk_options.observer = observer;
  return zk::NewAsioZkClientFactory(zk_options);
}

Zk2EtcdJob MakeZk2EtcdSourceSide(const Config& config,
                                 std::unique_ptr<zk::ZkClientFactory> zk_factory,
                                 ops::Logger& logger, const Zk2EtcdJobOptions& options) {
  Zk2EtcdJob job;
  job.zk_factory = std::move(zk_factory);
  connectors::ZooKeeperSourceOptions source_options;
  source_options.watch_mode = options.watch_mode;
  source_options.change_stream = options.change_stream;
  source_options.chroot = ChrootOf(config.zookeeper.connect_string);
  job.source = std::make_unique<connectors::ZooKeeperSource>(*job.zk_factory, config.scope, logger,
                                                             source_options);
  return job;
}

void AddEtcdSide(Zk2EtcdJob& job, const Config& config, etcd::EtcdClient& etcd, ops::Logger& logger,
                 const Zk2EtcdJobOptions& options) {
  job.sink = std::make_unique<connectors::EtcdSink>(etcd, config.layout);
  if (options.election) {
    job.election = std::make_unique<connectors::EtcdElection>(etcd, logger, *options.election);
  }
}

Zk2EtcdJob MakeZk2EtcdJob(const Config& config, etcd::EtcdClient& etcd,
                          std::unique_ptr<zk::ZkClientFactory> zk_factory, ops::Logger& logger,
                          const Zk2EtcdJobOptions& options) {
  return Assemble(config, etcd, std::move(zk_factory), logger, options);
}

Zk2EtcdJob MakeZk2EtcdJob(const Config& config, etcd::EtcdClient& etcd,
                          std::unique_ptr<zk::ZkClient> connected, ops::Logger& logger,
                          const Zk2EtcdJobOptions& options) {
  return Assemble(config, etcd, std::make_unique<ConnectedClientFactory>(std::move(connected)),
                  logger, options);
}

}  // namespace zk2etcd::cli
