// Operating zk2etcd sync end to end: metrics, health, readiness, log level at run time, trace
// ids, configuration file and SIGHUP, graceful shutdown (issue 7's "what it must show").
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <fstream>
#include <regex>
#include <thread>

#include "cli/e2e_support.h"
#include "testing/loopback.h"
#include "testing/server_support.h"
#include "testing/zookeeper_c_client.h"

namespace zk2etcd::e2e {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using testing::EtcdServer;
using testing::ZooKeeperCClient;
using testing::ZooKeeperServer;

// The value of an unlabelled or labelled sample in a Prometheus text page, or -1.
double Sample(const std::string& page, const std::string& series) {
  const size_t at = page.find("\n" + series + " ");
  if (at == std::string::npos) return -1;
  return std::stod(page.substr(at + series.size() + 2));
}

class OpsE2eTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FIXTURE_OK_AND_ASSIGN(zookeeper_, ZooKeeperServer::Start());
    ASSERT_FIXTURE_OK_AND_ASSIGN(etcd_, EtcdServer::Start());
    ASSERT_FIXTURE_OK_AND_ASSIGN(zk_,
                                 ZooKeeperCClient::Connect(zookeeper_->address(), seconds(20)));
    auto dir = testing::TempDir::Create("ops");
    ASSERT_TRUE(dir.ok());
    dir_ = std::make_unique<testing::TempDir>(std::move(dir).value());
  }

  std::vector<std::string> SyncArgs(std::vector<std::string> extra = {}) {
    std::vector<std::string> args = {"sync",
                                     "--zookeeper-servers=" + zookeeper_->address(),
                                     "--etcd-servers=" + etcd_->endpoint(),
                                     "--log-format=text",
                                     "--http-addr=127.0.0.1:0",
                                     "--leader-elect=false"};
    args.insert(args.end(), extra.begin(), extra.end());
    return args;
  }

  std::unique_ptr<ZooKeeperServer> zookeeper_;
  std::unique_ptr<EtcdServer> etcd_;
  std::unique_ptr<ZooKeeperCClient> zk_;
  std::unique_ptr<testing::TempDir> dir_;
};

TEST_F(OpsE2eTest, MetricsPassPromtoolAndMoveWithSyncedChanges) {
  ASSERT_FIXTURE_OK(zk_->CreateRecursive("/dubbo/svc/providers/p1", "v1"));
  Zk2etcdProcess sync(SyncArgs());
  ASSERT_FIXTURE_OK(sync.Start());
  ASSERT_TRUE(sync.WaitForLog("reconciliation done", 1, seconds(30))) << sync.Log();
  const int port = HttpPort(sync);
  ASSERT_NE(port, 0) << sync.Log();
  const HttpResult before = Http(port, "/metrics");
  ASSERT_EQ(before.status, 200);
  const std::string etcd_txns =
      "grpc_server_handled_total{grpc_code=\"OK\",grpc_method=\"Txn\",grpc_service=\"etcdserverpb."
      "KV\",grpc_type=\"unary\"}";
  const double etcd_txns_before = Sample(Http(etcd_->client_port(), "/metrics").body, etcd_txns);
  for (int i = 0; i < 5; ++i) {
    ASSERT_FIXTURE_OK(zk_->Set("/dubbo/svc/providers/p1", "v" + std::to_string(i + 2)));
  }
  ASSERT_FIXTURE_OK(zk_->CreateRecursive("/dubbo/svc/providers/p2", "new"));
  EtcdView view(etcd_->endpoint());
  ASSERT_TRUE(
      Eventually([&] { return view.Get("/dubbo/svc/providers/p2") == "new"; }, seconds(20)));
  const HttpResult after = Http(port, "/metrics");
  ASSERT_EQ(after.status, 200);
  const std::string puts = "zk2etcd_etcd_op_total{op=\"put\",status=\"success\"}";
  EXPECT_GT(Sample(after.body, puts), Sample(before.body, puts)) << after.body;
  EXPECT_GT(Sample(after.body, "zk2etcd_sync_delay_seconds_count"), 0);
  // Each transaction counted once, as etcd counts it (the writer counted it a second time).
  const std::string txns = "zk2etcd_etcd_op_total{op=\"txn\",status=\"success\"}";
  const double etcd_txns_after = Sample(Http(etcd_->client_port(), "/metrics").body, etcd_txns);
  ASSERT_GE(etcd_txns_before, 0);
  EXPECT_GT(etcd_txns_after, etcd_txns_before);
  EXPECT_EQ(Sample(after.body, txns) - Sample(before.body, txns),
            etcd_txns_after - etcd_txns_before)
      << after.body;
  EXPECT_GE(Sample(after.body, "zk2etcd_fixed_total{type=\"put\"}"), 4) << "the initial sync";
  EXPECT_EQ(Sample(after.body, "zk2etcd_zk_session_connected"), 1);
  EXPECT_EQ(Sample(after.body, "zk2etcd_leader"), 1);
  EXPECT_NE(after.body.find("zk2etcd_zk_op_total{op=\"get\",status=\"success\"}"),
            std::string::npos);
  // Sub-millisecond buckets exist and fill (the Go tool put everything in the first bucket).
  EXPECT_NE(after.body.find("zk2etcd_zk_op_duration_seconds_bucket{op=\"get\",status=\"success\","
                            "le=\"0.0005\"}"),
            std::string::npos);

  const std::string page = dir_->File("metrics.txt");
  ASSERT_FIXTURE_OK(testing::WriteFile(page, after.body));
  auto lint = testing::RunCommand({"sh", "-c", "promtool check metrics < " + page}, seconds(30));
  EXPECT_TRUE(lint.ok()) << (lint.ok() ? "" : lint.error().message);
  EXPECT_EQ(sync.Terminate(seconds(20)), 0);
}

