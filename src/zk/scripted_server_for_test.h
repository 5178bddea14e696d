// ScriptedServer: a tiny TCP server on 127.0.0.1 (port 0) for tests of the ZooKeeper client,
// which plays whatever a test scripts: a server that answers the handshake with garbage, one
// that says the session expired, one that never answers pings, one that counts how many requests
// the client pipelines, ...
//
// Connections are accepted one at a time (a ZooKeeper client uses one at a time) and handed to
// the script on the server's thread; when the script returns, the connection is closed. Blocking
// POSIX sockets with timeouts, so a misbehaving client cannot hang a test. For tests only.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "zk/jute.h"
#include "zk/protocol.h"

namespace zk2etcd::zk::testing {

class ScriptedConnection {
 public:
  explicit ScriptedConnection(int fd) : fd_(fd) {}

  // The next frame's payload (without its length prefix); nullopt on EOF, error or timeout.
  std::optional<std::string> ReadFrame(
      std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
    std::string prefix;
    if (!ReadExactly(4, timeout, &prefix)) return std::nullopt;
    const auto* p = reinterpret_cast<const unsigned char*>(prefix.data());
    const uint32_t length =
        (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | uint32_t{p[3]};
    if (length > 64 * 1024 * 1024) return std::nullopt;
    std::string payload;
    if (!ReadExactly(length, timeout, &payload)) return std::nullopt;
    return payload;
  }

  bool Write(std::string_view bytes) {
    while (!bytes.empty()) {
      const ssize_t n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
      if (n <= 0) return false;
      bytes.remove_prefix(static_cast<size_t>(n));
    }
    return true;
  }

  // Reads the ConnectRequest and answers with `session_id` and `timeout_ms` (0: expired).
  std::optional<proto::ConnectRequest> Handshake(int64_t session_id, int32_t timeout_ms,
                                                 std::string password = std::string(16, 'p')) {
    auto frame = ReadFrame();
    if (!frame) return std::nullopt;
    auto request = proto::DecodeConnectRequest(*frame);
    if (!request.ok()) return std::nullopt;
    if (!AnswerHandshake(session_id, timeout_ms, std::move(password))) return std::nullopt;
    return *request;
  }

  // The answer of Handshake(), for a script that reads what follows the ConnectRequest first.
  bool AnswerHandshake(int64_t session_id, int32_t timeout_ms,
                       std::string password = std::string(16, 'p')) {
    return Write(proto::EncodeConnectResponse(
        proto::ConnectResponse{0, timeout_ms, timeout_ms > 0 ? session_id : 0,
                               timeout_ms > 0 ? password : std::string(16, '\0'), false}));
  }

  // The headers of the frames that arrive, each within `quiet` of the one before (the first
  // within `quiet` of the call): after the ConnectRequest and before the handshake is answered,
  // what a new session sent behind it.
  std::vector<proto::RequestHeader> ReadArriving(
      std::chrono::milliseconds quiet = std::chrono::milliseconds(500));

  // Sends a reply frame.
  bool Reply(int32_t xid, int64_t zxid, int32_t err, std::string_view body = {}) {
    return Write(proto::EncodeReplyFrame(proto::ReplyHeader{xid, zxid, err}, body));
  }

  // Whether the client closed the connection within `timeout` (reads and drops anything else).
  bool WaitForClose(std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    char buffer[4096];
    while (std::chrono::steady_clock::now() < deadline) {
      pollfd pfd{fd_, POLLIN, 0};
      if (::poll(&pfd, 1, 50) <= 0) continue;
      const ssize_t n = ::recv(fd_, buffer, sizeof(buffer), 0);
      if (n <= 0) return true;
    }
    return false;
  }

  int fd() const { return fd_; }

 private:
  bool ReadExactly(size_t count, std::chrono::milliseconds timeout, std::string* out) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    out->resize(count);
    size_t got = 0;
    while (got < count) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) return false;
      pollfd pfd{fd_, POLLIN, 0};
      if (::poll(&pfd, 1, static_cast<int>(left.count())) <= 0) return false;
      const ssize_t n = ::recv(fd_, out->data() + got, count - got, 0);
      if (n <= 0) return false;
      got += static_cast<size_t>(n);
    }
    return true;
  }

  int fd_;
};

class ScriptedServer {
 public:
  // `script(connection, index)` plays connection number `index` (0, 1, ...).
  using Script = std::function<void(ScriptedConnection&, int)>;

  explicit ScriptedServer(Script script) : script_(std::move(script)) {
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    const int one = 1;
    ::setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    address.sin_port = 0;
    ::bind(listen_fd_, reinterpret_cast<sockaddr*>(&address), sizeof(address));
    ::listen(listen_fd_, 16);
    socklen_t length = sizeof(address);
    ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&address), &length);
    port_ = ntohs(address.sin_port);
    thread_ = std::thread([this] { Loop(); });
  }

  ~ScriptedServer() {
    stop_ = true;
    thread_.join();
    ::close(listen_fd_);
  }

  int port() const { return port_; }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  int connections() const { return connections_.load(); }

  // Stops scripts that loop until told to.
  bool stopping() const { return stop_.load(); }

 private:
  void Loop() {
    while (!stop_) {
      pollfd pfd{listen_fd_, POLLIN, 0};
      if (::poll(&pfd, 1, 50) <= 0) continue;
      const int fd = ::accept(listen_fd_, nullptr, nullptr);
      if (fd < 0) continue;
      const int one = 1;
      ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
      const int index = connections_++;
      ScriptedConnection connection(fd);
      script_(connection, index);
      ::close(fd);
    }
  }

  Script script_;
  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<int> connections_{0};
  std::thread thread_;
};

// Reads the request header of a request frame.
inline proto::RequestHeader HeaderOf(std::string_view frame, JuteReader* body = nullptr) {
  JuteReader r(frame);
  proto::RequestHeader header;
  proto::ReadRequestHeader(r, &header);
  if (body != nullptr) *body = r;
  return header;
}

inline std::vector<proto::RequestHeader> ScriptedConnection::ReadArriving(
    std::chrono::milliseconds quiet) {
  std::vector<proto::RequestHeader> arrived;
  while (auto frame = ReadFrame(quiet)) arrived.push_back(HeaderOf(*frame));
  return arrived;
}

// The request types of `headers`, in order.
inline std::vector<int32_t> TypesOf(const std::vector<proto::RequestHeader>& headers) {
  std::vector<int32_t> types;
  for (const auto& header : headers) types.push_back(header.type);
  return types;
}

}  // namespace zk2etcd::zk::testing
