// `zk2etcd etcd2etcd` end to end: the built binary between two real etcd 3.4 servers, started
// once for the whole binary: the source plain, the destination with TLS and user/password (the
// mirror's user may read and write "/" only through its role). Each test mirrors a prefix of its
// own under a mirror name of its own. The servers are paused (never killed) by the tests that
// need an outage, and resumed before the test ends. Every wait is bounded.
#include <gtest/gtest.h>

#include <atomic>
#include <map>
#include <mutex>
#include <regex>
#include <set>
#include <thread>

#include "cli/e2e_support.h"
#include "common/clock.h"
#include "etcd/grpc_etcd_client.h"
#include "testing/etcd_server.h"
#include "testing/process.h"
#include "testing/server_support.h"

namespace zk2etcd::e2e {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using testing::EtcdServer;

constexpr auto kConverge = seconds(60);

struct MirrorServers {
  std::unique_ptr<EtcdServer> source;
  std::unique_ptr<EtcdServer> dest;  // TLS and auth
};

// Started on first use, stopped when the binary exits.
testing::FixtureResult<MirrorServers*> SharedMirrorServers() {
  static std::mutex mutex;
  static std::unique_ptr<MirrorServers> servers;
  static std::optional<testing::FixtureError> failed;
  std::lock_guard lock(mutex);
  if (servers) return servers.get();
  if (failed) return Unexpected{*failed};
  auto made = std::make_unique<MirrorServers>();
  auto source = EtcdServer::Start();
  if (!source.ok()) {
    failed = source.error();
    return Unexpected{source.error()};
  }
  testing::EtcdOptions dest_options;
  dest_options.tls = true;
  testing::EtcdAuthOptions auth;
  auth.prefix = "/";  // the mirror's user: every key (copies, records, election)
  dest_options.auth = auth;
  auto dest = EtcdServer::Start(dest_options);
  if (!dest.ok()) {
    failed = dest.error();
    return Unexpected{dest.error()};
  }
  made->source = std::move(source).value();
  made->dest = std::move(dest).value();
  servers = std::move(made);
  return servers.get();
}

// zk2etcd's own client, as root, for the test's reads and writes (TLS and auth on the
// destination, which the raw EtcdView cannot speak).
std::unique_ptr<etcd::EtcdClient> RootClient(const EtcdServer& server) {
  static SystemClock clock;
  etcd::GrpcEtcdClientOptions options;
  options.endpoints = {server.client_url()};
  if (server.options().tls) {
    options.tls = etcd::TlsOptions{server.tls().ca_file, server.tls().client_cert_file,
                                   server.tls().client_key_file, ""};
  }
  if (server.options().auth) {
    options.user = "root";
    options.password = server.options().auth->root_password;
  }
  options.dial_timeout = seconds(20);
  auto client = etcd::NewGrpcEtcdClient(options, clock);
  if (!client.ok()) return nullptr;
  return std::move(client).value();
}

class Etcd2EtcdE2eTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FIXTURE_OK_AND_ASSIGN(servers_, SharedMirrorServers());
    source_ = RootClient(*servers_->source);
    dest_ = RootClient(*servers_->dest);
    ASSERT_NE(source_, nullptr);
    ASSERT_NE(dest_, nullptr);
    static int counter = 0;
    const std::string id = std::to_string(++counter);
    prefix_ = "/registry" + id + "/";
    dest_prefix_ = "/copy" + id + "/";
    name_ = "mirror" + id;
  }

  void TearDown() override {
    // A failed test must not leave a server paused for the next one.
    servers_->source->Resume();
    servers_->dest->Resume();
  }

  // The mirror's command line: `command` ("sync" or "diff") of prefix_ into dest_prefix_.
  std::vector<std::string> Args(const std::string& command, std::vector<std::string> extra = {}) {
    const EtcdServer& dest = *servers_->dest;
    std::vector<std::string> args = {"etcd2etcd",
                                     command,
                                     "--source-endpoints=" + servers_->source->client_url(),
                                     "--dest-endpoints=" + dest.client_url(),
                                     "--dest-cacert=" + dest.tls().ca_file,
                                     "--dest-cert=" + dest.tls().client_cert_file,
                                     "--dest-key=" + dest.tls().client_key_file,
                                     "--dest-user=" + dest.options().auth->user,
                                     "--dest-password=" + dest.options().auth->password,
                                     "--prefix=" + prefix_,
                                     "--dest-prefix=" + dest_prefix_,
                                     "--name=" + name_,
                                     "--log-format=text"};
    if (command == "sync") {
      args.insert(args.end(), {"--http-addr=127.0.0.1:0", "--leader-elect-identity=" + name_});
    }
    args.insert(args.end(), extra.begin(), extra.end());
    return args;
  }

  std::map<std::string, std::string> List(etcd::EtcdClient& client, const std::string& prefix) {
    std::map<std::string, std::string> keys;
    auto range = client.Range(etcd::RangeRequest::Prefix(prefix));
    if (!range.ok()) return {{"<error>", range.error().ToString()}};
    for (const etcd::KeyValue& kv : range->kvs) keys[kv.key] = kv.value;
    return keys;
  }
  std::map<std::string, int64_t> ModRevisions(etcd::EtcdClient& client, const std::string& prefix) {
    std::map<std::string, int64_t> keys;
    auto range = client.Range(etcd::RangeRequest::Prefix(prefix));
    if (range.ok()) {
      for (const etcd::KeyValue& kv : range->kvs) keys[kv.key] = kv.mod_revision;
    }
    return keys;
  }
  int64_t Revision(etcd::EtcdClient& client) {
    auto status = client.Status();
    return status.ok() ? status->revision : 0;
  }

  // What the destination must hold: the source's keys of prefix_, renamed, plus `also`.
  std::map<std::string, std::string> Expected(std::map<std::string, std::string> also = {}) {
    std::map<std::string, std::string> expected = std::move(also);
    for (const auto& [key, value] : List(*source_, prefix_)) {
      expected[dest_prefix_ + key.substr(prefix_.size())] = value;
    }
    return expected;
  }

  // Waits until the destination's range equals Expected(also).
  ::testing::AssertionResult Converges(std::map<std::string, std::string> also = {},
                                       std::chrono::milliseconds timeout = kConverge) {
    std::map<std::string, std::string> expected, actual;
    const bool ok = Eventually(
        [&] {
          expected = Expected(also);
          actual = List(*dest_, dest_prefix_);
          return expected == actual;
        },
        timeout);
    if (ok) return ::testing::AssertionSuccess();
    auto failure = ::testing::AssertionFailure();
    failure << "expected " << expected.size() << " keys, destination has " << actual.size();
    for (const auto& [key, value] : expected) {
      auto it = actual.find(key);
      if (it == actual.end()) {
        failure << "\n  missing " << key;
      } else if (it->second != value) {
        failure << "\n  changed " << key;
      }
    }
    for (const auto& [key, value] : actual) {
      if (!expected.count(key)) failure << "\n  extra " << key;
    }
    return failure;
  }

  void Put(const std::string& key, const std::string& value, int64_t lease = 0) {
    ASSERT_TRUE(source_->Put(prefix_ + key, value, lease).ok()) << key;
  }
  void PutMany(const std::string& stem, int count, const std::string& value) {
    etcd::TxnRequest txn;
    for (int i = 0; i < count; ++i) {
      txn.success.push_back(etcd::Op::Put(prefix_ + stem + std::to_string(i), value));
      if (txn.success.size() == 100 || i + 1 == count) {
        ASSERT_TRUE(source_->Txn(std::move(txn)).ok());
        txn = {};
      }
    }
  }

  MirrorServers* servers_ = nullptr;
  std::unique_ptr<etcd::EtcdClient> source_;
  std::unique_ptr<etcd::EtcdClient> dest_;
  std::string prefix_, dest_prefix_, name_;
};

