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
  ordered_ = false;
  return OpenLocked(listener);
}

SourceResult<void> InMemorySource::OpenAfter(SourceListener& listener, int64_t point) {
  std::lock_guard lock(mu_);
  if (open_) ContractViolation("InMemorySource::OpenAfter while open");
  if (point < compacted_) {
    return Unexpected(
        Error(SourceError::Code::kCompacted, "point " + std::to_string(point) + " is compacted"));
  }
  ordered_ = true;
  if (auto opened = OpenLocked(listener); !opened.ok()) return opened;
  ++ordered_opens_;
  last_open_after_ = point;
  for (const ChangeSet& set : history_) {
    if (set.point <= point) continue;
    DeliverLocked([set](SourceListener& l) { l.OnChangeSet(set); });
  }
  return {};
}

SourceResult<int64_t> InMemorySource::CurrentPoint() {
  std::lock_guard lock(mu_);
  // Needs no open stream (it is asked before OpenAfter); injected read failures count.
  if (fail_reads_ > 0) {
    --fail_reads_;
    return Unexpected(Error(fail_read_code_, "read failed (injected)"));
  }
  return point_;
}

SourceResult<void> InMemorySource::OpenLocked(SourceListener& listener) {
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
  std::function<void()> hook;
  {
    std::lock_guard lock(mu_);
    if (auto error = ReadErrorLocked(SourceError::Code::kClosed))
      return Unexpected(std::move(*error));
    if (options.cancel != nullptr && options.cancel->load()) {
      return Unexpected(Error(SourceError::Code::kClosed, "snapshot cancelled"));
    }
    for (const auto& [key, stored] : data_) {
      if (scope_.Contains(key)) {
        snapshot.entries.push_back({key, stored.value, stored.version, 0});
      }
    }
    snapshot.point = point_;
    snapshot.exact = exact_snapshots_;
    snapshot.requests = 1;
    ++snapshots_read_;
    hook = snapshot_hook_;
  }
  if (options.on_entry) {
    for (const SourceEntry& entry : snapshot.entries) options.on_entry(entry);
  }
  if (options.on_progress) options.on_progress(snapshot.entries.size());
  if (hook) hook();
  return snapshot;
}

SourceResult<std::vector<EntryState>> InMemorySource::Reread(const std::vector<std::string>& keys,
                                                             const RereadOptions& /*options*/) {
  std::vector<EntryState> states;
  std::function<void(const std::vector<std::string>&)> hook;
  {
    std::lock_guard lock(mu_);
    if (auto error = ReadErrorLocked(SourceError::Code::kClosed))
      return Unexpected(std::move(*error));
    states.reserve(keys.size());
    for (const auto& key : keys) states.push_back(StateLocked(key));
    reads_ += keys.size();
    hook = reread_hook_;
  }
  if (hook) hook(keys);
  return states;
}

void InMemorySource::SetSnapshotHook(std::function<void()> hook) {
  std::lock_guard lock(mu_);
  snapshot_hook_ = std::move(hook);
}

void InMemorySource::SetRereadHook(std::function<void(const std::vector<std::string>& keys)> hook) {
  std::lock_guard lock(mu_);
  reread_hook_ = std::move(hook);
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
  return Apply({SourceChange{key, true, value, 0, 0}});
}

bool InMemorySource::Delete(const std::string& key) {
  {
    std::lock_guard lock(mu_);
    if (data_.count(key) == 0) return false;
  }
  Apply({SourceChange{key, false, "", 0, 0}});
  return true;
}

int64_t InMemorySource::Apply(const std::vector<SourceChange>& changes) {
  std::lock_guard lock(mu_);
  const int64_t point = ++point_;
  ChangeSet set{point, {}};
  for (SourceChange change : changes) {
    if (change.exists) {
      data_[change.key] = {change.value, point};
      change.version = point;
    } else {
      if (data_.erase(change.key) == 0) continue;
      change.value.clear();
      change.version = point;
    }
    if (scope_.Contains(change.key)) set.changes.push_back(std::move(change));
  }
  if (!set.changes.empty()) AnnounceLocked(std::move(set));
  return point;
}

void InMemorySource::AnnounceLocked(ChangeSet set) {
  history_.push_back(set);
  if (!open_) return;
  if (ordered_) {
    // An ordered stream resumes where it was, like an etcd watch: nothing is missed.
    DeliverLocked([set = std::move(set)](SourceListener& l) { l.OnChangeSet(set); });
  } else if (connected_) {
    for (const SourceChange& change : set.changes) {
      DeliverLocked([key = change.key](SourceListener& l) { l.OnChange(key); });
    }
  }
}

void InMemorySource::Compact(int64_t point) {
  std::lock_guard lock(mu_);
  compacted_ = std::max(compacted_, point);
  std::erase_if(history_, [&](const ChangeSet& set) { return set.point < compacted_; });
}

void InMemorySource::BreakStream() {
  std::lock_guard lock(mu_);
  if (!open_ || !ordered_) return;
  open_ = false;
  connected_ = false;
  DeliverLocked([](SourceListener& l) {
    l.OnSourceEvent({SourceEventType::kCompacted, "compacted (test)"});
  });
}

void InMemorySource::set_exact_snapshots(bool exact) {
  std::lock_guard lock(mu_);
  exact_snapshots_ = exact;
}

size_t InMemorySource::ordered_opens() const {
  std::lock_guard lock(mu_);
  return ordered_opens_;
}

int64_t InMemorySource::last_open_after() const {
  std::lock_guard lock(mu_);
  return last_open_after_;
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
