// EtcdSource against the in-memory etcd: snapshots at one revision across pages, the prefix's
// string semantics, the ordered change stream (a ChangeSet per revision, replay after a point,
// compaction, the end of a watch), Close, re-reads and the mapping of errors.
#include "connectors/etcd/etcd_source.h"

#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <future>
#include <mutex>
#include <thread>

#include "etcd/fake_etcd_client.h"

namespace zk2etcd::connectors {
namespace {

using core::ChangeSet;
using core::SourceError;
using core::SourceEventType;
using std::chrono::milliseconds;

std::string NumberedKey(const std::string& prefix, int i) {
  char suffix[16];
  std::snprintf(suffix, sizeof(suffix), "%04d", i);
  return prefix + suffix;
}

// Records what a source delivers; thread-safe.
class RecordingListener final : public core::SourceListener {
 public:
  void OnChange(const std::string& key) override {
    std::lock_guard lock(mutex_);
    keys_.push_back(key);
    changed_.notify_all();
  }
  void OnChangeSet(ChangeSet set) override {
    std::lock_guard lock(mutex_);
    EXPECT_NE(std::this_thread::get_id(), opener_) << "delivered inline";
    sets_.push_back(std::move(set));
    changed_.notify_all();
  }
  void OnSourceEvent(const core::SourceEvent& event) override {
    std::lock_guard lock(mutex_);
    EXPECT_NE(std::this_thread::get_id(), opener_) << "delivered inline";
    events_.push_back(event);
    changed_.notify_all();
  }

  // The thread that opens the source: nothing may be delivered on it.
  void SetOpener(std::thread::id opener) {
    std::lock_guard lock(mutex_);
    opener_ = opener;
  }
  // Waits until at least `count` change sets arrived (false after 5 s).
  bool WaitForSets(size_t count) {
    std::unique_lock lock(mutex_);
    return changed_.wait_for(lock, std::chrono::seconds(5), [&] { return sets_.size() >= count; });
  }
  bool WaitForEvents(size_t count) {
    std::unique_lock lock(mutex_);
    return changed_.wait_for(lock, std::chrono::seconds(5),
                             [&] { return events_.size() >= count; });
  }
  std::vector<ChangeSet> sets() {
    std::lock_guard lock(mutex_);
    return sets_;
  }
  std::vector<core::SourceEvent> events() {
    std::lock_guard lock(mutex_);
    return events_;
  }
  std::vector<SourceEventType> event_types() {
    std::vector<SourceEventType> types;
    for (const auto& event : events()) types.push_back(event.type);
    return types;
  }

 private:
  std::mutex mutex_;
  std::condition_variable changed_;
  std::thread::id opener_;
  std::vector<std::string> keys_;
  std::vector<ChangeSet> sets_;
  std::vector<core::SourceEvent> events_;
};

class EtcdSourceTest : public ::testing::Test {
 protected:
  int64_t Put(const std::string& key, const std::string& value, int64_t lease = 0) {
    auto response = etcd_.Put(key, value, lease);
    EXPECT_TRUE(response.ok()) << response.error().ToString();
    return response.ok() ? response->revision : 0;
  }
  int64_t Revision() { return etcd_.store().revision(); }

  core::Snapshot Snapshot(EtcdSource& source, const core::SnapshotOptions& options = {}) {
    auto snapshot = source.ReadSnapshot(options);
    EXPECT_TRUE(snapshot.ok()) << snapshot.error().ToString();
    return snapshot.ok() ? std::move(snapshot).value() : core::Snapshot{};
  }

  core::SourceResult<core::EntryState> ReadOne(EtcdSource& source, const std::string& key) {
    std::promise<core::SourceResult<core::EntryState>> answer;
    const auto caller = std::this_thread::get_id();
    source.ReadAsync(key, [&](core::SourceResult<core::EntryState> result) {
      EXPECT_NE(std::this_thread::get_id(), caller) << "ReadAsync called back inline";
      answer.set_value(std::move(result));
    });
    return answer.get_future().get();
  }

