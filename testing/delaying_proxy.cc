#include "testing/delaying_proxy.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <deque>
#include <random>

namespace zk2etcd::testing {

namespace {

using SteadyClock = std::chrono::steady_clock;

sockaddr_in Loopback(int port) {
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = htons(static_cast<uint16_t>(port));
  return address;
}

void SetNonBlocking(int fd) { ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK); }

void SetNoDelay(int fd) {
  const int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

}  // namespace

// One proxied connection: two directions, each a queue of chunks with their release times.
struct DelayingTcpProxy::Connection {
  struct Chunk {
    SteadyClock::time_point release;
    std::string bytes;
  };
  struct Direction {
    int from = -1;
    int to = -1;
    std::deque<Chunk> queue;
    size_t queued_bytes = 0;
    size_t front_offset = 0;  // bytes of the front chunk already sent
    SteadyClock::time_point last_release{};
    bool eof = false;      // `from` closed its sending side
    bool shut = false;     // and that was passed on to `to`
    bool blocked = false;  // `to` would block: wait for POLLOUT
  };

  int client = -1;
  int server = -1;
  Direction up;    // client -> server
  Direction down;  // server -> client
  bool failed = false;

  Connection(int client_fd, int server_fd) : client(client_fd), server(server_fd) {
    up.from = down.to = client;
    up.to = down.from = server;
  }
  ~Connection() {
    ::close(client);
    ::close(server);
  }
  bool Finished() const { return failed || (up.shut && down.shut); }
};

FixtureResult<std::unique_ptr<DelayingTcpProxy>> DelayingTcpProxy::Start(
    int target_port, DelayingProxyOptions options) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return Unexpected{FixtureError{std::string("socket: ") + std::strerror(errno)}};
  const int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_in address = Loopback(options.listen_port);
  socklen_t length = sizeof(address);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0 ||
      ::listen(fd, 64) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) != 0) {
    const std::string error = std::strerror(errno);
    ::close(fd);
    return Unexpected{
        FixtureError{"listen on 127.0.0.1:" + std::to_string(options.listen_port) + ": " + error}};
  }
  SetNonBlocking(fd);
  return std::unique_ptr<DelayingTcpProxy>(
      new DelayingTcpProxy(fd, ntohs(address.sin_port), target_port, options));
}

DelayingTcpProxy::DelayingTcpProxy(int listen_fd, int port, int target_port,
                                   DelayingProxyOptions options)
    : listen_fd_(listen_fd), port_(port), target_port_(target_port), options_(options) {
  if (::pipe(wake_pipe_) != 0) wake_pipe_[0] = wake_pipe_[1] = -1;
  thread_ = std::thread([this] { Loop(); });
}

DelayingTcpProxy::~DelayingTcpProxy() {
  const char stop = 's';
  if (wake_pipe_[1] >= 0) (void)!::write(wake_pipe_[1], &stop, 1);
  thread_.join();
  connections_list_.clear();
  ::close(listen_fd_);
  if (wake_pipe_[0] >= 0) ::close(wake_pipe_[0]);
  if (wake_pipe_[1] >= 0) ::close(wake_pipe_[1]);
}

DelayingTcpProxy::Stats DelayingTcpProxy::stats() const {
  return {connections_.load(), chunks_.load(), held_chunks_.load(), bytes_.load()};
}

void DelayingTcpProxy::Accept() {
  while (true) {
    const int client = ::accept(listen_fd_, nullptr, nullptr);
    if (client < 0) return;
    const int server = ::socket(AF_INET, SOCK_STREAM, 0);
    const sockaddr_in target = Loopback(target_port_);
    if (server < 0 ||
        ::connect(server, reinterpret_cast<const sockaddr*>(&target), sizeof(target)) != 0) {
      ::close(client);
      if (server >= 0) ::close(server);
      continue;
    }
    SetNonBlocking(client);
    SetNonBlocking(server);
    SetNoDelay(client);
    SetNoDelay(server);
    connections_list_.push_back(std::make_unique<Connection>(client, server));
    ++connections_;
  }
}

