// zk2etcd sync and diff end to end: the built binary, driven through its command line, against
// real ZooKeeper 3.8, etcd 3.4 and Redis 7 servers (issue 5's "what it must show").
#include <gtest/gtest.h>

#include <atomic>
#include <regex>
#include <sstream>
#include <thread>

#include "cli/e2e_support.h"
#include "testing/delaying_proxy.h"
#include "testing/loopback.h"
#include "testing/redis_server.h"
#include "testing/server_support.h"
#include "testing/zookeeper_c_client.h"

namespace zk2etcd::e2e {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using testing::EtcdServer;
using testing::RedisServer;
using testing::ZooKeeperCClient;
using testing::ZooKeeperServer;

constexpr auto kConverge = seconds(30);

class SyncE2eTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FIXTURE_OK_AND_ASSIGN(zookeeper_, ZooKeeperServer::Start());
    ASSERT_FIXTURE_OK_AND_ASSIGN(etcd_, EtcdServer::Start());
    ASSERT_FIXTURE_OK_AND_ASSIGN(zk_, ZooKeeperCClient::Connect(zookeeper_->address(), seconds(20)));
    view_ = std::make_unique<EtcdView>(etcd_->endpoint());
  }

  std::vector<std::string> Args(const std::string& command, std::vector<std::string> extra = {}) {
    std::vector<std::string> args = {command,
                                     "--zookeeper-servers=" + zookeeper_->address(),
                                     "--etcd-servers=" + etcd_->endpoint(),
                                     "--log-format=text"};
    if (command == "sync") args.push_back("--http-addr=127.0.0.1:0");
    args.insert(args.end(), extra.begin(), extra.end());
    return args;
  }

  std::unique_ptr<Zk2etcdProcess> StartSync(std::vector<std::string> extra = {}) {
    auto process = std::make_unique<Zk2etcdProcess>(Args("sync", std::move(extra)));
    auto started = process->Start();
    EXPECT_TRUE(started.ok()) << started.error().message;
    EXPECT_TRUE(process->WaitForLog("reconciliation done", 1, kConverge)) << process->Log();
    return process;
  }

  // The synced data keys (meta records excluded).
  std::map<std::string, std::string> Synced(const std::string& prefix = "/dubbo") {
    return view_->List(prefix);
  }

  bool Converged(const std::map<std::string, std::string>& expected,
                 const std::string& prefix = "/dubbo") {
    return Eventually([&] { return Synced(prefix) == expected; }, kConverge);
  }

  std::map<std::string, std::string> ZkExpected() {
    return ReadZkTree(*zk_, "/dubbo", "/dubbo/config");
  }

  std::unique_ptr<ZooKeeperServer> zookeeper_;
  std::unique_ptr<EtcdServer> etcd_;
  std::unique_ptr<ZooKeeperCClient> zk_;
  std::unique_ptr<EtcdView> view_;
};

TEST_F(SyncE2eTest, InitialSyncOfALargeDubboTreeIsExactAndARestartWritesNothing) {
  testing::DubboTreeShape shape;
  shape.interfaces = 800;
  shape.providers_per_interface = 5;
  shape.consumers_per_interface = 3;
  shape.data_every = 50;
  const std::vector<testing::ZNode> tree = testing::MakeDubboTree(shape);
  ASSERT_FIXTURE_OK(CreateNodes(zookeeper_->address(), tree));
  const auto expected = Expected(tree, "/dubbo", "/dubbo/config");
  ASSERT_GE(expected.size(), 10000u);

  auto sync = StartSync();
  EXPECT_EQ(Synced(), expected);
  EXPECT_EQ(sync->Terminate(seconds(20)), 0) << sync->Log();

  // Everything already in sync: a restart reads but writes nothing (no key and no meta record;
  // the election's own key is the one write a restart makes).
  const auto keys = view_->ModRevisions("/dubbo");
  const auto meta = view_->ModRevisions("/zk2etcd/meta/");
  ASSERT_EQ(keys.size(), expected.size());
  auto again = StartSync();
  EXPECT_NE(again->Log().find("fixed_puts=0 fixed_deletes=0"), std::string::npos) << again->Log();
  EXPECT_EQ(view_->ModRevisions("/dubbo"), keys);
  EXPECT_EQ(view_->ModRevisions("/zk2etcd/meta/"), meta);
  EXPECT_EQ(again->Terminate(seconds(20)), 0);
}

