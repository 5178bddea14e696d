#include "connectors/zookeeper/zk_walker.h"

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>

namespace zk2etcd::connectors {

namespace {

using Layout = std::vector<std::pair<size_t, bool>>;  // (index in batch, children?) per op

// getData of every node of the batch, and getChildren of those whose subtree may hold in-scope
// nodes.
Layout LayoutOf(const core::Scope& scope, const std::vector<std::string>& batch) {
  Layout layout;
  for (size_t i = 0; i < batch.size(); ++i) {
    layout.emplace_back(i, false);
    if (scope.ShouldDescend(batch[i])) layout.emplace_back(i, true);
  }
  return layout;
}

std::vector<zk::ReadOp> OpsOf(const std::vector<std::string>& batch, const Layout& layout) {
  std::vector<zk::ReadOp> ops;
  ops.reserve(layout.size());
  for (const auto& [index, children] : layout) {
    const std::string& path = batch[index];
    ops.push_back(children ? zk::ReadOp::GetChildren(path) : zk::ReadOp::GetData(path));
  }
  return ops;
}

// The walk's shared state. Callbacks arrive on the clients' delivery threads; the caller waits.
// Every callback holds the walk (shared_from_this): with helper sessions, the later of two
// answers to one request may come after Run() returned, and then looks at nothing but that
// request.
class Walk : public std::enable_shared_from_this<Walk> {
 public:
  using SteadyClock = std::chrono::steady_clock;

  Walk(zk::ZkClient& client, const core::Scope& scope, const WalkOptions& options)
      : scope_(scope), options_(options) {
    sessions_.push_back(&client);
    if (UseMultiRead()) {
      for (zk::ZkClient* helper : options.helpers) {
        if (helper != nullptr) sessions_.push_back(helper);
      }
    }
    spreading_ = sessions_.size() > 1;
    usable_.assign(sessions_.size(), true);
    stalled_.assign(sessions_.size(), false);
    sent_to_.assign(sessions_.size(), 0);
    newest_answered_send_.resize(sessions_.size());  // last_answer_: set by Run()
  }

  Result<core::Snapshot, zk::ZkError> Run() {
    std::vector<std::shared_ptr<MultiRead>> head_reads;
    {
      std::lock_guard lock(mutex_);
      last_answer_.assign(sessions_.size(), SteadyClock::now());
      if (TakeHead()) {
        // The head's requests count as this walk's, sent on the first session when it sent them.
        for (const std::vector<std::string>& batch : options_.head->batches()) {
          int first = 0;
          std::shared_ptr<MultiRead> read = NewMultiReadLocked(batch, &first);
          *read->sent[0] = options_.head->sent_at();
          read->measures_round_trip = options_.head->measures_round_trip();
          ++in_flight_;
          ++tree_.requests;
          head_reads.push_back(std::move(read));
        }
      } else {
        for (const std::string& prefix : scope_.prefixes()) todo_.push_back({prefix, false});
      }
    }
    for (size_t i = 0; i < head_reads.size(); ++i) {
      options_.head->OnAnswer(
          i, [self = shared_from_this(), read = head_reads[i]](
                 zk::ZkResult<zk::MultiReadReply> reply, SteadyClock::time_point answered_at) {
            self->OnMultiRead(read, 0, std::move(reply), answered_at);
          });
    }
    Pump();
    std::unique_lock lock(mutex_);
    const auto finished = [this] { return in_flight_ == 0 && (todo_.empty() || error_); };
    while (!finished()) {
      if (!spreading_) {
        done_.wait(lock, finished);
        break;
      }
      done_.wait_for(lock, kStallCheck);
      std::vector<Resend> resends = StalledLocked(SteadyClock::now());
      if (resends.empty()) continue;
      lock.unlock();
      for (Resend& resend : resends) Send(resend.read, resend.session);
      lock.lock();
    }
    if (error_) return Unexpected{*error_};
    std::sort(tree_.entries.begin(), tree_.entries.end(),
              [](const core::SourceEntry& a, const core::SourceEntry& b) { return a.key < b.key; });
    return std::move(tree_);
  }

