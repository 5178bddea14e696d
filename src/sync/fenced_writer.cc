#include "sync/fenced_writer.h"

#include <algorithm>
#include <unordered_set>

namespace zk2etcd::sync {

namespace {

// The bytes of a transaction besides its writes: the leadership compare and the envelope.
constexpr size_t kTxnOverheadBytes = 1024;

}  // namespace

FencedWriter::FencedWriter(etcd::EtcdClient& etcd, FencedWriterOptions options, const Clock& clock,
                           TxnObserver observer, RefusalObserver on_refused)
    : etcd_(etcd),
      options_(options),
      clock_(clock),
      observer_(std::move(observer)),
      on_refused_(std::move(on_refused)),
      window_(WindowSizerOptions{std::min<size_t>(8, std::max<size_t>(1, options.max_txns_in_flight)),
                                 std::max<size_t>(1, options.max_txns_in_flight)}) {
  sender_ = std::thread([this] { SenderLoop(); });
}

FencedWriter::~FencedWriter() { Stop(); }

void FencedWriter::Submit(FencedWrite write, Done done) {
  {
    std::lock_guard lock(mutex_);
    if (!stopping_) {
      const PutForm form = DefaultPutForm(write);
      queue_.push_back({std::move(write), std::move(done), form, SIZE_MAX});
      ++submitted_;
      wake_.notify_all();
      return;
    }
  }
  done(Unexpected{WriteError{WriteError::Code::kStopped, std::nullopt, "writer stopped"}});
}

void FencedWriter::SetLeader(std::optional<etcd::LeaderKey> leader) {
  std::lock_guard lock(mutex_);
  leader_ = std::move(leader);
}

size_t FencedWriter::pending() const {
  std::lock_guard lock(mutex_);
  return queue_.size() + in_flight_writes_;
}

bool FencedWriter::retrying() const {
  std::lock_guard lock(mutex_);
  return backoff_.current().count() > 0;
}

uint64_t FencedWriter::flat_fallbacks() const {
  std::lock_guard lock(mutex_);
  return flat_fallbacks_;
}

uint64_t FencedWriter::refused_writes() const {
  std::lock_guard lock(mutex_);
  return refused_writes_;
}

uint64_t FencedWriter::form_resends() const {
  std::lock_guard lock(mutex_);
  return form_resends_;
}

bool FencedWriter::Drain(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mutex_);
  const uint64_t target = submitted_;
  return completed_.wait_for(lock, timeout, [&] { return finished_ >= target; });
}

void FencedWriter::Stop() {
  {
    std::lock_guard lock(mutex_);
    if (stopping_ && !sender_.joinable()) return;
    stopping_ = true;
    for (Entry& entry : queue_) {
      completions_.push_back(
          {std::move(entry.done),
           Unexpected{WriteError{WriteError::Code::kStopped, std::nullopt, "writer stopped"}}});
    }
    queue_.clear();
    wake_.notify_all();
  }
  if (sender_.joinable()) sender_.join();
}

std::vector<FencedWriter::Entry> FencedWriter::TakeBatchLocked(bool& flat) {
  std::vector<Entry> batch;
  std::unordered_set<std::string_view> keys;  // views into `batch`, which never reallocates
  std::unordered_set<std::string> passed;     // keys of writes left for a later transaction
  size_t bytes = kTxnOverheadBytes;
  flat = !queue_.empty() && FlatEligible(queue_.front().write);
  // Each write puts or deletes two records; a flat transaction also spends one or two compares
  // per write, and one on the leadership.
  constexpr int kMaxOps = etcd::kDefaultMaxTxnOps;
  size_t max_keys = static_cast<size_t>(std::max(1, options_.max_keys_per_txn));
  if (flat) max_keys = std::min<size_t>(max_keys, kMaxOps / 2);
  int compares = leader_ ? 1 : 0;
  batch.reserve(max_keys);
  auto it = queue_.begin();
  while (it != queue_.end() && batch.size() < max_keys) {
    const size_t size = flat ? FlatBytes(it->write) : FencedBytes(it->write, it->form);
    if (!batch.empty() && bytes + size > options_.max_txn_bytes) break;
    // A write of the other form, one that may not go in a transaction this large (split after
    // a refusal), and any later write of its key, wait for a later transaction, so that writes
    // of one key keep their order.
    if (keys.count(it->write.key) > 0 || passed.count(it->write.key) > 0 ||
        FlatEligible(it->write) != flat || it->max_batch < batch.size() + 1) {
      passed.insert(it->write.key);
      ++it;
      continue;
    }
    if (flat) {
      compares += FlatCompareCount(it->write);
      if (compares > kMaxOps) break;
    }
    bytes += size;
    max_keys = std::min(max_keys, it->max_batch);
    batch.push_back(std::move(*it));
    keys.insert(batch.back().write.key);
    it = queue_.erase(it);
  }
  return batch;
}