TEST_F(OpsE2eTest, ReadyOnlyAfterTheFirstFullSyncAndHealthyMeanwhile) {
  testing::DubboTreeShape shape;
  shape.interfaces = 300;
  ASSERT_FIXTURE_OK(CreateNodes(zookeeper_->address(), testing::MakeDubboTree(shape)));
  // Slow the first full sync down: etcd is paused until the server answers /readyz 503.
  etcd_->Pause();
  Zk2etcdProcess sync(SyncArgs({"--etcd-dial-timeout=1s"}));
  ASSERT_FIXTURE_OK(sync.Start());
  ASSERT_TRUE(Eventually([&] { return HttpPort(sync) != 0; }, seconds(20))) << sync.Log();
  const int port = HttpPort(sync);
  EXPECT_EQ(Http(port, "/healthz").status, 200);
  const HttpResult early = Http(port, "/readyz");
  EXPECT_EQ(early.status, 503) << early.body;
  // What the start waits for is named (it was "starting" alone).
  EXPECT_TRUE(Eventually(
      [&] { return Http(port, "/readyz").body == "starting: connecting to etcd\n"; }, seconds(5)))
      << Http(port, "/readyz").body;
  etcd_->Resume();
  ASSERT_TRUE(sync.WaitForLog("reconciliation done", 1, seconds(60))) << sync.Log();
  EXPECT_TRUE(Eventually([&] { return Http(port, "/readyz").status == 200; }, seconds(10)));
  EXPECT_EQ(sync.Terminate(seconds(20)), 0);
}

