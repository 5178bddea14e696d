#include "sync/incremental_sync.h"

#include <cstdio>

namespace zk2etcd::sync {

IncrementalSync::IncrementalSync(const core::Scope& scope, core::Sink& sink, FencedWriter& writer,
                                 ownership::OwnershipStore* ownership, ops::Logger& logger,
                                 const Clock& clock, IncrementalSyncOptions options)
    : scope_(scope),
      sink_(sink),
      writer_(writer),
      logger_(logger),
      clock_(clock),
      options_(std::move(options)),
      trace_random_(options_.trace_seed
                        ? *options_.trace_seed
                        : (uint64_t{std::random_device{}()} << 32) | std::random_device{}()) {
  if (ownership == nullptr) return;
  ownership::OwnershipRecorderOptions recorder = options_.recorder;
  recorder.on_reachable = [this] { OnOwnershipStoreBack(); };
  recorder.on_unreachable = [this](const ownership::OwnershipError& error) {
    logger_.Warn(
        "ownership store unreachable: its updates wait and deletes are deferred until "
        "it answers",
        {{"error", error.message}});
  };
  recorder_ = std::make_unique<ownership::OwnershipRecorder>(*ownership, clock_, recorder);
}

IncrementalSync::~IncrementalSync() {
  Stop();
  StopOwnershipUpdates();
}

std::string IncrementalSync::NewTraceId() {
  char buffer[17];
  std::snprintf(buffer, sizeof(buffer), "%016llx",
                static_cast<unsigned long long>(trace_random_()));
  return buffer;
}

void IncrementalSync::SetSource(core::Source* source) {
  {
    std::lock_guard source_lock(source_mutex_);
    source_ = source;
  }
  Pump();
}

void IncrementalSync::MarkDirty(const std::string& path) {
  if (!scope_.Contains(path)) return;
  {
    std::lock_guard lock(mutex_);
    if (stopped_) return;
    PathState& state = paths_[path];
    if (state.trace_id.empty()) {
      state.trace_id = NewTraceId();
      state.first_event = clock_.Now();
    }
    if (state.busy) {
      state.dirty = true;
    } else if (!state.queued) {
      state.queued = true;
      ready_.push_back(path);
    }
    if (logger_.Enabled(ops::LogLevel::kDebug)) {
      logger_.Debug(options_.change_log_message, {{"path", path}, {"trace_id", state.trace_id}});
    }
  }
  Pump();
}

void IncrementalSync::Resume() { Pump(); }

void IncrementalSync::Pump() {
  while (true) {
    std::lock_guard source_lock(source_mutex_);
    if (source_ == nullptr) return;
    std::string path;
    {
      std::lock_guard lock(mutex_);
      if (stopped_ || ready_.empty() || reads_in_flight_ >= options_.read_window) return;
      path = std::move(ready_.front());
      ready_.pop_front();
      PathState& state = paths_[path];
      state.queued = false;
      state.busy = true;
      ++reads_in_flight_;
    }
    source_->ReadAsync(path, [this, path](core::SourceResult<core::EntryState> entry) {
      OnRead(path, std::move(entry));
    });
  }
}

void IncrementalSync::OnRead(const std::string& path, core::SourceResult<core::EntryState> entry) {
  core::SinkWrite write;
  write.key = path;
  if (entry.ok() && entry->exists) {
    write.type = core::SinkWrite::Type::kPut;
    write.value = std::move(entry->value);
    write.version = entry->version;
  } else if (entry.ok()) {
    write.type = core::SinkWrite::Type::kDelete;
    write.version = entry->observed_at;
  } else {
    // Connection trouble or a closed client: keep the path queued for Resume().
    {
      std::lock_guard lock(mutex_);
      --reads_in_flight_;
      PathState& state = paths_[path];
      state.busy = false;
      state.dirty = false;
      if (!state.queued && !stopped_) {
        state.queued = true;
        ready_.push_front(path);
      }
    }
    logger_.Debug("read failed; retried after reconnect",
                  {{"path", path}, {"error", entry.error().message}});
    return;
  }
  {
    std::lock_guard lock(mutex_);
    --reads_in_flight_;
    paths_[path].read_done = clock_.Now();
    // The node exists (again): nothing is left to delete.
    if (write.type == core::SinkWrite::Type::kPut) deferred_deletes_.erase(path);
  }
  Pump();
  if (write.type == core::SinkWrite::Type::kDelete && recorder_ != nullptr) {
    // Nothing is deleted unless the store answers; the recorder asks it on its own thread.
    recorder_->ConfirmReachable([this, path, write = std::move(write)](bool reachable) mutable {
      if (reachable) {
        Submit(path, std::move(write));
      } else {
        DeferDelete(path, sink_.SinkKeyFor(path));
      }
    });
    return;
  }
  Submit(path, std::move(write));
}

void IncrementalSync::Submit(const std::string& path, core::SinkWrite write) {
  if (write.type == core::SinkWrite::Type::kDelete && options_.on_delete_sent) {
    options_.on_delete_sent(path, write.version);
  }
  core::SinkWrite copy = write;
  writer_.Submit(std::move(write), [this, path, copy = std::move(copy)](const WriteResult& result) {
    OnWritten(path, copy, result);
  });
}

void IncrementalSync::DeferDelete(const std::string& path, const std::string& key) {
  bool first = false;
  bool stopped = false;
  {
    std::lock_guard lock(mutex_);
    stopped = stopped_;
    if (!stopped) first = deferred_deletes_.insert(path).second;
  }
  if (first) {
    logger_.Warn("ownership store unreachable: delete deferred until it answers", {{"key", key}});
  }
  Retire(path);
  Pump();
}

void IncrementalSync::OnOwnershipStoreBack() {
  std::set<std::string> deferred;
  {
    std::lock_guard lock(mutex_);
    deferred.swap(deferred_deletes_);
  }
  logger_.Info("ownership store answers again; retrying deferred deletes",
               {{"deferred_deletes", deferred.size()},
                {"queued_updates", recorder_ ? recorder_->queued() : 0}});
  for (const std::string& path : deferred) MarkDirty(path);
  if (options_.on_ownership_store_back) options_.on_ownership_store_back();
}

void IncrementalSync::OnWritten(const std::string& path, const core::SinkWrite& write,
                                const WriteResult& result) {
  AppliedChange change;
  change.key = sink_.SinkKeyFor(path);
  change.type = write.type;
  change.version = write.version;
  {
    std::lock_guard lock(mutex_);
    const PathState& state = paths_[path];
    change.trace_id = state.trace_id;
    change.delay = clock_.Now() - state.first_event;
    change.read_delay = state.read_done - state.first_event;
  }
  if (result.ok()) {
    change.outcome = *result;
    if (recorder_ != nullptr && *result == core::WriteOutcome::kApplied) {
      // Only queued: the recorder's thread talks to the store.
      if (write.type == core::SinkWrite::Type::kPut) {
        recorder_->Record(change.key, write.value);
      } else {
        recorder_->Forget(change.key);
      }
    }
    if (*result == core::WriteOutcome::kForeign) {
      {
        // Enough for any burst that can race one reconciliation; beyond it the next periodic
        // reconciliation still repairs what an adoption raced.
        constexpr size_t kMaxForeignPaths = 100000;
        std::lock_guard lock(mutex_);
        if (foreign_paths_.size() < kMaxForeignPaths) foreign_paths_.insert(path);
      }
      // Counted in zk2etcd_etcd_op_total{status="foreign"}; per key only at debug level.
      logger_.Debug("foreign key left alone", {{"key", change.key}, {"trace_id", change.trace_id}});
    }
  } else {
    change.error = result.error().message;
    change.not_leader = result.error().code == WriteError::Code::kNotLeader;
    if (change.not_leader) change.fence = result.error().fence;
    // The sink refusing the write needs an operator. A lost leadership or a stop does not, and
    // fails every queued write at once: the step-down (or the drain at a stop) says it once, each
    // write is counted (on_change), and the next leader's full sync repairs what they left.
    const bool refused = result.error().code == WriteError::Code::kRefused;
    logger_.Log(
        refused ? ops::LogLevel::kError : ops::LogLevel::kDebug, "write failed",
        {{"key", change.key}, {"trace_id", change.trace_id}, {"error", result.error().message}});
  }
  if (options_.on_change) options_.on_change(change);
  Retire(path);
  Pump();
}

void IncrementalSync::Retire(const std::string& path) {
  std::lock_guard lock(mutex_);
  auto it = paths_.find(path);
  if (it == paths_.end()) return;
  PathState& state = it->second;
  state.busy = false;
  if (state.dirty && !stopped_) {
    state.dirty = false;
    state.queued = true;
    ready_.push_back(path);
  } else if (!state.queued) {
    paths_.erase(it);
  }
  if (paths_.empty()) idle_.notify_all();
}

void IncrementalSync::RetryForeign() {
  std::unordered_set<std::string> paths;
  {
    std::lock_guard lock(mutex_);
    paths.swap(foreign_paths_);
  }
  for (const std::string& path : paths) MarkDirty(path);
}

void IncrementalSync::ForgetForeign() {
  std::lock_guard lock(mutex_);
  foreign_paths_.clear();
}

size_t IncrementalSync::queue_depth() const {
  std::lock_guard lock(mutex_);
  return paths_.size();
}

size_t IncrementalSync::deferred_deletes() const {
  std::lock_guard lock(mutex_);
  return deferred_deletes_.size();
}

size_t IncrementalSync::ownership_updates_queued() const {
  return recorder_ != nullptr ? recorder_->queued() : 0;
}

void IncrementalSync::ReportOwnershipStoreUnreachable(const ownership::OwnershipError& error) {
  if (recorder_ != nullptr) recorder_->ReportUnreachable(error);
}

size_t IncrementalSync::StopOwnershipUpdates() {
  if (recorder_ == nullptr) return 0;
  return recorder_->Stop();
}

bool IncrementalSync::WaitIdle(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mutex_);
  return idle_.wait_for(lock, timeout, [this] { return paths_.empty(); });
}

void IncrementalSync::Stop() {
  std::lock_guard source_lock(source_mutex_);
  std::lock_guard lock(mutex_);
  stopped_ = true;
  ready_.clear();
  source_ = nullptr;
}

}  // namespace zk2etcd::sync