void FencedWriter::SenderLoop() {
  std::unique_lock lock(mutex_);
  while (true) {
    if (!completions_.empty()) {
      std::deque<Completion> ready;
      ready.swap(completions_);
      lock.unlock();
      for (Completion& completion : ready) {
        if (completion.refused && on_refused_) {
          on_refused_(*completion.refused, *completion.result.error().etcd_error);
        }
        completion.done(completion.result);
      }
      lock.lock();
      finished_ += ready.size();
      completed_.notify_all();
      continue;
    }
    if (stopping_ && in_flight_txns_ == 0 && queue_.empty()) break;
    const auto now = std::chrono::steady_clock::now();
    const bool window_open = in_flight_txns_ < window_.window();
    if (!stopping_ && !queue_.empty() && window_open && now >= retry_at_) {
      bool flat = false;
      std::vector<Entry> batch = TakeBatchLocked(flat);
      ++in_flight_txns_;
      in_flight_writes_ += batch.size();
      std::vector<FencedWrite> writes;
      std::vector<PutForm> forms;
      writes.reserve(batch.size());
      forms.reserve(batch.size());
      for (const Entry& entry : batch) {
        writes.push_back(entry.write);
        forms.push_back(entry.form);
      }
      const std::optional<etcd::LeaderKey> leader = leader_;
      const auto started = clock_.Now();
      const WindowSizer::Ticket ticket = window_.OnTxnStarted(started);
      lock.unlock();
      etcd::CallOptions call;
      call.safe_to_retry = true;
      etcd_.TxnAsync(flat ? BuildFlatTxn(writes, leader) : BuildFencedTxn(writes, forms, leader),
                     call,
                     [this, batch = std::move(batch), flat, ticket,
                      started](etcd::EtcdResult<etcd::TxnResponse> result) mutable {
                       OnTxnDone(std::move(batch), flat, ticket, std::move(result), started);
                     });
      lock.lock();
      continue;
    }
    if (!stopping_ && !queue_.empty() && window_open) {
      wake_.wait_until(lock, retry_at_);
    } else {
      wake_.wait(lock);
    }
  }
}

bool FencedWriter::Retryable(const etcd::Error& error) {
  switch (error.code) {
    case etcd::ErrorCode::kUnavailable:
    case etcd::ErrorCode::kDeadlineExceeded:
    case etcd::ErrorCode::kResourceExhausted:
    case etcd::ErrorCode::kAuthFailed:  // a token refresh may fix it; the client re-authenticates
    case etcd::ErrorCode::kTlsFailed:
    case etcd::ErrorCode::kInternal:
      return true;
    default:
      return false;
  }
}

void FencedWriter::OnTxnDone(std::vector<Entry> batch, bool flat, WindowSizer::Ticket ticket,
                             etcd::EtcdResult<etcd::TxnResponse> result,
                             std::chrono::steady_clock::time_point started) {
  const auto now = clock_.Now();
  if (observer_) {
    observer_(batch.size(), result.ok() ? std::nullopt : std::optional<etcd::Error>(result.error()),
              now - started);
  }
  std::lock_guard lock(mutex_);
  window_.OnTxnDone(ticket, now);
  HandleTxnDoneLocked(batch, flat, result);
}