// Through a slow network (both servers behind 10 ms each way), the first sync into an empty etcd
// writes while it walks (reconciler.h, "Repairs during the walk"), while providers are created,
// changed and deleted all along: etcd still ends equal to ZooKeeper.
TEST_F(SyncE2eTest, AFirstSyncThroughASlowNetworkWritesWhileItWalksAndMissesNoChange) {
  testing::DubboTreeShape shape;
  shape.interfaces = 150;
  shape.providers_per_interface = 10;
  shape.consumers_per_interface = 3;
  const std::vector<testing::ZNode> tree = testing::MakeDubboTree(shape);
  ASSERT_FIXTURE_OK(CreateNodes(zookeeper_->address(), tree));
  std::vector<std::string> providers;
  for (const testing::ZNode& node : tree) {
    if (node.path.find("/providers/") != std::string::npos) providers.push_back(node.path);
  }
  ASSERT_GE(providers.size(), 1000u);
  const testing::DelayingProxyOptions slow{.one_way_delay = milliseconds(10), .hold_fraction = 0};
  ASSERT_FIXTURE_OK_AND_ASSIGN(auto zk_proxy,
                               testing::DelayingTcpProxy::Start(zookeeper_->port(), slow));
  ASSERT_FIXTURE_OK_AND_ASSIGN(auto etcd_proxy,
                               testing::DelayingTcpProxy::Start(etcd_->client_port(), slow));

  // Changes from before the start until after the first reconciliation: creates, data changes
  // and deletes of providers the walk reads.
  auto sync = std::make_unique<Zk2etcdProcess>(std::vector<std::string>{
      "sync", "--zookeeper-servers=" + zk_proxy->address(),
      "--etcd-servers=" + etcd_proxy->address(), "--log-format=text", "--http-addr=127.0.0.1:0"});
  std::atomic<bool> reconciled{false};
  std::atomic<int> changes{0};
  std::thread changer([&] {
    auto client = ZooKeeperCClient::Connect(zookeeper_->address(), seconds(20));
    if (!client.ok()) return;
    const auto deadline = std::chrono::steady_clock::now() + kConverge;
    for (size_t i = 0; !reconciled.load() && std::chrono::steady_clock::now() < deadline; ++i) {
      const std::string& provider = providers[(i * 7) % providers.size()];
      bool done = false;
      switch (i % 3) {
        case 0:
          done = (*client)->Create(provider + "-late" + std::to_string(i), "late").ok();
          break;
        case 1:
          done = (*client)->Set(provider, "changed " + std::to_string(i)).ok();
          break;
        default:
          done = (*client)->Delete(provider).ok();
          break;
      }
      if (done) ++changes;
      std::this_thread::sleep_for(milliseconds(2));
    }
  });
  auto started = sync->Start();
  const bool walking = started.ok() && sync->WaitForLog("reconciliation started", 1, kConverge);
  const int changes_before = changes.load();
  const bool first_done = walking && sync->WaitForLog("reconciliation done", 1, kConverge);
  reconciled = true;
  changer.join();
  ASSERT_TRUE(started.ok()) << started.error().message;
  ASSERT_TRUE(first_done) << sync->Log();
  EXPECT_GT(changes.load() - changes_before, 10) << "changes made during the reconciliation";

  // The first reconciliation created keys before its walk was complete: its repairs began before
  // the walk ended (they are timed from the first one).
  const std::string log = sync->Log();
  const auto field = [&](const std::string& name) {
    const size_t at = log.find(" " + name + "=");
    return at == std::string::npos ? -1.0 : std::stod(log.substr(at + name.size() + 2));
  };
  EXPECT_GT(field("repaired_during_walk"), 1000) << log;
  EXPECT_GT(field("walk_s") + field("repair_s"), field("seconds")) << log;
  // Converged by that reconciliation and the watch events alone: no second one was needed.
  EXPECT_TRUE(Converged(ZkExpected())) << sync->Log();
  EXPECT_EQ(sync->CountLines("reconciliation done"), 1u) << sync->Log();
  EXPECT_EQ(sync->Terminate(seconds(20)), 0) << sync->Log();
}

// SIGTERM during a first sync's repairs while etcd does not answer (paused): the repairs get
// --shutdown-timeout, then are abandoned, and the process exits 0 once the transactions in flight
// and the resignation have waited out their deadlines (each attempt --etcd-request-timeout; 14 s
// measured here), instead of waiting for etcd to come back (it did before).
TEST_F(SyncE2eTest, AStopWhileEtcdDoesNotAnswerDoesNotWaitForIt) {
  testing::DubboTreeShape shape;
  shape.interfaces = 500;
  shape.providers_per_interface = 30;
  shape.consumers_per_interface = 10;
  ASSERT_FIXTURE_OK(CreateNodes(zookeeper_->address(), testing::MakeDubboTree(shape)));
  // The default --etcd-request-timeout (10 s, four attempts): the exit took 39 s while each write
  // in flight waited out its attempts; now --shutdown-timeout for the repairs, as much for the
  // drain, then the calls are abandoned and the resignation gets one short attempt.
  auto sync =
      std::make_unique<Zk2etcdProcess>(Args("sync", {"--shutdown-timeout=1s", "--log-level=info"}));
  ASSERT_FIXTURE_OK(sync->Start());
  // As the first repairs land (the listing of the empty etcd long done): most of the 22,501 are
  // still to be written, and find etcd paused.
  ASSERT_TRUE(Eventually([&] { return !view_->List("/dubbo/").empty(); }, kConverge))
      << sync->Log();
  etcd_->Pause();
  std::this_thread::sleep_for(milliseconds(500));
  const auto stop_at = std::chrono::steady_clock::now();
  const int exit_code = sync->Terminate(seconds(60));
  const auto took = std::chrono::steady_clock::now() - stop_at;
  etcd_->Resume();
  EXPECT_EQ(exit_code, 0) << sync->Log();
  EXPECT_LT(took, seconds(8)) << sync->Log();
  std::printf("stopped %lld ms after SIGTERM with etcd paused\n",
              static_cast<long long>(std::chrono::duration_cast<milliseconds>(took).count()));
  EXPECT_TRUE(sync->WaitForLog("abandoned", 1, seconds(1))) << sync->Log();
}