 private:
  // How often the waiting caller looks for a stalled session.
  static constexpr auto kStallCheck = std::chrono::milliseconds(5);

  struct Request {
    std::string path;
    bool children;  // getChildren (else getData)
  };

  // One multiRead request, sent on one session or more.
  struct MultiRead {
    uint64_t id = 0;
    std::vector<std::string> batch;
    Layout layout;
    std::vector<std::optional<SteadyClock::time_point>> sent;  // per session
    bool answered = false;
    bool measures_round_trip = true;  // its answer time counts for min_latency_
  };
  struct Resend {
    std::shared_ptr<MultiRead> read;
    int session;
  };

  bool UseMultiRead() const { return options_.multi_read_batch > 1 && !options_.set_watches; }

  // Whether the walk starts from options_.head: sent on its first session, batched as it
  // batches, and not another walk's.
  bool TakeHead() const {
    const std::shared_ptr<WalkHead>& head = options_.head;
    return head != nullptr && UseMultiRead() && head->client() == sessions_[0] &&
           head->multi_read_batch() == options_.multi_read_batch && head->Claim();
  }

  size_t Window() const {
    return UseMultiRead() ? std::max(options_.window, kMinMultiReadWindow) : options_.window;
  }

  // Sends queued requests while the window has room. Never holds the lock while calling the
  // client (a callback may run on another thread at once). A callback's own request still counts
  // as in flight (see Finish), so it may use one slot more.
  void Pump(size_t extra_slots = 0) {
    while (true) {
      Request request;
      std::vector<std::string> batch;
      {
        std::lock_guard lock(mutex_);
        if (error_ || todo_.empty() || in_flight_ >= Window() + extra_slots) return;
        if (options_.cancel != nullptr && options_.cancel->load()) {
          error_ = zk::MakeZkError(zk::ZkErrorCode::kClosed, "walk cancelled");
          return;
        }
        if (UseMultiRead()) {
          while (!todo_.empty() && batch.size() < options_.multi_read_batch) {
            batch.push_back(std::move(todo_.front().path));
            todo_.pop_front();
          }
        } else {
          request = std::move(todo_.front());
          todo_.pop_front();
        }
        ++in_flight_;
        ++tree_.requests;
      }
      if (!batch.empty()) {
        SendMultiRead(std::move(batch));
        continue;
      }
      auto self = shared_from_this();
      if (request.children) {
        sessions_[0]->GetChildren(
            request.path, options_.set_watches,
            [self, path = request.path](zk::ZkResult<zk::ChildrenReply> reply) {
              self->OnChildren(path, std::move(reply));
            });
      } else {
        sessions_[0]->GetData(request.path, options_.set_watches,
                              [self, path = request.path](zk::ZkResult<zk::GetDataReply> reply) {
                                self->OnData(path, std::move(reply));
                              });
      }
    }
  }

  void OnData(const std::string& path, zk::ZkResult<zk::GetDataReply> reply) {
    {
      std::lock_guard lock(mutex_);
      if (reply.ok()) {
        NoteZxid(reply->zxid);
        if (scope_.Contains(path) && Included(path, reply->stat)) {
          tree_.entries.push_back({path, std::move(reply->data), reply->stat.mzxid});
          EntryTaken();
        }
        if ((reply->stat.num_children > 0 || options_.set_watches) && scope_.ShouldDescend(path)) {
          todo_.push_front({path, true});  // depth first keeps the queue short
        }
      } else if (reply.error().code == zk::ZkErrorCode::kNoNode) {
        NoteZxid(reply.error().zxid);
      } else if (!error_) {
        error_ = reply.error();
      }
    }
    Finish();
  }

  void OnChildren(const std::string& path, zk::ZkResult<zk::ChildrenReply> reply) {
    {
      std::lock_guard lock(mutex_);
      if (reply.ok()) {
        NoteZxid(reply->zxid);
        if (options_.on_children) options_.on_children(path, reply->children);
        QueueChildren(path, reply->children);
      } else if (reply.error().code == zk::ZkErrorCode::kNoNode) {
        NoteZxid(reply.error().zxid);
      } else if (!error_) {
        error_ = reply.error();
      }
    }
    Finish();
  }

