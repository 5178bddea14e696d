// Taking over what another tool left (issue 13): etcd already holds the tree, written by plain
// puts with no ownership record (the Go zk2etcd without Redis, etcdctl make-mirror, a restored
// snapshot). The built binary, against real ZooKeeper 3.8 and etcd 3.4 servers started once for
// the suite; each test works under a root of its own.
#include <gtest/gtest.h>

#include <thread>

#include "cli/e2e_support.h"
#include "testing/server_support.h"
#include "testing/zookeeper_c_client.h"

namespace zk2etcd::e2e {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using testing::ZooKeeperCClient;

constexpr auto kConverge = seconds(30);

class AdoptE2eTest : public SharedServersTest {
 protected:
  // A Dubbo-shaped tree under `root` in ZooKeeper, and the same keys put into etcd by another
  // tool: plain puts, no ownership record. Returns the tree as etcd holds it.
  std::map<std::string, std::string> TreeCopiedByAnotherTool(const std::string& root,
                                                             int interfaces) {
    testing::DubboTreeShape shape;
    shape.root = root;
    shape.interfaces = interfaces;
    shape.providers_per_interface = 5;
    shape.consumers_per_interface = 2;
    shape.data_every = 3;
    shape.config_nodes = 0;
    const std::vector<testing::ZNode> tree = testing::MakeDubboTree(shape);
    auto created = CreateNodes(zookeeper_->address(), tree);
    EXPECT_TRUE(created.ok()) << created.error().message;
    const auto expected = Expected(tree, root, "");
    for (const auto& [key, value] : expected) view_->Put(key, value);
    return expected;
  }

  std::vector<std::string> Args(const std::string& command, const std::string& root,
                                std::vector<std::string> extra = {}) {
    std::vector<std::string> args = {command,
                                     "--zookeeper-servers=" + zookeeper_->address(),
                                     "--etcd-servers=" + etcd_->endpoint(),
                                     "--zookeeper-prefix=" + root,
                                     "--zookeeper-exclude-prefix=" + root + "/config",
                                     "--log-format=text"};
    if (command == "sync") {
      args.push_back("--http-addr=127.0.0.1:0");
      args.push_back("--leader-elect=false");
    }
    args.insert(args.end(), extra.begin(), extra.end());
    return args;
  }

  std::unique_ptr<Zk2etcdProcess> StartSync(const std::string& root,
                                            std::vector<std::string> extra = {}) {
    auto process = std::make_unique<Zk2etcdProcess>(Args("sync", root, std::move(extra)));
    auto started = process->Start();
    EXPECT_TRUE(started.ok()) << started.error().message;
    EXPECT_TRUE(process->WaitForLog("reconciliation done", 1, kConverge)) << process->Log();
    return process;
  }

  // What etcd must hold: ZooKeeper's tree, with the keys another writer owns as that writer
  // left them.
  std::map<std::string, std::string> ExpectedWith(
      const std::string& root, const std::map<std::string, std::string>& theirs) {
    auto expected = ReadZkTree(*zk_, root, root + "/config");
    for (const auto& [key, value] : theirs) expected[key] = value;
    return expected;
  }

  bool Converged(const std::string& root, const std::map<std::string, std::string>& theirs) {
    return Eventually([&] { return view_->List(root) == ExpectedWith(root, theirs); }, kConverge);
  }