TEST_F(OpsE2eTest, LogLevelChangesThroughTheEndpointAndSighupAndTraceIdsLinkAChange) {
  const std::string config = dir_->File("zk2etcd.yaml");
  ASSERT_FIXTURE_OK(testing::WriteFile(config, "log-level: info\nfullsync-interval: 0\n"));
  Zk2etcdProcess sync(SyncArgs({"--config=" + config, "--enable-event-log"}));
  ASSERT_FIXTURE_OK(sync.Start());
  ASSERT_TRUE(sync.WaitForLog("reconciliation done", 1, seconds(30))) << sync.Log();
  const int port = HttpPort(sync);

  EXPECT_EQ(Http(port, "/log", "level=verbose").status, 400);
  const HttpResult changed = Http(port, "/log", "level=debug");
  EXPECT_EQ(changed.status, 200);
  EXPECT_EQ(changed.body, "success");
  EXPECT_EQ(Http(port, "/log").body, "debug\n");

  // One change at debug level: its lines share one trace id, from the event to the commit.
  ASSERT_FIXTURE_OK(zk_->CreateRecursive("/dubbo/traced", "x"));
  ASSERT_TRUE(sync.WaitForLog("etcd mutation", 2, seconds(20))) << sync.Log();
  std::smatch match;
  const std::string log = sync.Log();
  ASSERT_TRUE(std::regex_search(log, match,
                                std::regex("zookeeper event path=/dubbo/traced "
                                           "trace_id=([0-9a-f]{16})")))
      << log;
  const std::string trace_id = match[1];
  EXPECT_NE(log.find("etcd mutation op=put result=applied key=/dubbo/traced"), std::string::npos);
  EXPECT_GE(sync.CountLines("trace_id=" + trace_id), 2u) << log;

  // SIGHUP re-reads the file: back to warn, so info lines stop.
  // (The interval first: the log-level line then tells that the whole file was read.)
  ASSERT_FIXTURE_OK(testing::WriteFile(config, "fullsync-interval: 7m\nlog-level: warn\n"));
  ASSERT_EQ(kill(sync.pid(), SIGHUP), 0);
  ASSERT_TRUE(sync.WaitForLog("SIGHUP: log level changed", 1, seconds(10))) << sync.Log();
  ASSERT_TRUE(sync.WaitForLog("SIGHUP: full sync interval changed", 1, seconds(10))) << sync.Log();
  EXPECT_EQ(Http(port, "/log").body, "warn\n");
  ASSERT_TRUE(sync.WaitForLog("SIGHUP: configuration file read", 1, seconds(10))) << sync.Log();
  // The same file again: nothing changed, and the log does not say anything did.
  ASSERT_EQ(kill(sync.pid(), SIGHUP), 0);
  ASSERT_TRUE(sync.WaitForLog("SIGHUP: configuration file read", 2, seconds(10))) << sync.Log();
  EXPECT_EQ(sync.CountLines("SIGHUP: full sync interval changed"), 1u) << sync.Log();
  EXPECT_EQ(sync.CountLines("SIGHUP: log level changed"), 1u) << sync.Log();

  // Passwords never show in /debug/config; values show as used: unquoted, the identity derived
  // from the hostname, what SIGHUP changed.
  const std::string settings = Http(port, "/debug/config").body;
  EXPECT_NE(settings.find("\nlog-level=warn\n"), std::string::npos) << settings;
  EXPECT_NE(settings.find("\nfullsync-interval=7m\n"), std::string::npos) << settings;
  EXPECT_EQ(settings.find("secret"), std::string::npos);
  EXPECT_EQ(settings.find("=\""), std::string::npos) << settings;
  char host[256] = {};
  ASSERT_EQ(gethostname(host, sizeof(host) - 1), 0);
  EXPECT_NE(settings.find("leader-elect-identity=" + std::string(host) + "\n"), std::string::npos)
      << settings;
  EXPECT_EQ(sync.Terminate(seconds(20)), 0) << sync.Log();
}

TEST_F(OpsE2eTest, AnAddressInUseIsAClearErrorNamingTheFlag) {
  Zk2etcdProcess first(SyncArgs());
  ASSERT_FIXTURE_OK(first.Start());
  ASSERT_TRUE(Eventually([&] { return HttpPort(first) != 0; }, seconds(20)));
  std::vector<std::string> args = SyncArgs();
  args.push_back("--http-addr=127.0.0.1:" + std::to_string(HttpPort(first)));
  Zk2etcdProcess second(args);
  EXPECT_EQ(second.RunToCompletion(seconds(20)), 2);
  EXPECT_EQ(second.CountLines("--http-addr"), 1u) << second.Log();
  EXPECT_EQ(first.Terminate(seconds(20)), 0);
}