// The first copy: the destination's own stale keys are deleted, foreign keys left alone.
TEST_F(Etcd2EtcdE2eTest, InitialCopyDeletesStaleOwnKeysAndLeavesForeignKeys) {
  PutMany("a/", 500, "v1");
  Put("gone", "soon deleted");
  // A key of another writer inside the copied range.
  ASSERT_TRUE(dest_->Put(dest_prefix_ + "foreign", "not the mirror's").ok());
  auto mirror = std::make_unique<Zk2etcdProcess>(Args("sync"));
  ASSERT_FIXTURE_OK(mirror->Start());
  ASSERT_TRUE(Converges({{dest_prefix_ + "foreign", "not the mirror's"}})) << mirror->Log();
  mirror->Kill9();

  // The mirror's copy of "gone" becomes stale: deleted at the source, and the checkpoint removed
  // so that the next start copies from scratch (a reconciliation, not the change stream).
  ASSERT_TRUE(source_->Delete(prefix_ + "gone").ok());
  ASSERT_TRUE(dest_->Delete("/etcd2etcd/" + name_ + "/checkpoint").ok());
  mirror = std::make_unique<Zk2etcdProcess>(Args("sync"));
  ASSERT_FIXTURE_OK(mirror->Start());
  ASSERT_TRUE(Converges({{dest_prefix_ + "foreign", "not the mirror's"}})) << mirror->Log();
  EXPECT_FALSE(List(*dest_, dest_prefix_).count(dest_prefix_ + "gone"));
  EXPECT_TRUE(mirror->WaitForLog("cause=start", 1, seconds(5))) << mirror->Log();
  EXPECT_EQ(mirror->Terminate(seconds(20)), 0) << mirror->Log();
}

