#include "core/testing/in_memory_sink.h"

#include <algorithm>
#include <thread>
#include <utility>

#include "core/scope.h"

namespace zk2etcd::core::memory {
namespace {

SinkError Error(SinkError::Code code, std::string what) {
  static constexpr const char* kLabels[] = {"unavailable", "not_leader", "refused",
                                            "compacted",   "cancelled",  "other"};
  return SinkError{code, "in-memory sink: " + std::move(what), kLabels[static_cast<int>(code)]};
}

}  // namespace

class InMemorySink::Cursor : public SinkCursor {
 public:
  Cursor(InMemorySink& sink, std::string prefix, int64_t point)
      : sink_(sink), prefix_(std::move(prefix)), requested_(point) {}

  void Start() override {
    if (requested_ != 0) Load();
  }
  SinkResult<std::optional<SinkEntry>> Next() override {
    Load();
    if (error_) return Unexpected(*error_);
    if (next_ == entries_.size()) return std::optional<SinkEntry>();
    return std::optional<SinkEntry>(entries_[next_++]);
  }
  int64_t point() const override { return point_; }

 private:
  void Load() {
    if (loaded_) return;
    loaded_ = true;
    // A far sink's round trip, outside the sink's lock.
    if (sink_.options_.list_delay.count() > 0)
      std::this_thread::sleep_for(sink_.options_.list_delay);
    auto point = sink_.ListAt(prefix_, requested_, &entries_);
    if (point.ok()) {
      point_ = *point;
    } else {
      error_ = point.error();
    }
  }

