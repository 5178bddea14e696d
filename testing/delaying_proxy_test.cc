#include "testing/delaying_proxy.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <random>
#include <string>
#include <thread>

namespace zk2etcd::testing {
namespace {

using std::chrono::milliseconds;
using SteadyClock = std::chrono::steady_clock;

void SetTimeouts(int fd) {
  timeval timeout{10, 0};  // every blocking call of these tests is bounded
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof(timeout));
}

// A loopback server that echoes everything back on one connection, and closes its sending side
// once the client closed its own.
class EchoServer {
 public:
  EchoServer() {
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t length = sizeof(address);
    EXPECT_EQ(::bind(listen_fd_, reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
    EXPECT_EQ(::listen(listen_fd_, 4), 0);
    ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&address), &length);
    port_ = ntohs(address.sin_port);
    thread_ = std::thread([this] {
      const int fd = ::accept(listen_fd_, nullptr, nullptr);
      if (fd < 0) return;
      SetTimeouts(fd);
      char buffer[65536];
      while (true) {
        const ssize_t n = ::recv(fd, buffer, sizeof(buffer), 0);
        if (n <= 0) break;
        for (ssize_t sent = 0; sent < n;) {
          const ssize_t w = ::send(fd, buffer + sent, static_cast<size_t>(n - sent), MSG_NOSIGNAL);
          if (w <= 0) break;
          sent += w;
        }
      }
      ::close(fd);
    });
  }
  ~EchoServer() {
    ::shutdown(listen_fd_, SHUT_RDWR);
    thread_.join();
    ::close(listen_fd_);
  }
  int port() const { return port_; }

 private:
  int listen_fd_ = -1;
  int port_ = 0;
  std::thread thread_;
};

int ConnectTo(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = htons(static_cast<uint16_t>(port));
  EXPECT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
  SetTimeouts(fd);
  return fd;
}

// Sends one byte and waits for its echo; returns the round trip.
SteadyClock::duration RoundTrip(int fd) {
  const auto start = SteadyClock::now();
  char byte = 'x';
  EXPECT_EQ(::send(fd, &byte, 1, MSG_NOSIGNAL), 1);
  EXPECT_EQ(::recv(fd, &byte, 1, 0), 1);
  return SteadyClock::now() - start;
}

TEST(DelayingTcpProxyTest, AddsTheDelayEachWay) {
  EchoServer echo;
  DelayingProxyOptions options;
  options.one_way_delay = milliseconds(40);
  options.hold_fraction = 0;
  auto proxy = DelayingTcpProxy::Start(echo.port(), options);
  ASSERT_TRUE(proxy.ok()) << proxy.error().message;
  const int fd = ConnectTo((*proxy)->port());
  for (int i = 0; i < 5; ++i) {
    const auto round_trip = RoundTrip(fd);
    EXPECT_GE(round_trip, milliseconds(80));    // 40 ms each way
    EXPECT_LT(round_trip, milliseconds(1000));  // and not much more (a loaded machine)
  }
  ::close(fd);
  EXPECT_EQ((*proxy)->stats().held_chunks, 0u);
  EXPECT_EQ((*proxy)->stats().connections, 1u);
}

TEST(DelayingTcpProxyTest, HeldChunksWaitTheHoldOnTop) {
  EchoServer echo;
  DelayingProxyOptions options;
  options.one_way_delay = milliseconds(10);
  options.hold_fraction = 1.0;
  options.hold = milliseconds(100);
  auto proxy = DelayingTcpProxy::Start(echo.port(), options);
  ASSERT_TRUE(proxy.ok()) << proxy.error().message;
  const int fd = ConnectTo((*proxy)->port());
  for (int i = 0; i < 3; ++i) EXPECT_GE(RoundTrip(fd), milliseconds(220));
  ::close(fd);
  const auto stats = (*proxy)->stats();
  EXPECT_EQ(stats.chunks, 6u);
  EXPECT_EQ(stats.held_chunks, 6u);
}

TEST(DelayingTcpProxyTest, HoldsAboutTheGivenFractionOfChunks) {
  EchoServer echo;
  DelayingProxyOptions options;
  options.one_way_delay = milliseconds(0);
  options.hold_fraction = 0.25;
  options.hold = milliseconds(1);
  auto proxy = DelayingTcpProxy::Start(echo.port(), options);
  ASSERT_TRUE(proxy.ok()) << proxy.error().message;
  const int fd = ConnectTo((*proxy)->port());
  for (int i = 0; i < 400; ++i) RoundTrip(fd);  // one chunk each way per round trip
  ::close(fd);
  const auto stats = (*proxy)->stats();
  ASSERT_EQ(stats.chunks, 800u);
  const double held = static_cast<double>(stats.held_chunks) / static_cast<double>(stats.chunks);
  EXPECT_GT(held, 0.18);  // 0.25 +- more than 4 standard deviations of 800 draws
  EXPECT_LT(held, 0.32);
}

TEST(DelayingTcpProxyTest, BytesArriveIntactAndInOrderAndTheCloseFollowsThem) {
  EchoServer echo;
  DelayingProxyOptions options;
  options.one_way_delay = milliseconds(2);
  options.hold_fraction = 0.2;
  options.hold = milliseconds(5);
  auto proxy = DelayingTcpProxy::Start(echo.port(), options);
  ASSERT_TRUE(proxy.ok()) << proxy.error().message;
  std::string pattern(4 << 20, '\0');
  std::mt19937 random(7);
  for (char& c : pattern) c = static_cast<char>(random());
  const int fd = ConnectTo((*proxy)->port());
  std::thread writer([&] {
    std::mt19937 sizes(11);
    for (size_t at = 0; at < pattern.size();) {
      const size_t size = std::min<size_t>(pattern.size() - at, 1 + sizes() % 20000);
      const ssize_t sent = ::send(fd, pattern.data() + at, size, MSG_NOSIGNAL);
      if (sent <= 0) break;
      at += static_cast<size_t>(sent);
    }
    ::shutdown(fd, SHUT_WR);
  });
  std::string echoed;
  char buffer[65536];
  while (true) {
    const ssize_t n = ::recv(fd, buffer, sizeof(buffer), 0);
    if (n <= 0) {
      EXPECT_EQ(n, 0) << "the echo's end of stream must arrive, not a timeout";
      break;
    }
    echoed.append(buffer, static_cast<size_t>(n));
  }
  writer.join();
  ::close(fd);
  ASSERT_EQ(echoed.size(), pattern.size());
  EXPECT_TRUE(echoed == pattern);
  EXPECT_GT((*proxy)->stats().held_chunks, 0u);
  EXPECT_EQ((*proxy)->stats().bytes, 2 * pattern.size());
}

}  // namespace
}  // namespace zk2etcd::testing