// A destination another tool filled (etcdctl make-mirror writes plain puts, with no ownership
// record): by default the keys equal to the source are adopted without being rewritten, and from
// then on follow the source (changes and deletes); a key that differs is a conflict and a key the
// source lacks is foreign: both left alone. With --adopt=none nothing is adopted.
TEST_F(Etcd2EtcdE2eTest, ADestinationAnotherToolFilledIsTakenOver) {
  PutMany("p", 200, "v0");
  for (const auto& [key, value] : List(*source_, prefix_)) {
    ASSERT_TRUE(dest_->Put(dest_prefix_ + key.substr(prefix_.size()), value).ok());
  }
  ASSERT_TRUE(dest_->Put(dest_prefix_ + "p7", "another writer's value").ok());
  ASSERT_TRUE(dest_->Put(dest_prefix_ + "left-behind", "not in the source").ok());
  const std::map<std::string, int64_t> filled = ModRevisions(*dest_, dest_prefix_);

  // diff --adopt=none: the two keys that differ or the source lacks are foreign, 199 would be
  // adopted by default; nothing is written.
  Zk2etcdProcess none(Args("diff", {"--adopt=none"}));
  EXPECT_EQ(none.RunToCompletion(seconds(60)), 0) << none.Log();  // foreign: no differences
  EXPECT_NE(none.Log().find("foreign:          2"), std::string::npos) << none.Log();
  EXPECT_NE(none.Log().find("would adopt:      matching=199"), std::string::npos) << none.Log();
  EXPECT_EQ(ModRevisions(*dest_, dest_prefix_), filled);

  auto mirror = std::make_unique<Zk2etcdProcess>(Args("sync"));
  ASSERT_FIXTURE_OK(mirror->Start());
  ASSERT_TRUE(mirror->WaitForLog("reconciliation done", 1, seconds(30))) << mirror->Log();
  EXPECT_TRUE(mirror->WaitForLog("adopted=199", 1, seconds(1))) << mirror->Log();
  EXPECT_EQ(ModRevisions(*dest_, dest_prefix_), filled) << "adoption rewrites no key";

  Put("p1", "changed after the takeover");
  ASSERT_TRUE(source_->Delete(prefix_ + "p2").ok());
  Put("p7", "the source's new value");  // a conflict: never overwritten
  const std::map<std::string, std::string> expected = [&] {
    auto keys = Expected({{dest_prefix_ + "left-behind", "not in the source"}});
    keys[dest_prefix_ + "p7"] = "another writer's value";
    return keys;
  }();
  ASSERT_TRUE(Eventually([&] { return List(*dest_, dest_prefix_) == expected; }, kConverge))
      << mirror->Log();
  EXPECT_EQ(mirror->Terminate(seconds(20)), 0) << mirror->Log();

  // Restarted with --adopt=all, the mirror resumes from its checkpoint and still takes the
  // conflict and the foreign key at once (a reconciliation at start), not at some later one.
  mirror = std::make_unique<Zk2etcdProcess>(Args("sync", {"--adopt=all"}));
  ASSERT_FIXTURE_OK(mirror->Start());
  EXPECT_TRUE(Eventually([&] { return List(*dest_, dest_prefix_) == Expected(); }, kConverge))
      << mirror->Log();
  EXPECT_EQ(mirror->CountLines("reconciling at start instead of resuming from the checkpoint"), 1u)
      << mirror->Log();
  EXPECT_EQ(mirror->Terminate(seconds(20)), 0) << mirror->Log();

  // A second mirror (another --name) on the same range would adopt the first one's keys: sync
  // and diff --fix refuse, naming the first mirror; nothing is written.
  const std::map<std::string, int64_t> taken_over = ModRevisions(*dest_, dest_prefix_);
  const std::string other = "--name=" + name_ + "-second";
  Zk2etcdProcess second(Args("sync", {other}));
  EXPECT_EQ(second.RunToCompletion(seconds(60)), 2) << second.Log();
  // The text log escapes the quotes of the error's value.
  EXPECT_EQ(second.CountLines("mirror \\\"" + name_ + "\\\" owns keys under \\\"" + dest_prefix_ +
                              "\\\" on the destination"),
            1u)
      << second.Log();
  Zk2etcdProcess second_fix(Args("diff", {other, "--fix"}));
  EXPECT_EQ(second_fix.RunToCompletion(seconds(60)), 2) << second_fix.Log();
  EXPECT_EQ(second_fix.CountLines("--fix: mirror \"" + name_ + "\" owns keys under"), 1u)
      << second_fix.Log();
  EXPECT_EQ(ModRevisions(*dest_, dest_prefix_), taken_over);
  EXPECT_TRUE(List(*dest_, "/etcd2etcd/" + name_ + "-second/").empty());
}