  void QueueChildren(const std::string& path, const std::vector<std::string>& children) {
    for (const std::string& child : children) {
      std::string child_path = path == "/" ? "/" + child : path + "/" + child;
      if (scope_.Contains(child_path) || scope_.ShouldDescend(child_path)) {
        todo_.push_front({std::move(child_path), false});
      }
    }
  }

  // A read of `batch` (LayoutOf), counted as sent now on `*session` (if negative, on the
  // session SessionForNewLocked picks, returned there).
  std::shared_ptr<MultiRead> NewMultiReadLocked(std::vector<std::string> batch, int* session) {
    auto read = std::make_shared<MultiRead>();
    read->layout = LayoutOf(scope_, batch);
    read->batch = std::move(batch);
    read->sent.resize(sessions_.size());
    read->id = next_id_++;
    if (*session < 0) *session = SessionForNewLocked(*read);
    read->sent[*session] = SteadyClock::now();
    ++sent_to_[*session];
    if (spreading_) waiting_.emplace(read->id, read);
    return read;
  }

  void SendMultiRead(std::vector<std::string> batch) {
    std::shared_ptr<MultiRead> read;
    int session = -1;
    {
      std::lock_guard lock(mutex_);
      read = NewMultiReadLocked(std::move(batch), &session);
    }
    Send(read, session);
  }

  // The first session until it has answered; then, when a round trip is long enough to spread
  // over (`spread_from`), the session with the fewest requests waiting, else the first session
  // unless it is stalled.
  int SessionForNewLocked(const MultiRead& read) const {
    if (!floor_) return 0;
    const bool spread = min_latency_ && *min_latency_ >= options_.spread_from;
    if (!spread && usable_[0] && !stalled_[0]) return 0;
    return PickLocked(read, /*avoid_stalled=*/false);
  }

  // Of the usable sessions `read` was not sent on, the one with the fewest requests waiting,
  // a stalled one last (or not at all with `avoid_stalled`); -1 if there is none.
  int PickLocked(const MultiRead& read, bool avoid_stalled) const {
    int best = -1;
    for (int s = 0; s < static_cast<int>(sessions_.size()); ++s) {
      if (!usable_[s] || read.sent[s] || (avoid_stalled && stalled_[s])) continue;
      if (best < 0 || std::make_pair(bool{stalled_[s]}, sent_to_[s]) <
                          std::make_pair(bool{stalled_[best]}, sent_to_[best])) {
        best = s;
      }
    }
    return best;
  }

  // Sends `read` on `session`; its ops are made from the batch each time (a request is rarely
  // sent twice, and keeping them would copy every path once more).
  void Send(const std::shared_ptr<MultiRead>& read, int session) {
    sessions_[session]->MultiRead(
        OpsOf(read->batch, read->layout),
        [self = shared_from_this(), read, session](zk::ZkResult<zk::MultiReadReply> reply) {
          self->OnMultiRead(read, session, std::move(reply), SteadyClock::now());
        });
  }

  void OnMultiRead(const std::shared_ptr<MultiRead>& read, int session,
                   zk::ZkResult<zk::MultiReadReply> reply, SteadyClock::time_point answered_at) {
    std::vector<Resend> resends;
    bool taken = false;
    {
      std::lock_guard lock(mutex_);
      last_answer_[session] = std::max(last_answer_[session], answered_at);
      stalled_[session] = false;
      --sent_to_[session];
      if (!newest_answered_send_[session] ||
          *read->sent[session] > *newest_answered_send_[session]) {
        newest_answered_send_[session] = read->sent[session];
      }
      // Another session answered first, or this one was given up (its answers no longer count).
      if (read->answered || !usable_[session]) return;
      if (session != 0 && !(reply.ok() && floor_ && reply->zxid >= *floor_)) {
        // Not an answer this walk can use (an error, or a server behind the walk's start): the
        // session is given up for the walk, and what waits on it alone goes elsewhere.
        DropSessionLocked(session, resends);
      } else {
        read->answered = true;
        taken = true;
        waiting_.erase(read->id);
        if (session == 0 && reply.ok() && !floor_) floor_ = reply->zxid;
        const auto latency = answered_at - *read->sent[session];
        if (read->measures_round_trip && (!min_latency_ || latency < *min_latency_)) {
          min_latency_ = latency;
        }
        TakeMultiRead(*read, std::move(reply));
      }
    }
    if (!taken) {
      SendAgain(resends);
      return;
    }
    Finish();
  }

