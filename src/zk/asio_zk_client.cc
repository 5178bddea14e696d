#include "zk/asio_zk_client.h"

#include <asio.hpp>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <future>
#include <limits>
#include <mutex>
#include <optional>
#include <random>
#include <thread>

#include "ops/log.h"
#include "zk/connect_string.h"
#include "zk/protocol.h"
#include "zk/session.h"
#include "zk/watch_registry.h"

namespace zk2etcd::zk {

namespace {

using SteadyTime = std::chrono::steady_clock::time_point;
using std::chrono::duration_cast;
using std::chrono::milliseconds;

constexpr size_t kReadChunk = 64 * 1024;
constexpr size_t kMaxWriteBatch = 256 * 1024;
constexpr auto kMaxCloseWait = std::chrono::seconds(2);
constexpr int32_t kServerNoNode = -101;
constexpr int32_t kServerAuthFailed = -115;

int64_t Millis(std::chrono::steady_clock::duration d) {
  return duration_cast<milliseconds>(d).count();
}

// Work for the delivery thread.
class Completion {
 public:
  virtual ~Completion() = default;
  virtual void Run() = 0;
};

template <typename F>
class FunctionCompletion final : public Completion {
 public:
  explicit FunctionCompletion(F f) : f_(std::move(f)) {}
  void Run() override { f_(); }

 private:
  F f_;
};

template <typename F>
std::unique_ptr<Completion> MakeCompletion(F f) {
  return std::make_unique<FunctionCompletion<F>>(std::move(f));
}

// The delivery thread: runs completions one at a time, in the order they were pushed.
class DeliveryQueue {
 public:
  DeliveryQueue() : thread_([this] { Loop(); }) {}
  ~DeliveryQueue() { StopAndJoin(); }

  // Queues `completion` and returns true, or returns false (leaving it) once the thread ended.
  bool TryPush(std::unique_ptr<Completion>& completion) {
    {
      std::lock_guard lock(mutex_);
      if (finished_) return false;
      queue_.push_back(std::move(completion));
    }
    cv_.notify_one();
    return true;
  }

  // REQUIRES: the thread has not ended (the client pushes only before it stops the queue).
  void PushAll(std::vector<std::unique_ptr<Completion>>& batch) {
    {
      std::lock_guard lock(mutex_);
      for (auto& c : batch) queue_.push_back(std::move(c));
    }
    batch.clear();
    cv_.notify_one();
  }

  // Lets the thread run everything queued (and whatever that queues), then end; joins it unless
  // called on it.
  void StopAndJoin() {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
    }
    cv_.notify_one();
    if (OnDeliveryThread()) return;
    std::lock_guard join_lock(join_mutex_);
    if (thread_.joinable()) thread_.join();
  }

  bool OnDeliveryThread() const { return std::this_thread::get_id() == thread_.get_id(); }

 private:
  void Loop() {
    std::vector<std::unique_ptr<Completion>> batch;
    while (true) {
      {
        std::unique_lock lock(mutex_);
        cv_.wait(lock, [this] { return !queue_.empty() || stopping_; });
        if (queue_.empty()) {
          finished_ = true;
          return;
        }
        batch.swap(queue_);
      }
      for (auto& completion : batch) completion->Run();
      batch.clear();
    }
  }

  std::mutex mutex_;
  std::condition_variable cv_;
  std::vector<std::unique_ptr<Completion>> queue_;
  bool stopping_ = false;
  bool finished_ = false;
  std::mutex join_mutex_;
  std::thread thread_;  // last: starts after the rest is constructed
};

enum class ReplyOutcome { kSuccess, kNoNode, kError, kMalformed };

// What a request's decoder needs besides the reply.
struct DecodeInfo {
  std::string what;  // "get /a": the operation and client path, for messages
  std::string_view chroot;
  std::vector<std::string> multi_whats;  // multi: one description per operation
  std::vector<ReadOp::Kind> read_kinds;  // multi-read: the kind of each read
  bool removing_persistent = false;      // removeWatches of a persistent type
};

// A request on its way: encoded, then sent, then answered (or failed), then delivered.
class Request : public Completion {
 public:
  virtual ReplyOutcome Decode(const proto::ReplyHeader& header, JuteReader& body) = 0;
  virtual void Fail(ZkError error) = 0;

  DecodeInfo info;
  std::string frame;
  std::string server_path;  // set when the reply changes the watch registry
  WatchKind watch_on_success = WatchKind::kNone;
  WatchKind watch_on_no_node = WatchKind::kNone;
  std::optional<WatcherType> remove_on_success;
  bool counts_in_window = true;
  bool is_close = false;
  int32_t xid = 0;
  SteadyTime enqueued{};
  std::chrono::nanoseconds duration{0};
};

template <typename T>
using DecodeFn = ReplyOutcome (*)(const proto::ReplyHeader&, JuteReader&, const DecodeInfo&,
                                  std::optional<ZkResult<T>>*);

template <typename T>
class TypedRequest final : public Request {
 public:
  TypedRequest(DecodeFn<T> decode, ZkCallback<T> done, std::string_view op_name,
               OpObserver* observer)
      : decode_(decode), done_(std::move(done)), op_name_(op_name), observer_(observer) {}

  ReplyOutcome Decode(const proto::ReplyHeader& header, JuteReader& body) override {
    return decode_(header, body, info, &result_);
  }
  void Fail(ZkError error) override { result_.emplace(Unexpected{std::move(error)}); }
  void Run() override {
    if (!result_) result_.emplace(Unexpected{MakeZkError(ZkErrorCode::kClosed, info.what)});
    if (observer_ != nullptr) {
      observer_->OnOp(op_name_, result_->ok() ? "success" : ZkErrorLabel(result_->error().code),
                      duration);
    }
    if (done_) done_(std::move(*result_));
  }

