// Request: a ZooKeeper request of AsioZkClient on its way (encoded, sent, answered or failed,
// delivered), with what its reply decoder needs (DecodeInfo) and what the reply changes in the
// watch registry. TypedRequest<T> holds the decoder and the callback of a reply of type T and
// reports the operation to the OpObserver when it runs. Internal to AsioZkClient.
//
// Thread-safety: none; a request belongs to one thread at a time (the caller's, then the network
// thread, then the delivery thread, which runs it).
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/op_observer.h"
#include "zk/delivery_queue.h"
#include "zk/jute.h"
#include "zk/protocol.h"
#include "zk/watch_registry.h"
#include "zk/zk_client.h"
#include "zk/zk_error.h"
#include "zk/zk_types.h"

namespace zk2etcd::zk::detail {

using SteadyTime = std::chrono::steady_clock::time_point;

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
  // A read or a watch registration (ReplayableOp): the same outcome if the server runs it twice,
  // so it may go right behind the ConnectRequest of a new session and, when that connection ends
  // unanswered, wait for the next one (AsioZkClient::Flush).
  bool replayable = false;
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

}  // namespace zk2etcd::zk::detail
