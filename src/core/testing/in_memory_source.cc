#include "core/testing/in_memory_source.h"

#include <utility>

namespace zk2etcd::core::memory {
namespace {

SourceError Error(SourceError::Code code, std::string what) {
  return SourceError{code, "in-memory source: " + std::move(what)};
}

}  // namespace

InMemorySource::InMemorySource(Scope scope) : scope_(std::move(scope)) {}

InMemorySource::~InMemorySource() { Close(); }

SourceResult<void> InMemorySource::Open(SourceListener& listener) {
  std::lock_guard lock(mu_);
  if (open_) ContractViolation("InMemorySource::Open while open");
  if (fail_opens_ > 0) {
    --fail_opens_;
    return Unexpected(Error(fail_open_code_, "open failed (injected)"));
  }
  listener_ = &listener;
  ++stream_;
  ++session_;
  open_ = true;
  connected_ = true;
  DeliverLocked([](SourceListener& l) { l.OnSourceEvent({SourceEventType::kConnected, "open"}); });
  return {};
}

void InMemorySource::Close() {
  {
    std::lock_guard lock(mu_);
    listener_ = nullptr;
    ++stream_;
    open_ = false;
    connected_ = false;
  }
  worker_.Flush();  // a delivery in progress finishes; owed ReadAsync answers go out
}

SourceResult<Snapshot> InMemorySource::ReadSnapshot(const SnapshotOptions& options) {
  Snapshot snapshot;
  {
    std::lock_guard lock(mu_);
    if (auto error = ReadErrorLocked(SourceError::Code::kClosed))
      return Unexpected(std::move(*error));
    if (options.cancel != nullptr && options.cancel->load()) {
      return Unexpected(Error(SourceError::Code::kClosed, "snapshot cancelled"));
    }
    for (const auto& [key, stored] : data_) {
      if (scope_.Contains(key)) snapshot.entries.push_back({key, stored.value, stored.version});
    }
    snapshot.point = point_;
    snapshot.requests = 1;
    ++snapshots_read_;
  }
  if (options.on_progress) options.on_progress(snapshot.entries.size());
  return snapshot;
}

SourceResult<std::vector<EntryState>> InMemorySource::Reread(const std::vector<std::string>& keys,
                                                             const RereadOptions& /*options*/) {
  std::lock_guard lock(mu_);
  if (auto error = ReadErrorLocked(SourceError::Code::kClosed))
    return Unexpected(std::move(*error));
  std::vector<EntryState> states;
  states.reserve(keys.size());
  for (const auto& key : keys) states.push_back(StateLocked(key));
  reads_ += keys.size();
  return states;
}

void InMemorySource::ReadAsync(const std::string& key,
                               std::function<void(SourceResult<EntryState>)> done) {
  worker_.Post([this, key, done = std::move(done)] {
    std::optional<SourceResult<EntryState>> result;
    {
      std::lock_guard lock(mu_);
      // Closed meanwhile or before: kUnavailable, as the contract says of callbacks still owed.
      if (auto error = ReadErrorLocked(SourceError::Code::kUnavailable)) {
        result.emplace(Unexpected(std::move(*error)));
      } else {
        result.emplace(StateLocked(key));
        ++reads_;
      }
    }
    done(std::move(*result));
  });
}

SourceStatus InMemorySource::Status() const {
  std::lock_guard lock(mu_);
  SourceStatus status;
  status.connected = open_ && connected_;
  status.watches = open_ ? scope_.prefixes().size() : 0;
  status.session_id = open_ ? session_ : 0;
  return status;
}

int64_t InMemorySource::Put(const std::string& key, const std::string& value) {
  std::lock_guard lock(mu_);
  data_[key] = {value, ++point_};
  if (open_ && connected_ && scope_.Contains(key)) {
    DeliverLocked([key](SourceListener& l) { l.OnChange(key); });
  }
  return point_;
}

bool InMemorySource::Delete(const std::string& key) {
  std::lock_guard lock(mu_);
  if (data_.erase(key) == 0) return false;
  ++point_;
  if (open_ && connected_ && scope_.Contains(key)) {
    DeliverLocked([key](SourceListener& l) { l.OnChange(key); });
  }
  return true;
}

std::optional<SourceEntry> InMemorySource::Get(const std::string& key) const {
  std::lock_guard lock(mu_);
  auto it = data_.find(key);
  if (it == data_.end()) return std::nullopt;
  return SourceEntry{key, it->second.value, it->second.version};
}

int64_t InMemorySource::point() const {
  std::lock_guard lock(mu_);
  return point_;
}

void InMemorySource::FailOpen(int n, SourceError::Code code) {
  std::lock_guard lock(mu_);
  fail_opens_ = n;
  fail_open_code_ = code;
}

void InMemorySource::FailNextReads(int n, SourceError::Code code) {
  std::lock_guard lock(mu_);
  fail_reads_ = n;
  fail_read_code_ = code;
}

void InMemorySource::Disconnect() {
  std::lock_guard lock(mu_);
  if (!open_ || !connected_) return;
  connected_ = false;
  DeliverLocked([](SourceListener& l) {
    l.OnSourceEvent({SourceEventType::kDisconnected, "disconnected (test)"});
  });
}

void InMemorySource::Reconnect() {
  std::lock_guard lock(mu_);
  if (!open_ || connected_) return;
  connected_ = true;
  DeliverLocked([](SourceListener& l) {
    l.OnSourceEvent({SourceEventType::kReconnected, "reconnected (test)"});
  });
}

void InMemorySource::Lose() {
  std::lock_guard lock(mu_);
  if (!open_) return;
  open_ = false;
  connected_ = false;
  // The stream stays the same until Close or Open, so kLost still reaches the listener.
  DeliverLocked([](SourceListener& l) {
    l.OnSourceEvent({SourceEventType::kLost, "session lost (test)"});
  });
}

void InMemorySource::Drain() { worker_.Flush(); }

size_t InMemorySource::snapshots_read() const {
  std::lock_guard lock(mu_);
  return snapshots_read_;
}

size_t InMemorySource::reads() const {
  std::lock_guard lock(mu_);
  return reads_;
}

void InMemorySource::DeliverLocked(std::function<void(SourceListener&)> call) {
  worker_.Post([this, stream = stream_, call = std::move(call)] {
    SourceListener* listener = nullptr;
    {
      std::lock_guard lock(mu_);
      if (stream != stream_ || listener_ == nullptr) return;
      listener = listener_;
    }
    // Close() waits for this task (Worker::Flush), so the listener is still alive.
    call(*listener);
  });
}

std::optional<SourceError> InMemorySource::ReadErrorLocked(SourceError::Code closed) {
  if (fail_reads_ > 0) {
    --fail_reads_;
    return Error(fail_read_code_, "read failed (injected)");
  }
  if (listener_ == nullptr) return Error(closed, "closed");
  if (!open_) return Error(SourceError::Code::kUnavailable, "session lost");
  if (!connected_) return Error(SourceError::Code::kUnavailable, "disconnected");
  return std::nullopt;
}

EntryState InMemorySource::StateLocked(const std::string& key) const {
  EntryState state;
  state.observed_at = point_;
  auto it = data_.find(key);
  if (it != data_.end()) {
    state.exists = true;
    state.value = it->second.value;
    state.version = it->second.version;
  }
  return state;
}

}  // namespace zk2etcd::core::memory
