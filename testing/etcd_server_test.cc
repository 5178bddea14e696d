// Smoke test of the etcd fixture through the raw gRPC stubs built from Debian's .proto files, and
// through etcdctl for TLS and authentication.
#include <gtest/gtest.h>
#include <grpcpp/grpcpp.h>

#include <fstream>
#include <sstream>

#include "etcd/etcdserver/etcdserverpb/rpc.grpc.pb.h"
#include "testing/server_support.h"
#include "testing/shared_servers.h"

namespace zk2etcd::testing {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

class RawKv {
 public:
  explicit RawKv(std::shared_ptr<grpc::Channel> channel)
      : stub_(etcdserverpb::KV::NewStub(std::move(channel))) {}

  grpc::Status Put(const std::string& key, const std::string& value) {
    etcdserverpb::PutRequest request;
    request.set_key(key);
    request.set_value(value);
    etcdserverpb::PutResponse response;
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + seconds(5));
    return stub_->Put(&context, request, &response);
  }

  // The value of `key`, "<none>" if absent, or "<error: ...>".
  std::string Get(const std::string& key, milliseconds deadline = seconds(5)) {
    etcdserverpb::RangeRequest request;
    request.set_key(key);
    etcdserverpb::RangeResponse response;
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + deadline);
    grpc::Status status = stub_->Range(&context, request, &response);
    if (!status.ok()) return "<error: " + status.error_message() + ">";
    if (response.kvs_size() == 0) return "<none>";
    return response.kvs(0).value();
  }

 private:
  std::unique_ptr<etcdserverpb::KV::Stub> stub_;
};

std::shared_ptr<grpc::Channel> Insecure(const EtcdServer& server) {
  return grpc::CreateChannel(server.endpoint(), grpc::InsecureChannelCredentials());
}

TEST(EtcdServerTest, WritesSurviveKill9AndRestartAndPauseBlocksService) {
  std::unique_ptr<EtcdServer> server;
  ASSERT_FIXTURE_OK_AND_ASSIGN(server, EtcdServer::Start());
  ASSERT_TRUE(RawKv(Insecure(*server)).Put("/dubbo/smoke", "v1").ok());
  EXPECT_EQ(RawKv(Insecure(*server)).Get("/dubbo/smoke"), "v1");

  server->Kill9();
  EXPECT_FALSE(server->IsHealthy());
  ASSERT_FIXTURE_OK(server->Restart());
  EXPECT_EQ(RawKv(Insecure(*server)).Get("/dubbo/smoke"), "v1");

  server->Pause();
  EXPECT_NE(RawKv(Insecure(*server)).Get("/dubbo/smoke", milliseconds(500)).find("<error"),
            std::string::npos)
      << "a paused server must not answer";
  server->Resume();
  EXPECT_EQ(RawKv(Insecure(*server)).Get("/dubbo/smoke"), "v1");
}

TEST(EtcdServerTest, TlsServerAcceptsTheClientCertificateAndRefusesAnotherCa) {
  EtcdOptions options;
  options.tls = true;
  std::unique_ptr<EtcdServer> server;
  ASSERT_FIXTURE_OK_AND_ASSIGN(server, EtcdServer::Start(options));
  EXPECT_EQ(server->client_url().rfind("https://", 0), 0u);

  grpc::SslCredentialsOptions good;
  good.pem_root_certs = ReadFile(server->tls().ca_file);
  good.pem_cert_chain = ReadFile(server->tls().client_cert_file);
  good.pem_private_key = ReadFile(server->tls().client_key_file);
  grpc::ChannelArguments arguments;
  arguments.SetSslTargetNameOverride(server->tls().server_name);
  RawKv secure(grpc::CreateCustomChannel(server->endpoint(), grpc::SslCredentials(good),
                                         arguments));
  ASSERT_TRUE(secure.Put("/dubbo/tls", "yes").ok());
  EXPECT_EQ(secure.Get("/dubbo/tls"), "yes");

  grpc::SslCredentialsOptions wrong_ca = good;
  wrong_ca.pem_root_certs = ReadFile(server->tls().other_ca_file);
  RawKv refused(grpc::CreateCustomChannel(server->endpoint(), grpc::SslCredentials(wrong_ca),
                                          arguments));
  EXPECT_NE(refused.Get("/dubbo/tls", seconds(2)).find("<error"), std::string::npos);

  EXPECT_NE(RawKv(Insecure(*server)).Get("/dubbo/tls", seconds(2)).find("<error"),
            std::string::npos)
      << "plain text must be refused by a TLS server";

  std::string listed;
  ASSERT_FIXTURE_OK_AND_ASSIGN(listed, server->Etcdctl({"get", "/dubbo/tls", "--print-value-only"}));
  EXPECT_EQ(listed, "yes\n");
}

TEST(EtcdServerTest, AuthLimitsTheUserToItsPrefix) {
  EtcdOptions options;
  options.auth = EtcdAuthOptions{};
  options.auth->prefix = "/dubbo";
  std::unique_ptr<EtcdServer> server;
  ASSERT_FIXTURE_OK_AND_ASSIGN(server, EtcdServer::Start(options));
  const std::string user = "--user=" + options.auth->user + ":" + options.auth->password;
  auto inside = RunCommand({"etcdctl", "--endpoints=" + server->client_url(), user, "put",
                            "/dubbo/inside", "1"},
                           seconds(20));
  EXPECT_TRUE(inside.ok()) << inside.error().message;
  auto outside = RunCommand({"etcdctl", "--endpoints=" + server->client_url(), user, "put",
                             "/elsewhere", "1"},
                            seconds(20));
  ASSERT_FALSE(outside.ok());
  EXPECT_NE(outside.error().message.find("permission denied"), std::string::npos)
      << outside.error().message;
  // Without credentials nothing is allowed.
  EXPECT_NE(RawKv(Insecure(*server)).Get("/dubbo/inside").find("<error"), std::string::npos);
}

TEST(EtcdServerTest, SharedServerServes) {
  EtcdServer* server = nullptr;
  ASSERT_FIXTURE_OK_AND_ASSIGN(server, SharedEtcd());
  const std::string key = UniquePath("shared");
  ASSERT_TRUE(RawKv(Insecure(*server)).Put(key, "x").ok());
  EXPECT_EQ(RawKv(Insecure(*server)).Get(key), "x");
}

}  // namespace
}  // namespace zk2etcd::testing