// Puts, deletes, a DeleteRange and a multi-key transaction, in order; the transaction's keys
// arrive on the destination in one revision (one destination transaction).
TEST_F(Etcd2EtcdE2eTest, ChangesApplyInOrderAndATransactionStaysAtomic) {
  PutMany("k", 50, "v0");
  auto mirror = std::make_unique<Zk2etcdProcess>(Args("sync"));
  ASSERT_FIXTURE_OK(mirror->Start());
  ASSERT_TRUE(Converges()) << mirror->Log();

  // Every destination event of the copied range, with its revision.
  std::mutex mutex;
  std::map<std::string, std::set<int64_t>> revisions;
  auto watch = dest_->Watch(etcd::WatchRequest::Prefix(dest_prefix_, Revision(*dest_) + 1),
                            [&](etcd::EtcdResult<etcd::WatchEvents> events) {
                              if (!events.ok()) return;
                              std::lock_guard lock(mutex);
                              for (const etcd::WatchEvent& event : events->events) {
                                revisions[event.kv.key].insert(event.kv.mod_revision);
                              }
                            });
  for (int round = 0; round < 5; ++round) {
    Put("k" + std::to_string(round), "v" + std::to_string(round + 1));
    ASSERT_TRUE(source_->Delete(prefix_ + "k" + std::to_string(10 + round)).ok());
  }
  ASSERT_TRUE(source_->Delete(prefix_ + "k2", prefix_ + "k3").ok());  // DeleteRange [k2, k3)
  etcd::TxnRequest txn;
  for (const char* key : {"t/a", "t/b", "t/c", "t/d"}) {
    txn.success.push_back(etcd::Op::Put(prefix_ + key, std::string("txn-") + key));
  }
  txn.success.push_back(etcd::Op::Delete(prefix_ + "k40"));
  ASSERT_TRUE(source_->Txn(std::move(txn)).ok());
  ASSERT_TRUE(Converges()) << mirror->Log();
  std::this_thread::sleep_for(milliseconds(500));  // the watch's last events
  watch->Cancel();
  std::lock_guard lock(mutex);
  std::set<int64_t> txn_revisions;
  for (const char* key : {"t/a", "t/b", "t/c", "t/d", "k40"}) {
    const auto& seen = revisions[dest_prefix_ + key];
    ASSERT_EQ(seen.size(), 1u) << key;
    txn_revisions.insert(*seen.begin());
  }
  EXPECT_EQ(txn_revisions.size(), 1u) << "the source transaction was split on the destination";
  EXPECT_EQ(mirror->Terminate(seconds(20)), 0) << mirror->Log();
}

// kill -9, changes while down, restart: the mirror resumes from its checkpoint and writes only
// what changed; a restart with nothing changed writes nothing at all.
TEST_F(Etcd2EtcdE2eTest, RestartResumesFromTheCheckpointAndWritesOnlyTheChanges) {
  PutMany("r", 300, "v0");
  const std::vector<std::string> args = Args("sync", {"--leader-elect=false"});
  auto mirror = std::make_unique<Zk2etcdProcess>(args);
  ASSERT_FIXTURE_OK(mirror->Start());
  ASSERT_TRUE(Converges()) << mirror->Log();
  std::this_thread::sleep_for(seconds(1));  // the checkpoint of the last batch
  mirror->Kill9();

  const std::map<std::string, int64_t> before = ModRevisions(*dest_, dest_prefix_);
  for (int i = 0; i < 7; ++i) Put("r" + std::to_string(i * 10), "changed");
  ASSERT_TRUE(source_->Delete(prefix_ + "r299").ok());
  mirror = std::make_unique<Zk2etcdProcess>(args);
  ASSERT_FIXTURE_OK(mirror->Start());
  ASSERT_TRUE(Converges()) << mirror->Log();
  const std::map<std::string, int64_t> after = ModRevisions(*dest_, dest_prefix_);
  std::set<std::string> rewritten;
  for (const auto& [key, revision] : after) {
    if (before.count(key) == 0 || before.at(key) != revision) rewritten.insert(key);
  }
  std::set<std::string> changed;
  for (int i = 0; i < 7; ++i) changed.insert(dest_prefix_ + "r" + std::to_string(i * 10));
  EXPECT_EQ(rewritten, changed) << "only the changed keys are written again";
  EXPECT_EQ(mirror->CountLines("cause=start"), 0u) << "resumed, no full copy\n" << mirror->Log();
  std::this_thread::sleep_for(seconds(1));
  mirror->Kill9();

  // Nothing changed: the restart writes nothing (no election either: --leader-elect=false).
  const int64_t revision = Revision(*dest_);
  mirror = std::make_unique<Zk2etcdProcess>(args);
  ASSERT_FIXTURE_OK(mirror->Start());
  ASSERT_TRUE(Eventually([&] { return HttpPort(*mirror) != 0; }, seconds(20))) << mirror->Log();
  ASSERT_TRUE(
      Eventually([&] { return Http(HttpPort(*mirror), "/readyz").status == 200; }, seconds(20)))
      << mirror->Log();
  std::this_thread::sleep_for(seconds(2));
  EXPECT_EQ(Revision(*dest_), revision) << mirror->Log();
  EXPECT_EQ(mirror->Terminate(seconds(20)), 0) << mirror->Log();
}

