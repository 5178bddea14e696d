// `zk2etcd zk2zk` end to end: the built binary between two real ZooKeeper 3.8 servers, started
// once for the whole binary (a source and a target). Each test copies a subtree of its own under
// a job name of its own, so the tests share the servers; none kills or pauses them (a test that
// kills an ensemble starts a server of its own for that side). Nodes are
// created and checked with the official C client (an oracle independent of zk2etcd's client);
// "providers" are ephemeral nodes held by sessions of their own, as Dubbo registers them. Every
// wait is bounded.
#include <gtest/gtest.h>
#include <zookeeper/zookeeper.h>

#include <algorithm>
#include <fstream>
#include <iostream>
#include <map>
#include <mutex>
#include <optional>
#include <regex>
#include <set>
#include <sstream>
#include <thread>

#include "cli/e2e_support.h"
#include "testing/delaying_proxy.h"
#include "testing/loopback.h"
#include "testing/process.h"
#include "testing/server_support.h"
#include "testing/temp_dir.h"
#include "testing/zookeeper_c_client.h"
#include "testing/zookeeper_server.h"

namespace zk2etcd::e2e {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using testing::ZooKeeperCClient;
using testing::ZooKeeperServer;

constexpr auto kConverge = seconds(60);
constexpr auto kSession = milliseconds(10000);  // the test's own clients

struct Ensembles {
  std::unique_ptr<ZooKeeperServer> source;
  std::unique_ptr<ZooKeeperServer> target;
};

// Started on first use, stopped when the binary exits.
testing::FixtureResult<Ensembles*> SharedEnsembles() {
  static std::mutex mutex;
  static std::unique_ptr<Ensembles> servers;
  static std::optional<testing::FixtureError> failed;
  std::lock_guard lock(mutex);
  if (servers) return servers.get();
  if (failed) return Unexpected{*failed};
  auto made = std::make_unique<Ensembles>();
  for (auto* slot : {&made->source, &made->target}) {
    auto server = ZooKeeperServer::Start();
    if (!server.ok()) {
      failed = server.error();
      return Unexpected{server.error()};
    }
    *slot = std::move(server).value();
  }
  servers = std::move(made);
  return servers.get();
}

std::unique_ptr<ZooKeeperCClient> Connect(const std::string& address,
                                          milliseconds timeout = kSession) {
  auto client = ZooKeeperCClient::Connect(address, timeout);
  return client.ok() ? std::move(client).value() : nullptr;
}

// A node's Stat through the C client, nullopt when it does not exist (or on an error).
std::optional<::Stat> StatOf(ZooKeeperCClient& zk, const std::string& path) {
  ::Stat stat{};
  if (zoo_exists(zk.handle(), path.c_str(), 0, &stat) != ZOK) return std::nullopt;
  return stat;
}

// The last zxid the server committed ("Zxid: 0x..." of srvr), -1 if it does not answer.
int64_t ServerZxid(const ZooKeeperServer& server) {
  auto reply = testing::TcpExchange(server.port(), "srvr", milliseconds(2000));
  if (!reply.ok()) return -1;
  std::smatch match;
  if (!std::regex_search(*reply, match, std::regex("Zxid: 0x([0-9a-f]+)"))) return -1;
  return static_cast<int64_t>(std::stoull(match[1].str(), nullptr, 16));
}

// The sum of a metric's samples whose line contains every one of `labels`.
double MetricSum(const std::string& page, const std::string& name,
                 const std::vector<std::string>& labels = {}) {
  double sum = 0;
  std::istringstream lines(page);
  for (std::string line; std::getline(lines, line);) {
    if (!line.starts_with(name + "{") && !line.starts_with(name + " ")) continue;
    if (!std::all_of(labels.begin(), labels.end(), [&](const std::string& label) {
          return line.find(label) != std::string::npos;
        })) {
      continue;
    }
    sum += std::stod(line.substr(line.rfind(' ') + 1));
  }
  return sum;
}

// The last `lines` lines of a process's log: enough to see what it did last.
std::string Tail(const Zk2etcdProcess& process, size_t lines = 150) {
  const std::string log = process.Log();
  size_t start = log.size();
  for (size_t seen = 0; start > 0 && seen <= lines;) {
    if (log[--start] == '\n') ++seen;
  }
  return "--- log tail of " + process.log_path() + " ---\n" + log.substr(start);
}

class Zk2ZkE2eTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FIXTURE_OK_AND_ASSIGN(servers_, SharedEnsembles());
    source_address_ = servers_->source->address();
    target_address_ = servers_->target->address();
    source_ = Connect(source_address_);
    target_ = Connect(target_address_);
    ASSERT_NE(source_, nullptr);
    ASSERT_NE(target_, nullptr);
    static int counter = 0;
    const std::string id = std::to_string(++counter);
    path_ = "/registry" + id;
    name_ = "job" + id;
  }

  // The command line of `command` ("sync" or "diff") for path_ and name_.
  std::vector<std::string> Args(const std::string& command, std::vector<std::string> extra = {}) {
    std::vector<std::string> args = {"zk2zk",
                                     command,
                                     "--source-servers=" + source_address_,
                                     "--target-servers=" + target_address_,
                                     "--path=" + path_,
                                     "--name=" + name_,
                                     "--source-session-timeout=4s",
                                     "--target-session-timeout=4s",
                                     "--log-format=text"};
    if (command == "sync") {
      args.insert(args.end(), {"--http-addr=127.0.0.1:0", "--leader-elect-identity=" + name_,
                               "--progress-interval=1s"});
    }
    args.insert(args.end(), extra.begin(), extra.end());
    return args;
  }

  std::map<std::string, std::string> SourceTree() { return ReadZkTree(*source_, path_, ""); }
  std::map<std::string, std::string> TargetTree() { return ReadZkTree(*target_, path_, ""); }

  // Waits until the target's subtree equals the source's, plus `target_only` (nodes of the
  // target that the source must not get).
  ::testing::AssertionResult Converges(std::map<std::string, std::string> target_only = {},
                                       milliseconds timeout = kConverge) {
    std::map<std::string, std::string> expected, actual;
    const bool ok = Eventually(
        [&] {
          expected = SourceTree();
          for (const auto& [path, data] : target_only) {
            if (expected.count(path)) return false;  // it reached the source
            expected[path] = data;
          }
          actual = TargetTree();
          return !expected.empty() && expected == actual;
        },
        timeout);
    if (ok) return ::testing::AssertionSuccess();
    auto failure = ::testing::AssertionFailure();
    failure << "expected " << expected.size() << " nodes, the target has " << actual.size();
    for (const auto& [path, data] : expected) {
      auto it = actual.find(path);
      if (it == actual.end()) {
        failure << "\n  missing " << path;
      } else if (it->second != data) {
        failure << "\n  changed " << path;
      }
    }
    for (const auto& [path, data] : actual) {
      if (!expected.count(path)) failure << "\n  extra " << path;
    }
    return failure;
  }

  // Replaces the shared source (or target) with a server of this test's own, which the test may
  // kill and restart without disturbing the other tests (callers check HasFatalFailure). Its
  // options are the fixture's defaults: a 200 ms tick and a 1 s minimum session timeout, so that
  // sessions of 2-4 s are granted as asked and expire within a tick of their timeout.
  void UsePrivateServer(bool source) {
    ASSERT_FIXTURE_OK_AND_ASSIGN(private_server_, ZooKeeperServer::Start());
    (source ? source_address_ : target_address_) = private_server_->address();
    (source ? source_ : target_) = Connect(private_server_->address());
    ASSERT_NE(source ? source_ : target_, nullptr);
  }

  // A Dubbo-shaped tree under path_ on the source: its providers are ephemeral, spread over
  // `sessions` sessions of their own (returned, with `session_timeout`), everything else
  // persistent.
  std::vector<std::unique_ptr<ZooKeeperCClient>> MakeDubboSource(
      int sessions, milliseconds session_timeout = kSession) {
    testing::DubboTreeShape shape;
    shape.root = path_;
    shape.interfaces = 4;
    shape.providers_per_interface = 3;
    shape.consumers_per_interface = 2;
    shape.config_nodes = 2;
    std::vector<testing::ZNode> persistent, ephemeral;
    for (testing::ZNode& node : testing::MakeDubboTree(shape)) {
      (node.path.find("/providers/") != std::string::npos ? ephemeral : persistent)
          .push_back(std::move(node));
    }
    auto created = CreateNodes(source_address_, persistent);
    EXPECT_TRUE(created.ok()) << created.error().message;
    std::vector<std::unique_ptr<ZooKeeperCClient>> owners;
    for (int i = 0; i < sessions; ++i) owners.push_back(Connect(source_address_, session_timeout));
    for (size_t i = 0; i < ephemeral.size(); ++i) {
      auto& owner = owners[i % owners.size()];
      EXPECT_TRUE(owner && owner->Create(ephemeral[i].path, ephemeral[i].data, true).ok());
    }
    return owners;
  }

  // Every node of `tree` held by `owner`'s session on `server` (ephemeral_owner == its id).
  std::set<std::string> OwnedBy(ZooKeeperCClient& zk,
                                const std::map<std::string, std::string>& tree, int64_t session) {
    std::set<std::string> owned;
    for (const auto& [path, data] : tree) {
      if (auto stat = StatOf(zk, path); stat && stat->ephemeralOwner == session) owned.insert(path);
    }
    return owned;
  }

  // The applied writes so far, from the process's /metrics.
  double AppliedWrites(const Zk2etcdProcess& process) {
    const HttpResult metrics = Http(HttpPort(process), "/metrics");
    if (metrics.status != 200) return -1;
    return MetricSum(metrics.body, "zk2etcd_zk2zk_writes_total", {"outcome=\"applied\""});
  }

  Ensembles* servers_ = nullptr;
  // The ensembles of this test: the shared ones, or a private one (UsePrivateServer).
  std::string source_address_, target_address_;
  std::unique_ptr<ZooKeeperServer> private_server_;
  std::unique_ptr<ZooKeeperCClient> source_;
  std::unique_ptr<ZooKeeperCClient> target_;
  std::string path_, name_;
};