  SystemClock clock_;
  etcd::FakeEtcdClient etcd_{clock_};
  RecordingListener listener_;
};

TEST_F(EtcdSourceTest, ASnapshotPagesAcrossPageBoundariesInKeyOrder) {
  auto lease = etcd_.LeaseGrant(std::chrono::seconds(60));
  ASSERT_TRUE(lease.ok());
  for (int i = 9; i >= 0; --i) Put(NumberedKey("/registry/k", i), "v" + std::to_string(i));
  const int64_t leased = Put("/registry/leased", "with a lease", lease->id);
  EtcdSource source(etcd_, "/registry", {.page_size = 3});

  const core::Snapshot snapshot = Snapshot(source);
  ASSERT_EQ(snapshot.entries.size(), 11u);
  for (int i = 0; i < 10; ++i) {
    EXPECT_EQ(snapshot.entries[i].key, NumberedKey("/registry/k", i));
    EXPECT_EQ(snapshot.entries[i].value, "v" + std::to_string(i));
    EXPECT_EQ(snapshot.entries[i].version,
              etcd_.store().Get(snapshot.entries[i].key)->mod_revision);
    EXPECT_EQ(snapshot.entries[i].lease, 0);
  }
  EXPECT_EQ(snapshot.entries[10].key, "/registry/leased");
  EXPECT_EQ(snapshot.entries[10].version, leased);
  EXPECT_EQ(snapshot.entries[10].lease, lease->id);
  EXPECT_TRUE(snapshot.exact);
  EXPECT_EQ(snapshot.point, Revision());
  EXPECT_EQ(snapshot.requests, 4u);  // 3 + 3 + 3 + 2
}

TEST_F(EtcdSourceTest, ASnapshotIsAtOneRevisionWhileWritesContinue) {
  for (int i = 0; i < 10; ++i) Put(NumberedKey("/registry/k", i), "old");
  const int64_t before = Revision();
  EtcdSource source(etcd_, "/registry", {.page_size = 2});
  int pages = 0;
  core::SnapshotOptions options;
  std::vector<size_t> progress;
  options.on_progress = [&](size_t entries_read) {
    progress.push_back(entries_read);
    // Between pages: change keys already read and keys not yet read, add and delete some.
    ++pages;
    Put(NumberedKey("/registry/k", 9 - pages), "new");
    Put(NumberedKey("/registry/k", pages), "new");
    Put(NumberedKey("/registry/new", pages), "new");
    (void)etcd_.Delete(NumberedKey("/registry/k", 5 + pages % 3));
  };
  const core::Snapshot snapshot = Snapshot(source, options);
  EXPECT_EQ(snapshot.point, before);
  ASSERT_EQ(snapshot.entries.size(), 10u);
  for (int i = 0; i < 10; ++i) {
    EXPECT_EQ(snapshot.entries[i].key, NumberedKey("/registry/k", i));
    EXPECT_EQ(snapshot.entries[i].value, "old");
  }
  EXPECT_EQ(progress, (std::vector<size_t>{2, 4, 6, 8, 10}));
  EXPECT_GT(Revision(), before);
}

TEST_F(EtcdSourceTest, ThePrefixIsAStringPrefix) {
  for (const char* key : {"/regist", "/registry", "/registry/a", "/registry2", "/registrz", "/r"}) {
    Put(key, key);
  }
  EtcdSource source(etcd_, "/registry", {.page_size = 2});
  std::vector<std::string> keys;
  for (const auto& entry : Snapshot(source).entries) keys.push_back(entry.key);
  EXPECT_EQ(keys, (std::vector<std::string>{"/registry", "/registry/a", "/registry2"}));

  EtcdSource everything(etcd_, "");
  EXPECT_EQ(Snapshot(everything).entries.size(), 6u);
}

TEST_F(EtcdSourceTest, AnEmptyPrefixSnapshotIsEmptyAtTheCurrentRevision) {
  Put("/other", "x");
  EtcdSource source(etcd_, "/registry");
  const core::Snapshot snapshot = Snapshot(source);
  EXPECT_TRUE(snapshot.entries.empty());
  EXPECT_EQ(snapshot.point, Revision());
}

TEST_F(EtcdSourceTest, ACompactionWhilePagingFailsWithCompacted) {
  for (int i = 0; i < 10; ++i) Put(NumberedKey("/registry/k", i), "v");
  EtcdSource source(etcd_, "/registry", {.page_size = 3});
  core::SnapshotOptions options;
  options.on_progress = [&](size_t) {
    Put("/registry/k0000", "changed");
    etcd_.store().Compact(Revision());
  };
  auto snapshot = source.ReadSnapshot(options);
  ASSERT_FALSE(snapshot.ok());
  EXPECT_EQ(snapshot.error().code, SourceError::Code::kCompacted);
  EXPECT_TRUE(snapshot.error().message.starts_with("etcd")) << snapshot.error().message;
}

TEST_F(EtcdSourceTest, ACancelledSnapshotFailsWithClosed) {
  for (int i = 0; i < 10; ++i) Put(NumberedKey("/registry/k", i), "v");
  EtcdSource source(etcd_, "/registry", {.page_size = 3});
  std::atomic<bool> cancel{false};
  core::SnapshotOptions options;
  options.cancel = &cancel;
  options.on_progress = [&](size_t) { cancel = true; };
  auto snapshot = source.ReadSnapshot(options);
  ASSERT_FALSE(snapshot.ok());
  EXPECT_EQ(snapshot.error().code, SourceError::Code::kClosed);
  EXPECT_EQ(etcd_.Calls("range"), 1);
}

TEST_F(EtcdSourceTest, CurrentPointIsTheClusterRevision) {
  Put("/elsewhere", "x");
  EtcdSource source(etcd_, "/registry");
  auto point = source.CurrentPoint();
  ASSERT_TRUE(point.ok()) << point.error().ToString();
  EXPECT_EQ(*point, Revision());
}

TEST_F(EtcdSourceTest, OpenAfterReplaysExactlyTheChangesAfterThePointGroupedPerRevision) {
  Put("/registry/before", "b");
  const int64_t point = Put("/registry/a", "1");
  auto lease = etcd_.LeaseGrant(std::chrono::seconds(60));
  ASSERT_TRUE(lease.ok());

  const int64_t put = Put("/registry/a", "2", lease->id);
  Put("/regist", "outside");
  etcd::TxnRequest txn;  // one revision, three keys (one outside the scope)
  txn.success = {etcd::Op::Put("/registry/x", "x"), etcd::Op::Put("/registry/y", "y"),
                 etcd::Op::Put("/zzz", "outside")};
  auto committed = etcd_.Txn(txn);
  ASSERT_TRUE(committed.ok());
  const int64_t txn_revision = committed->revision;
  auto deleted = etcd_.Delete("/registry/x", "/registry/z");  // a DeleteRange: x and y
  ASSERT_TRUE(deleted.ok());
  ASSERT_EQ(deleted->deleted, 2);

  EtcdSource source(etcd_, "/registry");
  listener_.SetOpener(std::this_thread::get_id());
  ASSERT_TRUE(source.OpenAfter(listener_, point).ok());
  ASSERT_TRUE(listener_.WaitForSets(3));

  const int64_t live = Put("/registry/live", "after open");
  ASSERT_TRUE(listener_.WaitForSets(4));
  source.Close();

  const std::vector<ChangeSet> sets = listener_.sets();
  ASSERT_EQ(sets.size(), 4u);
  EXPECT_EQ(sets[0].point, put);
  ASSERT_EQ(sets[0].changes.size(), 1u);
  EXPECT_EQ(sets[0].changes[0].key, "/registry/a");
  EXPECT_TRUE(sets[0].changes[0].exists);
  EXPECT_EQ(sets[0].changes[0].value, "2");
  EXPECT_EQ(sets[0].changes[0].version, put);
  EXPECT_EQ(sets[0].changes[0].lease, lease->id);

  EXPECT_EQ(sets[1].point, txn_revision);
  ASSERT_EQ(sets[1].changes.size(), 2u);
  EXPECT_EQ(sets[1].changes[0].key, "/registry/x");
  EXPECT_EQ(sets[1].changes[1].key, "/registry/y");
  EXPECT_EQ(sets[1].changes[1].value, "y");
  EXPECT_EQ(sets[1].changes[1].version, txn_revision);

  EXPECT_EQ(sets[2].point, deleted->revision);
  ASSERT_EQ(sets[2].changes.size(), 2u);
  for (const auto& change : sets[2].changes) {
    EXPECT_FALSE(change.exists);
    EXPECT_EQ(change.version, deleted->revision);
  }
  EXPECT_EQ(sets[2].changes[0].key, "/registry/x");
  EXPECT_EQ(sets[2].changes[1].key, "/registry/y");

  EXPECT_EQ(sets[3].point, live);
  EXPECT_EQ(sets[3].changes[0].key, "/registry/live");

  ASSERT_FALSE(listener_.events().empty());
  EXPECT_EQ(listener_.events()[0].type, SourceEventType::kConnected);
}

TEST_F(EtcdSourceTest, OpenWatchesFromNow) {
  Put("/registry/old", "not replayed");
  EtcdSource source(etcd_, "/registry");
  listener_.SetOpener(std::this_thread::get_id());
  ASSERT_TRUE(source.Open(listener_).ok());
  EXPECT_EQ(source.Status().watches, 1u);
  EXPECT_TRUE(source.Status().connected);
  const int64_t revision = Put("/registry/new", "announced");
  ASSERT_TRUE(listener_.WaitForSets(1));
  source.Close();
  ASSERT_EQ(listener_.sets().size(), 1u);
  EXPECT_EQ(listener_.sets()[0].point, revision);
  ASSERT_TRUE(listener_.WaitForEvents(1));
  EXPECT_EQ(listener_.event_types(), std::vector<SourceEventType>{SourceEventType::kConnected});
}

// An outage of etcd interrupts the watch: the listener hears of it once, and of its end, and
// the stream goes on where it stopped.
TEST_F(EtcdSourceTest, AnInterruptedWatchIsReportedOnceAndGoesOnWhereItStopped) {
  EtcdSource source(etcd_, "/registry");
  ASSERT_TRUE(source.Open(listener_).ok());
  ASSERT_TRUE(listener_.WaitForEvents(1));
  etcd_.SetUnavailable(true);
  ASSERT_TRUE(listener_.WaitForEvents(2));
  etcd_.SetUnavailable(true);  // still the same outage
  etcd_.SetUnavailable(false);
  ASSERT_TRUE(listener_.WaitForEvents(3));
  const int64_t revision = Put("/registry/after", "announced");
  ASSERT_TRUE(listener_.WaitForSets(1));
  source.Close();
  EXPECT_EQ(listener_.event_types(), (std::vector<SourceEventType>{SourceEventType::kConnected,
                                                                   SourceEventType::kDisconnected,
                                                                   SourceEventType::kReconnected}));
  EXPECT_NE(listener_.events()[1].reason.find("interrupted"), std::string::npos);
  ASSERT_EQ(listener_.sets().size(), 1u);
  EXPECT_EQ(listener_.sets()[0].point, revision);
}

TEST_F(EtcdSourceTest, OpenAfterACompactedPointFailsWithCompacted) {
  const int64_t point = Put("/registry/a", "1");
  Put("/registry/a", "2");
  Put("/registry/a", "3");
  etcd_.store().Compact(Revision());
  EtcdSource source(etcd_, "/registry");
  auto opened = source.OpenAfter(listener_, point);
  ASSERT_FALSE(opened.ok());
  EXPECT_EQ(opened.error().code, SourceError::Code::kCompacted);
  EXPECT_TRUE(opened.error().message.starts_with("etcd")) << opened.error().message;
  EXPECT_EQ(etcd_.Calls("watch"), 0);
  EXPECT_FALSE(source.Status().connected);
  // The compaction's own revision is still there.
  EXPECT_TRUE(source.OpenAfter(listener_, Revision()).ok());
}

TEST_F(EtcdSourceTest, OpenAfterAPointAheadOfTheClusterFailsWithCompacted) {
  // A checkpoint from a restored or different cluster is no history of this one.
  Put("/registry/a", "1");
  EtcdSource source(etcd_, "/registry");
  auto opened = source.OpenAfter(listener_, Revision() + 100);
  ASSERT_FALSE(opened.ok());
  EXPECT_EQ(opened.error().code, SourceError::Code::kCompacted);
  EXPECT_NE(opened.error().message.find("ahead of the source's revision"), std::string::npos)
      << opened.error().message;
  EXPECT_EQ(etcd_.Calls("watch"), 0);
}

TEST_F(EtcdSourceTest, AWatchThatHitsCompactionSendsCompactedOnceAndNothingMore) {
  etcd_.InjectFault("watch", etcd::ErrorCode::kCompacted);
  EtcdSource source(etcd_, "/registry");
  ASSERT_TRUE(source.Open(listener_).ok());
  ASSERT_TRUE(listener_.WaitForEvents(2));
  Put("/registry/a", "after the end");
  etcd_.Drain();
  source.Close();
  EXPECT_EQ(listener_.event_types(), (std::vector<SourceEventType>{SourceEventType::kConnected,
                                                                   SourceEventType::kCompacted}));
  EXPECT_TRUE(listener_.sets().empty());
  EXPECT_FALSE(source.Status().connected);
}

TEST_F(EtcdSourceTest, AWatchRefusedIsFatalAndOtherEndsAreLost) {
  etcd_.InjectFault("watch", etcd::ErrorCode::kPermissionDenied);
  {
    EtcdSource source(etcd_, "/registry");
    ASSERT_TRUE(source.Open(listener_).ok());
    ASSERT_TRUE(listener_.WaitForEvents(2));
    EXPECT_EQ(listener_.events()[1].type, SourceEventType::kFatal);
    EXPECT_FALSE(source.Status().connected);
    EXPECT_EQ(source.Status().watches, 0u);
  }
  RecordingListener other;
  etcd_.InjectFault("watch", etcd::ErrorCode::kInvalidArgument);
  EtcdSource source(etcd_, "/registry");
  ASSERT_TRUE(source.Open(other).ok());
  ASSERT_TRUE(other.WaitForEvents(2));
  EXPECT_EQ(other.events()[1].type, SourceEventType::kLost);
  EXPECT_TRUE(other.events()[1].reason.starts_with("etcd")) << other.events()[1].reason;
}

TEST_F(EtcdSourceTest, CloseEndsDeliveriesAndIsIdempotent) {
  EtcdSource source(etcd_, "/registry");
  ASSERT_TRUE(source.Open(listener_).ok());
  Put("/registry/a", "1");
  ASSERT_TRUE(listener_.WaitForSets(1));
  source.Close();
  EXPECT_FALSE(source.Status().connected);
  EXPECT_EQ(source.Status().watches, 0u);
  Put("/registry/a", "2");
  etcd_.Drain();
  source.Close();
  EXPECT_EQ(listener_.sets().size(), 1u);

  // Open again after Close, from the last point seen: exactly the change missed meanwhile.
  RecordingListener again;
  ASSERT_TRUE(source.OpenAfter(again, listener_.sets()[0].point).ok());
  ASSERT_TRUE(again.WaitForSets(1));
  std::thread closer([&] { source.Close(); });
  source.Close();
  closer.join();
  ASSERT_EQ(again.sets().size(), 1u);
  EXPECT_EQ(again.sets()[0].changes[0].value, "2");
}

TEST_F(EtcdSourceTest, OpenTwiceFails) {
  EtcdSource source(etcd_, "/registry");
  ASSERT_TRUE(source.Open(listener_).ok());
  EXPECT_FALSE(source.Open(listener_).ok());
}

TEST_F(EtcdSourceTest, WithoutAChangeStreamOpenOnlyChecksEtcd) {
  EtcdSource source(etcd_, "/registry", {.change_stream = false});
  ASSERT_TRUE(source.Open(listener_).ok());
  EXPECT_EQ(etcd_.Calls("watch"), 0);
  EXPECT_TRUE(source.Status().connected);
  EXPECT_EQ(source.Status().watches, 0u);
  Put("/registry/a", "1");
  etcd_.Drain();
  source.Close();
  EXPECT_TRUE(listener_.sets().empty());

  etcd_.InjectFault("range", etcd::ErrorCode::kUnavailable, -1);
  auto opened = source.Open(listener_);
  ASSERT_FALSE(opened.ok());
  EXPECT_EQ(opened.error().code, SourceError::Code::kUnavailable);
}

TEST_F(EtcdSourceTest, RereadAnswersInTheGivenOrderInBatches) {
  auto lease = etcd_.LeaseGrant(std::chrono::seconds(60));
  ASSERT_TRUE(lease.ok());
  Put("/registry/a", "a");
  const int64_t b = Put("/registry/b", "b", lease->id);
  Put("/registry/c", "c");
  EtcdSource source(etcd_, "/registry", {.reread_batch = 2});
  const std::vector<std::string> keys = {"/registry/c", "/registry/missing", "/registry/b",
                                         "/registry/a", "/registry/c"};
  const int txns_before = etcd_.Calls("txn");
  auto states = source.Reread(keys, {.window = 2});
  ASSERT_TRUE(states.ok()) << states.error().ToString();
  EXPECT_EQ(etcd_.Calls("txn") - txns_before, 3);
  ASSERT_EQ(states->size(), keys.size());
  EXPECT_EQ((*states)[0].value, "c");
  EXPECT_FALSE((*states)[1].exists);
  EXPECT_EQ((*states)[1].observed_at, Revision());
  EXPECT_TRUE((*states)[2].exists);
  EXPECT_EQ((*states)[2].value, "b");
  EXPECT_EQ((*states)[2].version, b);
  EXPECT_EQ((*states)[2].lease, lease->id);
  EXPECT_EQ((*states)[2].observed_at, Revision());
  EXPECT_EQ((*states)[3].value, "a");
  EXPECT_EQ((*states)[4].value, "c");

  auto none = source.Reread({}, {});
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->empty());
}

TEST_F(EtcdSourceTest, ReadAsyncReadsOneKeyOffTheCallersThread) {
  const int64_t revision = Put("/registry/a", "a");
  EtcdSource source(etcd_, "/registry");
  auto present = ReadOne(source, "/registry/a");
  ASSERT_TRUE(present.ok()) << present.error().ToString();
  EXPECT_TRUE(present->exists);
  EXPECT_EQ(present->value, "a");
  EXPECT_EQ(present->version, revision);
  auto absent = ReadOne(source, "/registry/b");
  ASSERT_TRUE(absent.ok());
  EXPECT_FALSE(absent->exists);
  EXPECT_EQ(absent->observed_at, revision);

  etcd_.InjectFault("txn", etcd::ErrorCode::kUnavailable);
  auto failed = ReadOne(source, "/registry/a");
  ASSERT_FALSE(failed.ok());
  EXPECT_EQ(failed.error().code, SourceError::Code::kUnavailable);
  EXPECT_TRUE(failed.error().message.starts_with("etcd")) << failed.error().message;
}

TEST_F(EtcdSourceTest, CloseAnswersOwedReadsAndEndsBlockingRereads) {
  Put("/registry/a", "a");
  EtcdSource source(etcd_, "/registry");
  etcd_.HoldTxns(true);
  std::promise<core::SourceResult<core::EntryState>> answer;
  source.ReadAsync("/registry/a", [&](auto result) { answer.set_value(std::move(result)); });
  auto reread = std::async(std::launch::async, [&] { return source.Reread({"/registry/a"}, {}); });
  std::this_thread::sleep_for(milliseconds(50));
  source.Close();
  auto owed = answer.get_future().get();
  ASSERT_FALSE(owed.ok());
  EXPECT_EQ(owed.error().code, SourceError::Code::kUnavailable);
  auto ended = reread.get();
  ASSERT_FALSE(ended.ok());
  EXPECT_EQ(ended.error().code, SourceError::Code::kClosed);
  etcd_.HoldTxns(false);
  etcd_.Drain();  // the held transactions complete into nothing
}

TEST_F(EtcdSourceTest, ErrorsAreMapped) {
  using Code = SourceError::Code;
  const std::vector<std::pair<etcd::ErrorCode, Code>> table = {
      {etcd::ErrorCode::kUnavailable, Code::kUnavailable},
      {etcd::ErrorCode::kDeadlineExceeded, Code::kUnavailable},
      {etcd::ErrorCode::kResourceExhausted, Code::kUnavailable},
      {etcd::ErrorCode::kTlsFailed, Code::kUnavailable},
      {etcd::ErrorCode::kInternal, Code::kUnavailable},
      {etcd::ErrorCode::kCompacted, Code::kCompacted},
      {etcd::ErrorCode::kAuthFailed, Code::kAuthFailed},
      {etcd::ErrorCode::kPermissionDenied, Code::kAuthFailed},
      {etcd::ErrorCode::kCancelled, Code::kClosed},
      {etcd::ErrorCode::kInvalidArgument, Code::kOther},
      {etcd::ErrorCode::kNotFound, Code::kOther},
      {etcd::ErrorCode::kTooManyOps, Code::kOther},
      {etcd::ErrorCode::kFailedPrecondition, Code::kOther},
  };
  for (const auto& [from, to] : table) {
    const SourceError error = SourceErrorOf(etcd::Error{from, "detail", 0}, "reading x");
    EXPECT_EQ(error.code, to) << etcd::ErrorLabel(from);
    EXPECT_EQ(error.message,
              "etcd: reading x: " + std::string(etcd::ErrorLabel(from)) + ": detail");
  }

  EtcdSource source(etcd_, "/registry");
  etcd_.InjectFault("range", etcd::ErrorCode::kPermissionDenied);
  auto snapshot = source.ReadSnapshot({});
  ASSERT_FALSE(snapshot.ok());
  EXPECT_EQ(snapshot.error().code, Code::kAuthFailed);
  EXPECT_TRUE(snapshot.error().Fatal());
  EXPECT_NE(snapshot.error().message.find("snapshot"), std::string::npos);

  etcd_.InjectFault("txn", etcd::ErrorCode::kUnavailable);
  auto reread = source.Reread({"/registry/a", "/registry/b"}, {});
  ASSERT_FALSE(reread.ok());
  EXPECT_EQ(reread.error().code, Code::kUnavailable);

  etcd_.InjectFault("range", etcd::ErrorCode::kUnavailable);
  auto point = source.CurrentPoint();
  ASSERT_FALSE(point.ok());
  EXPECT_EQ(point.error().code, Code::kUnavailable);
}

// A client whose watches the test drives by hand (any batches, then an end, then more), to see
// what the source makes of them; everything else goes to a fake.
class ScriptedWatchClient final : public etcd::EtcdClient {
 public:
  explicit ScriptedWatchClient(etcd::FakeEtcdClient& fake) : fake_(fake) {}