 private:
  DecodeFn<T> decode_;
  ZkCallback<T> done_;
  std::string_view op_name_;
  OpObserver* observer_;
  std::optional<ZkResult<T>> result_;
};

// --- Reply decoders -------------------------------------------------------------------------

template <typename T>
ReplyOutcome ServerError(const proto::ReplyHeader& h, const DecodeInfo& info,
                         std::optional<ZkResult<T>>* out) {
  out->emplace(Unexpected{MakeZkError(ZkErrorCodeFromServer(h.err), info.what, h.zxid)});
  return h.err == kServerNoNode ? ReplyOutcome::kNoNode : ReplyOutcome::kError;
}

ReplyOutcome DecodeGetData(const proto::ReplyHeader& h, JuteReader& r, const DecodeInfo& info,
                           std::optional<ZkResult<GetDataReply>>* out) {
  if (h.err != 0) return ServerError(h, info, out);
  GetDataReply reply;
  reply.zxid = h.zxid;
  if (!proto::ReadGetDataResponse(r, &reply.data, &reply.stat)) return ReplyOutcome::kMalformed;
  out->emplace(std::move(reply));
  return ReplyOutcome::kSuccess;
}

ReplyOutcome DecodeChildren(const proto::ReplyHeader& h, JuteReader& r, const DecodeInfo& info,
                            std::optional<ZkResult<ChildrenReply>>* out) {
  if (h.err != 0) return ServerError(h, info, out);
  ChildrenReply reply;
  reply.zxid = h.zxid;
  if (!proto::ReadGetChildren2Response(r, &reply.children, &reply.stat)) {
    return ReplyOutcome::kMalformed;
  }
  out->emplace(std::move(reply));
  return ReplyOutcome::kSuccess;
}

ReplyOutcome DecodeExists(const proto::ReplyHeader& h, JuteReader& r, const DecodeInfo& info,
                          std::optional<ZkResult<ExistsReply>>* out) {
  if (h.err == kServerNoNode) {
    out->emplace(ExistsReply{std::nullopt, h.zxid});
    return ReplyOutcome::kNoNode;
  }
  if (h.err != 0) return ServerError(h, info, out);
  Stat stat;
  if (!proto::ReadStat(r, &stat)) return ReplyOutcome::kMalformed;
  out->emplace(ExistsReply{stat, h.zxid});
  return ReplyOutcome::kSuccess;
}

ReplyOutcome DecodeCreate(const proto::ReplyHeader& h, JuteReader& r, const DecodeInfo& info,
                          std::optional<ZkResult<CreateReply>>* out) {
  if (h.err != 0) return ServerError(h, info, out);
  CreateReply reply;
  reply.zxid = h.zxid;
  std::string path;
  if (!proto::ReadCreate2Response(r, &path, &reply.stat)) return ReplyOutcome::kMalformed;
  reply.path = ClientPath(info.chroot, path);
  out->emplace(std::move(reply));
  return ReplyOutcome::kSuccess;
}

ReplyOutcome DecodeSetData(const proto::ReplyHeader& h, JuteReader& r, const DecodeInfo& info,
                           std::optional<ZkResult<SetDataReply>>* out) {
  if (h.err != 0) return ServerError(h, info, out);
  SetDataReply reply;
  reply.zxid = h.zxid;
  if (!proto::ReadStat(r, &reply.stat)) return ReplyOutcome::kMalformed;
  out->emplace(reply);
  return ReplyOutcome::kSuccess;
}

ReplyOutcome DecodeSync(const proto::ReplyHeader& h, JuteReader& r, const DecodeInfo& info,
                        std::optional<ZkResult<SyncReply>>* out) {
  if (h.err != 0) return ServerError(h, info, out);
  SyncReply reply;
  reply.zxid = h.zxid;
  std::string path;
  if (!r.ReadBuffer(&path)) return ReplyOutcome::kMalformed;
  reply.path = ClientPath(info.chroot, path);
  out->emplace(std::move(reply));
  return ReplyOutcome::kSuccess;
}

ReplyOutcome DecodeAck(const proto::ReplyHeader& h, JuteReader& /*r*/, const DecodeInfo& info,
                       std::optional<ZkResult<Ack>>* out) {
  if (h.err != 0) return ServerError(h, info, out);
  out->emplace(Ack{h.zxid});
  return ReplyOutcome::kSuccess;
}

// ZooKeeper before 3.9 has no watcher types 4 and 5 and answers a marshalling error.
ReplyOutcome DecodeRemoveWatches(const proto::ReplyHeader& h, JuteReader& r, const DecodeInfo& info,
                                 std::optional<ZkResult<Ack>>* out) {
  constexpr int32_t kServerMarshalling = -5;
  if (h.err == kServerMarshalling && info.removing_persistent) {
    out->emplace(Unexpected{ZkError{
        ZkErrorCode::kUnimplemented,
        info.what + ": the server cannot remove persistent watches by type (ZooKeeper 3.9+); "
                    "WatcherType::kAny removes every watch on the path",
        h.zxid}});
    return ReplyOutcome::kError;
  }
  return DecodeAck(h, r, info, out);
}

ReplyOutcome DecodeMulti(const proto::ReplyHeader& h, JuteReader& r, const DecodeInfo& info,
                         std::optional<ZkResult<MultiReply>>* out) {
  if (h.err != 0) return ServerError(h, info, out);
  MultiReply reply;
  reply.zxid = h.zxid;
  const size_t expected = info.multi_whats.size();
  if (!proto::ReadMultiResponse(r, expected, &reply.results)) return ReplyOutcome::kMalformed;
  if (reply.results.size() != expected) {
    r.Fail("multi reply has " + std::to_string(reply.results.size()) + " results for " +
           std::to_string(expected) + " operations");
    return ReplyOutcome::kMalformed;
  }
  for (size_t i = 0; i < expected; ++i) {
    const ZkErrorCode code = reply.results[i].error;
    if (code != ZkErrorCode::kOk && code != ZkErrorCode::kRuntimeInconsistency) {
      out->emplace(Unexpected{MakeZkError(
          code, info.what + ": operation " + std::to_string(i) + " (" + info.multi_whats[i] + ")",
          h.zxid)});
      return ReplyOutcome::kError;
    }
  }
  for (auto& result : reply.results) {
    if (result.error != ZkErrorCode::kOk) {
      out->emplace(Unexpected{MakeZkError(result.error, info.what, h.zxid)});
      return ReplyOutcome::kError;
    }
    if (!result.path.empty()) result.path = ClientPath(info.chroot, result.path);
  }
  out->emplace(std::move(reply));
  return ReplyOutcome::kSuccess;
}

ReplyOutcome DecodeMultiRead(const proto::ReplyHeader& h, JuteReader& r, const DecodeInfo& info,
                             std::optional<ZkResult<MultiReadReply>>* out) {
  if (h.err != 0) return ServerError(h, info, out);
  MultiReadReply reply;
  reply.zxid = h.zxid;
  const size_t expected = info.read_kinds.size();
  if (!proto::ReadMultiReadResponse(r, expected, &reply.results)) return ReplyOutcome::kMalformed;
  if (reply.results.size() != expected) {
    r.Fail("multi-read reply has " + std::to_string(reply.results.size()) + " results for " +
           std::to_string(expected) + " reads");
    return ReplyOutcome::kMalformed;
  }
  for (size_t i = 0; i < expected; ++i) {
    ReadResult& result = reply.results[i];
    result.zxid = h.zxid;
    if (result.error != ZkErrorCode::kOk) {
      result.kind = info.read_kinds[i];
    } else if (result.kind != info.read_kinds[i]) {
      r.Fail("multi-read result " + std::to_string(i) + " is of another kind than its read");
      return ReplyOutcome::kMalformed;
    }
  }
  out->emplace(std::move(reply));
  return ReplyOutcome::kSuccess;
}



class AsioZkClient final : public ZkClient {
 public:
  AsioZkClient(ZkClientOptions options, ConnectString connect, ZkEventHandlers handlers)
      : options_(std::move(options)),
        clock_(options_.clock != nullptr ? *options_.clock : system_clock_),
        random_(options_.random ? options_.random : DefaultRandom()),
        connect_(std::move(connect)),
        handlers_(std::move(handlers)),
        work_(asio::make_work_guard(io_)),
        resolver_(io_),
        socket_(io_),
        session_timer_(io_),
        retry_timer_(io_),
        close_timer_(io_),
        hosts_(connect_.servers, random_),
        session_(SessionMachine::Config{options_.session_timeout, connect_.servers.size(),
                                        options_.local_session_expiry, options_.connect_timeout}),
        frames_(options_.max_frame_bytes) {
    if (options_.max_in_flight == 0) options_.max_in_flight = 1;
    for (const auto& [scheme, credential] : options_.auth) {
      auth_.push_back(AuthEntry{scheme, credential, {}});
    }
  }