// The whole life of a migration on one job: the initial copy (ephemeral providers become
// persistent copies), changes, a provider's session closed and one expired, providers registered
// on the target (copied back to the source, and gone with their session), a target-only
// persistent node that is never touched, and no write at all once nothing changes.
TEST_F(Zk2ZkE2eTest, CopiesBothWaysFollowsChangesAndNeverLoops) {
  auto owners = MakeDubboSource(2);
  // A provider whose session goes through a proxy: removing the proxy makes the server expire it.
  auto proxy = testing::DelayingTcpProxy::Start(
      servers_->source->port(),
      {.one_way_delay = std::chrono::microseconds(0), .hold_fraction = 0});
  ASSERT_TRUE(proxy.ok());
  auto expiring = Connect((*proxy)->address(), milliseconds(2000));
  ASSERT_NE(expiring, nullptr);
  const std::string expiring_provider = path_ + "/expiring-provider";
  ASSERT_TRUE(expiring->Create(expiring_provider, "soon expired", true).ok());
  // A read-only node: its copy gets the same ACL.
  const std::string read_only = path_ + "/read-only";
  ASSERT_EQ(
      zoo_create(source_->handle(), read_only.c_str(), "r", 1, &ZOO_READ_ACL_UNSAFE, 0, nullptr, 0),
      ZOK);

  const std::string audit = "audit.log";
  auto dir = testing::TempDir::Create("zk2zk-audit");
  ASSERT_TRUE(dir.ok());
  auto sync = std::make_unique<Zk2etcdProcess>(Args("sync", {"--audit-log=" + dir->File(audit)}));
  ASSERT_FIXTURE_OK(sync->Start());
  ASSERT_TRUE(Converges()) << sync->Log();
  // A persistent node only the target has (a client of the target wrote it): kept, not copied.
  ASSERT_TRUE(target_->CreateRecursive(path_ + "/target-only/config", "t").ok());
  const std::map<std::string, std::string> target_only = {{path_ + "/target-only", ""},
                                                          {path_ + "/target-only/config", "t"}};

  // Copies of ephemerals are persistent; the ACL came along.
  const std::map<std::string, std::string> tree = TargetTree();
  size_t providers = 0;
  for (const auto& [path, data] : tree) {
    if (path.find("/providers/") == std::string::npos) continue;
    ++providers;
    auto stat = StatOf(*target_, path);
    ASSERT_TRUE(stat.has_value()) << path;
    EXPECT_EQ(stat->ephemeralOwner, 0) << path << " should be a persistent copy";
  }
  EXPECT_EQ(providers, 12u);
  ACL_vector acl{};
  ::Stat acl_stat{};
  ASSERT_EQ(zoo_get_acl(target_->handle(), read_only.c_str(), &acl, &acl_stat), ZOK);
  ASSERT_EQ(acl.count, 1);
  EXPECT_EQ(acl.data[0].perms, ZOO_PERM_READ);
  deallocate_ACL_vector(&acl);

  // Changes follow: data, deletes, a deep create.
  const std::string changed = path_ + "/org.example.service0.Demo0Service/configurators";
  ASSERT_TRUE(source_->Set(changed, "override://0.0.0.0").ok());
  ASSERT_TRUE(source_->Set(path_, "root data changed").ok());
  ASSERT_TRUE(source_->CreateRecursive(path_ + "/deep/a/b/c", "leaf").ok());
  std::string deleted;
  for (const auto& [path, data] : SourceTree()) {
    if (path.find("/consumers/") != std::string::npos) deleted = path;
  }
  ASSERT_FALSE(deleted.empty());
  ASSERT_TRUE(source_->Delete(deleted).ok());
  ASSERT_TRUE(Converges(target_only)) << sync->Log();

  // A provider's session closes: its copies go; another's expires: its copy goes too.
  const std::set<std::string> closed =
      OwnedBy(*source_, SourceTree(), owners.front()->session_id());
  ASSERT_FALSE(closed.empty());
  owners.front().reset();
  proxy->reset();  // the expiring session can no longer reach the server: the server expires it
  expiring.reset();
  ASSERT_TRUE(Eventually([&] { return !StatOf(*source_, expiring_provider); }, seconds(20)));
  ASSERT_TRUE(Converges(target_only)) << sync->Log();
  for (const std::string& path : closed) EXPECT_FALSE(StatOf(*target_, path)) << path;
  EXPECT_FALSE(StatOf(*target_, expiring_provider));

  // Providers registered on the target reach the source, as persistent copies, and go with
  // their session; a provider of the source keeps being copied meanwhile.
  auto moved = Connect(servers_->target->address());
  ASSERT_NE(moved, nullptr);
  const std::string providers_dir = path_ + "/org.example.service0.Demo0Service/providers";
  const std::string moved_provider = providers_dir + "/moved-to-target";
  ASSERT_TRUE(moved->Create(moved_provider, "on the target", true).ok());
  // A registration on the target under parents the source does not have.
  ASSERT_TRUE(target_->CreateRecursive(path_ + "/org.example.NewService/providers", "").ok());
  const std::string new_provider = path_ + "/org.example.NewService/providers/p1";
  ASSERT_TRUE(moved->Create(new_provider, "new", true).ok());
  ASSERT_TRUE(Eventually(
      [&] {
        auto a = source_->Get(moved_provider);
        auto b = source_->Get(new_provider);
        return a.ok() && *a == "on the target" && b.ok() && *b == "new";
      },
      kConverge))
      << sync->Log();
  auto copy_stat = StatOf(*source_, moved_provider);
  ASSERT_TRUE(copy_stat.has_value());
  EXPECT_EQ(copy_stat->ephemeralOwner, 0);
  // Nothing loops: the target keeps its ephemeral (not replaced by a copy).
  auto original = StatOf(*target_, moved_provider);
  ASSERT_TRUE(original.has_value());
  EXPECT_EQ(original->ephemeralOwner, moved->session_id());
  moved.reset();
  ASSERT_TRUE(Eventually(
      [&] {
        auto a = source_->Get(moved_provider);
        auto b = source_->Get(new_provider);
        return a.ok() && !a->has_value() && b.ok() && !b->has_value();
      },
      kConverge))
      << sync->Log();
  // The parents the target's client made stay on the source as plain nodes (not the job's); the
  // target-only persistent node stays where it is, and never reaches the source.
  EXPECT_TRUE(StatOf(*source_, path_ + "/org.example.NewService/providers"));
  EXPECT_EQ(*target_->Get(path_ + "/target-only/config"), std::optional<std::string>("t"));
  EXPECT_FALSE(StatOf(*source_, path_ + "/target-only"));

  // diff agrees (the target-only nodes are another writer's: not differences).
  ASSERT_TRUE(Converges(target_only)) << sync->Log();
  Zk2etcdProcess diff(Args("diff"));
  EXPECT_EQ(diff.RunToCompletion(seconds(60)), 0) << diff.Log() << sync->Log();

  // Quiet: 20 s without a change writes nothing on either ensemble.
  ASSERT_TRUE(Eventually([&] { return AppliedWrites(*sync) > 0; }, seconds(10)));
  const double writes = AppliedWrites(*sync);
  const int64_t source_zxid = ServerZxid(*servers_->source);
  const int64_t target_zxid = ServerZxid(*servers_->target);
  std::this_thread::sleep_for(seconds(20));
  EXPECT_EQ(AppliedWrites(*sync), writes) << sync->Log();
  EXPECT_EQ(ServerZxid(*servers_->source), source_zxid) << "the source moved while quiet";
  EXPECT_EQ(ServerZxid(*servers_->target), target_zxid) << "the target moved while quiet";

  // The progress line and the audit log.
  EXPECT_TRUE(sync->WaitForLog("progress", 1, seconds(5))) << sync->Log();
  EXPECT_NE(sync->Log().find("source_nodes="), std::string::npos);
  // Each direction's reconciliation line counts in its own words, none in etcd's.
  size_t forward_lines = 0, reverse_lines = 0;
  std::istringstream lines(sync->Log());
  for (std::string line; std::getline(lines, line);) {
    if (line.find("reconciliation done") == std::string::npos) continue;
    forward_lines += line.find(" source_nodes=") != std::string::npos &&
                     line.find(" target_nodes=") != std::string::npos;
    reverse_lines += line.find(" target_ephemerals=") != std::string::npos &&
                     line.find(" source_copies=") != std::string::npos;
    EXPECT_EQ(line.find("etcd"), std::string::npos) << line;
  }
  EXPECT_GE(forward_lines, 1u) << sync->Log();
  EXPECT_GE(reverse_lines, 1u) << sync->Log();
  EXPECT_EQ(sync->Terminate(seconds(20)), 0) << sync->Log();
  // The direction that stops second does not campaign again when the first resigns the lock.
  const std::string log = sync->Log();
  const size_t stopping = log.find("signal received");
  ASSERT_NE(stopping, std::string::npos) << log;
  EXPECT_EQ(log.find("campaigning for leadership", stopping), std::string::npos) << log;
  std::ifstream audit_file(dir->File(audit));
  std::stringstream audit_buffer;
  audit_buffer << audit_file.rdbuf();
  const std::optional<std::string> audit_text = audit_buffer.str();
  EXPECT_NE(audit_text->find("\"direction\":\"forward\",\"op\":\"put\",\"path\":\"" + changed),
            std::string::npos)
      << *audit_text;
  EXPECT_NE(audit_text->find("\"direction\":\"reverse\",\"op\":\"put\",\"path\":\"" +
                             moved_provider + "\",\"outcome\":\"applied\""),
            std::string::npos)
      << *audit_text;
  EXPECT_NE(audit_text->find("\"op\":\"delete\",\"path\":\"" + deleted), std::string::npos);
  EXPECT_NE(audit_text->find("\"cause\":\"change\",\"trace_id\":\""), std::string::npos);
}