// Each defect of the Go zk2etcd v1.3.0 (design brief §1), shown absent.
TEST_F(SyncE2eTest, GoToolDefectsAreAbsent) {
  ASSERT_FIXTURE_OK(zk_->CreateRecursive("/dubbo/svc/providers/p1", "v1"));
  ASSERT_FIXTURE_OK(zk_->CreateRecursive("/dubbox/sibling", "not in scope"));
  view_->Put("/dubbox/foreign-sibling", "keep");
  auto sync = StartSync({"--fullsync-interval=0"});

  // setData is synced.
  ASSERT_FIXTURE_OK(zk_->Set("/dubbo/svc/providers/p1", "v2"));
  EXPECT_TRUE(Eventually([&] { return view_->Get("/dubbo/svc/providers/p1") == "v2"; }, kConverge));
  // A deep subtree created at once is synced whole.
  ASSERT_FIXTURE_OK(zk_->CreateRecursive("/dubbo/new/a/b/c", "deep"));
  EXPECT_TRUE(Eventually([&] { return view_->Get("/dubbo/new/a/b/c") == "deep"; }, kConverge));
  EXPECT_EQ(view_->Get("/dubbo/new/a"), "");
  // Prefixes have a path boundary: /dubbo never touches /dubbox.
  EXPECT_EQ(view_->Get("/dubbox/sibling"), std::nullopt);
  EXPECT_EQ(view_->Get("/dubbox/foreign-sibling"), "keep");
  // The process exits 0 on a clean stop...
  EXPECT_EQ(sync->Terminate(seconds(20)), 0);

  // ...an empty exclude list excludes nothing...
  ASSERT_FIXTURE_OK(zk_->CreateRecursive("/dubbo/config/app", "cfg"));
  auto no_excludes = StartSync({"--zookeeper-exclude-prefix="});
  EXPECT_EQ(view_->Get("/dubbo/config/app"), "cfg");
  EXPECT_EQ(no_excludes->Terminate(seconds(20)), 0);

  // ...and non-zero on failure (etcd refuses the credentials).
  testing::EtcdOptions with_auth;
  with_auth.auth = testing::EtcdAuthOptions{};
  std::unique_ptr<EtcdServer> secured;
  ASSERT_FIXTURE_OK_AND_ASSIGN(secured, EtcdServer::Start(with_auth));
  Zk2etcdProcess bad({"sync", "--zookeeper-servers=" + zookeeper_->address(),
                      "--etcd-servers=" + secured->endpoint(), "--etcd-user=zk2etcd",
                      "--etcd-password=wrong"});
  const int status = bad.RunToCompletion(seconds(60));
  EXPECT_NE(status, 0) << bad.Log();
  EXPECT_NE(status, -1) << "must give up on refused credentials, not hang";
}

// A transient ZooKeeper fault must never delete etcd keys; full syncs come one per period.
TEST_F(SyncE2eTest, ZooKeeperOutageDeletesNothingAndFullSyncsAreNotDoubled) {
  ASSERT_FIXTURE_OK(zk_->CreateRecursive("/dubbo/svc/providers/p1", "v1"));
  auto sync = StartSync({"--fullsync-interval=2s", "--zookeeper-session-timeout=4s"});
  const auto before = Synced();
  ASSERT_EQ(before.size(), 4u);
  zookeeper_->Pause();
  for (int i = 0; i < 12; ++i) {
    std::this_thread::sleep_for(milliseconds(250));
    ASSERT_EQ(Synced(), before) << "a ZooKeeper outage deleted keys";
  }
  zookeeper_->Resume();
  ASSERT_FIXTURE_OK(zk_->Set("/dubbo/svc/providers/p1", "after-outage"));
  EXPECT_TRUE(Converged(ZkExpected()));
  // Reconciliations: about one per 2 s period, never two back to back.
  ASSERT_TRUE(sync->WaitForLog("reconciliation done", 4, seconds(30)));
  std::vector<double> starts;
  std::istringstream log(sync->Log());
  for (std::string line; std::getline(log, line);) {
    if (line.find("reconciliation started") == std::string::npos) continue;
    const std::string time = line.substr(line.find('T') + 1, 12);  // HH:MM:SS.mmm
    starts.push_back(std::stod(time.substr(0, 2)) * 3600 + std::stod(time.substr(3, 2)) * 60 +
                     std::stod(time.substr(6)));
  }
  EXPECT_EQ(sync->Terminate(seconds(20)), 0);
  int back_to_back = 0;
  for (size_t i = 1; i < starts.size(); ++i) back_to_back += starts[i] - starts[i - 1] < 0.5;
  EXPECT_LE(back_to_back, 1) << "the resume may add one reconciliation, not a pair per period";

  // A chroot that does not exist would read as an empty tree and delete every key the tool
  // wrote: sync stops with an error that names it, diff exits 2, and etcd keeps its keys.
  const auto synced = Synced();
  const std::string missing = "--zookeeper-servers=" + zookeeper_->address() + "/no-such-chroot";
  Zk2etcdProcess chrooted(Args("sync", {missing, "--leader-elect=false"}));
  EXPECT_EQ(chrooted.RunToCompletion(seconds(30)), 1) << chrooted.Log();
  EXPECT_NE(chrooted.Log().find("chroot of the connect string does not exist"), std::string::npos)
      << chrooted.Log();
  Zk2etcdProcess diff(Args("diff", {missing}));
  EXPECT_EQ(diff.RunToCompletion(seconds(30)), 2) << diff.Log();
  EXPECT_NE(diff.Log().find("/no-such-chroot of the connect string does not exist"),
            std::string::npos)
      << diff.Log();
  EXPECT_EQ(Synced(), synced);
}