  ~AsioZkClient() override { Close(); }

  void Start() {
    disconnected_since_ = clock_.Now();
    io_thread_ = std::thread([this] { io_.run(); });
    asio::post(io_, [this] {
      StartAttempt();
      FlushDeliveries();
    });
  }

  // --- ZkClient -----------------------------------------------------------------------------

  void GetData(std::string_view path, bool watch, ZkCallback<GetDataReply> done) override {
    auto request = NewRequest<GetDataReply>(DecodeGetData, std::move(done), op_names::kGet, path);
    if (!CheckPath(request, path, false)) return;
    const std::string server_path = ServerPath(connect_.chroot, path);
    Encode(*request, proto::OpCode::kGetData,
           [&](JuteWriter& w) { proto::WritePathWatchRequest(w, server_path, watch); });
    if (watch) SetWatch(*request, server_path, WatchKind::kData, WatchKind::kNone);
    Submit(std::move(request));
  }

  void GetChildren(std::string_view path, bool watch, ZkCallback<ChildrenReply> done) override {
    auto request =
        NewRequest<ChildrenReply>(DecodeChildren, std::move(done), op_names::kChildren, path);
    if (!CheckPath(request, path, false)) return;
    const std::string server_path = ServerPath(connect_.chroot, path);
    Encode(*request, proto::OpCode::kGetChildren2,
           [&](JuteWriter& w) { proto::WritePathWatchRequest(w, server_path, watch); });
    if (watch) SetWatch(*request, server_path, WatchKind::kChild, WatchKind::kNone);
    Submit(std::move(request));
  }

  void Exists(std::string_view path, bool watch, ZkCallback<ExistsReply> done) override {
    auto request = NewRequest<ExistsReply>(DecodeExists, std::move(done), op_names::kExists, path);
    if (!CheckPath(request, path, false)) return;
    const std::string server_path = ServerPath(connect_.chroot, path);
    Encode(*request, proto::OpCode::kExists,
           [&](JuteWriter& w) { proto::WritePathWatchRequest(w, server_path, watch); });
    if (watch) SetWatch(*request, server_path, WatchKind::kData, WatchKind::kExist);
    Submit(std::move(request));
  }

  void Create(std::string_view path, std::string_view data, CreateMode mode,
              const std::vector<Acl>& acl, ZkCallback<CreateReply> done) override {
    auto request = NewRequest<CreateReply>(DecodeCreate, std::move(done), op_names::kCreate, path);
    if (!CheckPath(request, path, IsSequential(mode))) return;
    const std::string server_path = ServerPath(connect_.chroot, path);
    const auto op =
        mode == CreateMode::kContainer ? proto::OpCode::kCreateContainer : proto::OpCode::kCreate2;
    Encode(*request, op, [&](JuteWriter& w) {
      proto::WriteCreateRequest(w, server_path, data, acl, proto::CreateFlags(mode));
    });
    Submit(std::move(request));
  }

  void Delete(std::string_view path, int32_t version, ZkCallback<Ack> done) override {
    auto request = NewRequest<Ack>(DecodeAck, std::move(done), op_names::kDelete, path);
    if (!CheckPath(request, path, false)) return;
    const std::string server_path = ServerPath(connect_.chroot, path);
    Encode(*request, proto::OpCode::kDelete,
           [&](JuteWriter& w) { proto::WriteDeleteRequest(w, server_path, version); });
    Submit(std::move(request));
  }

  void SetData(std::string_view path, std::string_view data, int32_t version,
               ZkCallback<SetDataReply> done) override {
    auto request = NewRequest<SetDataReply>(DecodeSetData, std::move(done), op_names::kSet, path);
    if (!CheckPath(request, path, false)) return;
    const std::string server_path = ServerPath(connect_.chroot, path);
    Encode(*request, proto::OpCode::kSetData,
           [&](JuteWriter& w) { proto::WriteSetDataRequest(w, server_path, data, version); });
    Submit(std::move(request));
  }

  void Multi(std::vector<MultiOp> ops, ZkCallback<MultiReply> done) override {
    auto request = NewRequest<MultiReply>(DecodeMulti, std::move(done), op_names::kMulti,
                                          std::to_string(ops.size()) + " operations");
    request->info.what = "multi of " + std::to_string(ops.size()) + " operations";
    for (auto& op : ops) {
      const bool sequential = op.kind == MultiOp::Kind::kCreate && IsSequential(op.mode);
      request->info.multi_whats.push_back(Describe(MultiOpName(op.kind), op.path));
      if (!CheckPath(request, op.path, sequential)) return;
      op.path = ServerPath(connect_.chroot, op.path);
    }
    Encode(*request, proto::OpCode::kMulti,
           [&](JuteWriter& w) { proto::WriteMultiRequest(w, ops); });
    Submit(std::move(request));
  }

  void MultiRead(std::vector<ReadOp> ops, ZkCallback<MultiReadReply> done) override {
    if (!options_.enable_multi_read || multi_read_unsupported_.load(std::memory_order_relaxed)) {
      FallbackMultiRead(std::move(ops), std::move(done));
      return;
    }
    std::vector<ReadOp> server_ops;
    std::vector<ReadOp::Kind> kinds;
    server_ops.reserve(ops.size());
    kinds.reserve(ops.size());
    std::optional<std::string> invalid;
    for (const auto& op : ops) {
      if (auto reason = InvalidPathReason(op.path)) {
        invalid = "invalid path \"" + op.path + "\": " + *reason;
        break;
      }
      kinds.push_back(op.kind);
      server_ops.push_back(ReadOp{op.kind, ServerPath(connect_.chroot, op.path)});
    }
    const size_t count = ops.size();
    // Falls back (once, then for good) when the server does not know multiRead.
    auto wrapped = [this, ops = std::move(ops),
                    done = std::move(done)](ZkResult<MultiReadReply> result) mutable {
      if (!result.ok() && result.error().code == ZkErrorCode::kUnimplemented) {
        if (!multi_read_unsupported_.exchange(true) && options_.logger != nullptr) {
          options_.logger->Warn("zookeeper server has no multiRead; pipelining reads instead");
        }
        FallbackMultiRead(std::move(ops), std::move(done));
        return;
      }
      done(std::move(result));
    };
    auto request =
        NewRequest<MultiReadReply>(DecodeMultiRead, std::move(wrapped), op_names::kMultiRead, {});
    request->info.what = "multi-read of " + std::to_string(count) + " reads";
    if (invalid) {
      request->Fail(ZkError{ZkErrorCode::kInvalidArgument, request->info.what + ": " + *invalid});
      DeliverFromCaller(std::move(request));
      return;
    }
    request->info.read_kinds = std::move(kinds);
    Encode(*request, proto::OpCode::kMultiRead,
           [&](JuteWriter& w) { proto::WriteMultiReadRequest(w, server_ops); });
    Submit(std::move(request));
  }

  void Sync(std::string_view path, ZkCallback<SyncReply> done) override {
    auto request = NewRequest<SyncReply>(DecodeSync, std::move(done), op_names::kSync, path);
    if (!CheckPath(request, path, false)) return;
    const std::string server_path = ServerPath(connect_.chroot, path);
    Encode(*request, proto::OpCode::kSync,
           [&](JuteWriter& w) { proto::WritePathRequest(w, server_path); });
    Submit(std::move(request));
  }