// Sequential names keep their numbers, and the target's counter moves past them: a client's next
// sequential create there sorts after the copies.
TEST_F(Zk2ZkE2eTest, SequentialNamesKeepTheirNumbersAndTheCounterMovesPastThem) {
  ASSERT_TRUE(source_->CreateRecursive(path_ + "/queue", "").ok());
  std::vector<std::string> names;
  for (int i = 0; i < 20; ++i) {
    char created[256];
    const std::string prefix = path_ + "/queue/item-";
    ASSERT_EQ(zoo_create(source_->handle(), prefix.c_str(), "x", 1, &ZOO_OPEN_ACL_UNSAFE,
                         ZOO_PERSISTENT_SEQUENTIAL, created, sizeof(created)),
              ZOK);
    names.push_back(created);
  }
  // Only the last five stay: the target's parent gets five creates, fewer than the numbers.
  for (int i = 0; i < 15; ++i) ASSERT_TRUE(source_->Delete(names[i]).ok());
  auto sync = std::make_unique<Zk2etcdProcess>(Args("sync"));
  ASSERT_FIXTURE_OK(sync->Start());
  ASSERT_TRUE(Converges()) << sync->Log();
  char created[256];
  const std::string prefix = path_ + "/queue/item-";
  ASSERT_EQ(zoo_create(target_->handle(), prefix.c_str(), "new", 3, &ZOO_OPEN_ACL_UNSAFE,
                       ZOO_PERSISTENT_SEQUENTIAL, created, sizeof(created)),
            ZOK);
  EXPECT_GT(std::string(created), names.back())
      << "a sequential create on the target must sort after the copies\n"
      << sync->Log();
  EXPECT_EQ(sync->Terminate(seconds(20)), 0) << sync->Log();
  // The client's node is the target's own: a new sync leaves it alone (and the diff agrees).
  ASSERT_TRUE(target_->Delete(created).ok());
}

