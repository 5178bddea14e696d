#include "connectors/etcd/etcd_source.h"

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <map>
#include <optional>
#include <thread>
#include <utility>

#include "common/strings.h"

namespace zk2etcd::connectors {

using core::SourceError;
using ReadCallback = std::function<void(core::SourceResult<core::EntryState>)>;

namespace {

core::EntryState EntryStateOf(const etcd::OpResponse& range, int64_t observed_at) {
  core::EntryState state;
  state.observed_at = observed_at;
  if (range.kvs.empty()) return state;
  const etcd::KeyValue& kv = range.kvs.front();
  state.exists = true;
  state.value = kv.value;
  state.version = kv.mod_revision;
  state.lease = kv.lease;
  return state;
}

etcd::Op RangeOfKey(const std::string& key) {
  etcd::RangeRequest request;
  request.key = key;
  return etcd::Op::Range(std::move(request));
}

etcd::CallOptions ReadOnly() {
  etcd::CallOptions options;
  options.safe_to_retry = true;  // a read-only transaction may be sent again
  return options;
}

core::SourceChange ChangeOf(etcd::WatchEvent& event) {
  core::SourceChange change;
  change.key = std::move(event.kv.key);
  change.exists = event.type == etcd::WatchEvent::Type::kPut;
  change.version = event.kv.mod_revision;  // a delete's: the revision of the delete
  if (change.exists) {
    change.value = std::move(event.kv.value);
    change.lease = event.kv.lease;
  }
  return change;
}

}  // namespace

SourceError SourceErrorOf(const etcd::Error& error, std::string_view what) {
  SourceError::Code code = SourceError::Code::kOther;
  switch (error.code) {
    case etcd::ErrorCode::kUnavailable:
    case etcd::ErrorCode::kDeadlineExceeded:
    case etcd::ErrorCode::kResourceExhausted:
    case etcd::ErrorCode::kTlsFailed:
    case etcd::ErrorCode::kInternal:
      code = SourceError::Code::kUnavailable;
      break;
    case etcd::ErrorCode::kCompacted:
      code = SourceError::Code::kCompacted;
      break;
    case etcd::ErrorCode::kAuthFailed:
    case etcd::ErrorCode::kPermissionDenied:
      code = SourceError::Code::kAuthFailed;
      break;
    case etcd::ErrorCode::kCancelled:
      code = SourceError::Code::kClosed;
      break;
    default:
      code = SourceError::Code::kOther;
      break;
  }
  return SourceError{code, "etcd: " + std::string(what) + ": " + error.ToString()};
}

// One thread, started on first use, that runs posted tasks in order; the destructor runs what
// is left, then joins.
class EtcdSource::DeliveryThread {
 public:
  ~DeliveryThread() {
    {
      std::lock_guard lock(mutex_);
      stop_ = true;
    }
    wake_.notify_all();
    if (thread_.joinable()) thread_.join();
  }

  void Post(std::function<void()> task) {
    {
      std::lock_guard lock(mutex_);
      queue_.push_back(std::move(task));
      ++posted_;
      if (!thread_.joinable()) {
        thread_ = std::thread([this] { Loop(); });
        thread_id_ = thread_.get_id();
      }
    }
    wake_.notify_all();
  }

  // Waits until every task posted so far has run. Does nothing on the delivery thread itself.
  void Flush() {
    std::unique_lock lock(mutex_);
    if (std::this_thread::get_id() == thread_id_) return;
    const uint64_t target = posted_;
    ran_.wait(lock, [&] { return finished_ >= target; });
  }

 private:
  void Loop() {
    while (true) {
      std::function<void()> task;
      {
        std::unique_lock lock(mutex_);
        wake_.wait(lock, [this] { return stop_ || !queue_.empty(); });
        if (queue_.empty()) return;
        task = std::move(queue_.front());
        queue_.pop_front();
      }
      task();
      task = nullptr;  // what it holds goes before Flush() returns
      {
        std::lock_guard lock(mutex_);
        ++finished_;
      }
      ran_.notify_all();
    }
  }