  void AddWatch(std::string_view path, AddWatchMode mode, ZkCallback<Ack> done) override {
    auto request = NewRequest<Ack>(DecodeAck, std::move(done), op_names::kAddWatch, path);
    if (!CheckPath(request, path, false)) return;
    const std::string server_path = ServerPath(connect_.chroot, path);
    Encode(*request, proto::OpCode::kAddWatch,
           [&](JuteWriter& w) { proto::WriteAddWatchRequest(w, server_path, mode); });
    SetWatch(*request, server_path,
             mode == AddWatchMode::kPersistent ? WatchKind::kPersistent
                                               : WatchKind::kPersistentRecursive,
             WatchKind::kNone);
    Submit(std::move(request));
  }

  void RemoveWatches(std::string_view path, WatcherType type, ZkCallback<Ack> done) override {
    auto request =
        NewRequest<Ack>(DecodeRemoveWatches, std::move(done), op_names::kRemoveWatches, path);
    request->info.removing_persistent =
        type == WatcherType::kPersistent || type == WatcherType::kPersistentRecursive;
    if (!CheckPath(request, path, false)) return;
    const std::string server_path = ServerPath(connect_.chroot, path);
    Encode(*request, proto::OpCode::kRemoveWatches,
           [&](JuteWriter& w) { proto::WriteRemoveWatchesRequest(w, server_path, type); });
    request->server_path = server_path;
    request->remove_on_success = type;
    Submit(std::move(request));
  }

  void AddAuth(std::string_view scheme, std::string_view credential,
               ZkCallback<Ack> done) override {
    // Observed here because auth replies bypass the request pipeline.
    const SteadyTime start = clock_.Now();
    auto observed = [this, start, done = std::move(done)](ZkResult<Ack> result) {
      if (options_.observer != nullptr) {
        options_.observer->OnOp(op_names::kAuth,
                                result.ok() ? "success" : ZkErrorLabel(result.error().code),
                                clock_.Now() - start);
      }
      if (done) done(std::move(result));
    };
    {
      std::unique_lock lock(mutex_);
      if (terminal_code_) {
        const ZkErrorCode code = *terminal_code_;
        lock.unlock();
        DeliverFromCaller(
            MakeCompletion([observed, code] { observed(Unexpected{MakeZkError(code, "auth")}); }));
        return;
      }
    }
    asio::post(io_, [this, scheme = std::string(scheme), credential = std::string(credential),
                     observed = std::move(observed)]() mutable {
      QueueAuth(std::move(scheme), std::move(credential), std::move(observed));
      Flush();
      FlushDeliveries();
    });
  }

  void Close() override {
    std::shared_future<void> closed;
    {
      std::lock_guard lock(mutex_);
      if (!close_future_.valid()) {
        auto promise = std::make_shared<std::promise<void>>();
        close_future_ = promise->get_future().share();
        asio::post(io_, [this, promise] { BeginClose(promise); });
      }
      closed = close_future_;
    }
    closed.wait();
    {
      std::lock_guard lock(join_mutex_);
      if (io_thread_.joinable() && std::this_thread::get_id() != io_thread_.get_id()) {
        io_thread_.join();
      }
    }
    delivery_.StopAndJoin();
  }

  SessionInfo session() const override {
    std::lock_guard lock(mutex_);
    return info_;
  }

 private:
  struct AuthEntry {
    std::string scheme;
    std::string credential;
    std::vector<ZkCallback<Ack>> waiting;  // AddAuth callbacks for the next send
  };
  enum class Link { kIdle, kConnecting, kHandshaking, kConnected, kClosing, kDone };

  static std::function<uint64_t()> DefaultRandom() {
    auto engine = std::make_shared<std::mt19937_64>(std::random_device{}());
    return [engine] { return (*engine)(); };
  }

  // --- Any thread ---------------------------------------------------------------------------

  template <typename T>
  std::unique_ptr<TypedRequest<T>> NewRequest(DecodeFn<T> decode, ZkCallback<T> done,
                                              std::string_view op_name, std::string_view path) {
    auto request =
        std::make_unique<TypedRequest<T>>(decode, std::move(done), op_name, options_.observer);
    request->info.what = Describe(op_name, path);
    request->info.chroot = connect_.chroot;
    request->enqueued = clock_.Now();
    return request;
  }

  template <typename Body>
  void Encode(Request& request, proto::OpCode op, Body&& body) {
    proto::RequestFrame frame(0, op);
    body(frame.writer());
    request.frame = std::move(frame).Finish();
  }

  static void SetWatch(Request& request, const std::string& server_path, WatchKind on_success,
                       WatchKind on_no_node) {
    request.server_path = server_path;
    request.watch_on_success = on_success;
    request.watch_on_no_node = on_no_node;
  }

  // Fails `request` (through the delivery thread, taking it) when `path` is invalid.
  template <typename R>
  bool CheckPath(std::unique_ptr<R>& request, std::string_view path, bool sequential) {
    auto reason = InvalidPathReason(path, sequential);
    if (!reason) return true;
    request->Fail(ZkError{
        ZkErrorCode::kInvalidArgument,
        request->info.what + ": invalid path \"" + std::string(path) + "\": " + *reason, -1});
    DeliverFromCaller(std::move(request));
    return false;
  }

  void Submit(std::unique_ptr<Request> request) {
    if (request->frame.size() - 4 > options_.max_request_bytes) {
      request->Fail(
          ZkError{ZkErrorCode::kInvalidArgument,
                  request->info.what + ": request of " + std::to_string(request->frame.size() - 4) +
                      " bytes exceeds the limit of " + std::to_string(options_.max_request_bytes),
                  -1});
      DeliverFromCaller(std::move(request));
      return;
    }
    std::unique_lock lock(mutex_);
    if (terminal_code_) {
      const ZkErrorCode code = *terminal_code_;
      lock.unlock();
      request->Fail(MakeZkError(code, request->info.what));
      DeliverFromCaller(std::move(request));
      return;
    }
    submissions_.push_back(std::move(request));
    if (drain_posted_) return;
    drain_posted_ = true;
    lock.unlock();
    asio::post(io_, [this] { DrainSubmissions(); });
  }

  void DeliverFromCaller(std::unique_ptr<Completion> completion) {
    if (!completion) return;
    if (!delivery_.TryPush(completion)) completion->Run();
  }