// kill -9 with changes while the tool is down (on both ensembles), then a restart converges.
TEST_F(Zk2ZkE2eTest, AKilledProcessRestartsAndConverges) {
  auto owners = MakeDubboSource(1);
  auto sync = std::make_unique<Zk2etcdProcess>(Args("sync"));
  ASSERT_FIXTURE_OK(sync->Start());
  ASSERT_TRUE(Converges()) << sync->Log();
  auto registered = Connect(servers_->target->address());
  ASSERT_NE(registered, nullptr);
  const std::string moved = path_ + "/org.example.service0.Demo1Service/providers/moved";
  ASSERT_TRUE(registered->Create(moved, "m", true).ok());
  ASSERT_TRUE(Eventually([&] { return StatOf(*source_, moved).has_value(); }, kConverge))
      << sync->Log();
  sync->Kill9();

  // While it is down: a data change, a create, a delete, the source's providers gone, the
  // target's registration gone.
  const std::map<std::string, std::string> before = SourceTree();
  ASSERT_TRUE(source_->Set(path_, "changed while down").ok());
  ASSERT_TRUE(source_->CreateRecursive(path_ + "/created/while/down", "x").ok());
  std::string consumer;
  for (const auto& [path, data] : before) {
    if (path.find("/consumers/") != std::string::npos) consumer = path;
  }
  ASSERT_TRUE(source_->Delete(consumer).ok());
  owners.clear();
  registered.reset();

  sync = std::make_unique<Zk2etcdProcess>(Args("sync"));
  ASSERT_FIXTURE_OK(sync->Start());
  ASSERT_TRUE(Converges()) << sync->Log();
  EXPECT_FALSE(StatOf(*source_, moved)) << sync->Log();
  EXPECT_EQ(*target_->Get(path_), std::optional<std::string>("changed while down"));
  EXPECT_EQ(sync->Terminate(seconds(20)), 0) << sync->Log();
}