// The source compacted past the checkpoint while the mirror was down: it reconciles.
TEST_F(Etcd2EtcdE2eTest, ACompactedCheckpointReconcilesAndConverges) {
  PutMany("c", 100, "v0");
  const std::vector<std::string> args = Args("sync", {"--leader-elect=false"});
  auto mirror = std::make_unique<Zk2etcdProcess>(args);
  ASSERT_FIXTURE_OK(mirror->Start());
  ASSERT_TRUE(Converges()) << mirror->Log();
  std::this_thread::sleep_for(seconds(1));
  mirror->Kill9();
  for (int i = 0; i < 20; ++i) Put("c" + std::to_string(i), "after " + std::to_string(i));
  ASSERT_TRUE(source_->Delete(prefix_ + "c99").ok());
  const int64_t revision = Revision(*source_);
  ASSERT_FIXTURE_OK(servers_->source->Etcdctl({"compact", std::to_string(revision)}));
  mirror = std::make_unique<Zk2etcdProcess>(args);
  ASSERT_FIXTURE_OK(mirror->Start());
  ASSERT_TRUE(Converges()) << mirror->Log();
  EXPECT_TRUE(mirror->WaitForLog("cause=compaction", 1, seconds(10))) << mirror->Log();
  EXPECT_EQ(mirror->Terminate(seconds(20)), 0) << mirror->Log();
}

// Each server paused for 10 s while the source keeps changing: nothing is lost.
TEST_F(Etcd2EtcdE2eTest, EachServerPausedDuringWritesConverges) {
  auto mirror = std::make_unique<Zk2etcdProcess>(Args("sync"));
  ASSERT_FIXTURE_OK(mirror->Start());
  ASSERT_TRUE(Converges()) << mirror->Log();
  for (EtcdServer* paused : {servers_->dest.get(), servers_->source.get()}) {
    std::atomic<bool> writing{true};
    std::atomic<int> written{0};
    const std::string stem = paused == servers_->dest.get() ? "pd" : "ps";
    // Writes go on while the destination is paused; a paused source refuses them (retried).
    std::thread writer([&] {
      auto client = RootClient(*servers_->source);
      for (int i = 0; writing.load() && client; ++i) {
        etcd::CallOptions options;
        options.timeout = milliseconds(500);
        if (client->Put(prefix_ + stem + std::to_string(i % 200), std::to_string(i), 0, options)
                .ok()) {
          ++written;
        }
        std::this_thread::sleep_for(milliseconds(20));
      }
    });
    std::this_thread::sleep_for(seconds(1));
    paused->Pause();
    const auto paused_at = std::chrono::steady_clock::now();
    if (paused == servers_->dest.get()) {
      // Changes wait for the destination: the leader is not ready once a batch has waited 5 s.
      HttpResult ready;
      EXPECT_TRUE(Eventually(
          [&] {
            ready = Http(HttpPort(*mirror), "/readyz");
            return ready.status == 503 &&
                   ready.body.find("destination etcd not answering") != std::string::npos;
          },
          milliseconds(9500)))
          << ready.status << " " << ready.body;
    }
    std::this_thread::sleep_until(paused_at + seconds(10));
    paused->Resume();
    std::this_thread::sleep_for(seconds(2));
    writing.store(false);
    writer.join();
    EXPECT_GT(written.load(), 0);
    ASSERT_TRUE(Converges({}, seconds(90))) << stem << "\n" << mirror->Log();
  }
  EXPECT_EQ(mirror->Terminate(seconds(20)), 0) << mirror->Log();
}

