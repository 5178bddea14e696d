#include "testing/loopback.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace zk2etcd::testing {

namespace {

sockaddr_in Loopback(int port) {
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<uint16_t>(port));
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return address;
}

class Socket {
 public:
  Socket() : fd_(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) {}
  ~Socket() {
    if (fd_ >= 0) close(fd_);
  }
  Socket(const Socket&) = delete;
  Socket& operator=(const Socket&) = delete;
  int fd() const { return fd_; }

 private:
  int fd_;
};

}  // namespace

FixtureResult<int> PickFreePort() {
  Socket socket;
  sockaddr_in address = Loopback(0);
  if (socket.fd() < 0 ||
      bind(socket.fd(), reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0) {
    return Unexpected{FixtureError{std::string("bind 127.0.0.1:0: ") + std::strerror(errno)}};
  }
  socklen_t length = sizeof(address);
  getsockname(socket.fd(), reinterpret_cast<sockaddr*>(&address), &length);
  return static_cast<int>(ntohs(address.sin_port));
}

FixtureResult<std::unique_ptr<SilentListener>> SilentListener::Start() {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in address = Loopback(0);
  socklen_t length = sizeof(address);
  if (fd < 0 || bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0 ||
      listen(fd, 64) != 0 || getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) != 0) {
    const std::string error = std::strerror(errno);
    if (fd >= 0) close(fd);
    return Unexpected{FixtureError{"silent listener on 127.0.0.1:0: " + error}};
  }
  return std::unique_ptr<SilentListener>(
      new SilentListener(fd, static_cast<int>(ntohs(address.sin_port))));
}

SilentListener::~SilentListener() { close(fd_); }

FixtureResult<std::string> TcpExchange(int port, const std::string& request,
                                       std::chrono::milliseconds timeout, size_t enough) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  auto remaining_ms = [&] {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    return static_cast<int>(std::max<int64_t>(0, left.count()));
  };
  Socket socket;
  const int fd = socket.fd();
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
  sockaddr_in address = Loopback(port);
  if (connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0 &&
      errno != EINPROGRESS) {
    return Unexpected{FixtureError{"connect: " + std::string(std::strerror(errno))}};
  }
  pollfd wait_connect{fd, POLLOUT, 0};
  if (poll(&wait_connect, 1, remaining_ms()) != 1) {
    return Unexpected{FixtureError{"connect timed out"}};
  }
  int error = 0;
  socklen_t length = sizeof(error);
  getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length);
  if (error != 0) return Unexpected{FixtureError{"connect: " + std::string(std::strerror(error))}};

  size_t sent = 0;
  while (sent < request.size()) {
    const ssize_t n = send(fd, request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
    if (n > 0) {
      sent += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno != EAGAIN) {
      return Unexpected{FixtureError{"send: " + std::string(std::strerror(errno))}};
    }
    pollfd wait_write{fd, POLLOUT, 0};
    if (poll(&wait_write, 1, remaining_ms()) != 1) {
      return Unexpected{FixtureError{"send timed out"}};
    }
  }
  std::string reply;
  char buffer[4096];
  while (reply.size() < enough) {
    pollfd wait_read{fd, POLLIN, 0};
    if (poll(&wait_read, 1, remaining_ms()) != 1) break;
    const ssize_t n = recv(fd, buffer, sizeof(buffer), 0);
    if (n <= 0) break;
    reply.append(buffer, static_cast<size_t>(n));
  }
  if (reply.empty()) return Unexpected{FixtureError{"no reply"}};
  return reply;
}

}  // namespace zk2etcd::testing