  // Whether `read` waits only on sessions that are stalled or given up.
  bool StuckLocked(const MultiRead& read) const {
    for (size_t s = 0; s < sessions_.size(); ++s) {
      if (read.sent[s] && usable_[s] && !stalled_[s]) return false;
    }
    return true;
  }

  // The requests that wait only on stalled sessions, to send on another. All sessions read from
  // one server, which answers in the order requests arrive, so a session is stalled (a held
  // segment on its connection) when it has answered nothing for a while although another session
  // answered a request sent after its oldest unanswered one; a slow server, which slows every
  // session alike, stalls none. When no other session has anything to answer (the walk's last
  // requests), a session is stalled after `stall` without an answer. It is no longer stalled
  // when it answers.
  std::vector<Resend> StalledLocked(SteadyClock::time_point now) {
    std::vector<Resend> resends;
    if (!spreading_ || !floor_ || error_) return resends;
    const auto min_latency = min_latency_.value_or(SteadyClock::duration::zero());
    const SteadyClock::duration stall =
        std::max<SteadyClock::duration>(options_.min_stall, 2 * min_latency);
    const SteadyClock::duration overtaken_gap =
        std::max<SteadyClock::duration>(options_.min_stall / 2, min_latency);
    std::vector<std::optional<SteadyClock::time_point>> oldest(sessions_.size());
    for (const auto& [id, read] : waiting_) {
      for (size_t s = 0; s < sessions_.size(); ++s) {
        if (read->sent[s] && (!oldest[s] || *read->sent[s] < *oldest[s])) oldest[s] = read->sent[s];
      }
    }
    // Rule (b) looks at the sessions stalled before this pass: a session marked stalled in it
    // still counts as waiting, so that two sessions are not marked at once with nowhere left to
    // send their requests.
    const std::vector<bool> stalled_before = stalled_;
    bool any_stalled = false;
    for (size_t s = 0; s < sessions_.size(); ++s) {
      if (!usable_[s] || stalled_[s] || !oldest[s]) {
        any_stalled = any_stalled || stalled_[s];
        continue;
      }
      const auto quiet = now - std::max(last_answer_[s], *oldest[s]);
      bool overtaken = false, others_waiting = false;
      for (size_t o = 0; o < sessions_.size(); ++o) {
        if (o == s || !usable_[o]) continue;
        overtaken =
            overtaken || (newest_answered_send_[o] && *newest_answered_send_[o] > *oldest[s]);
        others_waiting = others_waiting || (oldest[o] && !stalled_before[o]);
      }
      if ((overtaken && quiet >= overtaken_gap) || (!others_waiting && quiet >= stall)) {
        stalled_[s] = true;
        any_stalled = true;
      }
    }
    if (!any_stalled) return resends;
    for (auto& [id, read] : waiting_) {
      if (!StuckLocked(*read)) continue;
      const int other = PickLocked(*read, /*avoid_stalled=*/true);
      if (other < 0) continue;
      read->sent[other] = now;
      ++sent_to_[other];
      ++tree_.requests_sent_again;
      resends.push_back({read, other});
    }
    return resends;
  }

  // Gives `session` up for this walk; what waits on it alone goes again on another (the first
  // session at least is always usable).
  void DropSessionLocked(int session, std::vector<Resend>& resends) {
    if (!usable_[session]) return;
    usable_[session] = false;
    const auto now = SteadyClock::now();
    for (auto& [id, read] : waiting_) {
      bool waits_elsewhere = false;
      for (size_t s = 0; s < sessions_.size(); ++s) {
        waits_elsewhere = waits_elsewhere || (read->sent[s] && usable_[s]);
      }
      if (waits_elsewhere) continue;
      // The first session is always usable, so a read that waits on no usable session was not
      // sent on it, and there is a session to pick.
      const int other = PickLocked(*read, /*avoid_stalled=*/false);
      read->sent[other] = now;
      ++sent_to_[other];
      ++tree_.requests_sent_again;
      resends.push_back({read, other});
    }
  }