  static std::string Provider(const std::map<std::string, std::string>& tree,
                              const std::string& service_prefix, size_t index) {
    size_t seen = 0;
    for (const auto& [key, value] : tree) {
      if (key.rfind(service_prefix, 0) == 0 && key.find("/providers/") != std::string::npos) {
        if (seen++ == index) return key;
      }
    }
    return "";
  }

};

TEST_F(AdoptE2eTest, MatchingAdoptsAnotherToolsCopyAndFollowsEveryChangeThroughFaults) {
  const std::string root = "/adopt-matching";
  const auto copied = TreeCopiedByAnotherTool(root, 100);
  ASSERT_GT(copied.size(), 1000u);
  // Another writer's value where a znode exists, and another writer's key with no znode.
  const std::string conflict = Provider(copied, root + "/", 0);
  const std::string service_to_delete = Provider(copied, root + "/", 7);
  ASSERT_FALSE(conflict.empty());
  view_->Put(conflict, "theirs");
  const std::string foreign = root + "/from-replicator";
  view_->Put(foreign, "r");
  const std::map<std::string, std::string> theirs = {{conflict, "theirs"}, {foreign, "r"}};

  auto sync = StartSync(root);
  EXPECT_TRUE(sync->WaitForLog("adopted=" + std::to_string(copied.size() - 1), 1, seconds(1)))
      << "every equal key is adopted, not the conflicting one\n"
      << sync->Log();
  EXPECT_TRUE(sync->WaitForLog("differs from ZooKeeper", 1, seconds(1))) << sync->Log();
  EXPECT_NE(sync->Log().find(conflict), std::string::npos) << "the warning names the key";
  EXPECT_EQ(view_->List(root), ExpectedWith(root, theirs));
  EXPECT_EQ(view_->List("/zk2etcd/meta" + root).size(), copied.size() - 1);

  // setData of adopted keys reaches etcd (it never did before adoption existed).
  int changed = 0;
  for (const auto& [key, value] : copied) {
    if (key == conflict || key.find("/providers/") == std::string::npos) continue;
    ASSERT_FIXTURE_OK(zk_->Set(key, "changed-" + std::to_string(changed)));
    if (++changed == 20) break;
  }
  EXPECT_TRUE(Converged(root, theirs)) << sync->Log();

  // A whole service's providers deleted.
  const std::string providers =
      service_to_delete.substr(0, service_to_delete.rfind('/'));  // .../providers
  auto children = zk_->Children(providers);
  ASSERT_TRUE(children.ok());
  for (const std::string& child : *children) {
    ASSERT_FIXTURE_OK(zk_->Delete(providers + "/" + child));
  }
  EXPECT_TRUE(Converged(root, theirs)) << sync->Log();

  // kill -9, changes while down, restart.
  sync->Kill9();
  ASSERT_FIXTURE_OK(zk_->Set(Provider(copied, root + "/", 30), "while-down"));
  ASSERT_FIXTURE_OK(zk_->CreateRecursive(providers + "/new-while-down", "n"));
  ASSERT_FIXTURE_OK(zk_->Delete(Provider(copied, root + "/", 40)));
  sync = StartSync(root);
  EXPECT_TRUE(Converged(root, theirs)) << sync->Log();

  // ZooKeeper killed and restarted, then a change.
  zookeeper_->Kill9();
  ASSERT_FIXTURE_OK(zookeeper_->Restart());
  ASSERT_FIXTURE_OK_AND_ASSIGN(zk_, ZooKeeperCClient::Connect(zookeeper_->address(), seconds(20)));
  ASSERT_FIXTURE_OK(zk_->Set(Provider(copied, root + "/", 50), "after-zk-restart"));
  EXPECT_TRUE(Converged(root, theirs)) << sync->Log();

  // etcd paused while ZooKeeper changes.
  etcd_->Pause();
  ASSERT_FIXTURE_OK(zk_->Set(Provider(copied, root + "/", 60), "during-etcd-pause"));
  ASSERT_FIXTURE_OK(zk_->Delete(Provider(copied, root + "/", 70)));
  std::this_thread::sleep_for(seconds(5));
  etcd_->Resume();
  EXPECT_TRUE(Converged(root, theirs)) << sync->Log();
  EXPECT_EQ(sync->Terminate(seconds(20)), 0) << sync->Log();

  // diff reports both of the other writer's keys and counts the conflict as a difference.
  Zk2etcdProcess diff(Args("diff", root, {"--output=json", "--log-level=warn"}));
  EXPECT_EQ(diff.RunToCompletion(seconds(60)), 1) << diff.Log();
  EXPECT_NE(diff.Log().find("\"conflict\":[\"" + conflict + "\"]"), std::string::npos)
      << diff.Log();
  EXPECT_NE(diff.Log().find("\"foreign\":[\"" + foreign + "\"]"), std::string::npos) << diff.Log();
}

TEST_F(AdoptE2eTest, DiffTellsWhatEachPolicyWouldAdoptNoneTouchesNothingAndAllTakesEverything) {
  const std::string root = "/adopt-policies";
  const auto copied = TreeCopiedByAnotherTool(root, 10);
  const std::string conflict = Provider(copied, root + "/", 0);
  const std::string foreign = root + "/from-replicator";
  view_->Put(conflict, "theirs");
  view_->Put(foreign, "r");

  // Whichever policy diff is given, it tells what each would adopt.
  for (const std::string policy : {"matching", "none", "all"}) {
    Zk2etcdProcess diff(
        Args("diff", root, {"--output=json", "--log-level=warn", "--adopt=" + policy}));
    // Without a policy, the differing key is foreign like the other: no difference of ours.
    EXPECT_EQ(diff.RunToCompletion(seconds(60)), policy == "none" ? 0 : 1) << policy << "\n"
                                                                           << diff.Log();
    const std::string would = "\"would_adopt\":{\"matching\":" + std::to_string(copied.size() - 1) +
                              ",\"all\":" + std::to_string(copied.size() + 1) + "}";
    EXPECT_NE(diff.Log().find(would), std::string::npos) << policy << ": " << would << "\n"
                                                         << diff.Log();
  }

  // none: the behaviour before adoption existed: no key becomes ours, so nothing is written.
  {
    const int64_t revision = view_->Revision();
    auto sync = StartSync(root, {"--adopt=none"});
    const std::string provider = Provider(copied, root + "/", 3);
    ASSERT_FIXTURE_OK(zk_->Set(provider, "not-ours-to-write"));
    std::this_thread::sleep_for(seconds(2));
    EXPECT_EQ(view_->Get(provider), copied.at(provider));
    EXPECT_EQ(view_->Get(conflict), "theirs");
    EXPECT_EQ(view_->Get(foreign), "r");
    EXPECT_TRUE(view_->List("/zk2etcd/meta" + root).empty());
    EXPECT_EQ(sync->Terminate(seconds(20)), 0) << sync->Log();
    // The znode change above is ZooKeeper's, not etcd's: etcd did not move.
    EXPECT_EQ(view_->Revision(), revision);
  }

  // all: every unowned key is ours: the conflict is overwritten, the foreign key deleted.
  auto sync = StartSync(root, {"--adopt=all"});
  EXPECT_TRUE(Converged(root, {})) << sync->Log();
  EXPECT_EQ(view_->Get(foreign), std::nullopt);
  EXPECT_EQ(view_->Get(conflict), ReadZkTree(*zk_, root, "").at(conflict));
  EXPECT_EQ(view_->List("/zk2etcd/meta" + root).size(), ReadZkTree(*zk_, root, "").size());
  EXPECT_EQ(sync->Terminate(seconds(20)), 0) << sync->Log();
}

TEST_F(AdoptE2eTest, DiffFixAdoptsMatchingKeysWithoutRewritingThem) {
  const std::string root = "/adopt-diff-fix";
  const auto copied = TreeCopiedByAnotherTool(root, 10);
  const int64_t revision = view_->Revision();
  Zk2etcdProcess fix(Args("diff", root, {"--fix"}));
  EXPECT_EQ(fix.RunToCompletion(seconds(60)), 0) << fix.Log();
  EXPECT_NE(fix.Log().find("adopted=" + std::to_string(copied.size())), std::string::npos)
      << fix.Log();
  EXPECT_EQ(view_->List(root), copied);
  EXPECT_EQ(view_->List("/zk2etcd/meta" + root).size(), copied.size());
  // Only meta records were written: the data keys were not written again (etcd's watchers see
  // no event for them).
  for (const auto& [key, value] : copied) {
    EXPECT_LE(view_->ModRevision(key), revision) << key;
  }

  // Adopted keys are ours: a node deleted in ZooKeeper is removed by the next fix.
  const std::string provider = Provider(copied, root + "/", 2);
  ASSERT_FIXTURE_OK(zk_->Delete(provider));
  Zk2etcdProcess again(Args("diff", root, {"--fix"}));
  EXPECT_EQ(again.RunToCompletion(seconds(60)), 0) << again.Log();
  EXPECT_EQ(view_->Get(provider), std::nullopt);

  // A conflict that --fix leaves alone is still a difference: exit 1, not consistent.
  const std::string conflict = Provider(copied, root + "/", 4);
  view_->Delete("/zk2etcd/meta" + conflict);
  view_->Put(conflict, "another tool's");
  Zk2etcdProcess conflicted(Args("diff", root, {"--fix", "--output=json"}));
  EXPECT_EQ(conflicted.RunToCompletion(seconds(60)), 1) << conflicted.Log();
  EXPECT_NE(conflicted.Log().find("\"conflict\":[\"" + conflict + "\"]"), std::string::npos)
      << conflicted.Log();
  EXPECT_NE(conflicted.Log().find("\"consistent\":false"), std::string::npos) << conflicted.Log();
  EXPECT_EQ(view_->Get(conflict), "another tool's");
}

}  // namespace
}  // namespace zk2etcd::e2e