// kill -9 of the source ensemble: while it is down a provider registers on the target; after
// its restart the source changes. The providers whose sessions ended with the source (their
// clients went while it was down) expire once their timeout passes after the restart, and their
// copies go from the target; the target's registration reaches the source.
TEST_F(Zk2ZkE2eTest, ASourceEnsembleKilledAndRestartedWithChangesConverges) {
  UsePrivateServer(/*source=*/true);
  if (HasFatalFailure()) return;
  // The tree's providers are held by two sessions of 3 s; one more provider by a session of the
  // fixture's 10 s, which reconnects after the restart and keeps its node.
  auto owners = MakeDubboSource(2, milliseconds(3000));
  auto survivor = Connect(source_address_);
  ASSERT_NE(survivor, nullptr);
  const std::string survivor_provider = path_ + "/org.example.service0.Demo1Service/providers/kept";
  ASSERT_TRUE(survivor->Create(survivor_provider, "s", true).ok());
  auto sync = std::make_unique<Zk2etcdProcess>(Args("sync"));
  ASSERT_FIXTURE_OK(sync->Start());
  ASSERT_TRUE(Converges()) << Tail(*sync);
  std::set<std::string> expiring;
  for (const auto& owner : owners) {
    for (const std::string& path : OwnedBy(*source_, SourceTree(), owner->session_id())) {
      expiring.insert(path);
    }
  }
  ASSERT_FALSE(expiring.empty());

  const size_t expired = sync->CountLines("zookeeper session expired");
  source_.reset();
  private_server_->Kill9();
  // The owners' clients go while the source is down: their sessions are not closed, the
  // restarted server expires them.
  owners.clear();
  auto moved = Connect(target_address_);
  ASSERT_NE(moved, nullptr);
  const std::string moved_provider =
      path_ + "/org.example.service0.Demo0Service/providers/registered-while-source-down";
  ASSERT_TRUE(moved->Create(moved_provider, "on the target", true).ok());
  // Down for longer than the tool's sessions (4 s): it gives up its session on that side and
  // needs a new one (and, on the target, its lock again) once the server is back.
  ASSERT_TRUE(Eventually([&] { return sync->CountLines("zookeeper session expired") > expired; },
                         seconds(20)))
      << Tail(*sync);

  const auto restarted = std::chrono::steady_clock::now();
  ASSERT_FIXTURE_OK(private_server_->Restart());
  source_ = Connect(source_address_);
  ASSERT_NE(source_, nullptr);
  ASSERT_TRUE(source_->Set(path_, "changed after the restart").ok());
  ASSERT_TRUE(source_->Delete(survivor_provider).ok());
  const std::string deep = path_ + "/created/after/the/restart";
  ASSERT_TRUE(source_->CreateRecursive(deep, "d").ok());
  // The expired sessions' providers go from the source (3 s and a tick after the restart).
  ASSERT_TRUE(Eventually(
      [&] {
        return std::none_of(expiring.begin(), expiring.end(),
                            [&](const std::string& path) { return StatOf(*source_, path); });
      },
      seconds(20)));
  ASSERT_TRUE(Eventually(
      [&] {
        auto copy = source_->Get(moved_provider);
        return copy.ok() && *copy == std::optional<std::string>("on the target");
      },
      seconds(30)))
      << Tail(*sync);
  ASSERT_TRUE(Converges({}, seconds(30))) << Tail(*sync);
  std::cout << "converged "
            << std::chrono::duration_cast<milliseconds>(std::chrono::steady_clock::now() -
                                                        restarted)
                   .count()
            << " ms after the source's restart\n";
  for (const std::string& path : expiring) EXPECT_FALSE(StatOf(*target_, path)) << path;
  EXPECT_FALSE(StatOf(*target_, survivor_provider));
  EXPECT_EQ(*target_->Get(path_), std::optional<std::string>("changed after the restart"));
  EXPECT_EQ(*target_->Get(deep), std::optional<std::string>("d"));
  auto copy = StatOf(*source_, moved_provider);
  ASSERT_TRUE(copy.has_value());
  EXPECT_EQ(copy->ephemeralOwner, 0) << "the reverse copy is persistent";
  auto original = StatOf(*target_, moved_provider);
  ASSERT_TRUE(original.has_value());
  EXPECT_EQ(original->ephemeralOwner, moved->session_id());

  Zk2etcdProcess diff(Args("diff"));
  EXPECT_EQ(diff.RunToCompletion(seconds(60)), 0) << diff.Log() << Tail(*sync);
  EXPECT_EQ(sync->Terminate(seconds(20)), 0) << Tail(*sync);
}