TEST_F(SyncE2eTest, ForeignKeysSurviveAndKeysZooKeeperLostAreRemoved) {
  ASSERT_FIXTURE_OK(zk_->CreateRecursive("/dubbo/svc/providers/p1", "v1"));
  ASSERT_FIXTURE_OK(zk_->CreateRecursive("/dubbo/svc/providers/p2", "v2"));
  view_->Put("/dubbo/svc/providers/from-replicator", "foreign");
  view_->Put("/dubbo/other-writer", "foreign");
  auto sync = StartSync({"--fullsync-interval=1s"});
  ASSERT_FIXTURE_OK(zk_->Delete("/dubbo/svc/providers/p2"));
  EXPECT_TRUE(Eventually([&] { return !view_->Get("/dubbo/svc/providers/p2"); }, kConverge));
  // Let a few periodic reconciliations pass.
  ASSERT_TRUE(sync->WaitForLog("reconciliation done", 3, seconds(30)));
  EXPECT_EQ(view_->Get("/dubbo/svc/providers/from-replicator"), "foreign");
  EXPECT_EQ(view_->Get("/dubbo/other-writer"), "foreign");
  EXPECT_EQ(sync->Terminate(seconds(20)), 0);

  Zk2etcdProcess fix(Args("diff", {"--fix", "--output=json"}));
  EXPECT_EQ(fix.RunToCompletion(seconds(60)), 0) << fix.Log();
  EXPECT_EQ(view_->Get("/dubbo/svc/providers/from-replicator"), "foreign");
  EXPECT_EQ(view_->Get("/dubbo/other-writer"), "foreign");
}

TEST_F(SyncE2eTest, RedisOwnershipKeepsTheGoToolsRecordsAndDeletesNothingWhileDown) {
  std::unique_ptr<RedisServer> redis;
  ASSERT_FIXTURE_OK_AND_ASSIGN(redis, RedisServer::Start());
  // What the Go tool left: keys in etcd recorded in Redis, plus a foreign key.
  ASSERT_FIXTURE_OK(zk_->CreateRecursive("/dubbo/svc/providers/p1", "new"));
  ASSERT_FIXTURE_OK(zk_->CreateRecursive("/dubbo/svc/providers/p2", "two"));
  for (const auto& [key, value] :
       std::vector<std::pair<std::string, std::string>>{{"/dubbo/svc/providers/p1", "old"},
                                                        {"/dubbo/svc/providers/gone", "x"}}) {
    view_->Put(key, value);
    ASSERT_TRUE(testing::RunCommand({"redis-cli", "-p", std::to_string(redis->port()), "SET",
                                     key, value},
                                    seconds(10))
                    .ok());
  }
  view_->Put("/dubbo/svc/providers/foreign", "theirs");
  auto sync = StartSync({"--redis-server=" + redis->address(), "--fullsync-interval=1s"});
  EXPECT_TRUE(Eventually([&] { return view_->Get("/dubbo/svc/providers/p1") == "new"; }, kConverge));
  EXPECT_TRUE(Eventually([&] { return !view_->Get("/dubbo/svc/providers/gone"); }, kConverge));
  EXPECT_EQ(view_->Get("/dubbo/svc/providers/foreign"), "theirs");
  auto recorded = testing::RunCommand(
      {"redis-cli", "-p", std::to_string(redis->port()), "GET", "/dubbo/svc/providers/p2"},
      seconds(10));
  ASSERT_TRUE(recorded.ok());
  EXPECT_EQ(*recorded, "two\n") << "new keys are recorded in the Go tool's layout";

  // Redis down: a node deleted in ZooKeeper stays in etcd until Redis is back.
  redis->Kill9();
  ASSERT_FIXTURE_OK(zk_->Delete("/dubbo/svc/providers/p2"));
  for (int i = 0; i < 12; ++i) {
    std::this_thread::sleep_for(milliseconds(250));
    ASSERT_EQ(view_->Get("/dubbo/svc/providers/p2"), "two") << "deleted while Redis was down";
  }
  ASSERT_FIXTURE_OK(redis->Restart());
  EXPECT_TRUE(Eventually([&] { return !view_->Get("/dubbo/svc/providers/p2"); }, kConverge));
  EXPECT_EQ(view_->Get("/dubbo/svc/providers/foreign"), "theirs");
  EXPECT_EQ(sync->Terminate(seconds(20)), 0);
}

