// EtcdSource against a real etcd 3.4 (one server shared by the binary): the snapshot of 100,000
// keys (timed, for the choice of EtcdSourceOptions::page_size), the ordered change stream of a
// multi-key transaction and a DeleteRange, and compactions.
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <fstream>
#include <mutex>
#include <sstream>

#include "connectors/etcd/etcd_source.h"
#include "etcd/grpc_etcd_client.h"
#include "testing/server_support.h"
#include "testing/shared_servers.h"

namespace zk2etcd::connectors {
namespace {

using core::ChangeSet;
using core::SourceError;
using core::SourceEventType;
using std::chrono::seconds;
using testing::EtcdServer;
using testing::SharedEtcd;
using testing::UniquePath;

std::unique_ptr<etcd::EtcdClient> Connect(const EtcdServer& server) {
  static SystemClock clock;
  etcd::GrpcEtcdClientOptions options;
  options.endpoints = {server.endpoint()};
  options.dial_timeout = seconds(10);
  options.call_timeout = seconds(30);
  auto client = etcd::NewGrpcEtcdClient(std::move(options), clock);
  EXPECT_TRUE(client.ok()) << client.error().ToString();
  return client.ok() ? std::move(client).value() : nullptr;
}

std::string NumberedKey(const std::string& prefix, int i) {
  char suffix[24];
  std::snprintf(suffix, sizeof(suffix), "/service-%06d", i);
  return prefix + suffix;
}

// Writes keys [0, count) under `prefix` in transactions of 125 puts, all submitted at once.
void WriteKeys(etcd::EtcdClient& client, const std::string& prefix, int count,
               const std::string& value) {
  constexpr int kPerTxn = 125;
  std::mutex mutex;
  std::condition_variable done;
  int pending = 0;
  int failed = 0;
  for (int begin = 0; begin < count; begin += kPerTxn) {
    etcd::TxnRequest txn;
    for (int i = begin; i < std::min(count, begin + kPerTxn); ++i) {
      txn.success.push_back(etcd::Op::Put(NumberedKey(prefix, i), value));
    }
    {
      std::lock_guard lock(mutex);
      ++pending;
    }
    client.TxnAsync(std::move(txn), {}, [&](etcd::EtcdResult<etcd::TxnResponse> result) {
      std::lock_guard lock(mutex);
      if (!result.ok()) ++failed;
      if (--pending == 0) done.notify_all();
    });
  }
  std::unique_lock lock(mutex);
  done.wait(lock, [&] { return pending == 0; });
  EXPECT_EQ(failed, 0);
}

// CPU seconds (user + system) the process has used so far, from /proc/<pid>/stat; 0 if unreadable.
double CpuSeconds(pid_t pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(stat, line)) return 0;
  const size_t after_name = line.rfind(')');
  if (after_name == std::string::npos) return 0;
  std::istringstream fields(line.substr(after_name + 2));
  std::string field;
  long long ticks = 0;
  // After the name: state is field 3; utime and stime are fields 14 and 15.
  for (int index = 3; index <= 15 && fields >> field; ++index) {
    if (index >= 14) ticks += std::stoll(field);
  }
  return static_cast<double>(ticks) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

class RecordingListener final : public core::SourceListener {
 public:
  void OnChange(const std::string&) override {}
  void OnChangeSet(ChangeSet set) override {
    std::lock_guard lock(mutex_);
    sets_.push_back(std::move(set));
    changed_.notify_all();
  }
  void OnSourceEvent(const core::SourceEvent& event) override {
    std::lock_guard lock(mutex_);
    events_.push_back(event);
    changed_.notify_all();
  }
  bool WaitForSets(size_t count) {
    std::unique_lock lock(mutex_);
    return changed_.wait_for(lock, seconds(10), [&] { return sets_.size() >= count; });
  }
  std::vector<ChangeSet> sets() {
    std::lock_guard lock(mutex_);
    return sets_;
  }
  std::vector<core::SourceEvent> events() {
    std::lock_guard lock(mutex_);
    return events_;
  }

