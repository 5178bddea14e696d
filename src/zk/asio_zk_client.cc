#include "zk/asio_zk_client.h"

#include <asio.hpp>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <utility>

#include "ops/log.h"
#include "zk/asio_zk_client_internal.h"
#include "zk/connect_string.h"
#include "zk/reply_decoders.h"

namespace zk2etcd::zk {
namespace detail {

// --- AsioZkClient: construction and the calls made on any thread ------------------------------

AsioZkClient::AsioZkClient(ZkClientOptions options, ConnectString connect, ZkEventHandlers handlers)
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

void AsioZkClient::Start() {
  disconnected_since_ = clock_.Now();
  io_thread_ = std::thread([this] { io_.run(); });
  asio::post(io_, [this] {
    StartAttempt();
    FlushDeliveries();
  });
}

void AsioZkClient::GetData(std::string_view path, bool watch, ZkCallback<GetDataReply> done) {
  auto request = NewRequest<GetDataReply>(DecodeGetData, std::move(done), op_names::kGet, path);
  if (!CheckPath(request, path, false)) return;
  const std::string server_path = ServerPath(connect_.chroot, path);
  Encode(*request, proto::OpCode::kGetData,
         [&](JuteWriter& w) { proto::WritePathWatchRequest(w, server_path, watch); });
  if (watch) SetWatch(*request, server_path, WatchKind::kData, WatchKind::kNone);
  Submit(std::move(request));
}

void AsioZkClient::GetChildren(std::string_view path, bool watch, ZkCallback<ChildrenReply> done) {
  auto request =
      NewRequest<ChildrenReply>(DecodeChildren, std::move(done), op_names::kChildren, path);
  if (!CheckPath(request, path, false)) return;
  const std::string server_path = ServerPath(connect_.chroot, path);
  Encode(*request, proto::OpCode::kGetChildren2,
         [&](JuteWriter& w) { proto::WritePathWatchRequest(w, server_path, watch); });
  if (watch) SetWatch(*request, server_path, WatchKind::kChild, WatchKind::kNone);
  Submit(std::move(request));
}

void AsioZkClient::Exists(std::string_view path, bool watch, ZkCallback<ExistsReply> done) {
  auto request = NewRequest<ExistsReply>(DecodeExists, std::move(done), op_names::kExists, path);
  if (!CheckPath(request, path, false)) return;
  const std::string server_path = ServerPath(connect_.chroot, path);
  Encode(*request, proto::OpCode::kExists,
         [&](JuteWriter& w) { proto::WritePathWatchRequest(w, server_path, watch); });
  if (watch) SetWatch(*request, server_path, WatchKind::kData, WatchKind::kExist);
  Submit(std::move(request));
}

void AsioZkClient::Create(std::string_view path, std::string_view data, CreateMode mode,
                          const std::vector<Acl>& acl, ZkCallback<CreateReply> done) {
  auto request = NewRequest<CreateReply>(DecodeCreate, std::move(done), op_names::kCreate, path);
  if (IsTtl(mode)) {
    // The server's create and create2 carry no TTL; only its createTTL, which is sent in a multi.
    request->Fail(ZkError{ZkErrorCode::kInvalidArgument,
                          request->info.what + ": a TTL node must be created with Multi", -1});
    DeliverFromCaller(std::move(request));
    return;
  }
  if (!CheckPath(request, path, IsSequential(mode))) return;
  const std::string server_path = ServerPath(connect_.chroot, path);
  const auto op =
      mode == CreateMode::kContainer ? proto::OpCode::kCreateContainer : proto::OpCode::kCreate2;
  Encode(*request, op, [&](JuteWriter& w) {
    proto::WriteCreateRequest(w, server_path, data, acl, proto::CreateFlags(mode));
  });
  Submit(std::move(request));
}

void AsioZkClient::Delete(std::string_view path, int32_t version, ZkCallback<Ack> done) {
  auto request = NewRequest<Ack>(DecodeAck, std::move(done), op_names::kDelete, path);
  if (!CheckPath(request, path, false)) return;
  const std::string server_path = ServerPath(connect_.chroot, path);
  Encode(*request, proto::OpCode::kDelete,
         [&](JuteWriter& w) { proto::WriteDeleteRequest(w, server_path, version); });
  Submit(std::move(request));
}

void AsioZkClient::SetData(std::string_view path, std::string_view data, int32_t version,
                           ZkCallback<SetDataReply> done) {
  auto request = NewRequest<SetDataReply>(DecodeSetData, std::move(done), op_names::kSet, path);
  if (!CheckPath(request, path, false)) return;
  const std::string server_path = ServerPath(connect_.chroot, path);
  Encode(*request, proto::OpCode::kSetData,
         [&](JuteWriter& w) { proto::WriteSetDataRequest(w, server_path, data, version); });
  Submit(std::move(request));
}

void AsioZkClient::Multi(std::vector<MultiOp> ops, ZkCallback<MultiReply> done) {
  auto request = NewRequest<MultiReply>(DecodeMulti, std::move(done), op_names::kMulti,
                                        std::to_string(ops.size()) + " operations");
  request->info.what = "multi of " + std::to_string(ops.size()) + " operations";
  for (auto& op : ops) {
    const bool sequential = op.kind == MultiOp::Kind::kCreate && IsSequential(op.mode);
    request->info.multi_whats.push_back(Describe(MultiOpName(op.kind), op.path));
    if (!CheckPath(request, op.path, sequential)) return;
    op.path = ServerPath(connect_.chroot, op.path);
  }
  Encode(*request, proto::OpCode::kMulti, [&](JuteWriter& w) { proto::WriteMultiRequest(w, ops); });
  Submit(std::move(request));
}

void AsioZkClient::MultiRead(std::vector<ReadOp> ops, ZkCallback<MultiReadReply> done) {
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

void AsioZkClient::GetAcl(std::string_view path, ZkCallback<GetAclReply> done) {
  auto request = NewRequest<GetAclReply>(DecodeGetAcl, std::move(done), op_names::kGetAcl, path);
  if (!CheckPath(request, path, false)) return;
  const std::string server_path = ServerPath(connect_.chroot, path);
  Encode(*request, proto::OpCode::kGetAcl,
         [&](JuteWriter& w) { proto::WritePathRequest(w, server_path); });
  Submit(std::move(request));
}

void AsioZkClient::Sync(std::string_view path, ZkCallback<SyncReply> done) {
  auto request = NewRequest<SyncReply>(DecodeSync, std::move(done), op_names::kSync, path);
  if (!CheckPath(request, path, false)) return;
  const std::string server_path = ServerPath(connect_.chroot, path);
  Encode(*request, proto::OpCode::kSync,
         [&](JuteWriter& w) { proto::WritePathRequest(w, server_path); });
  Submit(std::move(request));
}

void AsioZkClient::AddWatch(std::string_view path, AddWatchMode mode, ZkCallback<Ack> done) {
  auto request = NewRequest<Ack>(DecodeAck, std::move(done), op_names::kAddWatch, path);
  if (!CheckPath(request, path, false)) return;
  const std::string server_path = ServerPath(connect_.chroot, path);
  Encode(*request, proto::OpCode::kAddWatch,
         [&](JuteWriter& w) { proto::WriteAddWatchRequest(w, server_path, mode); });
  SetWatch(
      *request, server_path,
      mode == AddWatchMode::kPersistent ? WatchKind::kPersistent : WatchKind::kPersistentRecursive,
      WatchKind::kNone);
  Submit(std::move(request));
}

void AsioZkClient::RemoveWatches(std::string_view path, WatcherType type, ZkCallback<Ack> done) {
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

void AsioZkClient::AddAuth(std::string_view scheme, std::string_view credential,
                           ZkCallback<Ack> done) {
  // From now on nothing goes behind a handshake: what is asked for after this must follow the
  // credentials, which are sent once the handshake is answered.
  credentials_added_.store(true);
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

void AsioZkClient::Close() {
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

SessionInfo AsioZkClient::session() const {
  std::lock_guard lock(mutex_);
  return info_;
}

std::function<uint64_t()> AsioZkClient::DefaultRandom() {
  auto engine = std::make_shared<std::mt19937_64>(std::random_device{}());
  return [engine] { return (*engine)(); };
}

void AsioZkClient::SetWatch(Request& request, const std::string& server_path, WatchKind on_success,
                            WatchKind on_no_node) {
  request.server_path = server_path;
  request.watch_on_success = on_success;
  request.watch_on_no_node = on_no_node;
}

void AsioZkClient::Submit(std::unique_ptr<Request> request) {
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

void AsioZkClient::DeliverFromCaller(std::unique_ptr<Completion> completion) {
  if (!completion) return;
  if (!delivery_.TryPush(completion)) completion->Run();
}

void AsioZkClient::FallbackMultiRead(std::vector<ReadOp> ops, ZkCallback<MultiReadReply> done) {
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

}  // namespace detail

namespace {

class AsioZkClientFactory final : public ZkClientFactory {
 public:
  explicit AsioZkClientFactory(ZkClientOptions options) : options_(std::move(options)) {}
  ZkResult<std::unique_ptr<ZkClient>> NewClient(ZkEventHandlers handlers) override {
    return NewAsioZkClient(options_, std::move(handlers));
  }
  ZkResult<std::unique_ptr<ZkClient>> NewClientOf(const std::string& server,
                                                  ZkEventHandlers handlers) override {
    auto connect = ParseConnectString(options_.connect_string);
    if (!connect.ok()) return Unexpected{connect.error()};
    ZkClientOptions options = options_;
    options.connect_string = server + connect->chroot;
    options.beside_another_session = true;
    return NewAsioZkClient(std::move(options), std::move(handlers));
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
  auto client = std::make_unique<detail::AsioZkClient>(
      std::move(options), std::move(connect).value(), std::move(handlers));
  client->Start();
  return std::unique_ptr<ZkClient>(std::move(client));
}

std::unique_ptr<ZkClientFactory> NewAsioZkClientFactory(ZkClientOptions options) {
  return std::make_unique<AsioZkClientFactory>(std::move(options));
}

}  // namespace zk2etcd::zk