  void TakeMultiRead(const MultiRead& read, zk::ZkResult<zk::MultiReadReply> reply) {
    if (!reply.ok()) {
      if (!error_) error_ = reply.error();
      return;
    }
    if (reply->results.size() != read.layout.size()) {
      if (!error_) {
        error_ = zk::MakeZkError(zk::ZkErrorCode::kMarshalling, "multiRead result count");
      }
      return;
    }
    NoteZxid(reply->zxid);
    for (size_t r = 0; r < read.layout.size(); ++r) {
      zk::ReadResult& result = reply->results[r];
      const std::string& path = read.batch[read.layout[r].first];
      if (result.error == zk::ZkErrorCode::kNoNode) continue;
      if (result.error != zk::ZkErrorCode::kOk) {
        if (!error_) error_ = zk::MakeZkError(result.error, "multiRead " + path);
        continue;
      }
      if (read.layout[r].second) {
        QueueChildren(path, result.children);
      } else if (scope_.Contains(path) && Included(path, result.stat)) {
        tree_.entries.push_back({path, std::move(result.data), result.stat.mzxid});
        EntryTaken();
      }
    }
  }

  void NoteZxid(int64_t zxid) { tree_.point = std::max(tree_.point, zxid); }

  // After an entry was added to the snapshot: hands it over and reports progress.
  void EntryTaken() {
    if (options_.on_entry) options_.on_entry(tree_.entries.back());
    if (options_.on_progress && tree_.entries.size() % 10000 == 0) {
      options_.on_progress(tree_.entries.size());
    }
  }

  bool Included(const std::string& path, const zk::Stat& stat) const {
    return !options_.include || options_.include(path, stat);
  }

  // Sends what the reply queued, then retires the reply. The request stays counted in flight
  // until the very end, so Run() cannot return (and let the caller's client, scope and options
  // go) while a callback still uses them: after the last unlock nothing here touches them.
  void Finish() {
    Pump(1);
    Retire();
  }

  // Ends a callback's hold on the walk: Run() may return once nothing is in flight.
  void Retire() {
    std::lock_guard lock(mutex_);
    --in_flight_;
    if (in_flight_ == 0 && (todo_.empty() || error_)) done_.notify_all();
  }

  // Sends `resends` from a callback, holding the walk meanwhile (as one more request in
  // flight), so that Run() cannot return, and the caller let the sessions go, while a send is
  // under way.
  void SendAgain(std::vector<Resend>& resends) {
    if (resends.empty()) return;
    {
      std::lock_guard lock(mutex_);
      ++in_flight_;
    }
    for (Resend& resend : resends) Send(resend.read, resend.session);
    Retire();
  }

  std::vector<zk::ZkClient*> sessions_;  // the walk's session first, then the helpers
  const core::Scope& scope_;
  const WalkOptions& options_;
  std::mutex mutex_;
  std::condition_variable done_;
  std::deque<Request> todo_;
  size_t in_flight_ = 0;
  std::optional<zk::ZkError> error_;
  core::Snapshot tree_;
  // With helpers: per session, whether the walk still uses it, whether it is stalled, how many
  // sends await its answer, and when it last answered.
  bool spreading_ = false;
  std::vector<bool> usable_;
  std::vector<bool> stalled_;
  std::vector<size_t> sent_to_;
  std::vector<SteadyClock::time_point> last_answer_;
  // Per session, when the latest-sent request it answered was sent.
  std::vector<std::optional<SteadyClock::time_point>> newest_answered_send_;
  uint64_t next_id_ = 0;
  std::map<uint64_t, std::shared_ptr<MultiRead>> waiting_;  // unanswered, when spreading
  std::optional<int64_t> floor_;  // the zxid of the first session's first answer
  std::optional<SteadyClock::duration> min_latency_;
};

// Pipelined getData of a list of paths; same lifetime discipline as Walk.
class NodeReads {
 public:
  NodeReads(zk::ZkClient& client, const std::vector<std::string>& paths,
            const NodeReadOptions& options)
      : client_(client),
        paths_(paths),
        window_(options.multi_read_batch > 1 ? std::max(options.window, kMinMultiReadWindow)
                                             : std::max<size_t>(1, options.window)),
        options_(options),
        states_(paths.size()) {}