TEST_F(OpsE2eTest, SigtermDuringAHeavySyncExitsZeroInTimeAndEtcdStaysConsistent) {
  testing::DubboTreeShape shape;
  shape.interfaces = 1500;
  shape.providers_per_interface = 6;
  ASSERT_FIXTURE_OK(CreateNodes(zookeeper_->address(), testing::MakeDubboTree(shape)));
  Zk2etcdProcess sync(SyncArgs({"--shutdown-timeout=5s"}));
  ASSERT_FIXTURE_OK(sync.Start());
  EtcdView view(etcd_->endpoint());
  ASSERT_TRUE(Eventually([&] { return view.List("/dubbo").size() > 100; }, seconds(60)));
  const auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(sync.Terminate(seconds(20)), 0) << sync.Log();
  EXPECT_LT(std::chrono::steady_clock::now() - start, seconds(5 + 3));
  // Consistent: every key written carries its meta record, and every meta record its key.
  const auto data = view.List("/dubbo");
  const auto meta = view.List("/zk2etcd/meta/dubbo");
  for (const auto& [key, value] : data) {
    EXPECT_TRUE(meta.count("/zk2etcd/meta" + key)) << "a key without its meta record: " << key;
  }
  EXPECT_EQ(data.size(), meta.size());
  // And a restart completes the job.
  Zk2etcdProcess again(SyncArgs());
  ASSERT_FIXTURE_OK(again.Start());
  ASSERT_TRUE(again.WaitForLog("reconciliation done", 1, seconds(60))) << again.Log();
  Zk2etcdProcess diff({"diff", "--zookeeper-servers=" + zookeeper_->address(),
                       "--etcd-servers=" + etcd_->endpoint()});
  EXPECT_EQ(diff.RunToCompletion(seconds(60)), 0) << diff.Log();
  EXPECT_EQ(again.Terminate(seconds(20)), 0);
}

TEST_F(OpsE2eTest, SigtermWhileZooKeeperDoesNotAnswerExitsWithinSeconds) {
  // No ZooKeeper at all: the start is blocked on registering the watch.
  auto port = testing::PickFreePort();
  ASSERT_TRUE(port.ok());
  Zk2etcdProcess unreachable({"sync", "--zookeeper-servers=127.0.0.1:" + std::to_string(*port),
                              "--etcd-servers=" + etcd_->endpoint(), "--log-format=text",
                              "--http-addr=127.0.0.1:0", "--leader-elect=false",
                              "--log-level=debug"});
  ASSERT_FIXTURE_OK(unreachable.Start());
  // Two attempts (a warning, then "... failed again" at debug level).
  ASSERT_TRUE(unreachable.WaitForLog("zookeeper connection attempt failed", 2, seconds(30)))
      << unreachable.Log();
  EXPECT_EQ(unreachable.Log().find("WARN zookeeper connection attempt failed again"),
            std::string::npos)
      << "every attempt was a warning:\n"
      << unreachable.Log();
  EXPECT_NE(unreachable.Log().find("WARN zookeeper connection attempt failed"), std::string::npos)
      << unreachable.Log();
  auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(unreachable.Terminate(seconds(40)), 0) << unreachable.Log();
  EXPECT_LT(std::chrono::steady_clock::now() - start, seconds(5))
      << "waited for the session timeout instead of stopping";

  // A ZooKeeper that stops answering in the middle of the first walk.
  testing::DubboTreeShape shape;
  shape.interfaces = 1500;
  shape.providers_per_interface = 6;
  ASSERT_FIXTURE_OK(CreateNodes(zookeeper_->address(), testing::MakeDubboTree(shape)));
  Zk2etcdProcess sync(SyncArgs({"--zookeeper-session-timeout=30s"}));
  ASSERT_FIXTURE_OK(sync.Start());
  EtcdView view(etcd_->endpoint());
  ASSERT_TRUE(Eventually([&] { return view.List("/dubbo").size() > 100; }, seconds(60)));
  zookeeper_->Pause();
  start = std::chrono::steady_clock::now();
  EXPECT_EQ(sync.Terminate(seconds(40)), 0) << sync.Log();
  EXPECT_LT(std::chrono::steady_clock::now() - start, seconds(5))
      << "waited for the session timeout instead of stopping";
  zookeeper_->Resume();
}

}  // namespace
}  // namespace zk2etcd::e2e
