#include "connectors/etcd/etcd_sink.h"

#include <algorithm>
#include <condition_variable>
#include <mutex>
#include <utility>

#include "connectors/etcd/range_cursor.h"

namespace zk2etcd::connectors {

namespace {
// The election key this process's writes are fenced on is gone: its lease ended (an outage longer
// than the lease) or another replica leads.
constexpr char kFenceFailed[] =
    "the leadership fence failed: this replica no longer leads (its lease ended, or another "
    "replica leads)";
}  // namespace

namespace {

// The bytes of a transaction besides its writes: the leadership compare and the envelope.
constexpr size_t kTxnOverheadBytes = 1024;
// Keys per read-only transaction of Read: a Range of the key and one of its meta record each.
constexpr size_t kReadKeysPerTxn = etcd::kDefaultMaxTxnOps / 2;

static_assert(static_cast<int>(EtcdVariant::kNested) == static_cast<int>(PutForm::kNested));
static_assert(static_cast<int>(EtcdVariant::kZxid) == static_cast<int>(PutForm::kZxid));
static_assert(static_cast<int>(EtcdVariant::kFresh) == static_cast<int>(PutForm::kFresh));

bool IsFlat(int variant) { return variant == static_cast<int>(EtcdVariant::kFlat); }

// The entry of data key `sink_key` (at source key `key`) from its key-value and its meta
// record, each absent when null.
core::SinkEntry EntryOf(std::string key, std::string sink_key, etcd::KeyValue* data,
                        const etcd::KeyValue* meta) {
  core::SinkEntry entry;
  entry.key = std::move(key);
  entry.sink_key = std::move(sink_key);
  if (data != nullptr) {
    entry.value = std::move(data->value);
    entry.version = data->mod_revision;
  }
  if (meta != nullptr) {
    entry.owner =
        core::OwnerRecord{DecodeZxid(meta->value).value_or(INT64_MAX), meta->mod_revision};
  }
  return entry;
}

// A listing of one prefix: the data keys and the meta records, joined in key order.
class EtcdSinkCursor final : public core::SinkCursor {
 public:
  EtcdSinkCursor(etcd::EtcdClient& etcd, const KeyLayout& layout, const std::string& prefix,
                 const core::ListOptions& options)
      : etcd_(etcd), layout_(layout), prefix_(prefix), options_(options) {
    // Requests end at the splits (see RangeCursor).
    std::vector<std::string> data_splits;
    for (const std::string& split : options.splits) {
      data_splits.push_back(layout.KeyFor(split));
      meta_splits_.push_back(layout.MetaKeyFor(data_splits.back()));
    }
    data_.emplace(etcd_, layout.DataRangesFor(prefix), options.point, options.page_size,
                  std::move(data_splits), options.prefetch);
    if (options.point != 0) MakeMetaCursor(options.point);  // both listings start at once
  }

  void Start() override {
    if (options_.point == 0) return;
    data_->Start();
    meta_->Start();
  }

  core::SinkResult<std::optional<core::SinkEntry>> Next() override {
    if (error_) return Unexpected{*error_};
    if (!begun_) {
      // With no point given, the first data page fixes the revision the meta records are read
      // at.
      if (auto first = Advance(*data_, data_head_); !first.ok()) return Fail(first.error());
      if (!meta_) MakeMetaCursor(data_->revision());
      if (auto first = Advance(*meta_, meta_head_); !first.ok()) return Fail(first.error());
      begun_ = true;
    }
    while (true) {
      std::optional<std::string> meta_data_key;
      while (meta_head_ && !(meta_data_key = layout_.KeyForMetaKey(meta_head_->key))) {
        // Not a meta record (the meta ranges hold nothing else): skipped.
        if (auto next = Advance(*meta_, meta_head_); !next.ok()) return Fail(next.error());
      }
      const std::string* smallest = data_head_ ? &data_head_->key : nullptr;
      if (meta_data_key && (!smallest || *meta_data_key < *smallest)) smallest = &*meta_data_key;
      if (smallest == nullptr) return std::optional<core::SinkEntry>();
      std::string key = *smallest;
      const bool has_key = data_head_ && data_head_->key == key;
      const bool has_meta = meta_data_key && *meta_data_key == key;
      std::optional<std::string> path = layout_.PathFor(key);
      std::optional<core::SinkEntry> entry;
      if (path) {
        entry = EntryOf(std::move(*path), std::move(key), has_key ? &*data_head_ : nullptr,
                        has_meta ? &*meta_head_ : nullptr);
      }
      if (has_key) {
        if (auto next = Advance(*data_, data_head_); !next.ok()) return Fail(next.error());
      }
      if (has_meta) {
        if (auto next = Advance(*meta_, meta_head_); !next.ok()) return Fail(next.error());
      }
      if (entry) return entry;
    }
  }