TEST_F(SyncE2eTest, ConvergesAfterKill9OfTheToolAndRestartOfZooKeeper) {
  ASSERT_FIXTURE_OK(zk_->CreateRecursive("/dubbo/svc/providers/p1", "v1"));
  auto sync = StartSync();
  sync->Kill9();
  ASSERT_FIXTURE_OK(zk_->CreateRecursive("/dubbo/svc/providers/while-down", "x"));
  ASSERT_FIXTURE_OK(zk_->Delete("/dubbo/svc/providers/p1"));
  sync = StartSync();
  EXPECT_TRUE(Converged(ZkExpected()));

  zookeeper_->Kill9();
  ASSERT_FIXTURE_OK(zookeeper_->Restart());
  ASSERT_FIXTURE_OK_AND_ASSIGN(zk_, ZooKeeperCClient::Connect(zookeeper_->address(), seconds(20)));
  ASSERT_FIXTURE_OK(zk_->CreateRecursive("/dubbo/svc/providers/after-zk-restart", "y"));
  EXPECT_TRUE(Converged(ZkExpected()));
  // One outage, one line: the full sync's extra reading sessions log theirs at debug level.
  EXPECT_EQ(sync->CountLines("zookeeper connection lost"), 1u) << sync->Log();
  EXPECT_EQ(sync->Terminate(seconds(20)), 0);
}

TEST_F(SyncE2eTest, ConvergesAfterSessionExpiryAndAnEtcdPause) {
  ASSERT_FIXTURE_OK(zk_->CreateRecursive("/dubbo/svc/providers/p1", "v1"));
  auto sync = StartSync({"--zookeeper-session-timeout=2s", "--fullsync-interval=0"});
  // ZooKeeper paused past the session timeout: the session expires.
  zookeeper_->Pause();
  std::this_thread::sleep_for(seconds(4));
  zookeeper_->Resume();
  ASSERT_FIXTURE_OK_AND_ASSIGN(zk_, ZooKeeperCClient::Connect(zookeeper_->address(), seconds(20)));
  ASSERT_FIXTURE_OK(zk_->CreateRecursive("/dubbo/svc/providers/after-expiry", "z"));
  EXPECT_TRUE(Converged(ZkExpected())) << sync->Log();
  EXPECT_TRUE(sync->WaitForLog("session", 1, seconds(1)));
  // The new session's reconciliation is done before etcd pauses: the pause below is one of a
  // process that follows changes. (A reconciliation that etcd stops answering holds the Run
  // thread until its request times out, and the lease's end is handled after it.)
  EXPECT_TRUE(sync->WaitForLog("reconciliation done", 2, kConverge)) << sync->Log();

  // etcd paused for 15 s while ZooKeeper changes.
  const auto paused = std::chrono::steady_clock::now();
  etcd_->Pause();
  ASSERT_FIXTURE_OK(zk_->CreateRecursive("/dubbo/svc/providers/during-etcd-pause", "w"));
  ASSERT_FIXTURE_OK(zk_->Set("/dubbo/svc/providers/p1", "v2"));
  for (int i = 0; i < 30; ++i) {
    ASSERT_FIXTURE_OK(zk_->CreateRecursive("/dubbo/queued/providers/q" + std::to_string(i), "q"));
  }
  // The lease (5 s) runs out meanwhile: once the process says it lost leadership, its metric and
  // /readyz say so too (the lease's revoke, which etcd does not answer, is not waited for).
  EXPECT_TRUE(sync->WaitForLog("leadership lost: standing by", 1, seconds(12))) << sync->Log();
  const int port = HttpPort(*sync);
  EXPECT_TRUE(Eventually(
      [&] {
        return Http(port, "/metrics").body.find("\nzk2etcd_leader 0") != std::string::npos &&
               Http(port, "/readyz").body.find("ready: leader") == std::string::npos;
      },
      seconds(3)))
      << Http(port, "/readyz").body << sync->Log();
  std::this_thread::sleep_until(paused + seconds(15));
  etcd_->Resume();
  EXPECT_TRUE(Converged(ZkExpected())) << sync->Log();
  // The writes queued under the lost leadership fail their fence (or land under the next one):
  // the step-down says so once, not a line per key.
  EXPECT_EQ(sync->CountLines("leadership lost: standing by"), 1u) << sync->Log();
  EXPECT_EQ(sync->CountLines("write failed"), 0u) << sync->Log();
  EXPECT_EQ(sync->Terminate(seconds(20)), 0);
}

