#include "ownership/ownership_recorder.h"

#include <algorithm>

namespace zk2etcd::ownership {

OwnershipRecorder::OwnershipRecorder(OwnershipStore& store, const Clock& clock,
                                     OwnershipRecorderOptions options)
    : store_(store), clock_(clock), options_(std::move(options)) {
  worker_ = std::thread([this] { WorkerLoop(); });
}

OwnershipRecorder::~OwnershipRecorder() { Stop(); }

void OwnershipRecorder::Record(std::string key, std::string value) {
  std::lock_guard lock(mutex_);
  if (stopping_) return;
  pending_[std::move(key)] = Update{false, std::move(value)};
  wake_.notify_all();
}

void OwnershipRecorder::Forget(std::string key) {
  std::lock_guard lock(mutex_);
  if (stopping_) return;
  pending_[std::move(key)] = Update{true, {}};
  wake_.notify_all();
}

void OwnershipRecorder::ConfirmReachable(std::function<void(bool reachable)> done) {
  {
    std::lock_guard lock(mutex_);
    if (!stopping_) {
      waiters_.push_back(std::move(done));
      wake_.notify_all();
      return;
    }
  }
  done(false);
}

void OwnershipRecorder::ReportUnreachable(const OwnershipError& /*error*/) {
  std::lock_guard lock(mutex_);
  if (reachable_) BecomeUnreachableLocked();
  wake_.notify_all();
}

size_t OwnershipRecorder::Stop() {
  std::lock_guard stop_lock(stop_mutex_);
  {
    std::lock_guard lock(mutex_);
    if (stopped_) return dropped_;
    stopping_ = true;
    wake_.notify_all();
  }
  if (worker_.joinable()) worker_.join();
  std::lock_guard lock(mutex_);
  stopped_ = true;
  return dropped_;
}

size_t OwnershipRecorder::queued() const {
  std::lock_guard lock(mutex_);
  return pending_.size() + in_flight_;
}

bool OwnershipRecorder::reachable() const {
  std::lock_guard lock(mutex_);
  return reachable_;
}

void OwnershipRecorder::BecomeUnreachableLocked() {
  reachable_ = false;
  backoff_.Reset();
  next_ping_at_ = clock_.Now() + backoff_.Next();
}

void OwnershipRecorder::Answer(std::vector<std::function<void(bool)>>& waiters, bool reachable) {
  for (auto& done : waiters) done(reachable);
  waiters.clear();
}

OwnershipRecorder::Batch OwnershipRecorder::TakeBatchLocked() {
  Batch batch;
  const size_t size = std::min(pending_.size(), std::max<size_t>(options_.batch_size, 1));
  batch.reserve(size);
  while (batch.size() < size) {
    auto node = pending_.extract(pending_.begin());
    batch.emplace_back(std::move(node.key()), std::move(node.mapped()));
  }
  in_flight_ += batch.size();
  return batch;
}

void OwnershipRecorder::RequeueLocked(Batch batch, size_t from) {
  for (size_t i = from; i < batch.size(); ++i) {
    pending_.try_emplace(std::move(batch[i].first), std::move(batch[i].second));
  }
}

bool OwnershipRecorder::Send(Batch& batch, size_t& failed_from, OwnershipError& error) {
  const auto first_forget = std::stable_partition(
      batch.begin(), batch.end(), [](const auto& entry) { return !entry.second.forget; });
  const size_t forgets_from = static_cast<size_t>(first_forget - batch.begin());
  if (forgets_from > 0) {
    std::vector<std::pair<std::string, std::string>> records;
    records.reserve(forgets_from);
    for (size_t i = 0; i < forgets_from; ++i) {
      records.emplace_back(batch[i].first, batch[i].second.value);
    }
    if (auto recorded = store_.Record(records); !recorded.ok()) {
      failed_from = 0;
      error = recorded.error();
      return false;
    }
  }
  if (forgets_from < batch.size()) {
    std::vector<std::string> keys;
    keys.reserve(batch.size() - forgets_from);
    for (size_t i = forgets_from; i < batch.size(); ++i) keys.push_back(batch[i].first);
    if (auto forgotten = store_.Forget(keys); !forgotten.ok()) {
      failed_from = forgets_from;
      error = forgotten.error();
      return false;
    }
  }
  return true;
}

void OwnershipRecorder::WorkerLoop() {
  std::unique_lock lock(mutex_);
  // Sends a batch and accounts for it; returns whether the store took it. Leaves `lock` held.
  auto send_batch = [&]() {
    Batch batch = TakeBatchLocked();
    const size_t size = batch.size();
    lock.unlock();
    size_t failed_from = 0;
    OwnershipError error;
    const bool sent = Send(batch, failed_from, error);
    lock.lock();
    in_flight_ -= size;
    if (sent) return true;
    RequeueLocked(std::move(batch), failed_from);
    const bool was_reachable = reachable_;
    BecomeUnreachableLocked();
    if (was_reachable && options_.on_unreachable) {
      lock.unlock();
      options_.on_unreachable(error);
      lock.lock();
    }
    return false;
  };

  while (!stopping_) {
    std::vector<std::function<void(bool)>> waiters;
    if (!reachable_) {
      if (!waiters_.empty()) {
        waiters.swap(waiters_);
        lock.unlock();
        Answer(waiters, false);
        lock.lock();
        continue;
      }
      const auto now = clock_.Now();
      if (now < next_ping_at_) {
        wake_.wait_for(lock, next_ping_at_ - now);
        continue;
      }
      lock.unlock();
      const bool answered = store_.Ping().ok();
      lock.lock();
      if (!answered) {
        next_ping_at_ = clock_.Now() + backoff_.Next();
        continue;
      }
      reachable_ = true;
      backoff_.Reset();
      if (options_.on_reachable) {
        lock.unlock();
        options_.on_reachable();
        lock.lock();
      }
      continue;
    }
    if (!waiters_.empty()) {
      waiters.swap(waiters_);
      lock.unlock();
      auto ping = store_.Ping();
      lock.lock();
      if (!ping.ok()) {
        const bool was_reachable = reachable_;
        BecomeUnreachableLocked();
        lock.unlock();
        if (was_reachable && options_.on_unreachable) options_.on_unreachable(ping.error());
        lock.lock();
      }
      // A confirmation is only as good as the latest news: a failure reported meanwhile wins.
      const bool reachable = ping.ok() && reachable_;
      lock.unlock();
      Answer(waiters, reachable);
      lock.lock();
      continue;
    }
    if (!pending_.empty()) {
      send_batch();
      continue;
    }
    wake_.wait(lock);
  }

  // Stopping: confirmations get "no"; what is queued goes out once if the store answers.
  std::vector<std::function<void(bool)>> waiters;
  waiters.swap(waiters_);
  lock.unlock();
  Answer(waiters, false);
  lock.lock();
  while (reachable_ && !pending_.empty()) {
    if (!send_batch()) break;
  }
  dropped_ = pending_.size();
  pending_.clear();
}

}  // namespace zk2etcd::ownership