void DelayingTcpProxy::Loop() {
  std::mt19937_64 random(options_.seed);
  std::uniform_real_distribution<double> uniform(0.0, 1.0);
  std::vector<char> buffer(65536);

  // Sends what is due; false on a broken connection.
  auto flush = [](Connection::Direction& d, SteadyClock::time_point now) {
    d.blocked = false;
    while (!d.queue.empty() && d.queue.front().release <= now) {
      Connection::Chunk& chunk = d.queue.front();
      const ssize_t sent = ::send(d.to, chunk.bytes.data() + d.front_offset,
                                  chunk.bytes.size() - d.front_offset, MSG_NOSIGNAL);
      if (sent < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
          d.blocked = true;
          return true;
        }
        if (errno == EINTR) continue;
        return false;
      }
      d.front_offset += static_cast<size_t>(sent);
      if (d.front_offset == chunk.bytes.size()) {
        d.queued_bytes -= chunk.bytes.size();
        d.front_offset = 0;
        d.queue.pop_front();
      }
    }
    if (d.eof && d.queue.empty() && !d.shut) {
      ::shutdown(d.to, SHUT_WR);
      d.shut = true;
    }
    return true;
  };
  // Reads one chunk and queues it with its release time; false on a broken connection.
  auto read = [&](Connection::Direction& d) {
    const ssize_t n = ::recv(d.from, buffer.data(), buffer.size(), 0);
    if (n == 0) {
      d.eof = true;
      return true;
    }
    if (n < 0) return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR;
    const bool held = uniform(random) < options_.hold_fraction;
    const auto now = SteadyClock::now();
    auto release = now + options_.one_way_delay;
    if (held) release += options_.hold;
    // Never before the chunk ahead of it: bytes keep their order, a held chunk holds the rest.
    release = std::max(release, d.last_release);
    d.last_release = release;
    d.queue.push_back({release, std::string(buffer.data(), static_cast<size_t>(n))});
    d.queued_bytes += static_cast<size_t>(n);
    ++chunks_;
    held_chunks_ += held ? 1 : 0;
    bytes_ += static_cast<uint64_t>(n);
    return true;
  };
  auto wants_read = [&](const Connection::Direction& d) {
    return !d.eof && d.queued_bytes < options_.max_queued_bytes;
  };

  while (true) {
    const auto now = SteadyClock::now();
    auto next_release = SteadyClock::time_point::max();
    for (auto& connection : connections_list_) {
      for (Connection::Direction* d : {&connection->up, &connection->down}) {
        if (!connection->failed && !flush(*d, now)) connection->failed = true;
        if (!d->blocked && !d->queue.empty()) {
          next_release = std::min(next_release, d->queue.front().release);
        }
      }
    }
    std::erase_if(connections_list_, [](const auto& c) { return c->Finished(); });

    std::vector<pollfd> fds{{listen_fd_, POLLIN, 0}, {wake_pipe_[0], POLLIN, 0}};
    for (auto& connection : connections_list_) {
      const short client_events = static_cast<short>((wants_read(connection->up) ? POLLIN : 0) |
                                                     (connection->down.blocked ? POLLOUT : 0));
      const short server_events = static_cast<short>((wants_read(connection->down) ? POLLIN : 0) |
                                                     (connection->up.blocked ? POLLOUT : 0));
      // A descriptor with nothing to wait for is left out (poll would report its hang-up
      // again and again).
      fds.push_back({client_events != 0 ? connection->client : -1, client_events, 0});
      fds.push_back({server_events != 0 ? connection->server : -1, server_events, 0});
    }
    timespec timeout{0, 100 * 1000 * 1000};
    if (next_release != SteadyClock::time_point::max()) {
      const auto wait = std::max(next_release - SteadyClock::now(), SteadyClock::duration::zero());
      const auto wait_ns = std::min<int64_t>(
          std::chrono::duration_cast<std::chrono::nanoseconds>(wait).count(), 100'000'000);
      timeout = {0, static_cast<long>(wait_ns)};
    }
    if (::ppoll(fds.data(), fds.size(), &timeout, nullptr) < 0 && errno != EINTR) return;
    if (fds[1].revents != 0) return;  // the destructor asks to stop
    const short readable = POLLIN | POLLHUP | POLLERR;
    for (size_t i = 0; i < connections_list_.size(); ++i) {
      Connection& connection = *connections_list_[i];
      if ((fds[2 + 2 * i].events & POLLIN) && (fds[2 + 2 * i].revents & readable) &&
          !read(connection.up)) {
        connection.failed = true;
      }
      if ((fds[3 + 2 * i].events & POLLIN) && (fds[3 + 2 * i].revents & readable) &&
          !read(connection.down)) {
        connection.failed = true;
      }
      if (((fds[2 + 2 * i].revents | fds[3 + 2 * i].revents) & POLLERR) != 0 &&
          (fds[2 + 2 * i].events & POLLIN) == 0 && (fds[3 + 2 * i].events & POLLIN) == 0) {
        connection.failed = true;
      }
    }
    if (fds[0].revents & POLLIN) Accept();
  }
}

}  // namespace zk2etcd::testing