// A stop while the destination does not answer ends once --shutdown-timeout has passed, plus one
// short resignation attempt: the batch waiting for its answer is abandoned (it waited out its
// request timeouts and their retries: 51 s with the defaults), and the next start resumes from
// the checkpoint.
TEST_F(Etcd2EtcdE2eTest, AStopWhileTheDestinationDoesNotAnswerEndsAfterTheDrain) {
  ASSERT_TRUE(source_->Put(prefix_ + "before", "v").ok());
  auto mirror = std::make_unique<Zk2etcdProcess>(Args("sync", {"--shutdown-timeout=2s"}));
  ASSERT_FIXTURE_OK(mirror->Start());
  ASSERT_TRUE(Converges()) << mirror->Log();  // the copy made: the mirror runs
  servers_->dest->Pause();
  ASSERT_TRUE(source_->Put(prefix_ + "during-the-stop", "v").ok());
  std::this_thread::sleep_for(seconds(1));  // the change's batch waits for the destination
  const auto stop_at = std::chrono::steady_clock::now();
  const int exit_code = mirror->Terminate(seconds(60));
  const auto took = std::chrono::steady_clock::now() - stop_at;
  servers_->dest->Resume();
  EXPECT_EQ(exit_code, 0) << mirror->Log();
  EXPECT_LT(took, seconds(7)) << mirror->Log();
  std::printf("stopped %lld ms after SIGTERM with the destination paused\n",
              static_cast<long long>(std::chrono::duration_cast<milliseconds>(took).count()));
  EXPECT_EQ(mirror->CountLines("writes failing"), 0u) << mirror->Log();
  // The next start resumes and applies the change.
  mirror = std::make_unique<Zk2etcdProcess>(Args("sync"));
  ASSERT_FIXTURE_OK(mirror->Start());
  ASSERT_TRUE(Converges()) << mirror->Log();
  EXPECT_EQ(mirror->Terminate(seconds(20)), 0) << mirror->Log();
}

// The source killed and started again: the outage shows in the metric and in /readyz, is
// logged once when it starts and once when it ends (not at every reconnect attempt), and the
// mirror catches up.
TEST_F(Etcd2EtcdE2eTest, ASourceOutageIsReportedOnceAndCaughtUp) {
  Put("outage/before", "1");
  auto mirror = std::make_unique<Zk2etcdProcess>(Args("sync"));
  ASSERT_FIXTURE_OK(mirror->Start());
  ASSERT_TRUE(Converges()) << mirror->Log();
  ASSERT_TRUE(Eventually([&] { return HttpPort(*mirror) != 0; }, seconds(20))) << mirror->Log();
  const int port = HttpPort(*mirror);
  ASSERT_TRUE(Eventually([&] { return Http(port, "/readyz").status == 200; }, seconds(20)));
  const auto source_connected = [&](const char* value) {
    return Http(port, "/metrics")
               .body.find(std::string("zk2etcd_mirror_source_connected ") + value + "\n") !=
           std::string::npos;
  };
  EXPECT_TRUE(source_connected("1"));
  EtcdServer& source = *servers_->source;
  source.Kill9();
  // Whatever happens below, the other tests get their source back.
  struct StartAgain {
    EtcdServer& server;
    ~StartAgain() {
      if (!server.running()) (void)server.Restart();
    }
  } start_again{source};
  EXPECT_TRUE(Eventually([&] { return source_connected("0"); }, seconds(20))) << mirror->Log();
  const HttpResult ready = Http(port, "/readyz");
  EXPECT_EQ(ready.status, 503);
  EXPECT_NE(ready.body.find("source etcd not connected"), std::string::npos) << ready.body;
  std::this_thread::sleep_for(seconds(3));  // reconnect attempts: 50 ms doubling up to 2 s
  ASSERT_FIXTURE_OK(source.Restart());
  EXPECT_TRUE(Eventually([&] { return source_connected("1"); }, seconds(30))) << mirror->Log();
  ASSERT_TRUE(
      Eventually([&] { return source_->Put(prefix_ + "outage/after", "2").ok(); }, seconds(20)));
  ASSERT_TRUE(Converges()) << mirror->Log();
  EXPECT_TRUE(Eventually([&] { return Http(port, "/readyz").status == 200; }, seconds(20)));
  EXPECT_EQ(mirror->Terminate(seconds(20)), 0) << mirror->Log();
  const std::string log = mirror->Log();
  const auto count = [&](const std::string& text) {
    size_t n = 0;
    for (size_t at = log.find(text); at != std::string::npos; at = log.find(text, at + 1)) ++n;
    return n;
  };
  EXPECT_EQ(count("source etcd unreachable; retrying"), 1u) << log;
  EXPECT_EQ(count("source etcd answers again"), 1u) << log;
  EXPECT_EQ(count("etcd watch interrupted; resuming"), 1u) << log;
  EXPECT_EQ(count("etcd watch resumed"), 1u) << log;
}