  void FallbackMultiRead(std::vector<ReadOp> ops, ZkCallback<MultiReadReply> done) {
    struct State {
      MultiReadReply reply;
      size_t remaining = 0;
      std::optional<ZkError> failure;
      ZkCallback<MultiReadReply> done;
    };
    auto state = std::make_shared<State>();
    state->reply.results.resize(ops.size());
    state->remaining = ops.size();
    state->done = std::move(done);
    if (ops.empty()) {
      DeliverFromCaller(MakeCompletion([state] { state->done(std::move(state->reply)); }));
      return;
    }
    // All callbacks run on the delivery thread, one at a time: no lock needed.
    auto finish_one = [state] {
      if (--state->remaining > 0) return;
      if (state->failure) {
        state->done(Unexpected{*state->failure});
        return;
      }
      int64_t zxid = std::numeric_limits<int64_t>::max();
      for (const auto& r : state->reply.results) zxid = std::min(zxid, r.zxid);
      state->reply.zxid = zxid;
      state->done(std::move(state->reply));
    };
    auto record_error = [state](size_t i, const ZkError& error) {
      ReadResult& result = state->reply.results[i];
      result.error = error.code;
      result.zxid = error.zxid;
      // Errors of the session or connection fail the whole multi-read, as one request would.
      if (error.zxid < 0 && !state->failure) state->failure = error;
    };
    for (size_t i = 0; i < ops.size(); ++i) {
      state->reply.results[i].kind = ops[i].kind;
      if (ops[i].kind == ReadOp::Kind::kGetData) {
        GetData(ops[i].path, false, [state, i, finish_one, record_error](auto result) {
          if (result.ok()) {
            ReadResult& r = state->reply.results[i];
            r.data = std::move(result->data);
            r.stat = result->stat;
            r.zxid = result->zxid;
          } else {
            record_error(i, result.error());
          }
          finish_one();
        });
      } else {
        GetChildren(ops[i].path, false, [state, i, finish_one, record_error](auto result) {
          if (result.ok()) {
            ReadResult& r = state->reply.results[i];
            r.children = std::move(result->children);
            r.zxid = result->zxid;
          } else {
            record_error(i, result.error());
          }
          finish_one();
        });
      }
    }
  }

  // --- Network thread -----------------------------------------------------------------------

  void Deliver(std::unique_ptr<Completion> completion) {
    deliveries_.push_back(std::move(completion));
  }

  void FlushDeliveries() {
    if (!deliveries_.empty()) delivery_.PushAll(deliveries_);
  }

  void DeliverSessionEvent(SessionEvent event) {
    if (!handlers_.on_session) return;
    Deliver(MakeCompletion(
        [handler = &handlers_.on_session, event = std::move(event)] { (*handler)(event); }));
  }

  void PublishSession() {
    std::lock_guard lock(mutex_);
    switch (session_.phase()) {
      case SessionMachine::Phase::kConnecting:
        info_.state = SessionState::kConnecting;
        break;
      case SessionMachine::Phase::kConnected:
        info_.state = SessionState::kConnected;
        break;
      case SessionMachine::Phase::kExpired:
        info_.state = SessionState::kExpired;
        break;
      case SessionMachine::Phase::kAuthFailed:
        info_.state = SessionState::kAuthFailed;
        break;
      case SessionMachine::Phase::kClosed:
        info_.state = SessionState::kClosed;
        break;
    }
    info_.session_id = session_.session_id();
    info_.negotiated_timeout = session_.has_session() ? session_.timeout() : milliseconds(0);
    info_.server = link_ == Link::kConnected ? current_server_ : std::string();
    info_.last_error = last_error_;
  }

  void DrainSubmissions() {
    std::vector<std::unique_ptr<Request>> batch;
    {
      std::lock_guard lock(mutex_);
      batch.swap(submissions_);
      drain_posted_ = false;
    }
    for (auto& request : batch) pending_.push_back(std::move(request));
    if (link_ == Link::kConnected) {
      Flush();
    } else if (link_ != Link::kDone && link_ != Link::kClosing) {
      ExpireUnsent(clock_.Now());
      ArmTimer();
    }
    FlushDeliveries();
  }

  // Requests that wait for a connection fail once no server was reachable for a whole session
  // timeout: the caller learns of the outage instead of waiting without end.
  void ExpireUnsent(SteadyTime now) {
    if (pending_.empty() || now - disconnected_since_ < session_.timeout()) return;
    const std::string why = " (no ZooKeeper connection for " +
                            std::to_string(Millis(now - disconnected_since_)) + " ms)";
    while (!pending_.empty()) {
      auto request = std::move(pending_.front());
      pending_.pop_front();
      ZkError error = MakeZkError(ZkErrorCode::kConnectionLoss, request->info.what);
      error.message += why;
      FinishRequest(std::move(request), std::move(error), now);
    }
  }

  void FinishRequest(std::unique_ptr<Request> request, ZkError error, SteadyTime now) {
    request->Fail(std::move(error));
    request->duration = now - request->enqueued;
    Deliver(std::move(request));
  }

  void StartAttempt() {
    if (link_ != Link::kIdle || session_.terminal()) return;
    const ServerAddress& server = hosts_.Next();
    current_server_ = server.ToString();
    link_ = Link::kConnecting;
    const uint64_t generation = ++generation_;
    connect_frame_ = proto::EncodeConnectRequest(session_.BeginAttempt(clock_.Now()));
    if (options_.logger != nullptr) {
      options_.logger->Debug("connecting to zookeeper", {{"server", current_server_}});
    }
    ArmTimer();
    resolver_.async_resolve(
        server.host, std::to_string(server.port),
        [this, generation](const std::error_code& ec,
                           asio::ip::tcp::resolver::results_type results) {
          if (generation != generation_) return;
          if (ec) {
            ConnectionFailed("cannot resolve " + current_server_ + ": " + ec.message());
            FlushDeliveries();
            return;
          }
          asio::async_connect(socket_, results,
                              [this, generation](const std::error_code& connect_ec,
                                                 const asio::ip::tcp::endpoint&) {
                                if (generation != generation_) return;
                                if (connect_ec) {
                                  ConnectionFailed("cannot connect to " + current_server_ + ": " +
                                                   connect_ec.message());
                                } else {
                                  OnTcpConnected();
                                }
                                FlushDeliveries();
                              });
        });
  }

  void OnTcpConnected() {
    std::error_code ignored;
    socket_.set_option(asio::ip::tcp::no_delay(true), ignored);
    link_ = Link::kHandshaking;
    frames_.Reset();
    write_buffer_ = connect_frame_;
    writing_ = true;
    const uint64_t generation = generation_;
    asio::async_write(
        socket_, asio::buffer(write_buffer_),
        [this, generation](const std::error_code& ec, size_t) { OnWritten(generation, ec); });
    StartRead();
  }

  void StartRead() {
    const std::span<char> space = frames_.Writable(kReadChunk);
    const uint64_t generation = generation_;
    socket_.async_read_some(asio::buffer(space.data(), space.size()),
                            [this, generation](const std::error_code& ec, size_t bytes) {
                              OnRead(generation, ec, bytes);
                            });
  }

  void OnRead(uint64_t generation, const std::error_code& ec, size_t bytes) {
    if (generation != generation_) return;
    if (ec) {
      ConnectionFailed(ec == asio::error::eof
                           ? "server " + current_server_ + " closed the connection"
                           : "read from " + current_server_ + " failed: " + ec.message());
      FlushDeliveries();
      return;
    }
    frames_.Commit(bytes);
    session_.OnReceive(clock_.Now());
    while (generation == generation_) {
      auto next = frames_.Next();
      if (!next.ok()) {
        ConnectionFailed("bad frame from " + current_server_ + ": " + next.error());
        break;
      }
      if (!next->has_value()) break;
      HandleFrame(**next);
    }
    if (generation == generation_) {
      StartRead();
      Flush();
    }
    FlushDeliveries();
  }

  void HandleFrame(std::string_view frame) {
    if (link_ == Link::kHandshaking) {
      HandleHandshake(frame);
    } else {
      HandleReply(frame);
    }
  }

