#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <future>
#include <mutex>
#include <thread>

#include "common/wait_for_testing.h"
#include "core/testing/in_memory_election.h"
#include "core/testing/in_memory_sink.h"
#include "core/testing/in_memory_source.h"

namespace zk2etcd::core::memory {
namespace {

using ::testing::ElementsAre;
using ::testing::Pair;
using Code = SinkError::Code;
using Type = SinkWrite::Type;

// ---- Source ----

class Recorder : public SourceListener {
 public:
  void OnChange(const std::string& key) override {
    std::lock_guard lock(mu_);
    log_.push_back(key);
  }
  void OnSourceEvent(const SourceEvent& event) override {
    std::lock_guard lock(mu_);
    static constexpr const char* kNames[] = {"connected", "disconnected", "reconnected", "lost",
                                             "fatal"};
    log_.push_back(std::string("event:") + kNames[static_cast<int>(event.type)]);
  }
  std::vector<std::string> Log() {
    std::lock_guard lock(mu_);
    return log_;
  }

 private:
  std::mutex mu_;
  std::vector<std::string> log_;
};

Scope TestScope() { return Scope::Create({"/a"}, {"/a/x"}).value(); }

SourceResult<EntryState> ReadAsyncNow(InMemorySource& source, const std::string& key) {
  std::promise<SourceResult<EntryState>> answer;
  source.ReadAsync(key, [&](SourceResult<EntryState> r) { answer.set_value(std::move(r)); });
  return answer.get_future().get();
}

TEST(InMemorySourceTest, SnapshotHoldsTheScopeSortedAtTheCurrentPoint) {
  Recorder recorder;
  InMemorySource source(TestScope());
  source.Put("/a/2", "two");
  source.Put("/ab", "outside");
  source.Put("/a/1", "one");
  source.Put("/a/x/y", "excluded");
  source.Put("/a", "root");
  ASSERT_TRUE(source.Open(recorder).ok());
  auto snapshot = source.ReadSnapshot({});
  ASSERT_TRUE(snapshot.ok());
  EXPECT_EQ(snapshot->point, 5);
  ASSERT_EQ(snapshot->entries.size(), 3u);
  EXPECT_EQ(snapshot->entries[0].key, "/a");
  EXPECT_EQ(snapshot->entries[0].version, 5);
  EXPECT_EQ(snapshot->entries[1].key, "/a/1");
  EXPECT_EQ(snapshot->entries[1].value, "one");
  EXPECT_EQ(snapshot->entries[1].version, 3);
  EXPECT_EQ(snapshot->entries[2].key, "/a/2");
  EXPECT_EQ(snapshot->entries[2].version, 1);
  EXPECT_EQ(source.snapshots_read(), 1u);
  std::atomic<bool> cancel{true};
  SnapshotOptions cancelled;
  cancelled.cancel = &cancel;
  EXPECT_EQ(source.ReadSnapshot(cancelled).error().code, SourceError::Code::kClosed);
}

TEST(InMemorySourceTest, AnnouncesInScopeChangesOnlyWhileOpenAndConnected) {
  Recorder recorder;
  InMemorySource source(TestScope());
  source.Put("/a/before", "v");  // no listener yet
  ASSERT_TRUE(source.Open(recorder).ok());
  source.Put("/a/1", "v");
  source.Put("/b", "v");      // out of scope
  source.Put("/a/x/1", "v");  // excluded
  source.Put("/a/1", "w");
  EXPECT_TRUE(source.Delete("/a/1"));
  EXPECT_FALSE(source.Delete("/a/1"));
  source.Disconnect();
  source.Put("/a/meanwhile", "v");  // missed, like a real stream
  EXPECT_FALSE(source.Status().connected);
  EXPECT_EQ(source.Reread({"/a/1"}, {}).error().code, SourceError::Code::kUnavailable);
  EXPECT_EQ(ReadAsyncNow(source, "/a/1").error().code, SourceError::Code::kUnavailable);
  source.Reconnect();
  source.Put("/a/2", "v");
  source.Drain();
  source.Close();
  source.Close();  // idempotent
  source.Put("/a/3", "v");
  source.Drain();
  EXPECT_THAT(recorder.Log(), ElementsAre("event:connected", "/a/1", "/a/1", "/a/1",
                                          "event:disconnected", "event:reconnected", "/a/2"));
  EXPECT_EQ(source.Reread({"/a/2"}, {}).error().code, SourceError::Code::kClosed);
}

TEST(InMemorySourceTest, ReadsGiveVersionsAndAbsencePointsOnTheSourceThread) {
  Recorder recorder;
  InMemorySource source(TestScope());
  ASSERT_TRUE(source.Open(recorder).ok());
  source.Put("/a/1", "one");
  source.Put("/a/2", "two");
  source.Delete("/a/2");
  auto states = source.Reread({"/a/2", "/a/1"}, {});
  ASSERT_TRUE(states.ok());
  EXPECT_FALSE((*states)[0].exists);
  EXPECT_EQ((*states)[0].observed_at, 3);
  EXPECT_TRUE((*states)[1].exists);
  EXPECT_EQ((*states)[1].value, "one");
  EXPECT_EQ((*states)[1].version, 1);
  EXPECT_EQ((*states)[1].observed_at, 3);

  std::mutex mu;
  std::vector<std::string> order;
  std::thread::id thread;
  for (const std::string key : {"/a/1", "/a/2", "/a/3"}) {
    source.ReadAsync(key, [&, key](SourceResult<EntryState> r) {
      std::lock_guard lock(mu);
      order.push_back(key + (r.ok() && r->exists ? "+" : "-"));
      thread = std::this_thread::get_id();
    });
  }
  source.Drain();
  std::lock_guard lock(mu);
  EXPECT_THAT(order, ElementsAre("/a/1+", "/a/2-", "/a/3-"));
  EXPECT_NE(thread, std::this_thread::get_id());
  EXPECT_EQ(source.reads(), 5u);
}

TEST(InMemorySourceTest, InjectedFailuresAreCountedDown) {
  Recorder recorder;
  InMemorySource source(TestScope());
  source.FailOpen(2, SourceError::Code::kAuthFailed);
  EXPECT_TRUE(source.Open(recorder).error().Fatal());
  EXPECT_TRUE(source.Open(recorder).error().Fatal());
  ASSERT_TRUE(source.Open(recorder).ok());
  source.FailNextReads(3, SourceError::Code::kOther);
  EXPECT_EQ(source.ReadSnapshot({}).error().code, SourceError::Code::kOther);
  EXPECT_EQ(source.Reread({"/a"}, {}).error().code, SourceError::Code::kOther);
  EXPECT_EQ(ReadAsyncNow(source, "/a").error().code, SourceError::Code::kOther);
  EXPECT_TRUE(source.ReadSnapshot({}).ok());
  EXPECT_TRUE(ReadAsyncNow(source, "/a").ok());
}

TEST(InMemorySourceTest, LostEndsTheStreamAndOpenStartsAgain) {
  Recorder first;
  Recorder second;
  InMemorySource source(TestScope());
  ASSERT_TRUE(source.Open(first).ok());
  const int64_t session = source.Status().session_id;
  source.Lose();
  source.Put("/a/1", "v");  // nobody hears it
  EXPECT_FALSE(source.Status().connected);
  EXPECT_EQ(source.ReadSnapshot({}).error().code, SourceError::Code::kUnavailable);
  source.Drain();
  EXPECT_THAT(first.Log(), ElementsAre("event:connected", "event:lost"));

  ASSERT_TRUE(source.Open(second).ok());  // without Close
  EXPECT_TRUE(source.Status().connected);
  EXPECT_NE(source.Status().session_id, session);
  source.Put("/a/2", "v");
  source.Drain();
  EXPECT_THAT(second.Log(), ElementsAre("event:connected", "/a/2"));
  EXPECT_THAT(first.Log(), ElementsAre("event:connected", "event:lost"));
}

TEST(InMemorySourceTest, CloseAnswersReadsStillOwedWithUnavailable) {
  Recorder recorder;
  InMemorySource source(TestScope());
  ASSERT_TRUE(source.Open(recorder).ok());
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  source.ReadAsync("/a", [released](SourceResult<EntryState>) { released.wait(); });
  std::promise<SourceResult<EntryState>> owed;
  source.ReadAsync("/a", [&](SourceResult<EntryState> r) { owed.set_value(std::move(r)); });
  std::thread closer([&] { source.Close(); });
  ASSERT_TRUE(WaitFor([&] { return !source.Status().connected; }));
  release.set_value();
  closer.join();  // Close returned: the owed answer went out before
  auto future = owed.get_future();
  ASSERT_EQ(future.wait_for(std::chrono::seconds(0)), std::future_status::ready);
  EXPECT_EQ(future.get().error().code, SourceError::Code::kUnavailable);
}

// ---- Sink ----

SinkWrite Put(const std::string& key, const std::string& value, int64_t version,
              std::optional<int64_t> claim = std::nullopt) {
  SinkWrite write;
  write.key = key;
  write.value = value;
  write.version = version;
  write.claim = claim;
  return write;
}
SinkWrite Delete(const std::string& key, int64_t version,
                 std::optional<int64_t> claim = std::nullopt) {
  SinkWrite write;
  write.type = Type::kDelete;
  write.key = key;
  write.version = version;
  write.claim = claim;
  return write;
}
SinkWrite Adopt(const std::string& key, int64_t version, std::optional<int64_t> claim) {
  SinkWrite write;
  write.type = Type::kAdopt;
  write.key = key;
  write.version = version;
  write.claim = claim;
  return write;
}

BatchResult Apply(InMemorySink& sink, std::vector<SinkWrite> writes,
                  const std::optional<Fence>& fence = std::nullopt) {
  std::promise<BatchResult> answer;
  std::vector<int> variants(writes.size(), 0);
  sink.ApplyAsync(std::move(writes), std::move(variants), fence,
                  [&](BatchResult r) { answer.set_value(std::move(r)); });
  return answer.get_future().get();
}

// One write alone: its outcome (nullopt if the batch failed).
std::optional<WriteOutcome> One(InMemorySink& sink, SinkWrite write) {
  auto result = Apply(sink, {std::move(write)});
  if (!result.ok()) return std::nullopt;
  return (*result)[0].outcome;
}

TEST(InMemorySinkTest, PutAppliesOverAnOlderOrEqualRecordOrOnNothing) {
  InMemorySink sink;
  EXPECT_EQ(sink.point(), 1);
  EXPECT_EQ(One(sink, Put("/k", "v10", 10)), WriteOutcome::kApplied);
  auto entry = sink.Get("/k");
  ASSERT_TRUE(entry);
  EXPECT_EQ(entry->sink_key, "/sink/k");
  EXPECT_EQ(entry->value, "v10");
  EXPECT_EQ(entry->version, 2);
  ASSERT_TRUE(entry->owner);
  EXPECT_EQ(entry->owner->source_version, 10);
  EXPECT_EQ(entry->owner->record_version, 2);
  EXPECT_EQ(One(sink, Put("/k", "again", 10)), WriteOutcome::kApplied);  // equal: applies
  EXPECT_EQ(One(sink, Put("/k", "v9", 9)), WriteOutcome::kStale);
  EXPECT_EQ(One(sink, Put("/k", "v11", 11)), WriteOutcome::kApplied);
  EXPECT_EQ(sink.Get("/k")->value, "v11");
  EXPECT_EQ(sink.point(), 4);  // the stale batch changed nothing

  sink.PutForeign("/foreign", "theirs");
  EXPECT_EQ(One(sink, Put("/foreign", "ours", 100)), WriteOutcome::kForeign);
  sink.PutRecord("/leftover", 50);
  EXPECT_EQ(One(sink, Put("/leftover", "old", 49)), WriteOutcome::kStale);
  EXPECT_EQ(One(sink, Put("/leftover", "new", 50)), WriteOutcome::kApplied);
  sink.PutRecord("/none", INT64_MAX);  // a record holding no version: newer than anything
  EXPECT_EQ(One(sink, Put("/none", "v", 1 << 30)), WriteOutcome::kStale);
  EXPECT_EQ(sink.Values().at("/foreign"), "theirs");
}

TEST(InMemorySinkTest, DeleteAppliesOverAStrictlyOlderRecord) {
  InMemorySink sink;
  sink.PutOwned("/k", "v", 10);
  EXPECT_EQ(One(sink, Delete("/k", 10)), WriteOutcome::kStale);
  EXPECT_EQ(One(sink, Delete("/k", 11)), WriteOutcome::kApplied);
  EXPECT_FALSE(sink.Get("/k"));
  EXPECT_EQ(One(sink, Delete("/k", 12)), WriteOutcome::kAlreadyAbsent);
  sink.PutForeign("/foreign", "theirs");
  EXPECT_EQ(One(sink, Delete("/foreign", 100)), WriteOutcome::kForeign);
  sink.PutRecord("/leftover", 5);
  EXPECT_EQ(One(sink, Delete("/leftover", 6)), WriteOutcome::kApplied);
  EXPECT_THAT(sink.Keys(), ElementsAre("/foreign"));
  EXPECT_EQ(sink.Size(), 1u);
}

TEST(InMemorySinkTest, ClaimsApplyOnlyToTheExactEntryWithoutARecord) {
  InMemorySink sink;
  const int64_t version = sink.PutForeign("/f", "theirs");
  EXPECT_EQ(One(sink, Put("/f", "ours", 7, version + 1)), WriteOutcome::kForeign);
  EXPECT_EQ(One(sink, Put("/f", "ours", 7, version)), WriteOutcome::kApplied);
  auto entry = sink.Get("/f");
  EXPECT_EQ(entry->value, "ours");
  ASSERT_TRUE(entry->owner);
  EXPECT_EQ(entry->owner->source_version, 7);
  // Now it has a record: a claim no longer applies.
  EXPECT_EQ(One(sink, Put("/f", "again", 8, entry->version)), WriteOutcome::kStale);

  const int64_t g = sink.PutForeign("/g", "theirs");
  EXPECT_EQ(One(sink, Delete("/g", 1, g - 1)), WriteOutcome::kForeign);
  EXPECT_EQ(One(sink, Delete("/g", 1, g)), WriteOutcome::kApplied);
  EXPECT_FALSE(sink.Get("/g"));
  EXPECT_EQ(One(sink, Delete("/g", 1, g)), WriteOutcome::kAlreadyAbsent);
  EXPECT_EQ(One(sink, Put("/g", "v", 1, g)), WriteOutcome::kStale);  // vanished meanwhile
}

TEST(InMemorySinkTest, AdoptWritesOnlyTheRecordOfTheClaimedEntry) {
  InMemorySink sink;
  const int64_t version = sink.PutForeign("/f", "same");
  EXPECT_EQ(One(sink, Adopt("/f", 7, std::nullopt)), WriteOutcome::kForeign);
  EXPECT_EQ(One(sink, Adopt("/f", 7, version - 1)), WriteOutcome::kForeign);
  EXPECT_EQ(One(sink, Adopt("/f", 7, version)), WriteOutcome::kApplied);
  auto entry = sink.Get("/f");
  EXPECT_EQ(entry->value, "same");
  EXPECT_EQ(entry->version, version);  // the value was not written
  ASSERT_TRUE(entry->owner);
  EXPECT_EQ(entry->owner->source_version, 7);
  EXPECT_EQ(entry->owner->record_version, sink.point());
  EXPECT_EQ(One(sink, Adopt("/f", 8, version)), WriteOutcome::kStale);  // a record exists
  EXPECT_EQ(One(sink, Adopt("/absent", 8, 5)), WriteOutcome::kForeign);
}

TEST(InMemorySinkTest, ABatchIsOnePointAndAnswersWriteByWrite) {
  InMemorySink sink;
  sink.PutOwned("/b", "old", 5);
  sink.PutForeign("/c", "theirs");
  auto result =
      Apply(sink, {Put("/a", "1", 10), Put("/b", "2", 4), Put("/c", "3", 10), Delete("/d", 10)});
  ASSERT_TRUE(result.ok());
  ASSERT_EQ(result->size(), 4u);
  EXPECT_EQ((*result)[0].outcome, WriteOutcome::kApplied);
  EXPECT_EQ((*result)[1].outcome, WriteOutcome::kStale);
  EXPECT_EQ((*result)[2].outcome, WriteOutcome::kForeign);
  EXPECT_EQ((*result)[3].outcome, WriteOutcome::kAlreadyAbsent);
  EXPECT_EQ(sink.point(), 4);
  EXPECT_EQ(sink.Get("/a")->version, 4);
  EXPECT_EQ(sink.batches_applied(), 1u);
  EXPECT_EQ(sink.writes_applied(), 1u);
  EXPECT_EQ(sink.max_batch_seen(), 4u);
}

TEST(InMemorySinkTest, FencedBatchesApplyOnlyUnderTheValidFence) {
  InMemorySink sink;
  const Fence leader{"/election/r1", 7};
  EXPECT_EQ(Apply(sink, {Put("/k", "v", 1)}, leader).error().code, Code::kNotLeader);  // none
  sink.SetFence(leader);
  EXPECT_TRUE(Apply(sink, {Put("/k", "v", 1)}, leader).ok());
  EXPECT_EQ(Apply(sink, {Put("/k", "w", 2)}, Fence{"/election/r1", 8}).error().code,
            Code::kNotLeader);
  EXPECT_EQ(Apply(sink, {Put("/k", "w", 2)}, Fence{"/election/r2", 7}).error().code,
            Code::kNotLeader);
  EXPECT_EQ(sink.Get("/k")->value, "v");               // nothing applied
  EXPECT_TRUE(Apply(sink, {Put("/k", "w", 2)}).ok());  // unfenced
  EXPECT_EQ(sink.Get("/k")->value, "w");
  EXPECT_FALSE(Apply(sink, {Put("/k", "x", 3)}, Fence{"/election/r1", 8}).error().Retryable());
}

TEST(InMemorySinkTest, InjectedFailuresApplyNothing) {
  InMemorySink sink;
  sink.FailNextApplies(2);
  auto failed = Apply(sink, {Put("/k", "v", 1)});
  EXPECT_TRUE(failed.error().Retryable());
  EXPECT_EQ(failed.error().label, "unavailable");
  EXPECT_FALSE(Apply(sink, {Put("/k", "v", 1)}).ok());
  EXPECT_FALSE(sink.Get("/k"));
  EXPECT_EQ(One(sink, Put("/k", "v", 1)), WriteOutcome::kApplied);

  sink.FailNextReads(3, Code::kOther);
  EXPECT_FALSE(sink.CurrentPoint().ok());
  EXPECT_FALSE(sink.Read({"/k"}).ok());
  EXPECT_FALSE(sink.List("/", {})->Next().ok());
  EXPECT_EQ(sink.CurrentPoint().value(), 2);
}

// A writer's split on kRefused, as the engine's would do: halves until single writes.
void SplitApply(InMemorySink& sink, std::vector<SinkWrite> writes,
                std::vector<std::string>* refused) {
  auto result = Apply(sink, writes);
  if (result.ok()) return;
  ASSERT_EQ(result.error().code, Code::kRefused);
  if (writes.size() == 1) {
    refused->push_back(writes[0].key);
    return;
  }
  const auto half = writes.begin() + static_cast<std::ptrdiff_t>(writes.size() / 2);
  SplitApply(sink, {writes.begin(), half}, refused);
  SplitApply(sink, {half, writes.end()}, refused);
}

TEST(InMemorySinkTest, ARefusedKeyFailsEveryBatchHoldingItSoAWriterSplitsDownToIt) {
  InMemorySink sink;
  sink.RefuseKey("/k5");
  std::vector<SinkWrite> writes;
  for (int i = 0; i < 8; ++i) writes.push_back(Put("/k" + std::to_string(i), "v", 1));
  std::vector<std::string> refused;
  SplitApply(sink, writes, &refused);
  EXPECT_THAT(refused, ElementsAre("/k5"));
  EXPECT_EQ(sink.Size(), 7u);
  EXPECT_FALSE(sink.Get("/k5"));
  sink.ClearRefusedKeys();
  EXPECT_EQ(One(sink, Put("/k5", "v", 1)), WriteOutcome::kApplied);
}

TEST(InMemorySinkTest, BatchesOverTheLimitsAreRefused) {
  InMemorySink sink(InMemorySink::Options{"/p", 2, 10});
  EXPECT_EQ(sink.SinkKeyFor("/k"), "/p/k");
  EXPECT_EQ(sink.Limits(sink.BatchClass(sink.DefaultVariant(Put("/k", "v", 1)))).max_writes, 2u);
  EXPECT_EQ(sink.Cost(Put("/k", "value", 1), 0).bytes, 7u);
  EXPECT_EQ(Apply(sink, {Put("/a", "", 1), Put("/b", "", 1), Put("/c", "", 1)}).error().code,
            Code::kRefused);
  EXPECT_EQ(Apply(sink, {Put("/a", "0123456789", 1)}).error().code, Code::kRefused);
  EXPECT_TRUE(Apply(sink, {Put("/a", "", 1), Put("/b", "", 1)}).ok());
}

TEST(InMemorySinkTest, PausedBatchesApplyInOrderOnResumeOnTheSinkThread) {
  InMemorySink sink;
  const Fence leader{"/election/r1", 1};
  sink.SetFence(leader);
  sink.PauseApplies();
  std::mutex mu;
  std::vector<std::string> answers;
  std::thread::id thread;
  for (int i = 0; i < 3; ++i) {
    const std::string key = "/k" + std::to_string(i);
    sink.ApplyAsync({Put(key, "v", 1)}, {0}, leader, [&, key](BatchResult r) {
      std::lock_guard lock(mu);
      answers.push_back(key + (r.ok() ? ":ok" : ":" + r.error().label));
      thread = std::this_thread::get_id();
    });
  }
  sink.Drain();
  EXPECT_EQ(sink.Size(), 0u);
  {
    std::lock_guard lock(mu);
    EXPECT_TRUE(answers.empty());
  }
  sink.SetFence(Fence{"/election/r2", 2});  // deposed while the batches were held
  sink.ResumeApplies();
  sink.Drain();
  std::lock_guard lock(mu);
  EXPECT_THAT(answers, ElementsAre("/k0:not_leader", "/k1:not_leader", "/k2:not_leader"));
  EXPECT_NE(thread, std::this_thread::get_id());
  EXPECT_EQ(sink.batches_submitted(), 3u);
}

std::vector<std::pair<std::string, std::optional<std::string>>> ListAll(
    InMemorySink& sink, const std::string& prefix, int64_t point, int64_t* read_at = nullptr,
    std::optional<Code>* error = nullptr) {
  ListOptions options;
  options.point = point;
  auto cursor = sink.List(prefix, options);
  cursor->Start();
  std::vector<std::pair<std::string, std::optional<std::string>>> entries;
  for (;;) {
    auto next = cursor->Next();
    if (!next.ok()) {
      if (error != nullptr) *error = next.error().code;
      return entries;
    }
    if (!*next) break;
    entries.emplace_back((*next)->key, (*next)->value);
  }
  if (read_at != nullptr) *read_at = cursor->point();
  return entries;
}

TEST(InMemorySinkTest, ListsAPrefixInKeyOrderAtAPointWithLeftovers) {
  InMemorySink sink;
  sink.PutOwned("/a/2", "two", 1);
  sink.PutOwned("/ab", "outside", 1);
  sink.PutForeign("/a", "root");
  const int64_t before = sink.PutRecord("/a/1", 9);  // a leftover
  EXPECT_EQ(One(sink, Put("/a/2", "new", 2)), WriteOutcome::kApplied);
  EXPECT_EQ(One(sink, Delete("/a/1", 10)), WriteOutcome::kApplied);

  int64_t read_at = 0;
  EXPECT_THAT(ListAll(sink, "/a", 0, &read_at),
              ElementsAre(Pair("/a", "root"), Pair("/a/2", "new")));
  EXPECT_EQ(read_at, sink.point());
  EXPECT_THAT(ListAll(sink, "/a", before, &read_at),
              ElementsAre(Pair("/a", "root"), Pair("/a/1", std::nullopt), Pair("/a/2", "two")));
  EXPECT_EQ(read_at, before);
  EXPECT_EQ(ListAll(sink, "/", 0).size(), 3u);

  std::optional<Code> error;
  ListAll(sink, "/a", sink.point() + 1, nullptr, &error);
  EXPECT_EQ(error, Code::kOther);
  sink.Compact(before + 1);
  ListAll(sink, "/a", before, nullptr, &error);
  EXPECT_EQ(error, Code::kCompacted);

  auto read = sink.Read({"/a/1", "/a/2"});
  ASSERT_TRUE(read.ok());
  EXPECT_FALSE((*read)[0].value);
  EXPECT_FALSE((*read)[0].owner);
  EXPECT_EQ((*read)[0].sink_key, "/sink/a/1");
  EXPECT_EQ((*read)[1].value, "new");
}

// ---- Election ----

class Events {
 public:
  std::function<void(const ElectionEvent&)> Callback() {
    return [this](const ElectionEvent& e) {
      std::lock_guard lock(mu_);
      events_.push_back(e);
    };
  }
  std::vector<ElectionEvent> Get() {
    std::lock_guard lock(mu_);
    return events_;
  }