 private:
  std::mutex mutex_;
  std::condition_variable changed_;
  std::vector<ChangeSet> sets_;
  std::vector<core::SourceEvent> events_;
};

TEST(EtcdSourceIntegrationTest, ASnapshotOf100000Keys) {
  EtcdServer* server = nullptr;
  ASSERT_FIXTURE_OK_AND_ASSIGN(server, SharedEtcd());
  auto client = Connect(*server);
  ASSERT_NE(client, nullptr);
  const std::string prefix = UniquePath("snapshot");
  constexpr int kKeys = 100'000;
  // About the size of a Dubbo provider URL.
  const std::string value(120, 'v');
  WriteKeys(*client, prefix, kKeys, value);
  // Keys next to the prefix that the snapshot must not see.
  ASSERT_TRUE(client->Put(prefix.substr(0, prefix.size() - 1), "shorter").ok());
  ASSERT_TRUE(client->Put(prefix + "0", "longer, and in scope").ok());

  // The default page size first, then others for comparison: etcd 3.4 walks the rest of the
  // range for every page, so its CPU time falls as pages grow.
  for (const int64_t page_size : {EtcdSourceOptions{}.page_size, int64_t{2000}, int64_t{20000}}) {
    SCOPED_TRACE(page_size);
    EtcdSource source(*client, prefix, {.page_size = page_size});
    size_t progress_calls = 0;
    core::SnapshotOptions options;
    options.on_progress = [&](size_t) { ++progress_calls; };
    const double etcd_cpu_before = CpuSeconds(server->pid());
    const auto start = std::chrono::steady_clock::now();
    auto snapshot = source.ReadSnapshot(options);
    const auto elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start);
    ASSERT_TRUE(snapshot.ok()) << snapshot.error().ToString();
    std::printf("snapshot of %d keys, page_size %lld: %.3f s in %zu requests, etcd CPU %.2f s\n",
                kKeys + 1, static_cast<long long>(page_size), elapsed.count(), snapshot->requests,
                CpuSeconds(server->pid()) - etcd_cpu_before);
    std::fflush(stdout);
    ASSERT_EQ(snapshot->entries.size(), static_cast<size_t>(kKeys) + 1);
    EXPECT_EQ(snapshot->entries.front().key, NumberedKey(prefix, 0));
    EXPECT_EQ(snapshot->entries.back().key, prefix + "0");
    for (size_t i = 1; i < snapshot->entries.size(); ++i) {
      if (!(snapshot->entries[i - 1].key < snapshot->entries[i].key)) {
        ADD_FAILURE() << "not sorted at " << i;
        break;
      }
    }
    EXPECT_EQ(snapshot->entries[7].value, value);
    EXPECT_TRUE(snapshot->exact);
    EXPECT_GT(snapshot->point, 0);
    EXPECT_EQ(progress_calls, snapshot->requests);
    if (page_size == EtcdSourceOptions{}.page_size) {
      EXPECT_LT(elapsed.count(), 30.0);
    }
  }
  ASSERT_TRUE(client->Delete(prefix, etcd::PrefixEnd(prefix)).ok());
}

TEST(EtcdSourceIntegrationTest, OpenAfterDeliversATxnAtomicallyAndADeleteRange) {
  EtcdServer* server = nullptr;
  ASSERT_FIXTURE_OK_AND_ASSIGN(server, SharedEtcd());
  auto client = Connect(*server);
  ASSERT_NE(client, nullptr);
  const std::string prefix = UniquePath("stream");
  auto first = client->Put(prefix + "/a", "1");
  ASSERT_TRUE(first.ok());
  const int64_t point = first->revision;

  etcd::TxnRequest txn;
  txn.success = {etcd::Op::Put(prefix + "/a", "2"), etcd::Op::Put(prefix + "/b", "2"),
                 etcd::Op::Put(prefix + "/c", "2"), etcd::Op::Put(prefix + "-outside", "x")};
  auto committed = client->Txn(txn);
  ASSERT_TRUE(committed.ok()) << committed.error().ToString();
  auto lease = client->LeaseGrant(seconds(60));
  ASSERT_TRUE(lease.ok());
  auto leased = client->Put(prefix + "/leased", "l", lease->id);
  ASSERT_TRUE(leased.ok());

  EtcdSource source(*client, prefix + "/");
  RecordingListener listener;
  ASSERT_TRUE(source.OpenAfter(listener, point).ok());
  ASSERT_TRUE(listener.WaitForSets(2));
  // Live, after the watch runs: a DeleteRange of a, b and c.
  auto deleted = client->Delete(prefix + "/a", prefix + "/d");
  ASSERT_TRUE(deleted.ok());
  ASSERT_EQ(deleted->deleted, 3);
  ASSERT_TRUE(listener.WaitForSets(3));
  EXPECT_TRUE(source.Status().connected);
  EXPECT_EQ(source.Status().watches, 1u);
  source.Close();

  const auto sets = listener.sets();
  ASSERT_EQ(sets.size(), 3u);
  EXPECT_EQ(sets[0].point, committed->revision);
  ASSERT_EQ(sets[0].changes.size(), 3u);
  for (const auto& change : sets[0].changes) {
    EXPECT_TRUE(change.exists);
    EXPECT_EQ(change.value, "2");
    EXPECT_EQ(change.version, committed->revision);
  }
  EXPECT_EQ(sets[1].point, leased->revision);
  ASSERT_EQ(sets[1].changes.size(), 1u);
  EXPECT_EQ(sets[1].changes[0].lease, lease->id);
  EXPECT_EQ(sets[2].point, deleted->revision);
  ASSERT_EQ(sets[2].changes.size(), 3u);
  EXPECT_EQ(sets[2].changes[0].key, prefix + "/a");
  EXPECT_EQ(sets[2].changes[2].key, prefix + "/c");
  for (const auto& change : sets[2].changes) {
    EXPECT_FALSE(change.exists);
    EXPECT_EQ(change.version, deleted->revision);
  }
  ASSERT_FALSE(listener.events().empty());
  EXPECT_EQ(listener.events()[0].type, SourceEventType::kConnected);
  EXPECT_EQ(client->LeaseRevoke(lease->id).ok(), true);
}

TEST(EtcdSourceIntegrationTest, CompactedRevisionsFailWithCompacted) {
  EtcdServer* server = nullptr;
  ASSERT_FIXTURE_OK_AND_ASSIGN(server, SharedEtcd());
  auto client = Connect(*server);
  ASSERT_NE(client, nullptr);
  const std::string prefix = UniquePath("compacted");
  WriteKeys(*client, prefix, 300, "v");
  auto first = client->Put(prefix + "/a", "1");
  auto second = client->Put(prefix + "/a", "2");
  ASSERT_TRUE(first.ok() && second.ok());
  ASSERT_TRUE(server->Etcdctl({"compact", std::to_string(second->revision)}).ok());

  EtcdSource source(*client, prefix);
  RecordingListener listener;
  auto opened = source.OpenAfter(listener, first->revision);
  ASSERT_FALSE(opened.ok());
  EXPECT_EQ(opened.error().code, SourceError::Code::kCompacted) << opened.error().message;
  EXPECT_TRUE(opened.error().message.starts_with("etcd")) << opened.error().message;

  // A compaction while a snapshot pages: the rest of its pages are gone.
  EtcdSource paged(*client, prefix, {.page_size = 100});
  core::SnapshotOptions options;
  bool compacted = false;
  options.on_progress = [&](size_t) {
    if (compacted) return;
    compacted = true;
    auto put = client->Put(prefix + "/a", "3");
    ASSERT_TRUE(put.ok());
    ASSERT_TRUE(server->Etcdctl({"compact", std::to_string(put->revision)}).ok());
  };
  auto snapshot = paged.ReadSnapshot(options);
  ASSERT_FALSE(snapshot.ok());
  EXPECT_EQ(snapshot.error().code, SourceError::Code::kCompacted) << snapshot.error().message;

  // From the compaction's revision on, the stream opens.
  auto current = source.CurrentPoint();
  ASSERT_TRUE(current.ok());
  ASSERT_TRUE(source.OpenAfter(listener, *current).ok());
  source.Close();
}

}  // namespace
}  // namespace zk2etcd::connectors