  // Calls the watch's callback as the client's callback thread would.
  void Send(etcd::EtcdResult<etcd::WatchEvents> result) {
    std::lock_guard lock(mutex_);
    ASSERT_TRUE(callback_ != nullptr);
    callback_(std::move(result));
  }
  etcd::WatchRequest request() {
    std::lock_guard lock(mutex_);
    return request_;
  }
  bool cancelled() {
    std::lock_guard lock(mutex_);
    return callback_ == nullptr;
  }

  etcd::EtcdResult<etcd::RangeResponse> Range(const etcd::RangeRequest& request,
                                              const etcd::CallOptions& options) override {
    return fake_.Range(request, options);
  }
  void TxnAsync(etcd::TxnRequest request, const etcd::CallOptions& options,
                TxnCallback done) override {
    fake_.TxnAsync(std::move(request), options, std::move(done));
  }
  etcd::EtcdResult<etcd::PutResponse> Put(const std::string& key, const std::string& value,
                                          int64_t lease,
                                          const etcd::CallOptions& options) override {
    return fake_.Put(key, value, lease, options);
  }
  etcd::EtcdResult<etcd::DeleteResponse> Delete(const std::string& key,
                                                const std::string& range_end,
                                                const etcd::CallOptions& options) override {
    return fake_.Delete(key, range_end, options);
  }
  std::unique_ptr<etcd::CallHandle> Watch(const etcd::WatchRequest& request,
                                          WatchCallback callback) override {
    std::lock_guard lock(mutex_);
    request_ = request;
    callback_ = std::move(callback);
    return std::make_unique<Handle>(*this);
  }
  etcd::EtcdResult<etcd::LeaseGrantResponse> LeaseGrant(std::chrono::seconds ttl,
                                                        int64_t id) override {
    return fake_.LeaseGrant(ttl, id);
  }
  etcd::EtcdResult<void> LeaseRevoke(int64_t id) override { return fake_.LeaseRevoke(id); }
  etcd::EtcdResult<etcd::LeaseTimeToLiveResponse> LeaseTimeToLive(int64_t id) override {
    return fake_.LeaseTimeToLive(id);
  }
  std::unique_ptr<etcd::CallHandle> LeaseKeepAlive(int64_t id, LeaseLostCallback lost) override {
    return fake_.LeaseKeepAlive(id, std::move(lost));
  }
  std::unique_ptr<etcd::CallHandle> Campaign(const std::string& name, int64_t lease,
                                             const std::string& value,
                                             CampaignCallback done) override {
    return fake_.Campaign(name, lease, value, std::move(done));
  }
  etcd::EtcdResult<void> Proclaim(const etcd::LeaderKey& leader,
                                  const std::string& value) override {
    return fake_.Proclaim(leader, value);
  }
  etcd::EtcdResult<void> Resign(const etcd::LeaderKey& leader) override {
    return fake_.Resign(leader);
  }
  etcd::EtcdResult<etcd::KeyValue> Leader(const std::string& name) override {
    return fake_.Leader(name);
  }
  std::unique_ptr<etcd::CallHandle> Observe(const std::string& name,
                                            ObserveCallback callback) override {
    return fake_.Observe(name, std::move(callback));
  }
  etcd::EtcdResult<etcd::StatusResponse> Status() override { return fake_.Status(); }
  size_t PendingTxns() const override { return fake_.PendingTxns(); }
  bool OnCallbackThread() const override { return fake_.OnCallbackThread(); }