// An etcd that answers only long after the process started (a pod that starts before its etcd,
// or a restart during an etcd outage) is used within about a second of answering: attempts are at
// most 1 s apart (they were up to 10 s apart). Only the first failed attempt is a warning.
TEST_F(SyncE2eTest, AnEtcdThatAnswersLongAfterTheStartIsUsedWithinASecond) {
  ASSERT_FIXTURE_OK(zk_->CreateRecursive("/dubbo/svc/providers/p1", "v1"));
  int port = 0;
  ASSERT_FIXTURE_OK_AND_ASSIGN(port, testing::PickFreePort());
  std::vector<std::string> args = Args("sync", {});
  for (std::string& arg : args) {
    if (arg.starts_with("--etcd-servers="))
      arg = "--etcd-servers=127.0.0.1:" + std::to_string(port);
  }
  Zk2etcdProcess sync(args);
  ASSERT_FIXTURE_OK(sync.Start());
  // A refused connection is said at once, not after the attempt's dial timeout (5 s).
  EXPECT_TRUE(sync.WaitForLog("etcd unreachable; retrying", 1, seconds(2))) << sync.Log();
  // Waits of 0.5 s then 1 s between refused attempts; before the fix, the waits were 0.5, 1, 2, 4
  // and 8 s after attempts of 5 s, the 8 s from about the 13th second to the 21st.
  std::this_thread::sleep_for(seconds(16));
  // etcd answers on that port from now on (a proxy in front of the test's etcd).
  const testing::DelayingProxyOptions direct{
      .one_way_delay = milliseconds(0), .hold_fraction = 0, .listen_port = port};
  ASSERT_FIXTURE_OK_AND_ASSIGN(auto proxy,
                               testing::DelayingTcpProxy::Start(etcd_->client_port(), direct));
  const auto answering = std::chrono::steady_clock::now();
  ASSERT_TRUE(sync.WaitForLog("etcd reachable", 1, seconds(15))) << sync.Log();
  const auto took = std::chrono::steady_clock::now() - answering;
  EXPECT_LT(took, milliseconds(2500)) << sync.Log();
  std::printf("etcd reachable %lld ms after it answered\n",
              static_cast<long long>(std::chrono::duration_cast<milliseconds>(took).count()));
  EXPECT_TRUE(Converged(ZkExpected())) << sync.Log();
  EXPECT_EQ(sync.CountLines("WARN etcd unreachable; retrying"), 1u) << sync.Log();
  // The wait is not taken for distance (a dial that waited 653 ms was judged far). A loaded
  // machine can still make a loopback dial take 5 ms (the far threshold): the dial_ms says which.
  std::smatch far;
  const std::string log = sync.Log();
  if (std::regex_search(log, far, std::regex("etcd is far.*dial_ms=([0-9.]+)"))) {
    EXPECT_LT(std::stod(far[1]), 100.0) << log;
  }
  EXPECT_EQ(sync.Terminate(seconds(20)), 0) << sync.Log();
}

TEST_F(SyncE2eTest, DiffReportsAPreparedDivergenceExactlyAndFixRemovesIt) {
  ASSERT_FIXTURE_OK(zk_->CreateRecursive("/dubbo/svc/providers/same", "s"));
  ASSERT_FIXTURE_OK(zk_->CreateRecursive("/dubbo/svc/providers/changed", "new"));
  ASSERT_FIXTURE_OK(zk_->CreateRecursive("/dubbo/svc/providers/extra", "e"));
  {
    Zk2etcdProcess fix(Args("diff", {"--fix"}));
    ASSERT_EQ(fix.RunToCompletion(seconds(60)), 0) << fix.Log();
  }
  // Diverge: a key zk2etcd wrote is lost from ZooKeeper, one changes, one is new, one is foreign.
  ASSERT_FIXTURE_OK(zk_->Delete("/dubbo/svc/providers/extra"));
  ASSERT_FIXTURE_OK(zk_->Set("/dubbo/svc/providers/changed", "newer"));
  ASSERT_FIXTURE_OK(zk_->CreateRecursive("/dubbo/svc/providers/missing", "m"));
  view_->Put("/dubbo/svc/providers/foreign", "f");

  Zk2etcdProcess diff(Args("diff", {"--output=json", "--log-level=warn"}));
  EXPECT_EQ(diff.RunToCompletion(seconds(60)), 1) << diff.Log();
  const std::string report = diff.Log();
  EXPECT_NE(report.find("\"missing\":[\"/dubbo/svc/providers/missing\"]"), std::string::npos)
      << report;
  EXPECT_NE(report.find("\"extra\":[\"/dubbo/svc/providers/extra\"]"), std::string::npos);
  EXPECT_NE(report.find("\"changed\":[\"/dubbo/svc/providers/changed\"]"), std::string::npos);
  EXPECT_NE(report.find("\"foreign\":[\"/dubbo/svc/providers/foreign\"]"), std::string::npos);

  Zk2etcdProcess fix(Args("diff", {"--fix"}));
  EXPECT_EQ(fix.RunToCompletion(seconds(60)), 0) << fix.Log();
  EXPECT_EQ(Synced(), [&] {
    auto expected = ZkExpected();
    expected["/dubbo/svc/providers/foreign"] = "f";
    return expected;
  }());
  Zk2etcdProcess clean(Args("diff"));
  EXPECT_EQ(clean.RunToCompletion(seconds(60)), 0) << clean.Log();
}