void FencedWriter::HandleTxnDoneLocked(std::vector<Entry>& batch, bool flat,
                                       const etcd::EtcdResult<etcd::TxnResponse>& result) {
  --in_flight_txns_;
  in_flight_writes_ -= batch.size();
  wake_.notify_all();
  if (!result.ok()) {
    const etcd::Error& error = result.error();
    if (Retryable(error) && !stopping_) {
      // Back to the front, in order, to be sent again after a backoff with jitter.
      for (auto it = batch.rbegin(); it != batch.rend(); ++it) queue_.push_front(std::move(*it));
      retry_at_ = std::chrono::steady_clock::now() + backoff_.Next();
      return;
    }
    if (!stopping_ && batch.size() > 1 && error.code != etcd::ErrorCode::kCancelled) {
      // Refused for a reason a repeat cannot fix, perhaps by one write only (a value too large,
      // a key outside the user's role): the halves go again at once, each in a transaction of
      // at most its own size, until the writes etcd refuses go alone.
      const size_t first_half = batch.size() / 2;
      for (size_t i = batch.size(); i-- > 0;) {
        batch[i].max_batch = i < first_half ? first_half : batch.size() - first_half;
        queue_.push_front(std::move(batch[i]));
      }
      return;
    }
    const WriteError::Code code =
        stopping_ && Retryable(error) ? WriteError::Code::kStopped : WriteError::Code::kEtcd;
    for (Entry& entry : batch) {
      std::string message = error.ToString();
      std::optional<FencedWrite> refused;
      if (code == WriteError::Code::kEtcd) {
        message = "etcd refused the write of " + entry.write.key + ": " + message;
        ++refused_writes_;
        if (on_refused_) refused = std::move(entry.write);
      }
      completions_.push_back({std::move(entry.done),
                              Unexpected{WriteError{code, error, std::move(message)}},
                              std::move(refused)});
    }
    return;
  }
  backoff_.Reset();
  retry_at_ = {};
  const etcd::TxnResponse& response = *result;
  if (flat) {
    if (response.succeeded) {
      for (Entry& entry : batch) {
        completions_.push_back({std::move(entry.done), WriteOutcome::kApplied});
      }
      return;
    }
    // Something changed since the observation (or the leadership is gone): the nested form
    // decides key by key. Back to the front, in order, without the observation.
    ++flat_fallbacks_;
    if (stopping_) {
      for (Entry& entry : batch) {
        completions_.push_back(
            {std::move(entry.done),
             Unexpected{WriteError{WriteError::Code::kStopped, std::nullopt, "writer stopped"}}});
      }
      return;
    }
    for (auto it = batch.rbegin(); it != batch.rend(); ++it) {
      it->write.observed.reset();
      queue_.push_front(std::move(*it));
    }
    return;
  }
  std::vector<Entry> resend;  // writes whose reply asks for another put form, in order
  for (size_t i = 0; i < batch.size(); ++i) {
    Entry& entry = batch[i];
    if (!response.succeeded) {
      completions_.push_back(
          {std::move(entry.done),
           Unexpected{WriteError{WriteError::Code::kNotLeader, std::nullopt,
                                 "the leadership fence failed: another process leads"}}});
      continue;
    }
    const std::optional<FencedReply> reply = ReplyOf(response, i, entry.write, entry.form);
    if (!reply || (!reply->outcome && !reply->resend_as)) {
      completions_.push_back(
          {std::move(entry.done),
           Unexpected{WriteError{WriteError::Code::kEtcd, std::nullopt,
                                 "unexpected transaction response shape for " + entry.write.key}}});
      continue;
    }
    if (reply->resend_as) {
      if (stopping_) {
        completions_.push_back(
            {std::move(entry.done),
             Unexpected{WriteError{WriteError::Code::kStopped, std::nullopt, "writer stopped"}}});
        continue;
      }
      entry.form = *reply->resend_as;
      ++form_resends_;
      resend.push_back(std::move(entry));
      continue;
    }
    completions_.push_back({std::move(entry.done), *reply->outcome});
  }
  for (auto it = resend.rbegin(); it != resend.rend(); ++it) queue_.push_front(std::move(*it));
}

}  // namespace zk2etcd::sync