// kill -9 of the target ensemble (which holds the job's lock) while the source changes: after
// its restart the tool leads again, the target converges, and a node the job did not write is
// left exactly as it was.
TEST_F(Zk2ZkE2eTest, ATargetEnsembleKilledAndRestartedWithChangesConverges) {
  UsePrivateServer(/*source=*/false);
  if (HasFatalFailure()) return;
  auto owners = MakeDubboSource(2);
  auto sync = std::make_unique<Zk2etcdProcess>(Args("sync"));
  ASSERT_FIXTURE_OK(sync->Start());
  ASSERT_TRUE(Converges()) << Tail(*sync);
  ASSERT_TRUE(target_->CreateRecursive(path_ + "/target-only/config", "t").ok());
  const std::map<std::string, std::string> target_only = {{path_ + "/target-only", ""},
                                                          {path_ + "/target-only/config", "t"}};
  auto foreign = StatOf(*target_, path_ + "/target-only/config");
  ASSERT_TRUE(foreign.has_value());
  ASSERT_TRUE(Converges(target_only)) << Tail(*sync);
  const size_t elected = sync->CountLines("elected leader");
  ASSERT_GE(elected, 1u) << Tail(*sync);

  const size_t expired = sync->CountLines("zookeeper session expired");
  const size_t lost = sync->CountLines("leadership lost");
  target_.reset();
  private_server_->Kill9();
  // While the target is down: data changes, a consumer deleted, a deep create, and the
  // providers of one session gone (closed).
  const std::map<std::string, std::string> before = SourceTree();
  ASSERT_TRUE(source_->Set(path_, "changed while the target is down").ok());
  std::string consumer, config;
  for (const auto& [path, data] : before) {
    if (path.find("/consumers/") != std::string::npos) consumer = path;
    if (path.find("/config/dubbo/app") != std::string::npos) config = path;
  }
  ASSERT_FALSE(consumer.empty());
  ASSERT_FALSE(config.empty());
  ASSERT_TRUE(source_->Delete(consumer).ok());
  ASSERT_TRUE(source_->Set(config, "changed config").ok());
  const std::string deep = path_ + "/created/while/the/target/is/down";
  ASSERT_TRUE(source_->CreateRecursive(deep, "x").ok());
  const std::set<std::string> closed = OwnedBy(*source_, before, owners.front()->session_id());
  ASSERT_FALSE(closed.empty());
  owners.front().reset();
  // Down for longer than the tool's sessions (4 s): it gives up its sessions on that side and
  // needs new ones (and, on the target, its lock again) once the server is back. Each session
  // expires on its own clock, so wait for the election's too: a server back before that resumes
  // the election's session, and the lock with it (safe, but not what this test is about).
  ASSERT_TRUE(Eventually([&] { return sync->CountLines("zookeeper session expired") > expired; },
                         seconds(20)))
      << Tail(*sync);
  ASSERT_TRUE(Eventually([&] { return sync->CountLines("leadership lost") > lost; }, seconds(20)))
      << Tail(*sync);

  const auto restarted = std::chrono::steady_clock::now();
  ASSERT_FIXTURE_OK(private_server_->Restart());
  target_ = Connect(target_address_);
  ASSERT_NE(target_, nullptr);
  ASSERT_TRUE(source_->Set(path_, "changed after the restart").ok());
  ASSERT_TRUE(Converges(target_only, seconds(30))) << Tail(*sync);
  std::cout << "converged "
            << std::chrono::duration_cast<milliseconds>(std::chrono::steady_clock::now() -
                                                        restarted)
                   .count()
            << " ms after the target's restart\n";
  for (const std::string& path : closed) EXPECT_FALSE(StatOf(*target_, path)) << path;
  EXPECT_EQ(*target_->Get(deep), std::optional<std::string>("x"));
  EXPECT_EQ(*target_->Get(path_), std::optional<std::string>("changed after the restart"));

  // The tool lost its lock with its target session and leads again (a new campaign), and a
  // change made now is copied. (The target may converge before that: the old lock node lives on
  // until the restarted server expires its session, so writes fenced by it still land, safely.)
  ASSERT_TRUE(Eventually([&] { return sync->CountLines("elected leader") > elected; }, seconds(30)))
      << Tail(*sync);
  // Writes sent under the lost lock that waited out the outage go again under the new one: they
  // do not depose the new term.
  EXPECT_EQ(sync->CountLines("a write's leadership fence failed"), 0u) << Tail(*sync);
  ASSERT_TRUE(Eventually([&] { return Http(HttpPort(*sync), "/readyz").body == "ready: leader\n"; },
                         seconds(30)))
      << Http(HttpPort(*sync), "/readyz").body << Tail(*sync);
  ASSERT_TRUE(source_->Create(path_ + "/after-recovery", "r").ok());
  ASSERT_TRUE(Converges(target_only, seconds(30))) << Tail(*sync);

  // The target-only node is untouched: same data, same version, same mzxid.
  auto after = StatOf(*target_, path_ + "/target-only/config");
  ASSERT_TRUE(after.has_value());
  EXPECT_EQ(after->mzxid, foreign->mzxid);
  EXPECT_EQ(after->version, foreign->version);
  EXPECT_EQ(*target_->Get(path_ + "/target-only/config"), std::optional<std::string>("t"));

  Zk2etcdProcess diff(Args("diff"));
  EXPECT_EQ(diff.RunToCompletion(seconds(60)), 0) << diff.Log() << Tail(*sync);
  EXPECT_EQ(sync->Terminate(seconds(20)), 0) << Tail(*sync);
}

// Nodes deleted right after they were created (a client that registers and leaves at once): a
// copy that finds its source node gone is superseded by the delete, not a failed write. Nothing
// is logged as an error, no write counts as failed, and the target ends without them.
TEST_F(Zk2ZkE2eTest, NodesGoneBeforeTheirCopyAreNotFailedWrites) {
  ASSERT_TRUE(source_->CreateRecursive(path_ + "/providers", "").ok());
  auto sync = std::make_unique<Zk2etcdProcess>(Args("sync"));
  ASSERT_FIXTURE_OK(sync->Start());
  ASSERT_TRUE(Converges()) << Tail(*sync);
  for (int i = 0; i < 300; ++i) {
    const std::string node = path_ + "/providers/p" + std::to_string(i);
    ASSERT_TRUE(source_->Create(node, "x").ok());
    ASSERT_TRUE(source_->Delete(node).ok());
  }
  ASSERT_TRUE(source_->Create(path_ + "/providers/stays", "s").ok());
  ASSERT_TRUE(Converges()) << Tail(*sync);
  std::this_thread::sleep_for(seconds(1));  // writes still in flight for the deleted nodes
  ASSERT_TRUE(Converges()) << Tail(*sync);
  const HttpResult metrics = Http(HttpPort(*sync), "/metrics");
  ASSERT_EQ(metrics.status, 200);
  const std::vector<std::string> forward = {"direction=\"forward\""};
  std::cout << "forward writes: applied "
            << MetricSum(metrics.body, "zk2etcd_zk2zk_writes_total",
                         {forward[0], "outcome=\"applied\""})
            << ", stale "
            << MetricSum(metrics.body, "zk2etcd_zk2zk_writes_total",
                         {forward[0], "outcome=\"stale\""})
            << "\n";
  EXPECT_EQ(MetricSum(metrics.body, "zk2etcd_zk2zk_writes_total", {"outcome=\"failed\""}), 0)
      << metrics.body;
  EXPECT_EQ(sync->CountLines("write failed"), 0u) << Tail(*sync);
  EXPECT_EQ(sync->Terminate(seconds(20)), 0) << Tail(*sync);
}