// Two replicas; the leader is killed during writes; the standby takes over within the lease,
// says how long it took, and no key is lost or stale.
TEST_F(Etcd2EtcdE2eTest, LeaderFailoverDuringWritesLosesNothing) {
  auto first =
      std::make_unique<Zk2etcdProcess>(Args("sync", {"--leader-elect-identity=" + name_ + "-a"}));
  ASSERT_FIXTURE_OK(first->Start());
  ASSERT_TRUE(first->WaitForLog("mirror leadership taken", 1, seconds(30))) << first->Log();
  auto second =
      std::make_unique<Zk2etcdProcess>(Args("sync", {"--leader-elect-identity=" + name_ + "-b"}));
  ASSERT_FIXTURE_OK(second->Start());
  ASSERT_TRUE(Eventually([&] { return HttpPort(*second) != 0; }, seconds(20)));
  ASSERT_TRUE(Eventually(
      [&] { return Http(HttpPort(*second), "/readyz").body == "ready: standby\n"; }, seconds(30)))
      << second->Log();

  std::atomic<bool> writing{true};
  std::thread writer([&] {
    auto client = RootClient(*servers_->source);
    for (int i = 0; writing.load() && client; ++i) {
      (void)client->Put(prefix_ + "f" + std::to_string(i % 300), std::to_string(i));
      if (i % 7 == 0) (void)client->Delete(prefix_ + "f" + std::to_string((i / 7) % 300));
      std::this_thread::sleep_for(milliseconds(10));
    }
  });
  std::this_thread::sleep_for(seconds(2));
  first->Kill9();
  ASSERT_TRUE(second->WaitForLog("mirror leadership taken", 1, seconds(20))) << second->Log();
  std::this_thread::sleep_for(seconds(2));
  writing.store(false);
  writer.join();
  ASSERT_TRUE(Converges()) << second->Log();
  EXPECT_NE(second->Log().find("takeover_ms="), std::string::npos);
  // While a mirror of this name leads, diff --fix refuses (the mirror repairs by itself).
  Zk2etcdProcess fix(Args("diff", {"--fix"}));
  EXPECT_EQ(fix.RunToCompletion(seconds(60)), 2) << fix.Log();
  EXPECT_NE(fix.Log().find("is running (its leader is"), std::string::npos) << fix.Log();
  EXPECT_EQ(second->Terminate(seconds(20)), 0) << second->Log();
}

// --copy-leases: a copy is bound to a destination lease of the same TTL, and goes when the
// source lease is revoked.
TEST_F(Etcd2EtcdE2eTest, CopiedLeasesFollowTheSourceLease) {
  auto lease = source_->LeaseGrant(seconds(60));
  ASSERT_TRUE(lease.ok());
  Put("leased", "v", lease->id);
  Put("plain", "v");
  auto mirror = std::make_unique<Zk2etcdProcess>(Args("sync", {"--copy-leases"}));
  ASSERT_FIXTURE_OK(mirror->Start());
  ASSERT_TRUE(Converges()) << mirror->Log();
  etcd::RangeRequest get;
  get.key = dest_prefix_ + "leased";
  auto copy = dest_->Range(get);
  ASSERT_TRUE(copy.ok());
  ASSERT_EQ(copy->kvs.size(), 1u);
  ASSERT_NE(copy->kvs[0].lease, 0) << "the copy has no lease";
  auto ttl = dest_->LeaseTimeToLive(copy->kvs[0].lease);
  ASSERT_TRUE(ttl.ok());
  EXPECT_EQ(ttl->granted_ttl_seconds, lease->ttl_seconds);
  get.key = dest_prefix_ + "plain";
  auto plain = dest_->Range(get);
  ASSERT_TRUE(plain.ok() && plain->kvs.size() == 1u);
  EXPECT_EQ(plain->kvs[0].lease, 0);

  ASSERT_TRUE(source_->LeaseRevoke(lease->id).ok());
  ASSERT_TRUE(Converges()) << mirror->Log();
  EXPECT_FALSE(List(*dest_, dest_prefix_).count(dest_prefix_ + "leased"));
  EXPECT_EQ(mirror->Terminate(seconds(20)), 0) << mirror->Log();
}

