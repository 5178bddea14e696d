// The zk2etcd job's writes: the FencedWriter over an EtcdSink, against the in-memory etcd with
// etcd's request size limit (the old sync/fenced_writer_test.cc). Large values arrive, batches
// stay under the limit, and a write etcd refuses fails alone, naming its key.
#include <gtest/gtest.h>

#include <future>
#include <mutex>
#include <random>
#include <thread>

#include "cli/zk2etcd_job_test.h"

namespace zk2etcd::job_test {
namespace {

constexpr size_t kEtcdDefaultMaxRequestBytes = 3 * 1024 * 1024 / 2;  // --max-request-bytes
constexpr size_t kZooKeeperMaxData = 1024 * 1024 - 64;               // about jute.maxbuffer

// Random bytes, so that nothing could compress or share them.
std::string RandomBytes(size_t size, uint64_t seed) {
  std::mt19937_64 random(seed);
  std::string bytes(size, '\0');
  for (char& c : bytes) c = static_cast<char>(random() & 0xff);
  return bytes;
}

class FencedWriterTest : public ::testing::Test {
 protected:
  explicit FencedWriterTest(size_t max_request_bytes = kEtcdDefaultMaxRequestBytes)
      : etcd_(clock_, EtcdOptions(max_request_bytes)) {
    options_.initial_backoff = milliseconds(5);
    options_.max_backoff = milliseconds(50);
  }
  void TearDown() override {
    if (writer_) writer_->Stop();
  }

  static etcd::FakeEtcdOptions EtcdOptions(size_t max_request_bytes) {
    etcd::FakeEtcdOptions options;
    options.max_request_bytes = max_request_bytes;
    return options;
  }

  void StartWriter() {
    writer_ = std::make_unique<FencedWriter>(
        sink_, options_, clock_, nullptr, [this](const SinkWrite& write, const core::SinkError& e) {
          std::lock_guard lock(mutex_);
          refusals_.emplace_back(write.key, e);
        });
  }

  // Submits the writes together (while etcd holds transactions, so that they queue behind the
  // first) and waits for every result.
  std::vector<WriteResult> WriteAll(std::vector<SinkWrite> writes) {
    std::vector<std::promise<WriteResult>> done(writes.size());
    for (size_t i = 0; i < writes.size(); ++i) {
      writer_->Submit(std::move(writes[i]),
                      [&done, i](const WriteResult& result) { done[i].set_value(result); });
    }
    std::vector<WriteResult> results;
    for (auto& promise : done) {
      auto future = promise.get_future();
      EXPECT_EQ(future.wait_for(std::chrono::seconds(20)), std::future_status::ready);
      results.push_back(future.get());
    }
    return results;
  }

  // Waits (at most 10 s) until a transaction is held at etcd, then lets transactions through.
  void ReleaseOnceOneIsHeld() {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (etcd_.TxnsInFlight() == 0 && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::yield();
    }
    etcd_.HoldTxns(false);
  }

  std::optional<std::string> Etcd(const std::string& key) {
    auto kv = etcd_.store().Get(key);
    if (!kv) return std::nullopt;
    return kv->value;
  }