  Result<std::vector<core::EntryState>, zk::ZkError> Run() {
    Pump(0);
    std::unique_lock lock(mutex_);
    done_.wait(lock, [this] { return in_flight_ == 0 && (next_ == paths_.size() || error_); });
    if (error_) return Unexpected{*error_};
    return std::move(states_);
  }

 private:
  void Pump(size_t extra_slots) {
    while (true) {
      size_t index;
      size_t end;
      {
        std::lock_guard lock(mutex_);
        if (error_ || next_ == paths_.size() || in_flight_ >= window_ + extra_slots) return;
        index = next_;
        end = BatchEnd(index);
        next_ = end;
        ++in_flight_;
      }
      if (options_.multi_read_batch > 1) {
        SendMultiRead(index, end);
        continue;
      }
      client_.GetData(paths_[index], false, [this, index](zk::ZkResult<zk::GetDataReply> reply) {
        {
          auto state = EntryStateOf(std::move(reply), paths_[index], options_.include);
          std::lock_guard lock(mutex_);
          if (state.ok()) {
            states_[index] = std::move(state).value();
          } else if (!error_) {
            error_ = state.error();
          }
        }
        Pump(1);
        std::lock_guard lock(mutex_);
        --in_flight_;
        if (in_flight_ == 0 && (next_ == paths_.size() || error_)) done_.notify_all();
      });
    }
  }

  // Where the batch starting at `begin` ends.
  size_t BatchEnd(size_t begin) const {
    if (options_.multi_read_batch <= 1) return begin + 1;
    if (options_.expected_bytes == nullptr) {
      return std::min(paths_.size(), begin + options_.multi_read_batch);
    }
    const std::vector<size_t>& expected = *options_.expected_bytes;
    size_t end = begin;
    size_t bytes = 0;
    while (end < paths_.size() &&
           end - begin < std::max<size_t>(1, options_.max_multi_read_batch)) {
      const size_t size = end < expected.size() ? expected[end] : options_.batch_bytes;
      if (end > begin && bytes + size > options_.batch_bytes) break;
      bytes += size;
      ++end;
    }
    return end;
  }

  void SendMultiRead(size_t begin, size_t end) {
    std::vector<zk::ReadOp> ops;
    for (size_t i = begin; i < end; ++i) ops.push_back(zk::ReadOp::GetData(paths_[i]));
    client_.MultiRead(std::move(ops), [this, begin, end](zk::ZkResult<zk::MultiReadReply> reply) {
      {
        std::lock_guard lock(mutex_);
        if (!reply.ok()) {
          if (!error_) error_ = reply.error();
        } else if (reply->results.size() != end - begin) {
          if (!error_) {
            error_ = zk::MakeZkError(zk::ZkErrorCode::kMarshalling, "multiRead result count");
          }
        } else {
          for (size_t i = begin; i < end; ++i) {
            zk::ReadResult& result = reply->results[i - begin];
            core::EntryState& state = states_[i];
            // The zxid at which this read was answered (with multiRead, the whole request's).
            state.observed_at = result.zxid > 0 ? result.zxid : reply->zxid;
            if (result.error == zk::ZkErrorCode::kOk) {
              if (options_.include && !options_.include(paths_[i], result.stat)) continue;
              state.exists = true;
              state.value = std::move(result.data);
              state.version = result.stat.mzxid;
            } else if (result.error != zk::ZkErrorCode::kNoNode && !error_) {
              error_ = zk::MakeZkError(result.error, "multiRead " + paths_[i]);
            }
          }
        }
      }
      Pump(1);
      std::lock_guard lock(mutex_);
      --in_flight_;
      if (in_flight_ == 0 && (next_ == paths_.size() || error_)) done_.notify_all();
    });
  }