// diff on a prepared divergence: exit 1 with the differences (text and JSON), --fix repairs
// them (exit 0) without touching a foreign key, and a second diff is clean.
TEST_F(Etcd2EtcdE2eTest, DiffReportsAndFixRepairsButNeverTouchesForeignKeys) {
  PutMany("d", 20, "v0");
  auto mirror = std::make_unique<Zk2etcdProcess>(Args("sync", {"--leader-elect=false"}));
  ASSERT_FIXTURE_OK(mirror->Start());
  ASSERT_TRUE(Converges()) << mirror->Log();
  EXPECT_EQ(mirror->Terminate(seconds(20)), 0) << mirror->Log();

  Zk2etcdProcess clean(Args("diff"));
  EXPECT_EQ(clean.RunToCompletion(seconds(60)), 0) << clean.Log();

  Put("d0", "changed at the source");                 // changed (the mirror is down)
  Put("new", "only at the source");                   // missing
  ASSERT_TRUE(source_->Delete(prefix_ + "d5").ok());  // extra (the mirror's own copy)
  ASSERT_TRUE(dest_->Put(dest_prefix_ + "zz-foreign", "another writer's").ok());

  Zk2etcdProcess json(Args("diff", {"--output=json"}));
  EXPECT_EQ(json.RunToCompletion(seconds(60)), 1) << json.Log();
  const std::string report = json.Log();
  EXPECT_NE(report.find("\"missing\":[\"" + dest_prefix_ + "new\"]"), std::string::npos) << report;
  EXPECT_NE(report.find("\"changed\":[\"" + dest_prefix_ + "d0\"]"), std::string::npos) << report;
  EXPECT_NE(report.find("\"extra\":[\"" + dest_prefix_ + "d5\"]"), std::string::npos) << report;
  EXPECT_NE(report.find("\"foreign\":[\"" + dest_prefix_ + "zz-foreign\"]"), std::string::npos)
      << report;
  EXPECT_NE(report.find("\"consistent\":false"), std::string::npos) << report;

  Zk2etcdProcess text(Args("diff"));
  EXPECT_EQ(text.RunToCompletion(seconds(60)), 1) << text.Log();
  EXPECT_NE(text.Log().find("missing keys:\n  " + dest_prefix_ + "new"), std::string::npos)
      << text.Log();

  Zk2etcdProcess fix(Args("diff", {"--fix"}));
  EXPECT_EQ(fix.RunToCompletion(seconds(60)), 0) << fix.Log();
  EXPECT_TRUE(Converges({{dest_prefix_ + "zz-foreign", "another writer's"}}, seconds(5)));
  Zk2etcdProcess after(Args("diff"));
  EXPECT_EQ(after.RunToCompletion(seconds(60)), 0) << after.Log();
}

// Bad input: one line and exit 2, before any connection (the servers named do not exist).
TEST_F(Etcd2EtcdE2eTest, BadInputIsOneLineAndExitTwo) {
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{"etcd2etcd", "sync", "--dest-endpoints=127.0.0.1:1", "--prefix=/r", "--name=a"},
       "--source-endpoints is empty"},
      {{"etcd2etcd", "diff", "--source-endpoints=127.0.0.1:1", "--prefix=/r", "--name=a"},
       "--dest-endpoints is empty"},
      {{"etcd2etcd", "sync", "--source-endpoints=127.0.0.1:1", "--dest-endpoints=localhost:1",
        "--prefix=/r", "--dest-prefix=/r/copy", "--name=a"},
       "the mirror would copy into itself"},
      {{"etcd2etcd", "sync", "--source-endpoints=127.0.0.1:1", "--dest-endpoints=127.0.0.1:1",
        "--prefix=/r", "--name=a"},
       "into itself"},
      {{"etcd2etcd", "sync", "--source-endpoints=127.0.0.1:1", "--dest-endpoints=127.0.0.1:2",
        "--prefix=/r", "--name=a/b"},
       "--name \"a/b\" must not contain '/'"},
      {{"etcd2etcd", "sync", "--source-endpoints=127.0.0.1:1", "--dest-endpoints=127.0.0.1:2",
        "--prefix=/r", "--name="},
       "--name is empty"},
      {{"etcd2etcd", "sync", "--source-endpoints=127.0.0.1:1", "--dest-endpoints=127.0.0.1:2",
        "--prefix=/r", "--name=a", "--dest-cacert=/nonexistent/ca.pem"},
       "--dest-cacert \"/nonexistent/ca.pem\": cannot read the file"},
      {{"etcd2etcd", "sync", "--source-endpoints=127.0.0.1:1", "--dest-endpoints=127.0.0.1:2",
        "--prefix=/r", "--name=a", "--max-write-rate=-1"},
       "--max-write-rate must be zero"},
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