  void HandleHandshake(std::string_view frame) {
    auto response = proto::DecodeConnectResponse(frame);
    if (!response.ok()) {
      ConnectionFailed("bad handshake from " + current_server_ + ": " + response.error());
      return;
    }
    SessionEvent event = session_.OnConnectResponse(*response, clock_.Now(), current_server_);
    if (event.type == SessionEventType::kExpired) {
      if (options_.logger != nullptr) {
        options_.logger->Warn("zookeeper session expired", {{"reason", event.reason}});
      }
      Terminate(ZkErrorCode::kSessionExpired, std::move(event));
      return;
    }
    link_ = Link::kConnected;
    hosts_.OnConnected();
    if (options_.logger != nullptr) {
      options_.logger->Info(event.type == SessionEventType::kConnected
                                ? "zookeeper session established"
                                : "zookeeper session reconnected",
                            {{"server", current_server_},
                             {"session_id", FormatSessionId(session_.session_id())},
                             {"timeout_ms", static_cast<int64_t>(session_.timeout().count())}});
    }
    const bool reconnected = event.type == SessionEventType::kReconnected;
    DeliverSessionEvent(std::move(event));
    // Credentials first, then the watches, then the waiting requests.
    for (auto& entry : auth_) SendAuth(entry);
    if (reconnected && !watches_.empty()) {
      const auto chunks = proto::ChunkSetWatches(watches_.Snapshot(session_.last_zxid()),
                                                 options_.set_watches_max_bytes);
      for (const auto& chunk : chunks) {
        proto::RequestFrame request(proto::kSetWatchesXid, proto::OpCode::kSetWatches2);
        proto::WriteSetWatches2(request.writer(), chunk);
        control_out_.push_back(std::move(request).Finish());
      }
      if (options_.logger != nullptr) {
        options_.logger->Info("re-registering zookeeper watches",
                              {{"watches", watches_.size()}, {"frames", chunks.size()}});
      }
    }
    PublishSession();
    ArmTimer();
  }

  void HandleReply(std::string_view frame) {
    JuteReader reader(frame);
    proto::ReplyHeader header;
    if (!proto::ReadReplyHeader(reader, &header)) {
      ConnectionFailed("malformed reply header from " + current_server_ + ": " + reader.error());
      return;
    }
    switch (header.xid) {
      case proto::kNotificationXid:
        HandleNotification(reader);
        return;
      case proto::kPingXid:
        return;
      case proto::kAuthXid:
        HandleAuthReply(header);
        return;
      case proto::kSetWatchesXid:
        if (header.err != 0 && options_.logger != nullptr) {
          options_.logger->Warn("zookeeper rejected re-registering watches",
                                {{"error", ZkErrorLabel(ZkErrorCodeFromServer(header.err))}});
        }
        return;
      default:
        break;
    }
    if (in_flight_.empty() || in_flight_.front()->xid != header.xid) {
      ConnectionFailed("reply with xid " + std::to_string(header.xid) + " from " + current_server_ +
                       " does not match the oldest request (" +
                       (in_flight_.empty() ? std::string("none")
                                           : "xid " + std::to_string(in_flight_.front()->xid)) +
                       ")");
      return;
    }
    std::unique_ptr<Request> request = std::move(in_flight_.front());
    in_flight_.pop_front();
    if (request->counts_in_window) --window_used_;
    if (header.zxid > 0) session_.OnZxid(header.zxid);
    const SteadyTime now = clock_.Now();
    const ReplyOutcome outcome = request->Decode(header, reader);
    if (outcome == ReplyOutcome::kMalformed) {
      const std::string why = "malformed reply to " + request->info.what + " from " +
                              current_server_ + ": " + reader.error();
      FinishRequest(std::move(request), ZkError{ZkErrorCode::kMarshalling, why, header.zxid}, now);
      ConnectionFailed(why);
      return;
    }
    if (outcome == ReplyOutcome::kSuccess) {
      if (request->watch_on_success != WatchKind::kNone) {
        watches_.Add(request->watch_on_success, request->server_path);
      }
      if (request->remove_on_success) {
        watches_.Remove(*request->remove_on_success, request->server_path);
      }
    } else if (outcome == ReplyOutcome::kNoNode && request->watch_on_no_node != WatchKind::kNone) {
      watches_.Add(request->watch_on_no_node, request->server_path);
    }
    request->duration = now - request->enqueued;
    const bool is_close = request->is_close;
    Deliver(std::move(request));
    if (is_close) FinishClose();
  }

  void HandleNotification(JuteReader& reader) {
    proto::WatcherEventRecord record;
    if (!proto::ReadWatcherEvent(reader, &record)) {
      ConnectionFailed("malformed watch event from " + current_server_ + ": " + reader.error());
      return;
    }
    if (record.type < static_cast<int32_t>(WatchEventType::kNodeCreated) ||
        record.type > static_cast<int32_t>(WatchEventType::kNodeChildrenChanged)) {
      if (options_.logger != nullptr) {
        options_.logger->Debug("ignoring zookeeper notification", {{"type", record.type}});
      }
      return;
    }
    const auto type = static_cast<WatchEventType>(record.type);
    watches_.OnEvent(type, record.path);
    if (!handlers_.on_watch) return;
    WatchEvent event{type, static_cast<KeeperState>(record.state),
                     ClientPath(connect_.chroot, record.path)};
    Deliver(MakeCompletion(
        [handler = &handlers_.on_watch, event = std::move(event)] { (*handler)(event); }));
  }

  void QueueAuth(std::string scheme, std::string credential, ZkCallback<Ack> done) {
    if (link_ == Link::kDone || link_ == Link::kClosing) {
      const ZkErrorCode code = terminal_code_value_;
      Deliver(MakeCompletion(
          [done = std::move(done), code] { done(Unexpected{MakeZkError(code, "auth")}); }));
      return;
    }
    AuthEntry* entry = nullptr;
    for (auto& existing : auth_) {
      if (existing.scheme == scheme && existing.credential == credential) entry = &existing;
    }
    if (entry == nullptr) {
      auth_.push_back(AuthEntry{std::move(scheme), std::move(credential), {}});
      entry = &auth_.back();
    }
    entry->waiting.push_back(std::move(done));
    if (link_ == Link::kConnected) SendAuth(*entry);
  }

  void SendAuth(AuthEntry& entry) {
    proto::RequestFrame frame(proto::kAuthXid, proto::OpCode::kAuth);
    proto::WriteAuthPacket(frame.writer(), entry.scheme, entry.credential);
    control_out_.push_back(std::move(frame).Finish());
    auth_in_flight_.push_back(std::move(entry.waiting));
    entry.waiting.clear();
  }