  std::mutex mutex_;
  std::condition_variable wake_;
  std::condition_variable ran_;
  std::deque<std::function<void()>> queue_;
  uint64_t posted_ = 0;
  uint64_t finished_ = 0;
  bool stop_ = false;
  std::thread thread_;
  std::thread::id thread_id_;
};

// What the client's read callbacks share with the source, which they may outlive.
struct EtcdSource::ReadRegistry {
  std::mutex mutex;
  std::condition_variable changed;  // a read finished, or Close() came
  uint64_t epoch = 0;               // Close() calls so far
  uint64_t next_id = 0;
  std::map<uint64_t, ReadCallback> owed;  // ReadAsync callbacks not yet taken
  size_t running = 0;                     // ReadAsync callbacks running now
};

EtcdSource::EtcdSource(etcd::EtcdClient& client, std::string prefix, EtcdSourceOptions options)
    : client_(client),
      prefix_(std::move(prefix)),
      options_(options),
      reads_(std::make_shared<ReadRegistry>()),
      delivery_(std::make_unique<DeliveryThread>()) {}

EtcdSource::~EtcdSource() {
  Close();
  delivery_.reset();
}

uint64_t EtcdSource::CurrentEpoch() const {
  std::lock_guard lock(mutex_);
  return epoch_;
}

SourceError EtcdSource::ClosedError(std::string_view what) const {
  return SourceError{SourceError::Code::kClosed,
                     "etcd: " + std::string(what) + ": the source was closed"};
}

SourceError EtcdSource::ErrorOf(const etcd::Error& error, std::string_view what,
                                uint64_t epoch) const {
  if (CurrentEpoch() != epoch) return ClosedError(what);
  return SourceErrorOf(error, what);
}

core::SourceResult<int64_t> EtcdSource::CurrentPoint() {
  const uint64_t epoch = CurrentEpoch();
  etcd::RangeRequest request = etcd::RangeRequest::Prefix(prefix_);
  request.limit = 1;
  request.count_only = true;
  auto response = client_.Range(request);
  if (!response.ok()) return Unexpected{ErrorOf(response.error(), "reading the revision", epoch)};
  return response->revision;
}

core::SourceResult<void> EtcdSource::Open(core::SourceListener& listener) {
  return OpenAfter(listener, 0);
}

core::SourceResult<void> EtcdSource::OpenAfter(core::SourceListener& listener, int64_t point) {
  const uint64_t epoch = CurrentEpoch();
  {
    std::lock_guard lock(mutex_);
    if (open_) return Unexpected{SourceError{SourceError::Code::kOther, "etcd: already open"}};
  }
  if (point <= 0) {
    auto current = CurrentPoint();
    if (!current.ok()) return Unexpected{std::move(current).error()};
    point = *current;
  } else {
    // A point ahead of the source (a restored or replaced cluster) is no history of this one
    // either: the caller must reconcile, as after a compaction.
    auto current = CurrentPoint();
    if (!current.ok()) return Unexpected{std::move(current).error()};
    if (point > *current) {
      return Unexpected{SourceError{
          SourceError::Code::kCompacted,
          "etcd: revision " + std::to_string(point) + " is ahead of the source's revision " +
              std::to_string(*current) + " (a restored or different cluster)"}};
    }
    // A compacted start fails here, not later as an event: a Range at `point` fails exactly when
    // the history after it may be incomplete.
    etcd::RangeRequest probe = etcd::RangeRequest::Prefix(prefix_);
    probe.limit = 1;
    probe.count_only = true;
    probe.revision = point;
    auto response = client_.Range(probe);
    if (!response.ok()) {
      return Unexpected{ErrorOf(response.error(),
                                "opening the change stream of prefix " + Quoted(prefix_) +
                                    " after revision " + std::to_string(point),
                                epoch)};
    }
  }

  std::lock_guard lock(mutex_);
  if (epoch_ != epoch) return Unexpected{ClosedError("opening the change stream")};
  if (open_) return Unexpected{SourceError{SourceError::Code::kOther, "etcd: already open"}};
  listener_ = &listener;
  open_ = true;
  stream_ended_ = false;
  next_point_ = point + 1;
  const std::string reason = options_.change_stream ? "watching etcd prefix " + Quoted(prefix_) +
                                                          " after revision " + std::to_string(point)
                                                    : "connected to etcd (no change stream)";
  delivery_->Post([this, epoch, reason] {
    DeliverEvent(epoch, core::SourceEvent{core::SourceEventType::kConnected, reason});
  });
  if (options_.change_stream) {
    // The callback never runs inline, and only posts to the delivery thread (no mutex_).
    etcd::WatchRequest request = etcd::WatchRequest::Prefix(prefix_, point + 1);
    request.report_interruptions = true;  // kDisconnected and kReconnected
    watch_ = client_.Watch(request, [this, epoch](etcd::EtcdResult<etcd::WatchEvents> result) {
      OnWatchResult(epoch, std::move(result));
    });
  }
  return {};
}

void EtcdSource::Close() {
  // One Close at a time: a Close that comes while another runs waits for it, so that the source
  // may be destroyed as soon as any Close returns.
  std::lock_guard close_lock(close_mutex_);
  std::unique_ptr<etcd::CallHandle> watch;
  {
    std::lock_guard lock(mutex_);
    ++epoch_;
    listener_ = nullptr;
    open_ = false;
    stream_ended_ = false;
    watch = std::move(watch_);
  }
  // Once Cancel returns, the watch's callback is not running and will not run again.
  if (watch != nullptr) watch->Cancel();
  std::map<uint64_t, ReadCallback> owed;
  {
    std::lock_guard lock(reads_->mutex);
    ++reads_->epoch;
    owed.swap(reads_->owed);
  }
  reads_->changed.notify_all();  // blocking Rereads fail with kClosed
  for (auto& [id, done] : owed) {
    delivery_->Post([done = std::move(done)] {
      done(Unexpected{SourceError{SourceError::Code::kUnavailable,
                                  "etcd: reading a key: the source was closed"}});
    });
  }
  // Deliveries queued for this epoch see the new one and are dropped; the owed reads run.
  delivery_->Flush();
  // ReadAsync callbacks that took their entry before the swap finish before Close returns.
  std::unique_lock lock(reads_->mutex);
  reads_->changed.wait(lock, [this] { return reads_->running == 0; });
}

void EtcdSource::OnWatchResult(uint64_t epoch, etcd::EtcdResult<etcd::WatchEvents> result) {
  delivery_->Post(
      [this, epoch, result = std::move(result)]() mutable { Deliver(epoch, std::move(result)); });
}

core::SourceListener* EtcdSource::ListenerFor(uint64_t epoch) const {
  std::lock_guard lock(mutex_);
  if (epoch != epoch_ || stream_ended_) return nullptr;
  return listener_;
}

void EtcdSource::DeliverEvent(uint64_t epoch, core::SourceEvent event) {
  core::SourceListener* listener = ListenerFor(epoch);
  if (listener != nullptr) listener->OnSourceEvent(event);
}

void EtcdSource::Deliver(uint64_t epoch, etcd::EtcdResult<etcd::WatchEvents> result) {
  if (!result.ok()) {
    const etcd::Error& error = result.error();
    core::SourceEvent event;
    const std::string watch = "etcd: the watch of prefix " + Quoted(prefix_);
    switch (error.code) {
      case etcd::ErrorCode::kCompacted:
        event = {core::SourceEventType::kCompacted,
                 watch + " fell behind a compaction: " + error.ToString()};
        break;
      case etcd::ErrorCode::kAuthFailed:
      case etcd::ErrorCode::kPermissionDenied:
        event = {core::SourceEventType::kFatal, watch + " was refused: " + error.ToString()};
        break;
      default:
        event = {core::SourceEventType::kLost, watch + " ended: " + error.ToString()};
        break;
    }
    core::SourceListener* listener;
    {
      std::lock_guard lock(mutex_);
      if (epoch != epoch_ || stream_ended_ || listener_ == nullptr) return;
      stream_ended_ = true;  // nothing more is delivered until Close
      listener = listener_;
    }
    listener->OnSourceEvent(event);
    return;
  }

  if (result->interrupted || result->resumed) {
    // The stream resumes by itself from the next revision: nothing is missed meanwhile.
    const std::string watch = "etcd: the watch of prefix " + Quoted(prefix_);
    const core::SourceEvent event =
        result->resumed ? core::SourceEvent{core::SourceEventType::kReconnected,
                                            watch + " resumed where it stopped"}
                        : core::SourceEvent{core::SourceEventType::kDisconnected,
                                            watch + " was interrupted: " + *result->interrupted};
    core::SourceListener* listener;
    {
      std::lock_guard lock(mutex_);
      if (epoch != epoch_ || stream_ended_ || listener_ == nullptr) return;
      listener = listener_;
    }
    listener->OnSourceEvent(event);
    return;
  }
  int64_t next_point;
  {
    std::lock_guard lock(mutex_);
    if (epoch != epoch_ || stream_ended_) return;
    next_point = next_point_;
  }
  // One ChangeSet per revision; etcd never splits a revision across two batches.
  std::vector<core::ChangeSet> sets;
  for (etcd::WatchEvent& event : result->events) {
    const int64_t revision = event.kv.mod_revision;
    if (revision < next_point) continue;               // delivered before
    if (!event.kv.key.starts_with(prefix_)) continue;  // outside the scope
    if (sets.empty() || sets.back().point != revision) {
      sets.push_back(core::ChangeSet{revision, {}});
    }
    sets.back().changes.push_back(ChangeOf(event));
  }
  for (core::ChangeSet& set : sets) {
    core::SourceListener* listener;
    {
      std::lock_guard lock(mutex_);
      if (epoch != epoch_ || stream_ended_) return;
      next_point_ = std::max(next_point_, set.point + 1);
      listener = listener_;
    }
    listener->OnChangeSet(std::move(set));
  }
}

core::SourceResult<core::Snapshot> EtcdSource::ReadSnapshot(const core::SnapshotOptions& options) {
  const uint64_t epoch = CurrentEpoch();
  const std::string what = "reading the snapshot of prefix " + Quoted(prefix_);
  auto stopped = [&] {
    return (options.cancel != nullptr && options.cancel->load()) || CurrentEpoch() != epoch;
  };
  if (stopped()) return Unexpected{ClosedError(what)};
  core::Snapshot snapshot;
  snapshot.exact = true;
  bool cut_short = false;
  auto revision =
      etcd::ForEachPage(client_, etcd::RangeRequest::Prefix(prefix_), options_.page_size,
                        [&](etcd::RangeResponse& page) {
                          ++snapshot.requests;
                          for (etcd::KeyValue& kv : page.kvs) {
                            if (!kv.key.starts_with(prefix_)) continue;
                            snapshot.entries.push_back(core::SourceEntry{
                                std::move(kv.key), std::move(kv.value), kv.mod_revision, kv.lease});
                          }
                          if (options.on_progress) options.on_progress(snapshot.entries.size());
                          cut_short = stopped();
                          return !cut_short;
                        });
  if (!revision.ok()) return Unexpected{ErrorOf(revision.error(), what, epoch)};
  if (cut_short) return Unexpected{ClosedError(what)};
  snapshot.point = *revision;
  return snapshot;
}

core::SourceResult<std::vector<core::EntryState>> EtcdSource::Reread(
    const std::vector<std::string>& keys, const core::RereadOptions& options) {
  const std::string what = "re-reading " + std::to_string(keys.size()) + " keys";
  struct Call {
    std::vector<core::EntryState> states;
    size_t in_flight = 0;
    std::optional<etcd::Error> error;
  };
  auto call = std::make_shared<Call>();
  call->states.resize(keys.size());
  const size_t batch = std::clamp<size_t>(options_.reread_batch, 1, etcd::kDefaultMaxTxnOps);
  const size_t window = std::max<size_t>(options.window, 1);
  std::shared_ptr<ReadRegistry> registry = reads_;

  std::unique_lock lock(registry->mutex);
  const uint64_t epoch = registry->epoch;
  auto closed = [&] { return registry->epoch != epoch; };
  for (size_t begin = 0; begin < keys.size(); begin += batch) {
    registry->changed.wait(
        lock, [&] { return call->in_flight < window || call->error.has_value() || closed(); });
    if (call->error.has_value() || closed()) break;
    const size_t end = std::min(keys.size(), begin + batch);
    etcd::TxnRequest txn;
    for (size_t i = begin; i < end; ++i) txn.success.push_back(RangeOfKey(keys[i]));
    ++call->in_flight;
    lock.unlock();
    client_.TxnAsync(
        std::move(txn), ReadOnly(),
        [registry, call, begin, end](etcd::EtcdResult<etcd::TxnResponse> result) {
          std::lock_guard callback_lock(registry->mutex);
          --call->in_flight;
          if (!result.ok()) {
            if (!call->error) call->error = result.error();
          } else if (result->responses.size() != end - begin) {
            if (!call->error) {
              call->error = etcd::Error{etcd::ErrorCode::kInternal,
                                        "unexpected shape of a read-only transaction's "
                                        "response",
                                        0};
            }
          } else {
            for (size_t i = begin; i < end; ++i) {
              call->states[i] = EntryStateOf(result->responses[i - begin], result->revision);
            }
          }
          registry->changed.notify_all();
        });
    lock.lock();
  }
  registry->changed.wait(lock, [&] { return call->in_flight == 0 || closed(); });
  if (closed()) return Unexpected{ClosedError(what)};
  if (call->error) {
    const etcd::Error error = *call->error;
    lock.unlock();
    return Unexpected{SourceErrorOf(error, what)};
  }
  return std::move(call->states);
}

void EtcdSource::ReadAsync(const std::string& key,
                           std::function<void(core::SourceResult<core::EntryState>)> done) {
  std::shared_ptr<ReadRegistry> registry = reads_;
  uint64_t id;
  {
    std::lock_guard lock(registry->mutex);
    id = registry->next_id++;
    registry->owed.emplace(id, std::move(done));
  }
  etcd::TxnRequest txn;
  txn.success.push_back(RangeOfKey(key));
  client_.TxnAsync(
      std::move(txn), ReadOnly(), [registry, id, key](etcd::EtcdResult<etcd::TxnResponse> result) {
        ReadCallback owed;
        {
          std::lock_guard lock(registry->mutex);
          auto it = registry->owed.find(id);
          if (it == registry->owed.end()) return;  // Close() answered it
          owed = std::move(it->second);
          registry->owed.erase(it);
          ++registry->running;
        }
        const std::string what = "reading key " + Quoted(key);
        if (!result.ok()) {
          owed(Unexpected{SourceErrorOf(result.error(), what)});
        } else if (result->responses.size() != 1) {
          owed(Unexpected{SourceError{SourceError::Code::kOther,
                                      "etcd: " + what + ": unexpected shape of the response"}});
        } else {
          owed(EntryStateOf(result->responses.front(), result->revision));
        }
        owed = nullptr;  // what the callback holds goes before Close() may return
        {
          std::lock_guard lock(registry->mutex);
          --registry->running;
        }
        registry->changed.notify_all();
      });
}

core::SourceStatus EtcdSource::Status() const {
  core::SourceStatus status;
  std::lock_guard lock(mutex_);
  status.connected = open_ && !stream_ended_;
  status.watches = open_ && watch_ != nullptr && !stream_ended_ ? 1 : 0;
  return status;
}

}  // namespace zk2etcd::connectors