// One-shot watches (forced here; chosen automatically on ZooKeeper 3.4/3.5) follow every change.
TEST_F(SyncE2eTest, ClassicWatchModeFollowsCreatesChangesAndDeletes) {
  ASSERT_FIXTURE_OK(zk_->CreateRecursive("/dubbo/svc/providers/p1", "v1"));
  ASSERT_FIXTURE_OK(zk_->CreateRecursive("/dubbo/svc/consumers", ""));
  auto sync = StartSync({"--zookeeper-watch-mode=classic", "--fullsync-interval=0"});
  for (int i = 2; i <= 4; ++i) {
    ASSERT_FIXTURE_OK(zk_->Set("/dubbo/svc/providers/p1", "v" + std::to_string(i)));
    EXPECT_TRUE(Eventually(
        [&] { return view_->Get("/dubbo/svc/providers/p1") == "v" + std::to_string(i); },
        kConverge));
  }
  ASSERT_FIXTURE_OK(zk_->CreateRecursive("/dubbo/svc/providers/p1/x/y", "deep"));
  ASSERT_FIXTURE_OK(zk_->Delete("/dubbo/svc/consumers"));
  EXPECT_TRUE(Converged(ZkExpected())) << sync->Log();
  EXPECT_EQ(sync->Terminate(seconds(20)), 0);
}

// Two replicas: kill -9 the leader, the standby leads and syncs a change within the lease + 2 s;
// a leader paused past its lease writes nothing when it resumes.
TEST_F(SyncE2eTest, LeaderElectionFailsOverAndFencesADeposedLeader) {
  ASSERT_FIXTURE_OK(zk_->CreateRecursive("/dubbo/svc/providers/p1", "v1"));
  // Replicas on one host need their own identities (the default, the hostname, is shared).
  auto election = [](const std::string& identity) {
    return std::vector<std::string>{"--leader-elect-lease-duration=3s", "--fullsync-interval=0",
                                    "--leader-elect-identity=" + identity};
  };
  auto first = StartSync(election("replica-1"));
  Zk2etcdProcess second(Args("sync", election("replica-2")));
  ASSERT_FIXTURE_OK(second.Start());
  ASSERT_TRUE(second.WaitForLog("campaigning for leadership", 1, seconds(30))) << second.Log();
  std::this_thread::sleep_for(seconds(1));
  EXPECT_EQ(second.CountLines("elected leader"), 0u) << "two leaders at once";

  first->Kill9();
  const auto killed = std::chrono::steady_clock::now();
  ASSERT_FIXTURE_OK(zk_->CreateRecursive("/dubbo/svc/providers/after-failover", "x"));
  ASSERT_TRUE(Eventually([&] { return view_->Get("/dubbo/svc/providers/after-failover") == "x"; },
                         seconds(20)))
      << second.Log();
  EXPECT_LT(std::chrono::steady_clock::now() - killed, seconds(3 + 2));

  // The new leader is paused past its lease; the old one comes back and leads; the paused one,
  // resumed, must not write (its fence refers to a leadership that is gone).
  auto third = std::make_unique<Zk2etcdProcess>(Args("sync", election("replica-3")));  // a standby
  ASSERT_FIXTURE_OK(third->Start());
  ASSERT_TRUE(third->WaitForLog("campaigning for leadership", 1, seconds(30))) << third->Log();
  second.Pause();
  ASSERT_TRUE(third->WaitForLog("elected leader", 1, seconds(20))) << third->Log();
  ASSERT_FIXTURE_OK(zk_->Set("/dubbo/svc/providers/p1", "from-new-leader"));
  ASSERT_TRUE(Eventually(
      [&] { return view_->Get("/dubbo/svc/providers/p1") == "from-new-leader"; }, seconds(20)));
  third->Pause();  // freeze the new leader so only the resumed one could write
  ASSERT_FIXTURE_OK(zk_->Set("/dubbo/svc/providers/p1", "must-not-be-written-by-deposed"));
  second.Resume();
  EXPECT_TRUE(second.WaitForLog("leadership lost", 1, seconds(20))) << second.Log();
  std::this_thread::sleep_for(seconds(1));
  EXPECT_EQ(view_->Get("/dubbo/svc/providers/p1"), "from-new-leader") << second.Log();
  third->Resume();
  EXPECT_EQ(second.Terminate(seconds(20)), 0);
  EXPECT_EQ(third->Terminate(seconds(20)), 0);
}

