#include "testing/etcd_server.h"

#include "testing/loopback.h"
#include "testing/server_support.h"

namespace zk2etcd::testing {

namespace {

constexpr int kStartAttempts = 3;
constexpr auto kCommandTimeout = std::chrono::seconds(30);

}  // namespace

EtcdServer::EtcdServer(EtcdOptions options, TempDir dir)
    : options_(std::move(options)), dir_(std::move(dir)), log_path_(dir_.File("etcd.log")) {}

EtcdServer::~EtcdServer() { Stop(); }

std::string EtcdServer::client_url() const {
  return std::string(options_.tls ? "https" : "http") + "://127.0.0.1:" +
         std::to_string(client_port_);
}

FixtureResult<std::unique_ptr<EtcdServer>> EtcdServer::Start(EtcdOptions options) {
  auto dir = TempDir::Create("etcd");
  if (!dir.ok()) return Unexpected{dir.error()};
  std::unique_ptr<EtcdServer> server(new EtcdServer(std::move(options), std::move(dir).value()));
  if (server->options_.tls) {
    if (auto generated = server->GenerateCertificates(); !generated.ok()) {
      return Unexpected{generated.error()};
    }
  }
  FixtureError last_error;
  for (int attempt = 0; attempt < kStartAttempts; ++attempt) {
    auto client = PickFreePort();
    auto peer = PickFreePort();
    auto metrics = PickFreePort();
    if (!client.ok() || !peer.ok() || !metrics.ok()) {
      return Unexpected{FixtureError{"no free loopback port"}};
    }
    server->client_port_ = *client;
    server->peer_port_ = *peer;
    server->metrics_port_ = *metrics;
    auto launched = server->Launch();
    if (launched.ok()) {
      if (server->options_.auth) {
        if (auto enabled = server->EnableAuth(); !enabled.ok()) {
          return Unexpected{enabled.error()};
        }
      }
      return server;
    }
    last_error = launched.error();
    if (last_error.missing_program) break;
  }
  return Unexpected{last_error};
}

FixtureResult<void> EtcdServer::Launch() {
  const std::string peer_url = "http://127.0.0.1:" + std::to_string(peer_port_);
  std::vector<std::string> argv = {
      "etcd",
      "--name=zk2etcd-test",
      "--data-dir=" + dir_.File("data"),
      "--listen-client-urls=" + client_url(),
      "--advertise-client-urls=" + client_url(),
      "--listen-peer-urls=" + peer_url,
      "--initial-advertise-peer-urls=" + peer_url,
      "--initial-cluster=zk2etcd-test=" + peer_url,
      "--listen-metrics-urls=http://127.0.0.1:" + std::to_string(metrics_port_),
      "--log-outputs=stderr",
      "--logger=zap",
  };
  if (options_.tls) {
    argv.push_back("--cert-file=" + dir_.File("server.crt"));
    argv.push_back("--key-file=" + dir_.File("server.key"));
    argv.push_back("--trusted-ca-file=" + tls_.ca_file);
    argv.push_back("--client-cert-auth=true");
  }
  argv.insert(argv.end(), options_.extra_args.begin(), options_.extra_args.end());
  if (auto started = process_.Start(argv, log_path_); !started.ok()) {
    return Unexpected{started.error()};
  }
  return WaitUntilReady(process_, "etcd on port " + std::to_string(client_port_), log_path_,
                        [this] { return IsHealthy(); }, options_.start_timeout);
}

bool EtcdServer::IsHealthy() const {
  auto reply = TcpExchange(metrics_port_, "GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n",
                           std::chrono::milliseconds(1000));
  return reply.ok() && reply->find("\"health\":\"true\"") != std::string::npos;
}

FixtureResult<void> EtcdServer::GenerateCertificates() {
  const std::string& d = dir_.path();
  tls_.ca_file = d + "/ca.crt";
  tls_.client_cert_file = d + "/client.crt";
  tls_.client_key_file = d + "/client.key";
  tls_.other_ca_file = d + "/other-ca.crt";
  auto run = [](const std::vector<std::string>& argv) { return RunCommand(argv, kCommandTimeout); };
  const std::vector<std::string> new_key = {"-newkey", "ec", "-pkeyopt",
                                            "ec_paramgen_curve:prime256v1", "-nodes"};
  auto make_ca = [&](const std::string& name) -> FixtureResult<void> {
    std::vector<std::string> argv = {"openssl", "req", "-x509", "-days", "3", "-subj",
                                     "/CN=zk2etcd test " + name};
    argv.insert(argv.end(), new_key.begin(), new_key.end());
    argv.insert(argv.end(), {"-keyout", d + "/" + name + ".key", "-out", d + "/" + name + ".crt"});
    if (auto r = run(argv); !r.ok()) return Unexpected{r.error()};
    return {};
  };
  auto make_leaf = [&](const std::string& name, const std::string& common_name,
                       const std::string& extensions) -> FixtureResult<void> {
    std::vector<std::string> request = {"openssl", "req", "-subj", "/CN=" + common_name};
    request.insert(request.end(), new_key.begin(), new_key.end());
    request.insert(request.end(),
                   {"-keyout", d + "/" + name + ".key", "-out", d + "/" + name + ".csr"});
    if (auto r = run(request); !r.ok()) return Unexpected{r.error()};
    if (auto w = WriteFile(d + "/" + name + ".ext", extensions); !w.ok()) return w;
    if (auto r = run({"openssl", "x509", "-req", "-days", "3", "-in", d + "/" + name + ".csr",
                      "-CA", d + "/ca.crt", "-CAkey", d + "/ca.key", "-CAcreateserial", "-out",
                      d + "/" + name + ".crt", "-extfile", d + "/" + name + ".ext"});
        !r.ok()) {
      return Unexpected{r.error()};
    }
    return {};
  };
  if (auto r = make_ca("ca"); !r.ok()) return r;
  if (auto r = make_ca("other-ca"); !r.ok()) return r;
  if (auto r = make_leaf("server", "localhost",
                         "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
                         "extendedKeyUsage=serverAuth,clientAuth\n");
      !r.ok()) {
    return r;
  }
  return make_leaf("client", "zk2etcd-client", "extendedKeyUsage=clientAuth\n");
}

FixtureResult<std::string> EtcdServer::Etcdctl(const std::vector<std::string>& args) const {
  std::vector<std::string> argv = {"etcdctl", "--endpoints=" + client_url(),
                                   "--dial-timeout=5s", "--command-timeout=20s"};
  if (options_.tls) {
    argv.push_back("--cacert=" + tls_.ca_file);
    argv.push_back("--cert=" + tls_.client_cert_file);
    argv.push_back("--key=" + tls_.client_key_file);
  }
  if (auth_enabled_) argv.push_back("--user=root:" + options_.auth->root_password);
  argv.insert(argv.end(), args.begin(), args.end());
  // etcdctl 3.4 defaults to API v3; ETCDCTL_API is not needed.
  return RunCommand(argv, kCommandTimeout);
}

FixtureResult<void> EtcdServer::EnableAuth() {
  const EtcdAuthOptions& auth = *options_.auth;
  const std::vector<std::vector<std::string>> steps = {
      {"user", "add", "root:" + auth.root_password, "--interactive=false"},
      {"role", "add", "root"},
      {"user", "grant-role", "root", "root"},
      {"role", "add", auth.user + "-role"},
      {"role", "grant-permission", auth.user + "-role", "readwrite", auth.prefix, "--prefix=true"},
      {"user", "add", auth.user + ":" + auth.password, "--interactive=false"},
      {"user", "grant-role", auth.user, auth.user + "-role"},
      {"auth", "enable"},
  };
  for (const auto& step : steps) {
    if (auto r = Etcdctl(step); !r.ok()) return Unexpected{r.error()};
  }
  auth_enabled_ = true;
  return {};
}

void EtcdServer::Kill9() { process_.Kill9(); }

FixtureResult<void> EtcdServer::Restart() { return Launch(); }

void EtcdServer::Stop() { process_.Terminate(std::chrono::seconds(5)); }

void EtcdServer::Pause() { process_.Pause(); }

void EtcdServer::Resume() { process_.Resume(); }

}  // namespace zk2etcd::testing