// Two replicas with --leader-elect: the standby takes over when the leader is killed, loses
// nothing, and diff --fix refuses while a replica runs.
TEST_F(Zk2ZkE2eTest, TheStandbyTakesOverWhenTheLeaderIsKilled) {
  ASSERT_TRUE(source_->CreateRecursive(path_ + "/config", "v0").ok());
  auto first = std::make_unique<Zk2etcdProcess>(
      Args("sync", {"--leader-elect", "--leader-elect-identity=" + name_ + "-a"}));
  ASSERT_FIXTURE_OK(first->Start());
  ASSERT_TRUE(first->WaitForLog("elected leader", 1, seconds(30))) << first->Log();
  auto second = std::make_unique<Zk2etcdProcess>(
      Args("sync", {"--leader-elect", "--leader-elect-identity=" + name_ + "-b"}));
  ASSERT_FIXTURE_OK(second->Start());
  ASSERT_TRUE(Eventually([&] { return HttpPort(*second) != 0; }, seconds(20)));
  ASSERT_TRUE(Eventually(
      [&] { return Http(HttpPort(*second), "/readyz").body == "ready: standby\n"; }, seconds(30)))
      << second->Log();
  ASSERT_TRUE(Converges()) << first->Log();

  std::atomic<bool> writing{true};
  std::thread writer([&] {
    auto client = Connect(servers_->source->address());
    for (int i = 0; writing.load() && client; ++i) {
      const std::string node = path_ + "/config/k" + std::to_string(i % 50);
      if (!client->Set(node, std::to_string(i)).ok()) (void)client->Create(node, "c");
      if (i % 7 == 0) (void)client->Delete(path_ + "/config/k" + std::to_string((i / 7) % 50));
      std::this_thread::sleep_for(milliseconds(10));
    }
  });
  std::this_thread::sleep_for(seconds(2));
  first->Kill9();
  // The killed leader's lock node goes with its session (4 s).
  ASSERT_TRUE(second->WaitForLog("elected leader", 1, seconds(20))) << second->Log();
  std::this_thread::sleep_for(seconds(2));
  writing.store(false);
  writer.join();
  ASSERT_TRUE(Converges()) << second->Log();

  Zk2etcdProcess fix(Args("diff", {"--fix"}));
  EXPECT_EQ(fix.RunToCompletion(seconds(60)), 2) << fix.Log();
  EXPECT_NE(fix.Log().find("is running (its leader is \"" + name_ + "-b\")"), std::string::npos)
      << fix.Log();
  EXPECT_EQ(second->Terminate(seconds(20)), 0) << second->Log();
}

// diff: 0 in sync, 1 with differences (text and JSON), --fix repairs them (never a node the job
// did not write), and a second diff is clean.
TEST_F(Zk2ZkE2eTest, DiffReportsAndFixRepairs) {
  for (int i = 0; i < 10; ++i) {
    ASSERT_TRUE(source_->CreateRecursive(path_ + "/d/k" + std::to_string(i), "v0").ok());
  }
  auto sync = std::make_unique<Zk2etcdProcess>(Args("sync", {"--leader-elect=false"}));
  ASSERT_FIXTURE_OK(sync->Start());
  ASSERT_TRUE(Converges()) << sync->Log();
  EXPECT_EQ(sync->Terminate(seconds(20)), 0) << sync->Log();

  Zk2etcdProcess clean(Args("diff"));
  EXPECT_EQ(clean.RunToCompletion(seconds(60)), 0) << clean.Log();

  ASSERT_TRUE(source_->Set(path_ + "/d/k0", "changed at the source").ok());   // changed
  ASSERT_TRUE(source_->Create(path_ + "/d/new", "only at the source").ok());  // missing
  ASSERT_TRUE(source_->Delete(path_ + "/d/k5").ok());                         // extra (a copy)
  ASSERT_TRUE(target_->Create(path_ + "/d/zz-foreign", "the target's own").ok());
  // Copies changed and deleted on the target (by a client, an operator): restored.
  ASSERT_TRUE(target_->Set(path_ + "/d/k1", "changed on the target").ok());
  ASSERT_TRUE(target_->Delete(path_ + "/d/k2").ok());

  Zk2etcdProcess json(Args("diff", {"--output=json"}));
  EXPECT_EQ(json.RunToCompletion(seconds(60)), 1) << json.Log();
  const std::string report = json.Log();
  EXPECT_NE(report.find("\"missing\":[\"" + path_ + "/d/k2\",\"" + path_ + "/d/new\"]"),
            std::string::npos)
      << report;
  EXPECT_NE(report.find("\"changed\":[\"" + path_ + "/d/k0\",\"" + path_ + "/d/k1\"]"),
            std::string::npos)
      << report;
  EXPECT_NE(report.find("\"extra\":[\"" + path_ + "/d/k5\"]"), std::string::npos) << report;
  EXPECT_NE(report.find("\"foreign\":[\"" + path_ + "/d/zz-foreign\"]"), std::string::npos)
      << report;
  EXPECT_NE(report.find("\"consistent\":false}"), std::string::npos) << report;

  Zk2etcdProcess text(Args("diff"));
  EXPECT_EQ(text.RunToCompletion(seconds(60)), 1) << text.Log();
  EXPECT_NE(text.Log().find("missing nodes:\n  " + path_ + "/d/k2\n  " + path_ + "/d/new"),
            std::string::npos)
      << text.Log();

  Zk2etcdProcess fix(Args("diff", {"--fix"}));
  EXPECT_EQ(fix.RunToCompletion(seconds(60)), 0) << fix.Log();
  EXPECT_TRUE(Converges({{path_ + "/d/zz-foreign", "the target's own"}}, seconds(5)));
  Zk2etcdProcess after(Args("diff"));
  EXPECT_EQ(after.RunToCompletion(seconds(60)), 0) << after.Log();
}