  void HandleAuthReply(const proto::ReplyHeader& header) {
    std::vector<ZkCallback<Ack>> callbacks;
    if (!auth_in_flight_.empty()) {
      callbacks = std::move(auth_in_flight_.front());
      auth_in_flight_.pop_front();
    }
    if (header.err == kServerAuthFailed) {
      for (auto& done : callbacks) {
        Deliver(MakeCompletion([done = std::move(done)] {
          done(Unexpected{MakeZkError(ZkErrorCode::kAuthFailed, "auth")});
        }));
      }
      SessionEvent event;
      event.type = SessionEventType::kAuthFailed;
      event.session_id = session_.session_id();
      event.server = current_server_;
      event.reason = "server " + current_server_ + " rejected the credentials";
      if (options_.logger != nullptr) {
        options_.logger->Error("zookeeper authentication failed", {{"server", current_server_}});
      }
      session_.MarkAuthFailed();
      Terminate(ZkErrorCode::kAuthFailed, std::move(event));
      return;
    }
    for (auto& done : callbacks) {
      ZkResult<Ack> result = header.err == 0
                                 ? ZkResult<Ack>(Ack{header.zxid})
                                 : ZkResult<Ack>(Unexpected{MakeZkError(
                                       ZkErrorCodeFromServer(header.err), "auth", header.zxid)});
      Deliver(MakeCompletion([done = std::move(done), result = std::move(result)]() mutable {
        done(std::move(result));
      }));
    }
  }

  void SendPing() {
    proto::RequestFrame frame(proto::kPingXid, proto::OpCode::kPing);
    control_out_.push_back(std::move(frame).Finish());
    session_.OnPingSent(clock_.Now());
  }

  int32_t NextXid() {
    const int32_t xid = next_xid_;
    next_xid_ = next_xid_ == std::numeric_limits<int32_t>::max() ? 1 : next_xid_ + 1;
    return xid;
  }

  void Flush() {
    if (writing_ || (link_ != Link::kConnected && link_ != Link::kClosing)) return;
    write_buffer_.clear();
    while (!control_out_.empty()) {
      write_buffer_ += control_out_.front();
      control_out_.pop_front();
    }
    while (!pending_.empty() && write_buffer_.size() < kMaxWriteBatch) {
      Request& request = *pending_.front();
      if (request.counts_in_window && window_used_ >= options_.max_in_flight) break;
      request.xid = NextXid();
      proto::PatchXid(request.frame, request.xid);
      write_buffer_ += request.frame;
      std::string().swap(request.frame);
      if (request.counts_in_window) ++window_used_;
      in_flight_.push_back(std::move(pending_.front()));
      pending_.pop_front();
    }
    if (write_buffer_.empty()) return;
    writing_ = true;
    session_.OnSend(clock_.Now());
    const uint64_t generation = generation_;
    asio::async_write(
        socket_, asio::buffer(write_buffer_),
        [this, generation](const std::error_code& ec, size_t) { OnWritten(generation, ec); });
  }

  void OnWritten(uint64_t generation, const std::error_code& ec) {
    if (generation != generation_) return;
    writing_ = false;
    if (ec) {
      ConnectionFailed("write to " + current_server_ + " failed: " + ec.message());
    } else {
      Flush();
    }
    FlushDeliveries();
  }

  void TearDownConnection() {
    ++generation_;
    std::error_code ignored;
    resolver_.cancel();
    socket_.close(ignored);
    writing_ = false;
    write_buffer_.clear();
    control_out_.clear();
    frames_.Reset();
  }

  void FailInFlight(ZkErrorCode code, const std::string& suffix, SteadyTime now) {
    while (!in_flight_.empty()) {
      auto request = std::move(in_flight_.front());
      in_flight_.pop_front();
      if (request->counts_in_window) --window_used_;
      ZkError error = MakeZkError(code, request->info.what);
      error.message += suffix;
      FinishRequest(std::move(request), std::move(error), now);
    }
    for (auto& callbacks : auth_in_flight_) {
      for (auto& done : callbacks) {
        Deliver(MakeCompletion(
            [done = std::move(done), code] { done(Unexpected{MakeZkError(code, "auth")}); }));
      }
    }
    auth_in_flight_.clear();
  }

  // The current connection or connection attempt ended; try the next server.
  void ConnectionFailed(std::string reason, bool timed_out = false) {
    if (link_ == Link::kDone) return;
    if (link_ == Link::kClosing) {
      FinishClose();
      return;
    }
    const SteadyTime now = clock_.Now();
    const bool was_connected = link_ == Link::kConnected;
    TearDownConnection();
    last_error_ = reason;
    FailInFlight(ZkErrorCode::kConnectionLoss, " (" + reason + ")", now);
    if (was_connected) {
      disconnected_since_ = now;
      if (options_.logger != nullptr) {
        options_.logger->Warn("zookeeper connection lost",
                              {{"server", current_server_}, {"reason", reason}});
      }
      DeliverSessionEvent(session_.OnConnectionLost(now, current_server_, reason));
    } else {
      if (options_.logger != nullptr) {
        options_.logger->Warn("zookeeper connection attempt failed",
                              {{"server", current_server_}, {"reason", reason}});
      }
      session_.OnAttemptFailed(timed_out);
      hosts_.OnAttemptFailed();
    }
    link_ = Link::kIdle;
    PublishSession();
    ScheduleRetry();
    ArmTimer();
  }

  void ScheduleRetry() {
    milliseconds delay(0);
    if (hosts_.RoundFailed() && options_.max_reconnect_delay.count() > 0) {
      delay = milliseconds(static_cast<int64_t>(
          random_() % static_cast<uint64_t>(options_.max_reconnect_delay.count())));
    }
    retry_timer_.expires_after(delay);
    const uint64_t generation = generation_;
    retry_timer_.async_wait([this, generation](const std::error_code& ec) {
      if (ec || generation != generation_) return;
      StartAttempt();
      FlushDeliveries();
    });
  }

  void ArmTimer() {
    if (link_ == Link::kDone) return;
    const SteadyTime now = clock_.Now();
    SteadyTime deadline = session_.NextDeadline(now);
    if (link_ != Link::kConnected && !pending_.empty()) {
      deadline = std::min(deadline, disconnected_since_ + session_.timeout());
    }
    session_timer_.expires_after(std::max(
        deadline - now, std::chrono::steady_clock::duration(std::chrono::milliseconds(1))));
    session_timer_.async_wait([this](const std::error_code& ec) {
      if (ec) return;
      OnTimer();
      FlushDeliveries();
    });
  }

  void OnTimer() {
    if (link_ == Link::kDone) return;
    const SteadyTime now = clock_.Now();
    switch (session_.Poll(now)) {
      case SessionMachine::Action::kNone:
        break;
      case SessionMachine::Action::kSendPing:
        if (link_ == Link::kConnected) {
          SendPing();
          Flush();
        }
        break;
      case SessionMachine::Action::kConnectionDead:
        ConnectionFailed("no answer from " + current_server_ + " for " +
                         std::to_string(Millis(session_.read_timeout())) +
                         " ms (two thirds of the session timeout)");
        break;
      case SessionMachine::Action::kConnectTimeout:
        ConnectionFailed("connection attempt to " + current_server_ + " timed out after " +
                             std::to_string(Millis(session_.connect_timeout())) + " ms",
                         /*timed_out=*/true);
        break;
      case SessionMachine::Action::kExpire: {
        SessionEvent event =
            session_.Expire("no ZooKeeper server answered for the session timeout of " +
                            std::to_string(session_.timeout().count()) + " ms");
        if (options_.logger != nullptr) {
          options_.logger->Warn("zookeeper session expired", {{"reason", event.reason}});
        }
        Terminate(ZkErrorCode::kSessionExpired, std::move(event));
        return;
      }
    }
    if (link_ != Link::kConnected && link_ != Link::kDone && link_ != Link::kClosing) {
      ExpireUnsent(now);
    }
    ArmTimer();
  }