  zk::ZkClient& client_;
  const std::vector<std::string>& paths_;
  const size_t window_;
  const NodeReadOptions options_;
  std::mutex mutex_;
  std::condition_variable done_;
  size_t next_ = 0;
  size_t in_flight_ = 0;
  std::optional<zk::ZkError> error_;
  std::vector<core::EntryState> states_;
};

}  // namespace

Result<core::EntryState, zk::ZkError> EntryStateOf(zk::ZkResult<zk::GetDataReply> reply,
                                                   const std::string& path,
                                                   const NodeFilter& include) {
  core::EntryState state;
  if (reply.ok()) {
    state.observed_at = reply->zxid;
    if (include && !include(path, reply->stat)) return state;
    state.exists = true;
    state.value = std::move(reply->data);
    state.version = reply->stat.mzxid;
  } else if (reply.error().code == zk::ZkErrorCode::kNoNode) {
    state.observed_at = reply.error().zxid;
  } else {
    return Unexpected{reply.error()};
  }
  return state;
}

Result<std::vector<core::EntryState>, zk::ZkError> ReadNodes(zk::ZkClient& client,
                                                             const std::vector<std::string>& paths,
                                                             const NodeReadOptions& options) {
  NodeReads reads(client, paths, options);
  return reads.Run();
}

std::shared_ptr<WalkHead> WalkHead::Send(zk::ZkClient& client, const core::Scope& scope,
                                         size_t multi_read_batch) {
  std::shared_ptr<WalkHead> head(new WalkHead());
  head->client_ = &client;
  head->multi_read_batch_ = multi_read_batch;
  const std::vector<std::string>& prefixes = scope.prefixes();
  for (size_t begin = 0; begin < prefixes.size(); begin += std::max<size_t>(1, multi_read_batch)) {
    const size_t end = std::min(prefixes.size(), begin + std::max<size_t>(1, multi_read_batch));
    head->batches_.emplace_back(prefixes.begin() + begin, prefixes.begin() + end);
  }
  head->slots_.resize(head->batches_.size());
  head->measures_round_trip_ = client.session().state == zk::SessionState::kConnected;
  head->sent_at_ = std::chrono::steady_clock::now();
  for (size_t i = 0; i < head->batches_.size(); ++i) {
    const std::vector<std::string>& batch = head->batches_[i];
    client.MultiRead(
        OpsOf(batch, LayoutOf(scope, batch)),
        [head, i](zk::ZkResult<zk::MultiReadReply> reply) { head->Answered(i, std::move(reply)); });
  }
  return head;
}

void WalkHead::Answered(size_t batch, zk::ZkResult<zk::MultiReadReply> reply) {
  const auto now = std::chrono::steady_clock::now();
  Answer answer;
  {
    std::lock_guard lock(mutex_);
    Slot& slot = slots_[batch];
    if (!slot.answer) {
      slot.reply = std::move(reply);
      slot.answered_at = now;
      return;
    }
    answer = std::move(slot.answer);
    slot.answer = nullptr;
  }
  answer(std::move(reply), now);
}

void WalkHead::OnAnswer(size_t batch, Answer answer) {
  std::optional<zk::ZkResult<zk::MultiReadReply>> reply;
  std::chrono::steady_clock::time_point answered_at;
  {
    std::lock_guard lock(mutex_);
    Slot& slot = slots_[batch];
    if (!slot.reply) {
      slot.answer = std::move(answer);
      return;
    }
    reply = std::move(slot.reply);
    slot.reply.reset();
    answered_at = slot.answered_at;
  }
  answer(std::move(*reply), answered_at);
}

Result<core::Snapshot, zk::ZkError> WalkZkTree(zk::ZkClient& client, const core::Scope& scope,
                                               const WalkOptions& options) {
  return std::make_shared<Walk>(client, scope, options)->Run();
}

}  // namespace zk2etcd::connectors