// An ensemble that does not answer is retried and logged, a warning at the first attempt and a
// debug line at each of the next (a warning again after a minute); SIGTERM stops the process at
// once, also while a connection attempt waits for the servers (up to the session timeout).
TEST_F(Zk2ZkE2eTest, AnUnreachableEnsembleIsRetriedAndLogged) {
  auto port = testing::PickFreePort();
  ASSERT_TRUE(port.ok());
  std::vector<std::string> args = Args("sync", {"--log-level=debug"});
  for (std::string& arg : args) {
    if (arg.starts_with("--target-servers=")) {
      arg = "--target-servers=127.0.0.1:" + std::to_string(*port);
    }
  }
  Zk2etcdProcess sync(args);
  ASSERT_FIXTURE_OK(sync.Start());
  // Each attempt waits for a connection up to the session timeout (4 s), then 0.5 s, 1 s, 1 s...
  EXPECT_TRUE(
      sync.WaitForLog("DEBUG target zookeeper unreachable; retrying attempt=2", 1, seconds(40)))
      << sync.Log();
  ASSERT_EQ(sync.CountLines("WARN target zookeeper unreachable; retrying attempt=1"), 1u)
      << sync.Log();
  ASSERT_EQ(sync.CountLines("WARN target zookeeper"), 1u) << sync.Log();
  // /readyz names what the start waits for.
  const HttpResult ready = Http(HttpPort(sync), "/readyz");
  EXPECT_EQ(ready.status, 503);
  EXPECT_EQ(ready.body, "starting: connecting to target zookeeper\n");
  std::this_thread::sleep_for(seconds(1));  // the third attempt waits for a connection
  EXPECT_EQ(sync.Terminate(seconds(2)), 0) << sync.Log();
  EXPECT_EQ(sync.CountLines("zk2etcd zk2zk sync stopped"), 1u) << sync.Log();
}

// Bad input: one line and exit 2, before any connection (the servers named do not exist).
// A chroot that does not exist on its ensemble is an error that names it (sync: exit 1 after the
// start line; diff: exit 2), not a loop of failed creates.
TEST_F(Zk2ZkE2eTest, AMissingChrootIsAnErrorThatNamesIt) {
  const std::string chroot = "/no-such-chroot-" + name_;
  for (const std::string command : {"sync", "diff"}) {
    std::vector<std::string> args = Args(command);
    for (std::string& arg : args) {
      if (arg.starts_with("--target-servers=")) arg += chroot;
    }
    Zk2etcdProcess process(args);
    EXPECT_EQ(process.RunToCompletion(seconds(30)), command == "sync" ? 1 : 2) << command << "\n"
                                                                               << process.Log();
    EXPECT_NE(process.Log().find("target zookeeper: the chroot " + chroot +
                                 " of the connect string does not exist"),
              std::string::npos)
        << command << "\n"
        << process.Log();
  }
}

TEST_F(Zk2ZkE2eTest, BadInputIsOneLineAndExitTwo) {
  const std::vector<std::string> both = {"--source-servers=127.0.0.1:1",
                                         "--target-servers=127.0.0.1:2"};
  auto with = [&](std::string command, std::vector<std::string> extra) {
    std::vector<std::string> args = {"zk2zk", command};
    args.insert(args.end(), both.begin(), both.end());
    args.insert(args.end(), extra.begin(), extra.end());
    return args;
  };
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{"zk2zk", "sync", "--source-servers=127.0.0.1:1", "--target-servers=localhost:1"},
       "share a server: source and target must be different ensembles"},
      {{"zk2zk", "diff", "--source-servers=10.0.0.1:2181,127.0.0.1:1/a",
        "--target-servers=127.0.0.1:1/b"},
       "share a server"},
      {{"zk2zk", "sync", "--source-servers=127.0.0.2:1", "--target-servers=0.0.0.0:1"},
       "share a server"},
      {with("sync", {"--path=/dubbo,/dubbo/providers"}),
       "--path \"/dubbo/providers\" lies below --path \"/dubbo\""},
      {with("sync", {"--path=dubbo"}), "--path \"dubbo\" is not a valid ZooKeeper path"},
      {with("diff", {"--path=/a", "--meta-path=/a/meta"}),
       "--meta-path \"/a/meta\" overlaps --path \"/a\""},
      {with("sync", {"--path=/a/b", "--meta-path=/a"}), "--meta-path \"/a\" overlaps --path"},
      {with("sync", {"--name=a/b"}), "--name \"a/b\" must be one path component"},
      {with("sync", {"--source-digest=nocolon"}), "--source-digest must be user:password"},
      {{"zk2zk", "sync", "--target-servers=127.0.0.1:2"}, "--source-servers is empty"},
      {with("sync", {"--audit-log=/nonexistent/dir/audit.log"}),
       "--audit-log \"/nonexistent/dir/audit.log\": cannot open the file"},
  };
  for (const auto& [args, message] : cases) {
    Zk2etcdProcess process(args);
    EXPECT_EQ(process.RunToCompletion(seconds(10)), 2) << message << "\n" << process.Log();
    const std::string log = process.Log();
    EXPECT_NE(log.find(message), std::string::npos) << log;
    EXPECT_EQ(std::count(log.begin(), log.end(), '\n'), 1) << log;
  }
}

}  // namespace
}  // namespace zk2etcd::e2e