TEST_F(SyncE2eTest, GenzkBuildsTheTreeItAnnounces) {
  Zk2etcdProcess genzk({"genzk", "--zookeeper-servers=" + zookeeper_->address(), "--path=/dubbo",
                        "--parent-count=20", "--children-count=10", "--data-every=3",
                        "--data-bytes=40"});
  ASSERT_EQ(genzk.RunToCompletion(seconds(60)), 0) << genzk.Log();
  EXPECT_EQ(genzk.CountLines("created 300 nodes"), 1u) << genzk.Log();  // 20 x (1 + 4 + 10)
  auto providers = zk_->Children("/dubbo/org.example.test7.DemoService/providers");
  ASSERT_TRUE(providers.ok());
  EXPECT_EQ(providers->size(), 5u);
  EXPECT_EQ(providers->front().rfind("dubbo%3A%2F%2F10.0.0.7%3A", 0), 0u) << providers->front();
}

TEST(CliE2eTest, BadInputFailsFastWithOneLineAndUnreachableServersGiveExitTwo) {
  Zk2etcdProcess bad({"sync", "--zookeeper-servers=127.0.0.1:1", "--etcd-servers=127.0.0.1:2",
                      "--zookeeper-prefix=dubbo"});
  const auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(bad.RunToCompletion(seconds(10)), 2);
  EXPECT_LT(std::chrono::steady_clock::now() - start, seconds(5));
  EXPECT_EQ(bad.CountLines("must start with '/'"), 1u) << bad.Log();

  int dead_zk = 0, dead_etcd = 0;
  ASSERT_FIXTURE_OK_AND_ASSIGN(dead_zk, testing::PickFreePort());
  ASSERT_FIXTURE_OK_AND_ASSIGN(dead_etcd, testing::PickFreePort());
  Zk2etcdProcess unreachable({"diff", "--zookeeper-servers=127.0.0.1:" + std::to_string(dead_zk),
                              "--etcd-servers=127.0.0.1:" + std::to_string(dead_etcd),
                              "--connect-timeout=3s", "--etcd-dial-timeout=1s"});
  EXPECT_EQ(unreachable.RunToCompletion(seconds(30)), 2) << unreachable.Log();

  // An etcd that takes the connection and never answers: --connect-timeout bounds the wait,
  // although one dial attempt may take --etcd-dial-timeout (here 30 s).
  std::unique_ptr<testing::SilentListener> silent;
  ASSERT_FIXTURE_OK_AND_ASSIGN(silent, testing::SilentListener::Start());
  Zk2etcdProcess silent_etcd({"diff", "--zookeeper-servers=127.0.0.1:" + std::to_string(dead_zk),
                              "--etcd-servers=" + silent->address(), "--connect-timeout=2s",
                              "--etcd-dial-timeout=30s"});
  const auto silent_start = std::chrono::steady_clock::now();
  EXPECT_EQ(silent_etcd.RunToCompletion(seconds(30)), 2) << silent_etcd.Log();
  EXPECT_LT(std::chrono::steady_clock::now() - silent_start, seconds(15)) << silent_etcd.Log();

  // A flag left without its value is refused, not given the next flag as its value.
  Zk2etcdProcess no_value({"sync", "--zookeeper-servers=127.0.0.1:1", "--etcd-servers=127.0.0.1:2",
                           "--zookeeper-prefix", "--http-addr=127.0.0.1:0"});
  EXPECT_EQ(no_value.RunToCompletion(seconds(10)), 2);
  EXPECT_EQ(no_value.CountLines("flag --zookeeper-prefix needs a value, and --http-addr that "
                                "follows it is a flag"),
            1u)
      << no_value.Log();

  // An exclude outside every prefix is warned about; SIGTERM while connecting stops it, and says
  // so.
  Zk2etcdProcess waiting({"sync", "--zookeeper-servers=127.0.0.1:" + std::to_string(dead_zk),
                          "--etcd-servers=127.0.0.1:" + std::to_string(dead_etcd),
                          "--etcd-dial-timeout=1s", "--zookeeper-prefix=/services",
                          "--zookeeper-exclude-prefix=/servicez/x", "--http-addr=127.0.0.1:0",
                          "--log-format=text"});
  ASSERT_FIXTURE_OK(waiting.Start());
  EXPECT_TRUE(waiting.WaitForLog("etcd unreachable; retrying", 1, seconds(10))) << waiting.Log();
  EXPECT_EQ(waiting.CountLines("--zookeeper-exclude-prefix lies outside every --zookeeper-prefix "
                               "and excludes nothing"),
            1u)
      << waiting.Log();
  EXPECT_EQ(waiting.CountLines("/dubbo/config"), 0u) << waiting.Log();
  EXPECT_EQ(waiting.Terminate(seconds(5)), 0) << waiting.Log();
  EXPECT_EQ(waiting.CountLines("zk2etcd sync stopped"), 1u) << waiting.Log();
}

}  // namespace
}  // namespace zk2etcd::e2e