 private:
  std::mutex mu_;
  std::vector<ElectionEvent> events_;
};

TEST(InMemoryElectionTest, LeadershipPassesInLineAndTheSinkFenceFollows) {
  InMemorySink sink;
  auto group = std::make_shared<InMemoryElectionGroup>();
  Events e1;
  Events e2;
  group->AttachSink(&sink);
  InMemoryElection r1(group, "r1");
  InMemoryElection r2(group, "r2");
  auto c1 = r1.Campaign(e1.Callback());
  ASSERT_TRUE(c1.ok());
  auto c2 = r2.Campaign(e2.Callback());
  ASSERT_TRUE(c2.ok());
  r1.Drain();
  r2.Drain();
  ASSERT_EQ(e1.Get().size(), 1u);
  const ElectionEvent elected = e1.Get()[0];
  EXPECT_EQ(elected.type, ElectionEvent::Type::kElected);
  EXPECT_EQ(elected.campaign, *c1);
  EXPECT_EQ(elected.fence.key, "/election/r1");
  EXPECT_TRUE(e2.Get().empty());
  EXPECT_EQ(group->Leader(), "r1");
  EXPECT_EQ(group->Campaigns(), 2u);
  EXPECT_EQ(sink.fence()->revision, elected.fence.revision);
  EXPECT_TRUE(Apply(sink, {Put("/k", "v", 1)}, elected.fence).ok());

  r1.Resign();
  r2.Drain();
  ASSERT_EQ(e2.Get().size(), 1u);
  const ElectionEvent next = e2.Get()[0];
  EXPECT_EQ(next.type, ElectionEvent::Type::kElected);
  EXPECT_EQ(next.campaign, *c2);
  EXPECT_EQ(next.fence.key, "/election/r2");
  EXPECT_NE(next.fence.revision, elected.fence.revision);
  EXPECT_EQ(Apply(sink, {Put("/k", "w", 2)}, elected.fence).error().code, Code::kNotLeader);
  EXPECT_TRUE(Apply(sink, {Put("/k", "w", 2)}, next.fence).ok());
  EXPECT_EQ(e1.Get().size(), 1u);  // nothing after its own Resign
  EXPECT_NE(r1.Describe().find("r1"), std::string::npos);
}

TEST(InMemoryElectionTest, DeposedLeaderHearsEndedAndCampaignsAgain) {
  InMemorySink sink;
  auto group = std::make_shared<InMemoryElectionGroup>("/lock");
  Events e1;
  InMemoryElection r1(group, "r1");
  auto c1 = r1.Campaign(e1.Callback());
  ASSERT_TRUE(c1.ok());
  group->AttachSink(&sink);
  EXPECT_EQ(sink.fence()->key, "/lock/r1");
  group->Depose("lease lost");
  EXPECT_FALSE(sink.fence());
  EXPECT_EQ(group->Leader(), "");
  r1.Drain();
  auto events = e1.Get();
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[1].type, ElectionEvent::Type::kEnded);
  EXPECT_EQ(events[1].campaign, *c1);
  EXPECT_EQ(events[1].reason, "lease lost");
  group->Depose();  // no leader: nothing