  // The client is finished: fail everything with `code` and deliver `event`.
  void Terminate(ZkErrorCode code, SessionEvent event) {
    if (link_ == Link::kDone) return;
    const SteadyTime now = clock_.Now();
    TearDownConnection();
    link_ = Link::kDone;
    terminal_code_value_ = code;
    std::error_code ignored;
    session_timer_.cancel();
    retry_timer_.cancel();
    close_timer_.cancel();
    std::vector<std::unique_ptr<Request>> submitted;
    {
      std::lock_guard lock(mutex_);
      terminal_code_ = code;
      submitted.swap(submissions_);
    }
    if (!event.reason.empty()) last_error_ = event.reason;
    FailInFlight(code, "", now);
    for (auto& request : submitted) pending_.push_back(std::move(request));
    while (!pending_.empty()) {
      auto request = std::move(pending_.front());
      pending_.pop_front();
      ZkError error = MakeZkError(code, request->info.what);
      FinishRequest(std::move(request), std::move(error), now);
    }
    for (auto& entry : auth_) {
      for (auto& done : entry.waiting) {
        Deliver(MakeCompletion(
            [done = std::move(done), code] { done(Unexpected{MakeZkError(code, "auth")}); }));
      }
      entry.waiting.clear();
    }
    DeliverSessionEvent(std::move(event));
    PublishSession();
  }

  void BeginClose(std::shared_ptr<std::promise<void>> promise) {
    close_promise_ = std::move(promise);
    if (link_ != Link::kConnected) {
      FinishClose();
      FlushDeliveries();
      return;
    }
    // Unsent requests fail; those in flight get their answers before the close's.
    const SteadyTime now = clock_.Now();
    {
      std::lock_guard lock(mutex_);
      terminal_code_ = ZkErrorCode::kClosed;
      for (auto& request : submissions_) pending_.push_back(std::move(request));
      submissions_.clear();
    }
    terminal_code_value_ = ZkErrorCode::kClosed;
    while (!pending_.empty()) {
      auto request = std::move(pending_.front());
      pending_.pop_front();
      ZkError error = MakeZkError(ZkErrorCode::kClosed, request->info.what);
      FinishRequest(std::move(request), std::move(error), now);
    }
    auto request = NewRequest<Ack>(DecodeAck, nullptr, op_names::kClose, "session");
    Encode(*request, proto::OpCode::kCloseSession, [](JuteWriter&) {});
    request->is_close = true;
    request->counts_in_window = false;
    pending_.push_back(std::move(request));
    link_ = Link::kClosing;
    Flush();
    close_timer_.expires_after(
        std::min<std::chrono::steady_clock::duration>(kMaxCloseWait, session_.read_timeout()));
    close_timer_.async_wait([this](const std::error_code& ec) {
      if (ec) return;
      FinishClose();
      FlushDeliveries();
    });
    FlushDeliveries();
  }

  void FinishClose() {
    if (link_ != Link::kDone) {
      session_.MarkClosed();
      SessionEvent event;
      event.type = SessionEventType::kClosed;
      event.session_id = session_.session_id();
      Terminate(ZkErrorCode::kClosed, std::move(event));
    } else if (!closed_event_sent_ && close_promise_) {
      // Finished earlier (expired, auth failed): Close still ends with kClosed.
      SessionEvent event;
      event.type = SessionEventType::kClosed;
      event.session_id = session_.session_id();
      session_.MarkClosed();
      PublishSession();
      DeliverSessionEvent(std::move(event));
    }
    if (!close_promise_) return;
    closed_event_sent_ = true;
    {
      std::lock_guard lock(mutex_);
      terminal_code_ = ZkErrorCode::kClosed;
      info_.state = SessionState::kClosed;
    }
    FlushDeliveries();
    work_.reset();
    close_promise_->set_value();
    close_promise_.reset();
  }

  // Configuration and injected dependencies.
  ZkClientOptions options_;
  SystemClock system_clock_;
  const Clock& clock_;
  std::function<uint64_t()> random_;
  const ConnectString connect_;
  const ZkEventHandlers handlers_;
  std::atomic<bool> multi_read_unsupported_{false};

  // Shared with callers, under mutex_.
  mutable std::mutex mutex_;
  std::vector<std::unique_ptr<Request>> submissions_;
  bool drain_posted_ = false;
  std::optional<ZkErrorCode> terminal_code_;
  SessionInfo info_;
  std::shared_future<void> close_future_;
  std::mutex join_mutex_;

  // Network thread only.
  asio::io_context io_{1};
  asio::executor_work_guard<asio::io_context::executor_type> work_;
  asio::ip::tcp::resolver resolver_;
  asio::ip::tcp::socket socket_;
  asio::steady_timer session_timer_;
  asio::steady_timer retry_timer_;
  asio::steady_timer close_timer_;
  HostList hosts_;
  SessionMachine session_;
  WatchRegistry watches_;
  proto::FrameReader frames_;
  Link link_ = Link::kIdle;
  uint64_t generation_ = 0;
  std::string current_server_;
  std::string last_error_;
  std::string connect_frame_;
  SteadyTime disconnected_since_{};
  std::deque<std::unique_ptr<Request>> pending_;    // waiting to be sent, in order
  std::deque<std::unique_ptr<Request>> in_flight_;  // sent, answered in this order
  size_t window_used_ = 0;
  std::vector<AuthEntry> auth_;
  std::deque<std::vector<ZkCallback<Ack>>> auth_in_flight_;
  std::deque<std::string> control_out_;  // auth, SetWatches2, ping: sent before requests
  std::string write_buffer_;
  bool writing_ = false;
  int32_t next_xid_ = 1;
  ZkErrorCode terminal_code_value_ = ZkErrorCode::kClosed;
  std::vector<std::unique_ptr<Completion>> deliveries_;
  std::shared_ptr<std::promise<void>> close_promise_;
  bool closed_event_sent_ = false;

  // Threads last: they start after everything above exists and stop before it goes.
  DeliveryQueue delivery_;
  std::thread io_thread_;
};

class AsioZkClientFactory final : public ZkClientFactory {
 public:
  explicit AsioZkClientFactory(ZkClientOptions options) : options_(std::move(options)) {}
  ZkResult<std::unique_ptr<ZkClient>> NewClient(ZkEventHandlers handlers) override {
    return NewAsioZkClient(options_, std::move(handlers));
  }

 private:
  ZkClientOptions options_;
};

}  // namespace

ZkResult<std::unique_ptr<ZkClient>> NewAsioZkClient(ZkClientOptions options,
                                                    ZkEventHandlers handlers) {
  auto connect = ParseConnectString(options.connect_string);
  if (!connect.ok()) return Unexpected{connect.error()};
  if (options.session_timeout.count() <= 0) {
    return Unexpected{ZkError{ZkErrorCode::kInvalidArgument, "session timeout must be positive"}};
  }
  auto client = std::make_unique<AsioZkClient>(std::move(options), std::move(connect).value(),
                                               std::move(handlers));
  client->Start();
  return std::unique_ptr<ZkClient>(std::move(client));
}

std::unique_ptr<ZkClientFactory> NewAsioZkClientFactory(ZkClientOptions options) {
  return std::make_unique<AsioZkClientFactory>(std::move(options));
}

}  // namespace zk2etcd::zk
