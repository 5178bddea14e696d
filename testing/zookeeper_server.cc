#include "testing/zookeeper_server.h"

#include <sys/stat.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "testing/loopback.h"
#include "testing/server_support.h"
#include "testing/zookeeper_c_client.h"

namespace zk2etcd::testing {

namespace {

constexpr char kZooKeeperJar[] = "/usr/share/java/zookeeper.jar";
constexpr int kStartAttempts = 3;  // a picked port can be taken before the server binds it

}  // namespace

ZooKeeperServer::ZooKeeperServer(ZooKeeperOptions options, TempDir dir)
    : options_(options),
      dir_(std::move(dir)),
      data_dir_(dir_.File("data")),
      log_path_(dir_.File("zookeeper.log")) {}

ZooKeeperServer::~ZooKeeperServer() { Stop(); }

FixtureResult<std::unique_ptr<ZooKeeperServer>> ZooKeeperServer::Start(ZooKeeperOptions options) {
  if (access(kZooKeeperJar, R_OK) != 0) {
    return Unexpected{FixtureError{
        std::string(kZooKeeperJar) + " is missing (run scripts/install-deps.sh)", true}};
  }
  auto dir = TempDir::Create("zookeeper");
  if (!dir.ok()) return Unexpected{dir.error()};
  std::unique_ptr<ZooKeeperServer> server(new ZooKeeperServer(options, std::move(dir).value()));
  mkdir(server->data_dir_.c_str(), 0755);
  FixtureError last_error;
  for (int attempt = 0; attempt < kStartAttempts; ++attempt) {
    auto port = PickFreePort();
    if (!port.ok()) return Unexpected{port.error()};
    server->port_ = *port;
    auto launched = server->Launch();
    if (launched.ok()) return server;
    last_error = launched.error();
    if (last_error.missing_program) break;
  }
  return Unexpected{last_error};
}

FixtureResult<void> ZooKeeperServer::Launch() {
  const std::string config =
      "tickTime=" + std::to_string(options_.tick_ms) + "\n" +
      "dataDir=" + data_dir_ + "\n" +
      "clientPort=" + std::to_string(port_) + "\n" +
      "clientPortAddress=127.0.0.1\n"
      "minSessionTimeout=" + std::to_string(options_.min_session_timeout_ms) + "\n" +
      "maxSessionTimeout=" + std::to_string(options_.max_session_timeout_ms) + "\n" +
      "maxClientCnxns=0\n"
      "admin.enableServer=false\n"
      "4lw.commands.whitelist=srvr,stat,mntr,cons,wchs,ruok\n"
      // Page cache is enough for kill -9 tests; fsync would only slow the tests down.
      "forceSync=no\n"
      "autopurge.purgeInterval=0\n";
  if (auto written = WriteFile(dir_.File("zoo.cfg"), config); !written.ok()) {
    return Unexpected{written.error()};
  }
  std::vector<std::string> command = {"java",
                                      "-Xms64m",
                                      "-Xmx" + options_.max_heap,
                                      "-XX:+UseSerialGC",
                                      "-Djava.net.preferIPv4Stack=true",
                                      "-Dzookeeper.admin.enableServer=false"};
  if (options_.extended_types) command.emplace_back("-Dzookeeper.extendedTypesEnabled=true");
  command.insert(command.end(),
                 {"-cp", dir_.path() + ":" + kZooKeeperJar,
                  "org.apache.zookeeper.server.ZooKeeperServerMain", dir_.File("zoo.cfg")});
  auto started = process_.Start(command, log_path_);
  if (!started.ok()) return Unexpected{started.error()};
  return WaitUntilReady(process_, "ZooKeeper on port " + std::to_string(port_), log_path_,
                        [this] { return IsServing(); }, options_.start_timeout);
}

bool ZooKeeperServer::IsServing() const {
  auto reply = TcpExchange(port_, "srvr", std::chrono::milliseconds(1000));
  return reply.ok() && reply->find("Mode: standalone") != std::string::npos;
}

void ZooKeeperServer::Kill9() { process_.Kill9(); }

FixtureResult<void> ZooKeeperServer::Restart() { return Launch(); }

void ZooKeeperServer::Stop() { process_.Terminate(std::chrono::seconds(5)); }

void ZooKeeperServer::Pause() { process_.Pause(); }

void ZooKeeperServer::Resume() { process_.Resume(); }

FixtureResult<void> ZooKeeperServer::CreateDigestProtectedNode(const std::string& path,
                                                               const std::string& data,
                                                               const std::string& user,
                                                               const std::string& password) {
  auto client = ZooKeeperCClient::Connect(address(), std::chrono::seconds(10));
  if (!client.ok()) return Unexpected{client.error()};
  if (auto auth = (*client)->AddDigestAuth(user, password); !auth.ok()) {
    return Unexpected{auth.error()};
  }
  return (*client)->CreateCreatorOnly(path, data);
}

}  // namespace zk2etcd::testing
