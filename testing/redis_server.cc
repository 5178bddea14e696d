#include "testing/redis_server.h"

#include "testing/loopback.h"
#include "testing/server_support.h"

namespace zk2etcd::testing {

RedisServer::RedisServer(RedisOptions options, TempDir dir)
    : options_(std::move(options)), dir_(std::move(dir)), log_path_(dir_.File("redis.log")) {}

RedisServer::~RedisServer() { Stop(); }

FixtureResult<std::unique_ptr<RedisServer>> RedisServer::Start(RedisOptions options) {
  auto dir = TempDir::Create("redis");
  if (!dir.ok()) return Unexpected{dir.error()};
  std::unique_ptr<RedisServer> server(new RedisServer(std::move(options), std::move(dir).value()));
  FixtureError last_error;
  for (int attempt = 0; attempt < 3; ++attempt) {
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

FixtureResult<void> RedisServer::Launch() {
  std::vector<std::string> argv = {
      "redis-server", "--port", std::to_string(port_), "--bind", "127.0.0.1",
      "--dir", dir_.path(), "--daemonize", "no", "--save", "", "--appendonly", "yes",
      "--appendfsync", "always", "--protected-mode", "no", "--logfile", ""};
  if (!options_.password.empty()) {
    argv.insert(argv.end(), {"--requirepass", options_.password});
  }
  if (!options_.acl_user.empty()) {
    // redis-server joins the words after --user into one ACL rule.
    argv.insert(argv.end(), {"--user", options_.acl_user, "on", ">" + options_.acl_password,
                             "~*", "&*", "+@all"});
  }
  if (auto started = process_.Start(argv, log_path_); !started.ok()) {
    return Unexpected{started.error()};
  }
  return WaitUntilReady(process_, "Redis on port " + std::to_string(port_), log_path_,
                        [this] { return IsServing(); }, options_.start_timeout);
}

bool RedisServer::IsServing() const {
  auto reply = TcpExchange(port_, "PING\r\n", std::chrono::milliseconds(1000), 5);
  return reply.ok() && (reply->starts_with("+PONG") || reply->starts_with("-NOAUTH"));
}

void RedisServer::Kill9() { process_.Kill9(); }

FixtureResult<void> RedisServer::Restart() { return Launch(); }

void RedisServer::Stop() { process_.Terminate(std::chrono::seconds(5)); }

void RedisServer::Pause() { process_.Pause(); }

void RedisServer::Resume() { process_.Resume(); }

}  // namespace zk2etcd::testing