  int64_t point() const override { return data_->revision(); }

 private:
  void MakeMetaCursor(int64_t revision) {
    meta_.emplace(etcd_, layout_.MetaRangesFor(prefix_), revision, options_.page_size,
                  std::move(meta_splits_), options_.prefetch);
  }
  static etcd::EtcdResult<void> Advance(RangeCursor& cursor, std::optional<etcd::KeyValue>& head) {
    auto next = cursor.Next();
    if (!next.ok()) return Unexpected{next.error()};
    head = std::move(*next);
    return {};
  }
  Unexpected<core::SinkError> Fail(const etcd::Error& error) {
    error_ = SinkErrorOf(error, "listing etcd");
    return Unexpected{*error_};
  }

  etcd::EtcdClient& etcd_;
  const KeyLayout& layout_;
  const std::string prefix_;
  const core::ListOptions options_;
  std::vector<std::string> meta_splits_;  // until the meta cursor is made
  std::optional<RangeCursor> data_;
  std::optional<RangeCursor> meta_;
  std::optional<etcd::KeyValue> data_head_;
  std::optional<etcd::KeyValue> meta_head_;
  bool begun_ = false;
  std::optional<core::SinkError> error_;
};

}  // namespace

core::SinkError SinkErrorOf(const etcd::Error& error, std::string_view what) {
  core::SinkError result;
  switch (error.code) {
    case etcd::ErrorCode::kUnavailable:
    case etcd::ErrorCode::kDeadlineExceeded:
    case etcd::ErrorCode::kResourceExhausted:
    case etcd::ErrorCode::kAuthFailed:  // a token refresh may fix it; the client re-authenticates
    case etcd::ErrorCode::kTlsFailed:
    case etcd::ErrorCode::kInternal:
      result.code = core::SinkError::Code::kUnavailable;
      break;
    case etcd::ErrorCode::kCompacted:
      result.code = core::SinkError::Code::kCompacted;
      break;
    case etcd::ErrorCode::kCancelled:
      result.code = core::SinkError::Code::kCancelled;
      break;
    default:
      result.code = core::SinkError::Code::kRefused;
      break;
  }
  result.message = what.empty() ? error.ToString() : std::string(what) + ": " + error.ToString();
  result.label = std::string(etcd::ErrorLabel(error.code));
  return result;
}

EtcdSink::EtcdSink(etcd::EtcdClient& etcd, const KeyLayout& layout, EtcdSinkOptions options)
    : etcd_(etcd), layout_(layout), options_(options) {}

std::unique_ptr<core::SinkCursor> EtcdSink::List(const std::string& source_prefix,
                                                 const core::ListOptions& options) {
  return std::make_unique<EtcdSinkCursor>(etcd_, layout_, source_prefix, options);
}

core::SinkResult<int64_t> EtcdSink::CurrentPoint() {
  etcd::RangeRequest one_key;  // any key: the header's revision is the answer
  one_key.key = layout_.KeyFor("/");
  one_key.keys_only = true;
  auto response = etcd_.Range(one_key);
  if (!response.ok()) return Unexpected{SinkErrorOf(response.error(), "reading etcd's revision")};
  return response->revision;
}

core::SinkResult<std::vector<core::SinkEntry>> EtcdSink::Read(
    const std::vector<std::string>& keys) {
  std::vector<core::SinkEntry> entries(keys.size());
  std::mutex mutex;
  std::condition_variable finished;
  size_t pending = 0;  // guarded by mutex
  std::optional<core::SinkError> error;
  for (size_t begin = 0; begin < keys.size(); begin += kReadKeysPerTxn) {
    const size_t end = std::min(keys.size(), begin + kReadKeysPerTxn);
    etcd::TxnRequest txn;
    for (size_t i = begin; i < end; ++i) {
      etcd::RangeRequest key;
      key.key = layout_.KeyFor(keys[i]);
      etcd::RangeRequest meta;
      meta.key = layout_.MetaKeyFor(key.key);
      txn.success.push_back(etcd::Op::Range(std::move(key)));
      txn.success.push_back(etcd::Op::Range(std::move(meta)));
    }
    {
      std::lock_guard lock(mutex);
      ++pending;
    }
    etcd::CallOptions call;
    call.safe_to_retry = true;  // read-only
    etcd_.TxnAsync(
        std::move(txn), call, [&, begin, end](etcd::EtcdResult<etcd::TxnResponse> result) {
          std::lock_guard lock(mutex);
          if (!result.ok()) {
            if (!error) error = SinkErrorOf(result.error(), "re-reading etcd");
          } else if (result->responses.size() == 2 * (end - begin)) {
            for (size_t i = begin; i < end; ++i) {
              auto& key = result->responses[2 * (i - begin)];
              const auto& meta = result->responses[2 * (i - begin) + 1];
              entries[i] =
                  EntryOf(keys[i], layout_.KeyFor(keys[i]), key.kvs.empty() ? nullptr : &key.kvs[0],
                          meta.kvs.empty() ? nullptr : &meta.kvs[0]);
            }
          } else if (!error) {
            error = core::SinkError{core::SinkError::Code::kOther,
                                    "re-reading etcd: unexpected response shape", "internal"};
          }
          if (--pending == 0) finished.notify_all();
        });
  }
  std::unique_lock lock(mutex);
  finished.wait(lock, [&] { return pending == 0; });
  if (error) return Unexpected{*error};
  return entries;
}

std::string EtcdSink::SinkKeyFor(std::string_view key) const { return layout_.KeyFor(key); }

FencedWrite EtcdSink::ToFencedWrite(const core::SinkWrite& write) const {
  core::SinkWrite copy = write;
  return ToFencedWrite(std::move(copy));
}

FencedWrite EtcdSink::ToFencedWrite(core::SinkWrite&& write) const {
  FencedWrite fenced;
  switch (write.type) {
    case core::SinkWrite::Type::kPut:
      fenced.type = FencedWrite::Type::kPut;
      break;
    case core::SinkWrite::Type::kDelete:
      fenced.type = FencedWrite::Type::kDelete;
      break;
    case core::SinkWrite::Type::kAdopt:
      fenced.type = FencedWrite::Type::kAdopt;
      break;
  }
  fenced.key = layout_.KeyFor(write.key);
  fenced.meta_key = layout_.MetaKeyFor(fenced.key);
  fenced.value = std::move(write.value);
  fenced.zxid = write.version;
  fenced.claim_mod_revision = write.claim;
  if (write.observed) {
    fenced.observed =
        FencedWrite::Observed{write.observed->entry_version, write.observed->record_version,
                              write.observed->owner_version};
  }
  return fenced;
}

int EtcdSink::DefaultVariant(const core::SinkWrite& write) const {
  const FencedWrite fenced = ToFencedWrite(write);
  return FlatEligible(fenced) ? static_cast<int>(EtcdVariant::kFlat)
                              : static_cast<int>(DefaultPutForm(fenced));
}

int EtcdSink::BatchClass(int variant) const {
  return static_cast<int>(IsFlat(variant) ? EtcdBatchClass::kFlat : EtcdBatchClass::kNested);
}

core::BatchLimits EtcdSink::Limits(int batch_class) const {
  core::BatchLimits limits;
  limits.max_writes = static_cast<size_t>(std::max(1, options_.max_keys_per_txn));
  limits.max_bytes = etcd_.Far() ? std::min(options_.far_batch_bytes, options_.max_txn_bytes)
                                 : options_.max_txn_bytes;
  limits.overhead_bytes = kTxnOverheadBytes;
  if (batch_class == static_cast<int>(EtcdBatchClass::kFlat)) {
    // Each write puts or deletes two records, and spends one or two compares; the leadership
    // one more.
    limits.max_writes = std::min<size_t>(limits.max_writes, etcd::kDefaultMaxTxnOps / 2);
    limits.max_ops = etcd::kDefaultMaxTxnOps;
    limits.fence_ops = 1;
  }
  return limits;
}

core::WriteCost EtcdSink::Cost(const core::SinkWrite& write, int variant) const {
  FencedWrite fenced = ToFencedWrite(write);
  // Only whether a lease is bound counts for the size, not which one.
  if (options_.leases != nullptr && write.type != core::SinkWrite::Type::kDelete) {
    fenced.lease = write.lease;
  }
  if (IsFlat(variant)) return {FlatBytes(fenced), FlatCompareCount(fenced)};
  return {FencedBytes(fenced, static_cast<PutForm>(variant)), 0};
}

core::SinkResult<int64_t> EtcdSink::LeaseFor(const core::SinkWrite& write) const {
  if (options_.leases == nullptr || write.lease == 0 ||
      write.type == core::SinkWrite::Type::kDelete) {
    return int64_t{0};
  }
  return options_.leases->DestinationLease(write.lease);
}

core::SinkResult<EtcdSink::LeasedWrites> EtcdSink::WithLeases(std::vector<core::SinkWrite>& writes,
                                                              bool only_expired_alone) const {
  LeasedWrites leased;
  leased.fenced.reserve(writes.size());
  leased.sent.reserve(writes.size());
  for (size_t i = 0; i < writes.size(); ++i) {
    core::SinkResult<int64_t> lease = LeaseFor(writes[i]);
    if (!lease.ok()) {
      // A lookup that a retry can fix (the source did not answer) fails the whole batch, which
      // goes again: answered for the write alone it would read as a refusal, and the change
      // would be left behind.
      if ((only_expired_alone && lease.error().label != kLeaseExpiredLabel) ||
          lease.error().Retryable()) {
        return Unexpected{lease.error()};
      }
      if (leased.unsent.empty()) leased.unsent.resize(writes.size());
      leased.unsent[i].error = lease.error().label + ": " + lease.error().message;
      leased.unsent[i].skipped = lease.error().label == kLeaseExpiredLabel;
      continue;
    }
    leased.sent.push_back(i);
    leased.fenced.push_back(ToFencedWrite(std::move(writes[i])));
    leased.fenced.back().lease = *lease;
  }
  return leased;
}

void EtcdSink::FailAsync(core::SinkError error, std::function<void(core::BatchResult)> done) {
  // An empty transaction only to be answered on the client's thread.
  etcd::CallOptions call;
  call.safe_to_retry = true;
  etcd_.TxnAsync(etcd::TxnRequest{}, call,
                 [error = std::move(error), done = std::move(done)](
                     etcd::EtcdResult<etcd::TxnResponse> /*ignored*/) { done(Unexpected{error}); });
}

void EtcdSink::ApplyAsync(std::vector<core::SinkWrite> writes, std::vector<int> variants,
                          const std::optional<core::Fence>& fence,
                          std::function<void(core::BatchResult)> done) {
  const bool flat = !variants.empty() && IsFlat(variants.front());
  // A write whose lease lookup failed for good stays out of the transaction, answered with the
  // error; a lookup that may succeed later fails the batch (sent again by the writer).
  auto with_leases = WithLeases(writes, /*only_expired_alone=*/false);
  if (!with_leases.ok()) {
    FailAsync(with_leases.error(), std::move(done));
    return;
  }
  LeasedWrites leased = std::move(with_leases).value();
  std::vector<FencedWrite> fenced = std::move(leased.fenced);
  std::vector<size_t> sent = std::move(leased.sent);
  std::vector<core::WriteAnswer> lease_errors = std::move(leased.unsent);
  std::vector<PutForm> forms;
  forms.reserve(sent.size());
  for (size_t i : sent) {
    forms.push_back(flat ? PutForm::kNested : static_cast<PutForm>(variants[i]));
  }
  std::optional<etcd::LeaderKey> leader;
  if (fence) leader = etcd::LeaderKey{"", fence->key, fence->revision, 0};
  etcd::TxnRequest txn =
      flat ? BuildFlatTxn(fenced, leader) : BuildFencedTxn(fenced, forms, leader);
  etcd::CallOptions call;
  call.safe_to_retry = true;
  if (lease_errors.empty()) {
    etcd_.TxnAsync(std::move(txn), call,
                   [this, fenced = std::move(fenced), forms = std::move(forms), flat,
                    done = std::move(done)](etcd::EtcdResult<etcd::TxnResponse> result) {
                     done(AnswerOf(fenced, forms, flat, result));
                   });
    return;
  }
  etcd_.TxnAsync(std::move(txn), call,
                 [this, fenced = std::move(fenced), forms = std::move(forms), flat,
                  sent = std::move(sent), lease_errors = std::move(lease_errors),
                  done = std::move(done)](etcd::EtcdResult<etcd::TxnResponse> result) {
                   core::BatchResult answer = AnswerOf(fenced, forms, flat, result);
                   if (!answer.ok()) {
                     done(std::move(answer));
                     return;
                   }
                   std::vector<core::WriteAnswer> answers = lease_errors;
                   for (size_t j = 0; j < sent.size(); ++j)
                     answers[sent[j]] = std::move((*answer)[j]);
                   done(std::move(answers));
                 });
}

core::SinkResult<std::optional<int64_t>> EtcdSink::ReadCheckpoint() {
  if (options_.checkpoint_key.empty()) {
    return Unexpected{core::SinkError{core::SinkError::Code::kRefused,
                                      "this etcd sink records no checkpoints", "no_checkpoint"}};
  }
  etcd::RangeRequest request;
  request.key = options_.checkpoint_key;
  auto response = etcd_.Range(request);
  if (!response.ok()) {
    return Unexpected{
        SinkErrorOf(response.error(), "reading the checkpoint " + options_.checkpoint_key)};
  }
  if (response->kvs.empty()) return std::optional<int64_t>();
  const std::optional<int64_t> point = DecodeZxid(response->kvs.front().value);
  if (!point) {
    return Unexpected{core::SinkError{core::SinkError::Code::kOther,
                                      "the checkpoint " + options_.checkpoint_key +
                                          " holds no revision: \"" + response->kvs.front().value +
                                          "\"",
                                      "bad_checkpoint"}};
  }
  return std::optional<int64_t>(*point);
}

core::BatchLimits EtcdSink::AtomicLimits() const {
  core::BatchLimits limits = Limits(static_cast<int>(EtcdBatchClass::kNested));
  // A source transaction stays one transaction up to etcd's own limit, even when etcd is far.
  limits.max_bytes = options_.max_txn_bytes;
  // The checkpoint's put is one more operation of the outer transaction, which also lowers the
  // limit of the nested ones: one write less.
  limits.max_writes = static_cast<size_t>(std::max(1, options_.max_keys_per_txn - 1));
  limits.overhead_bytes += options_.checkpoint_key.size() + 64;
  return limits;
}

void EtcdSink::ApplyAtomicAsync(std::vector<core::SinkWrite> writes, int64_t checkpoint,
                                const std::optional<core::Fence>& fence,
                                std::function<void(core::BatchResult)> done) {
  if (options_.checkpoint_key.empty()) {
    FailAsync(core::SinkError{core::SinkError::Code::kRefused,
                              "this etcd sink records no checkpoints", "no_checkpoint"},
              std::move(done));
    return;
  }
  const size_t count = writes.size();
  // Only an expired source lease fails its write alone (the source deletes the key later); any
  // other lookup failure fails the batch, so that the checkpoint never passes a lost write.
  auto leased = WithLeases(writes, /*only_expired_alone=*/true);
  if (!leased.ok()) {
    FailAsync(leased.error(), std::move(done));
    return;
  }
  std::vector<FencedWrite> fenced = std::move(leased->fenced);
  std::vector<size_t> sent = std::move(leased->sent);
  std::vector<core::WriteAnswer> lease_errors = std::move(leased->unsent);
  etcd::TxnRequest txn;
  if (fence) {
    txn.compares.push_back(
        etcd::Compare::CreateRevision(fence->key, etcd::CompareOp::kEqual, fence->revision));
  }
  txn.success.reserve(fenced.size() + 1);
  for (const FencedWrite& write : fenced) txn.success.push_back(FencedOp(write, PutForm::kNested));
  txn.success.push_back(etcd::Op::Put(options_.checkpoint_key, EncodeZxid(checkpoint)));
  etcd::CallOptions call;
  call.safe_to_retry = true;
  etcd_.TxnAsync(
      std::move(txn), call,
      [fenced = std::move(fenced), sent = std::move(sent), lease_errors = std::move(lease_errors),
       count, done = std::move(done)](etcd::EtcdResult<etcd::TxnResponse> result) {
        if (!result.ok()) {
          done(Unexpected{SinkErrorOf(result.error())});
          return;
        }
        if (!result->succeeded) {
          done(Unexpected{
              core::SinkError{core::SinkError::Code::kNotLeader, kFenceFailed, "not_leader"}});
          return;
        }
        std::vector<core::WriteAnswer> answers = std::move(lease_errors);
        answers.resize(count);
        for (size_t j = 0; j < sent.size(); ++j) {
          const std::optional<FencedReply> reply = ReplyOf(*result, j, fenced[j], PutForm::kNested);
          if (reply && reply->outcome) {
            answers[sent[j]].outcome = *reply->outcome;
          } else {
            answers[sent[j]].error = "unexpected transaction response shape for " + fenced[j].key;
          }
        }
        done(std::move(answers));
      });
}

core::BatchResult EtcdSink::AnswerOf(const std::vector<FencedWrite>& writes,
                                     const std::vector<PutForm>& forms, bool flat,
                                     const etcd::EtcdResult<etcd::TxnResponse>& result) {
  if (!result.ok()) return Unexpected{SinkErrorOf(result.error())};
  const etcd::TxnResponse& response = *result;
  std::vector<core::WriteAnswer> answers(writes.size());
  if (flat) {
    if (response.succeeded) {
      for (core::WriteAnswer& answer : answers) answer.outcome = core::WriteOutcome::kApplied;
      return answers;
    }
    // Something changed since the observation (or the leadership is gone): the nested form
    // decides key by key (it ignores the observation).
    ++flat_fallbacks_;
    for (size_t i = 0; i < writes.size(); ++i) {
      answers[i].resend_variant = static_cast<int>(DefaultPutForm(writes[i]));
    }
    return answers;
  }
  if (!response.succeeded) {
    return Unexpected{
        core::SinkError{core::SinkError::Code::kNotLeader, kFenceFailed, "not_leader"}};
  }
  for (size_t i = 0; i < writes.size(); ++i) {
    const std::optional<FencedReply> reply = ReplyOf(response, i, writes[i], forms[i]);
    if (!reply || (!reply->outcome && !reply->resend_as)) {
      answers[i].error = "unexpected transaction response shape for " + writes[i].key;
    } else if (reply->resend_as) {
      ++form_resends_;
      answers[i].resend_variant = static_cast<int>(*reply->resend_as);
    } else {
      answers[i].outcome = *reply->outcome;
    }
  }
  return answers;
}

}  // namespace zk2etcd::connectors