  InMemorySink& sink_;
  const std::string prefix_;
  const int64_t requested_;
  bool loaded_ = false;
  int64_t point_ = 0;
  std::vector<SinkEntry> entries_;
  size_t next_ = 0;
  std::optional<SinkError> error_;
};

InMemorySink::InMemorySink(Options options) : options_(std::move(options)) {}

InMemorySink::~InMemorySink() {
  std::deque<Batch> held;
  {
    std::lock_guard lock(mu_);
    held.swap(queue_);
  }
  for (auto& batch : held) {
    worker_.Post([done = std::move(batch.done)] {
      done(Unexpected(Error(SinkError::Code::kCancelled, "sink destroyed")));
    });
  }
}

std::unique_ptr<SinkCursor> InMemorySink::List(const std::string& source_prefix,
                                               const ListOptions& options) {
  return std::make_unique<Cursor>(*this, source_prefix, options.point);
}

SinkResult<int64_t> InMemorySink::CurrentPoint() {
  std::lock_guard lock(mu_);
  ++points_read_;
  if (auto error = ReadErrorLocked()) return Unexpected(std::move(*error));
  return point_;
}

SinkResult<std::vector<SinkEntry>> InMemorySink::Read(const std::vector<std::string>& keys) {
  std::lock_guard lock(mu_);
  if (auto error = ReadErrorLocked()) return Unexpected(std::move(*error));
  std::vector<SinkEntry> entries;
  entries.reserve(keys.size());
  for (const auto& key : keys) entries.push_back(EntryFor(key, CurrentLocked(key)));
  return entries;
}

std::string InMemorySink::SinkKeyFor(std::string_view key) const {
  return options_.key_prefix + std::string(key);
}

int InMemorySink::DefaultVariant(const SinkWrite& /*write*/) const { return 0; }

int InMemorySink::BatchClass(int /*variant*/) const { return 0; }

BatchLimits InMemorySink::Limits(int /*batch_class*/) const {
  BatchLimits limits;
  limits.max_writes = options_.max_writes;
  limits.max_bytes = options_.max_bytes;
  return limits;
}

WriteCost InMemorySink::Cost(const SinkWrite& write, int /*variant*/) const {
  return {write.key.size() + write.value.size(), 0};
}

void InMemorySink::ApplyAsync(std::vector<SinkWrite> writes, std::vector<int> variants,
                              const std::optional<Fence>& fence,
                              std::function<void(BatchResult)> done) {
  if (variants.size() != writes.size()) {
    ContractViolation("InMemorySink::ApplyAsync: one variant per write");
  }
  std::set<std::string> keys;
  for (const auto& write : writes) {
    if (!keys.insert(write.key).second) {
      ContractViolation("InMemorySink::ApplyAsync: a key twice in one batch");
    }
  }
  Enqueue({std::move(writes), std::move(variants), fence, std::move(done), std::nullopt});
}

void InMemorySink::Enqueue(Batch batch) {
  {
    std::lock_guard lock(mu_);
    ++batches_submitted_;
    max_batch_seen_ = std::max(max_batch_seen_, batch.writes.size());
    queue_.push_back(std::move(batch));
  }
  worker_.Post([this] { ProcessQueue(); });
}

SinkResult<std::optional<int64_t>> InMemorySink::ReadCheckpoint() {
  std::lock_guard lock(mu_);
  if (auto error = ReadErrorLocked()) return Unexpected(std::move(*error));
  return checkpoint_;
}

BatchLimits InMemorySink::AtomicLimits() const {
  BatchLimits limits = Limits(0);
  limits.max_writes = limits.max_writes > 1 ? limits.max_writes - 1 : 1;
  if (options_.max_atomic_bytes != 0) limits.max_bytes = options_.max_atomic_bytes;
  return limits;
}

void InMemorySink::ApplyAtomicAsync(std::vector<SinkWrite> writes, int64_t checkpoint,
                                    const std::optional<Fence>& fence,
                                    std::function<void(BatchResult)> done) {
  std::set<std::string> keys;
  for (const auto& write : writes) {
    if (!keys.insert(write.key).second) {
      ContractViolation("InMemorySink::ApplyAtomicAsync: a key twice in one batch");
    }
  }
  std::vector<int> variants(writes.size(), 0);
  Enqueue({std::move(writes), std::move(variants), fence, std::move(done), checkpoint});
}

std::optional<int64_t> InMemorySink::checkpoint() const {
  std::lock_guard lock(mu_);
  return checkpoint_;
}

size_t InMemorySink::atomic_batches_applied() const {
  std::lock_guard lock(mu_);
  return atomic_batches_applied_;
}

void InMemorySink::ProcessQueue() {
  for (;;) {
    std::function<void(BatchResult)> done;
    std::optional<BatchResult> result;
    {
      std::lock_guard lock(mu_);
      if (paused_ || queue_.empty()) return;
      Batch batch = std::move(queue_.front());
      queue_.pop_front();
      result.emplace(ApplyLocked(batch));
      done = std::move(batch.done);
    }
    done(std::move(*result));
  }
}

BatchResult InMemorySink::ApplyLocked(const Batch& batch) {
  if (fail_applies_ > 0) {
    --fail_applies_;
    return Unexpected(Error(fail_apply_code_, "batch failed (injected)"));
  }
  size_t bytes = 0;
  for (size_t i = 0; i < batch.writes.size(); ++i) {
    const SinkWrite& write = batch.writes[i];
    if (batch.variants[i] != 0) return Unexpected(Error(SinkError::Code::kOther, "no variant"));
    if (refused_.count(write.key) != 0) {
      return Unexpected(Error(SinkError::Code::kRefused, "key refused: " + write.key));
    }
    bytes += Cost(write, 0).bytes;
  }
  const size_t max_writes = batch.checkpoint ? AtomicLimits().max_writes : options_.max_writes;
  const size_t max_bytes = batch.checkpoint ? AtomicLimits().max_bytes : options_.max_bytes;
  if (batch.writes.size() > max_writes || bytes > max_bytes) {
    return Unexpected(Error(SinkError::Code::kRefused, "batch over the limits"));
  }
  if (batch.fence &&
      !(fence_ && fence_->key == batch.fence->key && fence_->revision == batch.fence->revision)) {
    return Unexpected(Error(SinkError::Code::kNotLeader, "fence " + batch.fence->key + " failed"));
  }

  const int64_t next = point_ + 1;
  bool changed = false;
  std::vector<WriteAnswer> answers;
  answers.reserve(batch.writes.size());
  for (const SinkWrite& write : batch.writes) {
    if (skipped_.count(write.key) != 0) {
      answers.push_back(WriteAnswer{std::nullopt, std::nullopt, "skipped (test)", true});
      continue;
    }
    const Stored* now = CurrentLocked(write.key);
    const bool has_value = now != nullptr && now->value.has_value();
    const bool has_owner = now != nullptr && now->owner.has_value();
    const int64_t version = has_value ? now->version : 0;
    bool applies = false;
    if (write.claim || write.type == SinkWrite::Type::kAdopt) {
      applies = !has_owner && write.claim && version == *write.claim;
    } else if (write.type == SinkWrite::Type::kPut) {
      applies = has_owner ? now->owner->source_version <= write.version : !has_value;
    } else {
      applies = has_owner && now->owner->source_version < write.version;
    }

    WriteOutcome outcome = WriteOutcome::kApplied;
    if (applies) {
      std::optional<Stored> state;
      const OwnerRecord record{write.version, next};
      switch (write.type) {
        case SinkWrite::Type::kPut:
          state = Stored{write.value, next, record};
          break;
        case SinkWrite::Type::kDelete:
          break;
        case SinkWrite::Type::kAdopt:
          state = now != nullptr ? Stored{now->value, now->version, record}
                                 : Stored{std::nullopt, 0, record};  // claimed absence (0)
          break;
      }
      if (state || now != nullptr) {
        data_[write.key].push_back({next, std::move(state)});
        changed = true;
      }
      ++writes_applied_;
    } else if (has_owner) {
      outcome = WriteOutcome::kStale;
    } else if (has_value) {
      outcome = WriteOutcome::kForeign;
    } else if (write.type == SinkWrite::Type::kDelete) {
      outcome = WriteOutcome::kAlreadyAbsent;
    } else {
      outcome =
          write.type == SinkWrite::Type::kAdopt ? WriteOutcome::kForeign : WriteOutcome::kStale;
    }
    answers.push_back(WriteAnswer{outcome, std::nullopt, {}});
  }
  if (batch.checkpoint) {
    checkpoint_ = *batch.checkpoint;
    ++atomic_batches_applied_;
    changed = true;
  }
  if (changed) point_ = next;
  ++batches_applied_;
  return answers;
}

void InMemorySink::SetFence(std::optional<Fence> fence) {
  std::lock_guard lock(mu_);
  fence_ = std::move(fence);
}

std::optional<Fence> InMemorySink::fence() const {
  std::lock_guard lock(mu_);
  return fence_;
}

int64_t InMemorySink::PutForeign(const std::string& key, const std::string& value) {
  std::lock_guard lock(mu_);
  const Stored* now = CurrentLocked(key);
  return ChangeLocked(key,
                      Stored{value, point_ + 1, now ? now->owner : std::optional<OwnerRecord>()});
}

int64_t InMemorySink::PutOwned(const std::string& key, const std::string& value,
                               int64_t source_version) {
  std::lock_guard lock(mu_);
  return ChangeLocked(key, Stored{value, point_ + 1, OwnerRecord{source_version, point_ + 1}});
}

int64_t InMemorySink::PutRecord(const std::string& key, int64_t source_version) {
  std::lock_guard lock(mu_);
  const Stored* now = CurrentLocked(key);
  Stored state = now ? *now : Stored{};
  state.owner = OwnerRecord{source_version, point_ + 1};
  return ChangeLocked(key, std::move(state));
}

int64_t InMemorySink::DeleteValue(const std::string& key) {
  std::lock_guard lock(mu_);
  const Stored* now = CurrentLocked(key);
  if (now == nullptr || !now->owner) return ChangeLocked(key, std::nullopt);
  return ChangeLocked(key, Stored{std::nullopt, 0, now->owner});
}

void InMemorySink::Compact(int64_t point) {
  std::lock_guard lock(mu_);
  compacted_ = std::max(compacted_, point);
}

std::optional<SinkEntry> InMemorySink::Get(const std::string& key) const {
  std::lock_guard lock(mu_);
  const Stored* now = CurrentLocked(key);
  if (now == nullptr) return std::nullopt;
  return EntryFor(key, now);
}

std::vector<std::string> InMemorySink::Keys() const {
  std::lock_guard lock(mu_);
  std::vector<std::string> keys;
  for (const auto& [key, revisions] : data_) {
    if (CurrentLocked(key) != nullptr) keys.push_back(key);
  }
  return keys;
}

size_t InMemorySink::Size() const { return Keys().size(); }

std::map<std::string, std::string> InMemorySink::Values() const {
  std::lock_guard lock(mu_);
  std::map<std::string, std::string> values;
  for (const auto& [key, revisions] : data_) {
    const Stored* now = CurrentLocked(key);
    if (now != nullptr && now->value) values.emplace(key, *now->value);
  }
  return values;
}

int64_t InMemorySink::point() const {
  std::lock_guard lock(mu_);
  return point_;
}

void InMemorySink::FailNextApplies(int n, SinkError::Code code) {
  std::lock_guard lock(mu_);
  fail_applies_ = n;
  fail_apply_code_ = code;
}

void InMemorySink::FailNextReads(int n, SinkError::Code code) {
  std::lock_guard lock(mu_);
  fail_reads_ = n;
  fail_read_code_ = code;
}

void InMemorySink::RefuseKey(const std::string& key) {
  std::lock_guard lock(mu_);
  refused_.insert(key);
}

void InMemorySink::SkipKey(const std::string& key) {
  std::lock_guard lock(mu_);
  skipped_.insert(key);
}

void InMemorySink::ClearRefusedKeys() {
  std::lock_guard lock(mu_);
  refused_.clear();
}

void InMemorySink::PauseApplies() {
  std::lock_guard lock(mu_);
  paused_ = true;
}

void InMemorySink::ResumeApplies() {
  {
    std::lock_guard lock(mu_);
    paused_ = false;
  }
  worker_.Post([this] { ProcessQueue(); });
}

void InMemorySink::Drain() { worker_.Flush(); }

size_t InMemorySink::batches_applied() const {
  std::lock_guard lock(mu_);
  return batches_applied_;
}

size_t InMemorySink::writes_applied() const {
  std::lock_guard lock(mu_);
  return writes_applied_;
}

size_t InMemorySink::max_batch_seen() const {
  std::lock_guard lock(mu_);
  return max_batch_seen_;
}

size_t InMemorySink::points_read() const {
  std::lock_guard lock(mu_);
  return points_read_;
}

size_t InMemorySink::listings_read() const {
  std::lock_guard lock(mu_);
  return listings_read_;
}

size_t InMemorySink::batches_submitted() const {
  std::lock_guard lock(mu_);
  return batches_submitted_;
}

const InMemorySink::Stored* InMemorySink::StateAt(const std::string& key, int64_t point) const {
  auto it = data_.find(key);
  if (it == data_.end()) return nullptr;
  // The last revision at or before `point`.
  const auto& revisions = it->second;
  auto after = std::upper_bound(revisions.begin(), revisions.end(), point,
                                [](int64_t p, const Revision& r) { return p < r.point; });
  if (after == revisions.begin()) return nullptr;
  const auto& state = std::prev(after)->state;
  return state ? &*state : nullptr;
}

SinkEntry InMemorySink::EntryFor(const std::string& key, const Stored* state) const {
  SinkEntry entry;
  entry.key = key;
  entry.sink_key = SinkKeyFor(key);
  if (state != nullptr) {
    entry.value = state->value;
    entry.version = state->version;
    entry.owner = state->owner;
  }
  return entry;
}

int64_t InMemorySink::ChangeLocked(const std::string& key, std::optional<Stored> state) {
  data_[key].push_back({++point_, std::move(state)});
  return point_;
}

std::optional<SinkError> InMemorySink::ReadErrorLocked() {
  if (fail_reads_ == 0) return std::nullopt;
  --fail_reads_;
  return Error(fail_read_code_, "read failed (injected)");
}

SinkResult<int64_t> InMemorySink::ListAt(const std::string& prefix, int64_t point,
                                         std::vector<SinkEntry>* entries) {
  std::lock_guard lock(mu_);
  ++listings_read_;
  if (auto error = ReadErrorLocked()) return Unexpected(std::move(*error));
  if (point == 0) point = point_;
  if (point < compacted_) {
    return Unexpected(Error(SinkError::Code::kCompacted, "point " + std::to_string(point)));
  }
  if (point > point_) {
    return Unexpected(Error(SinkError::Code::kOther, "future point " + std::to_string(point)));
  }
  for (const auto& [key, revisions] : data_) {
    if (!IsSameOrBelow(key, prefix)) continue;
    if (const Stored* state = StateAt(key, point)) entries->push_back(EntryFor(key, state));
  }
  return point;
}

}  // namespace zk2etcd::core::memory
