#include "sync/fenced_writer.h"

#include <algorithm>
#include <unordered_set>

namespace zk2etcd::sync {

FencedWriter::FencedWriter(core::Sink& sink, FencedWriterOptions options, const Clock& clock,
                           TxnObserver observer, RefusalObserver on_refused)
    : sink_(sink),
      options_(options),
      clock_(clock),
      observer_(std::move(observer)),
      on_refused_(std::move(on_refused)),
      window_(WindowSizerOptions{
          .min_window = std::min<size_t>(8, std::max<size_t>(1, options.max_txns_in_flight)),
          .max_window = std::max<size_t>(1, options.max_txns_in_flight),
          .initial_window = options.max_txns_in_flight}) {
  if (options_.logger != nullptr) {
    failure_log_.emplace(
        (options_.log_name.empty() ? std::string(sink_.Name()) : options_.log_name) + " writes",
        options_.failure_log_period);
  }
  sender_ = std::thread([this] { SenderLoop(); });
}

FencedWriter::~FencedWriter() { Stop(); }

void FencedWriter::Submit(core::SinkWrite write, Done done) {
  {
    std::lock_guard lock(mutex_);
    if (!stopping_) {
      const int variant = sink_.DefaultVariant(write);
      queue_.push_back({std::move(write), std::move(done), variant, SIZE_MAX});
      ++submitted_;
      wake_.notify_all();
      return;
    }
  }
  done(Unexpected{WriteError{WriteError::Code::kStopped, std::nullopt, "writer stopped"}});
}

void FencedWriter::SetLeader(std::optional<core::Fence> leader) {
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

std::chrono::steady_clock::time_point FencedWriter::retry_at() const {
  std::lock_guard lock(mutex_);
  return retry_at_;
}

uint64_t FencedWriter::refused_writes() const {
  std::lock_guard lock(mutex_);
  return refused_writes_;
}

uint64_t FencedWriter::resends() const {
  std::lock_guard lock(mutex_);
  return resends_;
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

std::vector<FencedWriter::Entry> FencedWriter::TakeBatchLocked(size_t* batch_bytes) {
  std::vector<Entry> batch;
  std::unordered_set<std::string_view> keys;  // views into `batch`, which never reallocates
  std::unordered_set<std::string> passed;     // keys of writes left for a later batch
  if (queue_.empty()) return batch;
  const int batch_class = sink_.BatchClass(queue_.front().variant);
  const core::BatchLimits limits = sink_.Limits(batch_class);
  size_t max_writes = std::max<size_t>(1, limits.max_writes);
  if (options_.max_writes_per_batch > 0) {
    max_writes = std::min(max_writes, options_.max_writes_per_batch);
  }
  // Under a rate limit, batches of at most a burst: a larger one would go at once and only the
  // next would wait (60 repairs under --max-write-rate=20 went in 5 ms).
  if (options_.rate_limiter != nullptr) {
    max_writes = std::min(max_writes, options_.rate_limiter->burst());
  }
  const size_t max_bytes = options_.max_batch_bytes > 0
                               ? std::min(limits.max_bytes, options_.max_batch_bytes)
                               : limits.max_bytes;
  size_t bytes = limits.overhead_bytes;
  int ops = leader_ ? limits.fence_ops : 0;
  batch.reserve(max_writes);
  auto it = queue_.begin();
  while (it != queue_.end() && batch.size() < max_writes) {
    // A write of another batch class, one that may not go in a batch this large (split after
    // a refusal), and any later write of its key, wait for a later batch, so that writes of
    // one key keep their order.
    if (keys.count(it->write.key) > 0 || passed.count(it->write.key) > 0 ||
        sink_.BatchClass(it->variant) != batch_class || it->max_batch < batch.size() + 1) {
      passed.insert(it->write.key);
      ++it;
      continue;
    }
    const core::WriteCost cost = sink_.Cost(it->write, it->variant);
    if (!batch.empty() && bytes + cost.bytes > max_bytes) break;
    if (limits.max_ops > 0 && ops + cost.ops > limits.max_ops) break;
    bytes += cost.bytes;
    ops += cost.ops;
    max_writes = std::min(max_writes, it->max_batch);
    batch.push_back(std::move(*it));
    keys.insert(batch.back().write.key);
    it = queue_.erase(it);
  }
  *batch_bytes = bytes;
  return batch;
}

void FencedWriter::SenderLoop() {
  std::unique_lock lock(mutex_);
  while (true) {
    if (!completions_.empty() || !failure_lines_.empty()) {
      std::deque<Completion> ready;
      ready.swap(completions_);
      std::vector<ops::FailureLog::Line> lines;
      lines.swap(failure_lines_);
      lock.unlock();
      for (const ops::FailureLog::Line& line : lines) {
        line.LogTo(*options_.logger, "failed_batches");
      }
      for (Completion& completion : ready) {
        if (completion.refused && on_refused_) {
          on_refused_(*completion.refused, *completion.result.error().sink_error);
        }
        completion.done(completion.result);
      }
      lock.lock();
      finished_ += ready.size();
      completed_.notify_all();
      continue;
    }
    if (stopping_ && in_flight_txns_ == 0 && queue_.empty()) break;
    const auto now = clock_.Now();
    const bool window_open =
        in_flight_txns_ == 0 ||
        (in_flight_txns_ < window_.window() && in_flight_bytes_ < options_.max_bytes_in_flight);
    const auto send_at = std::max(retry_at_, rate_ready_at_);
    if (!stopping_ && !queue_.empty() && window_open && now >= send_at) {
      size_t bytes = 0;
      std::vector<Entry> batch = TakeBatchLocked(&bytes);
      if (options_.rate_limiter != nullptr) {
        rate_ready_at_ = now + options_.rate_limiter->Take(batch.size());
      }
      ++in_flight_txns_;
      in_flight_writes_ += batch.size();
      in_flight_bytes_ += bytes;
      std::vector<core::SinkWrite> writes;
      std::vector<int> variants;
      writes.reserve(batch.size());
      variants.reserve(batch.size());
      for (const Entry& entry : batch) {
        writes.push_back(entry.write);
        variants.push_back(entry.variant);
      }
      const std::optional<core::Fence> leader = leader_;
      const auto started = clock_.Now();
      const WindowSizer::Ticket ticket = window_.OnTxnStarted(started);
      lock.unlock();
      sink_.ApplyAsync(std::move(writes), std::move(variants), leader,
                       [this, batch = std::move(batch), bytes, ticket, started,
                        leader](core::BatchResult result) mutable {
                         OnBatchDone(std::move(batch), bytes, ticket, std::move(result), started,
                                     leader);
                       });
      lock.lock();
      continue;
    }
    if (!stopping_ && !queue_.empty() && window_open) {
      wake_.wait_for(lock, send_at - now);  // the injected clock's time
    } else {
      wake_.wait(lock);
    }
  }
}

void FencedWriter::OnBatchDone(std::vector<Entry> batch, size_t bytes, WindowSizer::Ticket ticket,
                               core::BatchResult result,
                               std::chrono::steady_clock::time_point started,
                               const std::optional<core::Fence>& fence) {
  const auto now = clock_.Now();
  if (observer_) {
    observer_(batch.size(),
              result.ok() ? std::nullopt : std::optional<core::SinkError>(result.error()),
              now - started);
  }
  std::lock_guard lock(mutex_);
  in_flight_bytes_ -= bytes;
  window_.OnTxnDone(ticket, now);
  NoteForFailureLogLocked(result, now);
  HandleBatchDoneLocked(batch, result, fence);
}

void FencedWriter::NoteForFailureLogLocked(const core::BatchResult& result,
                                           std::chrono::steady_clock::time_point now) {
  if (!failure_log_) return;
  std::optional<ops::FailureLog::Line> line;
  if (result.ok()) {
    line = failure_log_->OnSuccess(now);
  } else if (result.error().Retryable() && !stopping_) {
    // Only what is retried: a refused write and a lost leadership are reported where they end,
    // and a stopping writer retries nothing.
    line = failure_log_->OnFailure(now, result.error().message);
  }
  if (line) failure_lines_.push_back(std::move(*line));
}

void FencedWriter::HandleBatchDoneLocked(std::vector<Entry>& batch, const core::BatchResult& result,
                                         const std::optional<core::Fence>& fence) {
  --in_flight_txns_;
  in_flight_writes_ -= batch.size();
  wake_.notify_all();
  const auto stopped = [] {
    return Unexpected{WriteError{WriteError::Code::kStopped, std::nullopt, "writer stopped"}};
  };
  if (!result.ok()) {
    const core::SinkError& error = result.error();
    if (error.Retryable() && !stopping_) {
      // Back to the front, in order, to be sent again after a backoff with jitter.
      for (auto it = batch.rbegin(); it != batch.rend(); ++it) queue_.push_front(std::move(*it));
      retry_at_ = clock_.Now() + backoff_.Next();
      return;
    }
    if (error.code == core::SinkError::Code::kNotLeader && !stopping_ && fence && leader_ &&
        (fence->key != leader_->key || fence->revision != leader_->revision)) {
      // Fenced by a leadership this process held before the current one (the batch waited out
      // an outage in which the lock was lost and won again): the current leader's writes, so
      // they go again under its fence. Failing them would depose the new term for the old one.
      for (auto it = batch.rbegin(); it != batch.rend(); ++it) queue_.push_front(std::move(*it));
      return;
    }
    if (error.code == core::SinkError::Code::kNotLeader) {
      for (Entry& entry : batch) {
        completions_.push_back(
            {std::move(entry.done),
             Unexpected{WriteError{WriteError::Code::kNotLeader, error, error.message, fence}}});
      }
      return;
    }
    if (!stopping_ && batch.size() > 1 && error.code != core::SinkError::Code::kCancelled) {
      // Refused for a reason a repeat cannot fix, perhaps by one write only (a value too large,
      // a key outside the user's role): the halves go again at once, each in a batch of at most
      // its own size, until the writes the sink refuses go alone.
      const size_t first_half = batch.size() / 2;
      for (size_t i = batch.size(); i-- > 0;) {
        batch[i].max_batch = i < first_half ? first_half : batch.size() - first_half;
        queue_.push_front(std::move(batch[i]));
      }
      return;
    }
    // A cancelled call was abandoned at a stop (etcd::EtcdClient::Abandon), not refused.
    const WriteError::Code code =
        error.code == core::SinkError::Code::kCancelled || (stopping_ && error.Retryable())
            ? WriteError::Code::kStopped
            : WriteError::Code::kRefused;
    for (Entry& entry : batch) {
      std::string message = error.message;
      std::optional<core::SinkWrite> refused;
      if (code == WriteError::Code::kRefused) {
        message = std::string(sink_.Name()) + " refused the write of " +
                  sink_.SinkKeyFor(entry.write.key) + ": " + message;
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
  const std::vector<core::WriteAnswer>& answers = *result;
  std::vector<Entry> resend;  // writes whose answer asks for another variant, in order
  for (size_t i = 0; i < batch.size(); ++i) {
    Entry& entry = batch[i];
    const core::WriteAnswer* answer = i < answers.size() ? &answers[i] : nullptr;
    if (answer != nullptr && !answer->outcome && !answer->resend_variant && answer->skipped) {
      // Left out because the source entry is going (its delete follows): superseded, not failed.
      completions_.push_back({std::move(entry.done), core::WriteOutcome::kStale});
      continue;
    }
    if (answer == nullptr || (!answer->outcome && !answer->resend_variant)) {
      completions_.push_back(
          {std::move(entry.done),
           Unexpected{WriteError{WriteError::Code::kRefused, std::nullopt,
                                 answer != nullptr && !answer->error.empty()
                                     ? answer->error
                                     : "no answer for " + sink_.SinkKeyFor(entry.write.key)}}});
      continue;
    }
    if (answer->resend_variant) {
      if (stopping_) {
        completions_.push_back({std::move(entry.done), stopped()});
        continue;
      }
      entry.variant = *answer->resend_variant;
      ++resends_;
      resend.push_back(std::move(entry));
      continue;
    }
    completions_.push_back({std::move(entry.done), *answer->outcome});
  }
  for (auto it = resend.rbegin(); it != resend.rend(); ++it) queue_.push_front(std::move(*it));
}

}  // namespace zk2etcd::sync