  SystemClock clock_;
  etcd::FakeEtcdClient etcd_;
  core::Scope scope_ = core::Scope::Create({"/dubbo"}, {}).value();
  KeyLayout layout_ = KeyLayout::Create("", "/zk2etcd/meta", scope_).value();
  EtcdSink sink_{etcd_, layout_};
  FencedWriterOptions options_;
  std::unique_ptr<FencedWriter> writer_;
  std::mutex mutex_;
  std::vector<std::pair<std::string, core::SinkError>> refusals_;
};

TEST_F(FencedWriterTest, TheLargestValueZooKeeperAcceptsIsCreatedAndUpdatedByteExact) {
  StartWriter();
  const std::string first = RandomBytes(kZooKeeperMaxData, 1);
  const std::string second = RandomBytes(kZooKeeperMaxData, 2);
  auto results = WriteAll({Put("/dubbo/large", first, 10)});
  ASSERT_TRUE(results[0].ok()) << results[0].error().message;
  EXPECT_EQ(*results[0], WriteOutcome::kApplied);
  EXPECT_EQ(Etcd("/dubbo/large"), first);
  EXPECT_EQ(Etcd("/zk2etcd/meta/dubbo/large"), EncodeZxid(10));
  EXPECT_EQ(sink_.form_resends(), 1u) << "a large create: zxid form, then the fresh form";
  results = WriteAll({Put("/dubbo/large", second, 11)});
  ASSERT_TRUE(results[0].ok()) << results[0].error().message;
  EXPECT_EQ(*results[0], WriteOutcome::kApplied);
  EXPECT_EQ(Etcd("/dubbo/large"), second);
  EXPECT_EQ(sink_.form_resends(), 1u) << "an update applies in the zxid form at once";
  // An older large write is stale, in one round trip.
  results = WriteAll({Put("/dubbo/large", first, 9)});
  EXPECT_EQ(results[0].value(), WriteOutcome::kStale);
  EXPECT_EQ(Etcd("/dubbo/large"), second);
  EXPECT_EQ(writer_->refused_writes(), 0u);
  EXPECT_TRUE(refusals_.empty());
}

TEST_F(FencedWriterTest, BatchesAreSizedByWhatTheirFormsCarry) {
  // Values just small enough for the nested form, which carries them twice: a batch sized by
  // one copy of each would exceed etcd's limit.
  options_.max_txns_in_flight = 1;
  StartWriter();
  etcd_.HoldTxns(true);
  std::vector<SinkWrite> writes;
  for (int i = 0; i < 40; ++i) {
    writes.push_back(Put("/dubbo/k" + std::to_string(i),
                         RandomBytes(connectors::kNestedPutMaxValueBytes, static_cast<uint64_t>(i)),
                         5));
  }
  // Large values batch too, each counted once.
  for (int i = 0; i < 6; ++i) {
    writes.push_back(Put("/dubbo/l" + std::to_string(i),
                         RandomBytes(300 * 1024, static_cast<uint64_t>(100 + i)), 5));
  }
  std::thread release([this] { ReleaseOnceOneIsHeld(); });
  auto results = WriteAll(writes);
  release.join();
  for (size_t i = 0; i < results.size(); ++i) {
    ASSERT_TRUE(results[i].ok()) << writes[i].key << ": " << results[i].error().message;
    EXPECT_EQ(*results[i], WriteOutcome::kApplied);
    EXPECT_EQ(Etcd(writes[i].key), writes[i].value);
  }
  EXPECT_EQ(writer_->refused_writes(), 0u);
  EXPECT_LT(etcd_.Calls("txn"), 40) << "the small ones still go in batches";
}

class SmallRequestLimitTest : public FencedWriterTest {
 protected:
  SmallRequestLimitTest() : FencedWriterTest(256 * 1024) {}
};

TEST_F(SmallRequestLimitTest, AWriteEtcdRefusesFailsAloneNamingItsKeyAndTheOthersApply) {
  options_.max_txns_in_flight = 1;
  StartWriter();
  etcd_.HoldTxns(true);
  std::vector<SinkWrite> writes;
  writes.push_back(Put("/dubbo/first", "v", 3));  // goes alone and is held
  for (int i = 0; i < 9; ++i) writes.push_back(Put("/dubbo/k" + std::to_string(i), "v", 3));
  writes.push_back(Put("/dubbo/too-large", RandomBytes(400 * 1024, 7), 3));
  for (int i = 9; i < 20; ++i) writes.push_back(Put("/dubbo/k" + std::to_string(i), "v", 3));
  // A flat repair refused with the rest splits the same way.
  SinkWrite flat = Put("/dubbo/flat", RandomBytes(300 * 1024, 8), 3);
  flat.observed = SinkWrite::Observed{0, 0, 0};
  writes.push_back(flat);
  for (int i = 20; i < 24; ++i) {
    SinkWrite repair = Put("/dubbo/k" + std::to_string(i), "v", 3);
    repair.observed = SinkWrite::Observed{0, 0, 0};
    writes.push_back(repair);
  }
  std::thread release([this] { ReleaseOnceOneIsHeld(); });
  auto results = WriteAll(writes);
  release.join();
  for (size_t i = 0; i < results.size(); ++i) {
    const std::string& key = writes[i].key;
    if (key == "/dubbo/too-large" || key == "/dubbo/flat") {
      ASSERT_FALSE(results[i].ok()) << key;
      EXPECT_EQ(results[i].error().code, WriteError::Code::kRefused);
      EXPECT_NE(results[i].error().message.find(key), std::string::npos)
          << results[i].error().message;
      EXPECT_NE(results[i].error().message.find("request is too large"), std::string::npos);
      EXPECT_EQ(Etcd(key), std::nullopt);
      continue;
    }
    ASSERT_TRUE(results[i].ok()) << key << ": " << results[i].error().message;
    EXPECT_EQ(*results[i], WriteOutcome::kApplied) << key;
    EXPECT_EQ(Etcd(key), "v") << key;
  }
  EXPECT_EQ(writer_->refused_writes(), 2u);
  std::lock_guard lock(mutex_);
  ASSERT_EQ(refusals_.size(), 2u);
  std::sort(refusals_.begin(), refusals_.end(),
            [](const auto& a, const auto& b) { return a.first < b.first; });
  EXPECT_EQ(refusals_[0].first, "/dubbo/flat");
  EXPECT_EQ(refusals_[1].first, "/dubbo/too-large");
  // etcd's kInvalidArgument, as the sink reports it.
  EXPECT_EQ(refusals_[0].second.code, core::SinkError::Code::kRefused);
  EXPECT_EQ(refusals_[0].second.label, etcd::ErrorLabel(etcd::ErrorCode::kInvalidArgument));
}

TEST_F(SmallRequestLimitTest, ALoneRefusedWriteIsNotRetried) {
  StartWriter();
  auto results = WriteAll({Put("/dubbo/too-large", RandomBytes(300 * 1024, 9), 3)});
  ASSERT_FALSE(results[0].ok());
  EXPECT_EQ(results[0].error().code, WriteError::Code::kRefused);
  EXPECT_EQ(etcd_.Calls("txn"), 1);
  EXPECT_FALSE(writer_->retrying());
}

TEST_F(FencedWriterTest, AdoptionsBatchWithOtherWritesAndKeepTheirOutcomes) {
  options_.max_txns_in_flight = 1;
  StartWriter();
  const int64_t adopted = etcd_.store().PutDirect("/dubbo/adopt", "v");
  const int64_t changed = etcd_.store().PutDirect("/dubbo/changed", "v");
  etcd_.store().PutDirect("/dubbo/changed", "changed meanwhile");
  const int64_t owned = etcd_.store().PutDirect("/dubbo/owned", "v");
  etcd_.store().PutDirect("/zk2etcd/meta/dubbo/owned", EncodeZxid(1));
  auto adopt = [](const std::string& key, int64_t revision) {
    SinkWrite write = Put(key, "", 4);
    write.type = SinkWrite::Type::kAdopt;
    write.claim = revision;
    return write;
  };
  etcd_.HoldTxns(true);
  std::thread release([this] { ReleaseOnceOneIsHeld(); });
  auto results = WriteAll({Put("/dubbo/first", "v", 3), adopt("/dubbo/adopt", adopted),
                           Put("/dubbo/new", "n", 3), adopt("/dubbo/changed", changed),
                           adopt("/dubbo/owned", owned)});
  release.join();
  EXPECT_EQ(results[0].value(), WriteOutcome::kApplied);
  EXPECT_EQ(results[1].value(), WriteOutcome::kApplied);
  EXPECT_EQ(results[2].value(), WriteOutcome::kApplied);
  EXPECT_EQ(results[3].value(), WriteOutcome::kForeign);
  EXPECT_EQ(results[4].value(), WriteOutcome::kStale);
  EXPECT_EQ(Etcd("/zk2etcd/meta/dubbo/adopt"), EncodeZxid(4));
  EXPECT_EQ(Etcd("/dubbo/adopt"), "v");
  EXPECT_EQ(Etcd("/zk2etcd/meta/dubbo/changed"), std::nullopt);
  EXPECT_EQ(Etcd("/zk2etcd/meta/dubbo/owned"), EncodeZxid(1));
  EXPECT_LE(etcd_.Calls("txn"), 2) << "adoptions batch with the other writes";
}

}  // namespace
}  // namespace zk2etcd::job_test