 private:
  class Handle final : public etcd::CallHandle {
   public:
    explicit Handle(ScriptedWatchClient& client) : client_(client) {}
    void Cancel() override {
      std::lock_guard lock(client_.mutex_);
      client_.callback_ = nullptr;
    }

   private:
    ScriptedWatchClient& client_;
  };

  etcd::FakeEtcdClient& fake_;
  std::mutex mutex_;
  etcd::WatchRequest request_;
  WatchCallback callback_;
};

etcd::WatchEvent PutEvent(const std::string& key, const std::string& value, int64_t revision) {
  etcd::WatchEvent event;
  event.type = etcd::WatchEvent::Type::kPut;
  event.kv = etcd::KeyValue{key, value, revision, revision, 1, 0};
  return event;
}

etcd::WatchEvent DeleteEvent(const std::string& key, int64_t revision) {
  etcd::WatchEvent event;
  event.type = etcd::WatchEvent::Type::kDelete;
  event.kv.key = key;
  event.kv.mod_revision = revision;
  return event;
}

TEST_F(EtcdSourceTest, OneBatchOfSeveralRevisionsBecomesOneChangeSetPerRevision) {
  ScriptedWatchClient client(etcd_);
  const int64_t point = Put("/registry/a", "0");
  EtcdSource source(client, "/registry");
  ASSERT_TRUE(source.OpenAfter(listener_, point).ok());
  EXPECT_EQ(client.request().key, "/registry");
  EXPECT_EQ(client.request().range_end, "/registrz");
  EXPECT_EQ(client.request().start_revision, point + 1);

  etcd::WatchEvents batch;
  batch.events = {PutEvent("/registry/a", "1", point + 1), PutEvent("/registry/b", "1", point + 1),
                  PutEvent("/other", "outside", point + 2), DeleteEvent("/registry/a", point + 3),
                  DeleteEvent("/registry/b", point + 3)};
  client.Send(batch);
  // A repeat of what was delivered is dropped; the next revision goes on.
  etcd::WatchEvents next;
  next.events = {PutEvent("/registry/b", "again", point + 3),
                 PutEvent("/registry/c", "c", point + 4)};
  client.Send(next);
  ASSERT_TRUE(listener_.WaitForSets(3));

  client.Send(Unexpected{etcd::Error{etcd::ErrorCode::kCompacted, "compacted", point + 10}});
  client.Send(Unexpected{etcd::Error{etcd::ErrorCode::kCancelled, "again", 0}});
  etcd::WatchEvents late;
  late.events = {PutEvent("/registry/d", "late", point + 11)};
  client.Send(late);
  ASSERT_TRUE(listener_.WaitForEvents(2));
  source.Close();
  EXPECT_TRUE(client.cancelled());

  const auto sets = listener_.sets();
  ASSERT_EQ(sets.size(), 3u);
  EXPECT_EQ(sets[0].point, point + 1);
  EXPECT_EQ(sets[0].changes.size(), 2u);
  EXPECT_EQ(sets[1].point, point + 3);
  ASSERT_EQ(sets[1].changes.size(), 2u);
  EXPECT_FALSE(sets[1].changes[0].exists);
  EXPECT_EQ(sets[1].changes[1].version, point + 3);
  EXPECT_EQ(sets[2].point, point + 4);
  ASSERT_EQ(sets[2].changes.size(), 1u);
  EXPECT_EQ(sets[2].changes[0].key, "/registry/c");
  EXPECT_EQ(listener_.event_types(), (std::vector<SourceEventType>{SourceEventType::kConnected,
                                                                   SourceEventType::kCompacted}));
}

}  // namespace
}  // namespace zk2etcd::connectors
