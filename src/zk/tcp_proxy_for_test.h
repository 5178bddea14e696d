// TcpProxy: a loopback TCP proxy in front of a ZooKeeper server for integration tests. It lets a
// test cut the client's connections (and refuse new ones for a while) without touching the
// server, and it records the type and size of every request frame the client sends, so a test
// can check what went over the wire (for example that SetWatches2 frames stay under a limit).
// One thread, poll(); for tests only. Thread-safe.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace zk2etcd::zk::testing {

class TcpProxy {
 public:
  struct Frame {
    int32_t type = 0;  // request OpCode; the first frame of a connection (handshake) is -10
    size_t bytes = 0;  // whole frame, length prefix included
  };

  explicit TcpProxy(int target_port) : target_port_(target_port) {
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    const int one = 1;
    ::setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    sockaddr_in address = Loopback(0);
    ::bind(listen_fd_, reinterpret_cast<sockaddr*>(&address), sizeof(address));
    ::listen(listen_fd_, 16);
    socklen_t length = sizeof(address);
    ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&address), &length);
    port_ = ntohs(address.sin_port);
    thread_ = std::thread([this] { Loop(); });
  }

  ~TcpProxy() {
    stop_ = true;
    thread_.join();
    for (auto& pair : pairs_) pair->Close();
    ::close(listen_fd_);
  }

  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }

  // Closes every proxied connection (the next loop turn).
  void DropAll() { drop_requested_ = true; }
  // While set, new connections are accepted and closed at once.
  void SetRefuse(bool refuse) { refuse_ = refuse; }

  std::vector<Frame> client_frames() const {
    std::lock_guard lock(mutex_);
    return frames_;
  }
  int accepted() const { return accepted_.load(); }

 private:
  struct Pair {
    int client = -1;
    int server = -1;
    std::string parse;  // client->server bytes not yet cut into frames
    bool handshake_seen = false;
    void Close() {
      if (client >= 0) ::close(client);
      if (server >= 0) ::close(server);
      client = server = -1;
    }
  };

  static sockaddr_in Loopback(int port) {
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    address.sin_port = htons(static_cast<uint16_t>(port));
    return address;
  }

  void Record(Pair& pair, const char* data, size_t size) {
    pair.parse.append(data, size);
    size_t at = 0;
    std::lock_guard lock(mutex_);
    while (pair.parse.size() - at >= 4) {
      const auto* p = reinterpret_cast<const unsigned char*>(pair.parse.data() + at);
      const size_t length =
          (size_t{p[0]} << 24) | (size_t{p[1]} << 16) | (size_t{p[2]} << 8) | size_t{p[3]};
      if (pair.parse.size() - at < 4 + length) break;
      Frame frame;
      frame.bytes = 4 + length;
      if (!pair.handshake_seen) {
        frame.type = -10;
        pair.handshake_seen = true;
      } else if (length >= 8) {
        frame.type = static_cast<int32_t>((uint32_t{p[8]} << 24) | (uint32_t{p[9]} << 16) |
                                          (uint32_t{p[10]} << 8) | uint32_t{p[11]});
      }
      frames_.push_back(frame);
      at += 4 + length;
    }
    pair.parse.erase(0, at);
  }

  static bool Pump(int from, int to, std::string* copy) {
    char buffer[65536];
    const ssize_t n = ::recv(from, buffer, sizeof(buffer), 0);
    if (n <= 0) return false;
    if (copy != nullptr) copy->assign(buffer, static_cast<size_t>(n));
    size_t sent = 0;
    while (sent < static_cast<size_t>(n)) {
      const ssize_t w = ::send(to, buffer + sent, static_cast<size_t>(n) - sent, MSG_NOSIGNAL);
      if (w <= 0) return false;
      sent += static_cast<size_t>(w);
    }
    return true;
  }

  void Loop() {
    while (!stop_) {
      if (drop_requested_.exchange(false)) {
        for (auto& pair : pairs_) pair->Close();
        pairs_.clear();
      }
      std::vector<pollfd> fds{{listen_fd_, POLLIN, 0}};
      for (auto& pair : pairs_) {
        fds.push_back({pair->client, POLLIN, 0});
        fds.push_back({pair->server, POLLIN, 0});
      }
      if (::poll(fds.data(), fds.size(), 20) <= 0) continue;
      const size_t polled = pairs_.size();
      for (size_t i = 0; i < polled; ++i) {
        Pair& pair = *pairs_[i];
        bool ok = true;
        if (fds[1 + 2 * i].revents & (POLLIN | POLLHUP | POLLERR)) {
          std::string copy;
          ok = Pump(pair.client, pair.server, &copy);
          if (ok) Record(pair, copy.data(), copy.size());
        }
        if (ok && (fds[2 + 2 * i].revents & (POLLIN | POLLHUP | POLLERR))) {
          ok = Pump(pair.server, pair.client, nullptr);
        }
        if (!ok) pair.Close();
      }
      std::erase_if(pairs_, [](const auto& pair) { return pair->client < 0; });
      if (fds[0].revents & POLLIN) Accept();
    }
  }

  void Accept() {
    const int client = ::accept(listen_fd_, nullptr, nullptr);
    if (client < 0) return;
    ++accepted_;
    if (refuse_) {
      ::close(client);
      return;
    }
    const int server = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in target = Loopback(target_port_);
    if (::connect(server, reinterpret_cast<sockaddr*>(&target), sizeof(target)) != 0) {
      ::close(client);
      ::close(server);
      return;
    }
    const int one = 1;
    ::setsockopt(client, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    ::setsockopt(server, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    auto pair = std::make_unique<Pair>();
    pair->client = client;
    pair->server = server;
    pairs_.push_back(std::move(pair));
  }

  const int target_port_;
  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<bool> drop_requested_{false};
  std::atomic<bool> refuse_{false};
  std::atomic<int> accepted_{0};
  std::vector<std::unique_ptr<Pair>> pairs_;  // proxy thread only
  mutable std::mutex mutex_;
  std::vector<Frame> frames_;
  std::thread thread_;
};

}  // namespace zk2etcd::zk::testing