  r1.Abandon();
  r1.Abandon();  // idempotent
  r1.FailNextCampaigns(1);
  EXPECT_FALSE(r1.Campaign(e1.Callback()).ok());
  auto c2 = r1.Campaign(e1.Callback());
  ASSERT_TRUE(c2.ok());
  EXPECT_NE(*c2, *c1);
  r1.Drain();
  events = e1.Get();
  ASSERT_EQ(events.size(), 3u);
  EXPECT_EQ(events[2].type, ElectionEvent::Type::kElected);
  EXPECT_EQ(events[2].campaign, *c2);
  EXPECT_EQ(sink.fence()->revision, events[2].fence.revision);
  group->AttachSink(nullptr);
}

TEST(InMemoryElectionTest, AWaitingCampaignThatLeavesIsNeverElected) {
  auto group = std::make_shared<InMemoryElectionGroup>();
  Events e1;
  Events e2;
  Events e3;
  InMemoryElection r1(group, "r1");
  ASSERT_TRUE(r1.Campaign(e1.Callback()).ok());
  {
    InMemoryElection r2(group, "r2");
    ASSERT_TRUE(r2.Campaign(e2.Callback()).ok());
  }  // destroyed: abandoned
  InMemoryElection r3(group, "r3");
  ASSERT_TRUE(r3.Campaign(e3.Callback()).ok());
  group->Depose();
  r3.Drain();
  EXPECT_TRUE(e2.Get().empty());
  ASSERT_EQ(e3.Get().size(), 1u);
  EXPECT_EQ(group->Leader(), "r3");
}

}  // namespace
}  // namespace zk2etcd::core::memory
