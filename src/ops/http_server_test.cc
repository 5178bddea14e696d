#include "ops/http_server.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <chrono>
#include <stdexcept>
#include <string>
#include <vector>

#include "ops/metrics.h"

namespace zk2etcd::ops {
namespace {

// A blocking loopback client: connects, sends `request` whole, reads until the server closes.
class TestClient {
 public:
  explicit TestClient(uint16_t port) : fd_(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) {
    timeval timeout{5, 0};
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
    ::setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof(timeout));
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(port);
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = ::connect(fd_, reinterpret_cast<const sockaddr*>(&address), sizeof(address)) == 0;
  }
  ~TestClient() { ::close(fd_); }

  bool connected() const { return connected_; }
  int fd() const { return fd_; }

  // Errors are ignored: the server may close early (413, 431) and the response still counts.
  void Send(std::string_view data) {
    while (!data.empty()) {
      const ssize_t n = ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
      if (n <= 0) return;
      data.remove_prefix(static_cast<size_t>(n));
    }
  }

  // Everything until EOF, an error or the 5 s receive timeout.
  std::string ReadAll() {
    std::string out;
    char buffer[4096];
    for (;;) {
      const ssize_t n = ::recv(fd_, buffer, sizeof(buffer), 0);
      if (n <= 0) break;
      out.append(buffer, static_cast<size_t>(n));
    }
    return out;
  }

 private:
  int fd_;
  bool connected_ = false;
};

struct Reply {
  int status = 0;
  std::string head;
  std::string body;
  bool HasHeader(std::string_view line) const {
    return head.find("\r\n" + std::string(line) + "\r\n") != std::string::npos;
  }
};

Reply Parse(const std::string& raw) {
  Reply reply;
  const size_t end = raw.find("\r\n\r\n");
  if (!raw.starts_with("HTTP/1.1 ") || raw.size() < 12 || end == std::string::npos) return reply;
  reply.status = std::stoi(raw.substr(9, 3));
  reply.head = raw.substr(0, end + 2);
  reply.body = raw.substr(end + 4);
  return reply;
}

Reply Exchange(uint16_t port, std::string_view request) {
  TestClient client(port);
  EXPECT_TRUE(client.connected());
  client.Send(request);
  return Parse(client.ReadAll());
}

std::string Describe(const HttpRequest& request) {
  auto param = [&](std::string_view name) {
    return std::string(request.Param(name).value_or("<none>"));
  };
  return "path=" + request.path + " level=" + param("level") + " note=" + param("note") +
         " q=" + param("q") + " body=" + request.body;
}

class HttpServerTest : public ::testing::Test {
 protected:
  void StartServer(HttpServerOptions options = {}) {
    options.listen_address = "127.0.0.1:0";
    server_ = std::make_unique<HttpServer>(std::move(options));
    server_->Handle("GET", "/metrics", [](const HttpRequest&) {
      HttpResponse response;
      response.content_type = std::string(kPrometheusTextContentType);
      response.body = "up 1\n";
      return response;
    });
    server_->Handle("GET", "/log",
                    [](const HttpRequest& r) { return HttpResponse::Text(200, Describe(r)); });
    server_->Handle("POST", "/log",
                    [](const HttpRequest& r) { return HttpResponse::Text(200, Describe(r)); });
    server_->Handle("GET", "/throw",
                    [](const HttpRequest&) -> HttpResponse { throw std::runtime_error("boom"); });
    auto started = server_->Start();
    ASSERT_TRUE(started.ok()) << started.error().message;
    port_ = server_->port();
    ASSERT_NE(port_, 0);
  }

  std::unique_ptr<HttpServer> server_;
  uint16_t port_ = 0;
};

TEST_F(HttpServerTest, GetReturnsBodyAndContentType) {
  StartServer();
  const Reply reply = Exchange(port_, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_EQ(reply.status, 200);
  EXPECT_TRUE(reply.HasHeader("Content-Type: text/plain; version=0.0.4; charset=utf-8"))
      << reply.head;
  EXPECT_TRUE(reply.HasHeader("Content-Length: 5")) << reply.head;
  EXPECT_TRUE(reply.HasHeader("Connection: close")) << reply.head;
  EXPECT_EQ(reply.body, "up 1\n");
}

TEST_F(HttpServerTest, PostFormParamsTakePrecedenceOverQueryParams) {
  StartServer();
  const std::string body = "level=debug&note=a+b%21%2F";
  const Reply reply = Exchange(port_,
                               "POST /log?q=x%2Fy+z&level=info HTTP/1.1\r\nHost: x\r\n"
                               "Content-Type: application/x-www-form-urlencoded; charset=utf-8\r\n"
                               "Content-Length: " +
                                   std::to_string(body.size()) + "\r\n\r\n" + body);
  EXPECT_EQ(reply.status, 200);
  EXPECT_EQ(reply.body, "path=/log level=debug note=a b!/ q=x/y z body=" + body);
}

TEST_F(HttpServerTest, GetQueryParamsAndPercentEncodedPath) {
  StartServer();
  const Reply reply = Exchange(port_, "GET /%6Cog?level=warn&note=%E2%9C%93 HTTP/1.0\r\n\r\n");
  EXPECT_EQ(reply.status, 200);
  EXPECT_EQ(reply.body, "path=/log level=warn note=\xE2\x9C\x93 q=<none> body=");
}

TEST_F(HttpServerTest, BodyArrivingInPiecesIsReadWhole) {
  StartServer();
  TestClient client(port_);
  client.Send("POST /log HTTP/1.1\r\nContent-Type: application/x-www-form-urlencoded\r\n");
  client.Send("Content-Length: 11\r\n\r");
  client.Send("\nlevel=");
  client.Send("error");
  const Reply reply = Parse(client.ReadAll());
  EXPECT_EQ(reply.status, 200);
  EXPECT_EQ(reply.body, "path=/log level=error note=<none> q=<none> body=level=error");
}

TEST_F(HttpServerTest, UnknownPathIs404AndWrongMethodIs405) {
  StartServer();
  const Reply missing = Exchange(port_, "GET /nope HTTP/1.1\r\n\r\n");
  EXPECT_EQ(missing.status, 404);
  EXPECT_EQ(missing.body, "404 page not found\n");
  const Reply wrong = Exchange(port_, "DELETE /log HTTP/1.1\r\n\r\n");
  EXPECT_EQ(wrong.status, 405);
  EXPECT_TRUE(wrong.HasHeader("Allow: GET, POST")) << wrong.head;
}

TEST_F(HttpServerTest, OversizeHeaderIs431) {
  StartServer();
  const std::string request =
      "GET /metrics HTTP/1.1\r\nX-Big: " + std::string(70 * 1024, 'a') + "\r\n\r\n";
  EXPECT_EQ(Exchange(port_, request).status, 431);
  // Endless header bytes without a blank line are refused the same way.
  EXPECT_EQ(Exchange(port_, std::string(100 * 1024, 'x')).status, 431);
}

TEST_F(HttpServerTest, OversizeBodyIs413) {
  StartServer();
  const std::string body(100 * 1024, 'b');
  const Reply reply =
      Exchange(port_, "POST /log HTTP/1.1\r\nContent-Length: " + std::to_string(body.size()) +
                          "\r\n\r\n" + body);
  EXPECT_EQ(reply.status, 413);
  EXPECT_EQ(
      Exchange(port_, "POST /log HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n").status,
      413);
}

TEST_F(HttpServerTest, MalformedRequestsGet4xxAndTheServerKeepsServing) {
  StartServer();
  EXPECT_EQ(Exchange(port_, "GARBAGE\r\n\r\n").status, 400);
  EXPECT_EQ(Exchange(port_, "GET  /metrics HTTP/1.1\r\n\r\n").status, 400);
  EXPECT_EQ(Exchange(port_, "GET metrics HTTP/1.1\r\n\r\n").status, 400);
  EXPECT_EQ(Exchange(port_, "GET /metrics HTTP/2.0\r\n\r\n").status, 505);
  EXPECT_EQ(Exchange(port_, "GET /metrics FOO\r\n\r\n").status, 400);
  EXPECT_EQ(Exchange(port_, "GET /metrics HTTP/1.1\r\nno colon\r\n\r\n").status, 400);
  EXPECT_EQ(Exchange(port_, "GET /metrics HTTP/1.1\r\n folded\r\n\r\n").status, 400);
  EXPECT_EQ(Exchange(port_, "GET /%zz HTTP/1.1\r\n\r\n").status, 400);
  EXPECT_EQ(Exchange(port_, "GET /log?a=%4 HTTP/1.1\r\n\r\n").status, 400);
  EXPECT_EQ(Exchange(port_, "POST /log HTTP/1.1\r\nContent-Length: x\r\n\r\n").status, 400);
  EXPECT_EQ(Exchange(port_, "POST /log HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n")
                .status,
            400);
  EXPECT_EQ(Exchange(port_, "POST /log HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n").status,
            501);
  std::string binary;
  for (int i = 0; i < 2000; ++i) binary += static_cast<char>((i * 7919) % 256);
  binary += "\r\n\r\n";
  EXPECT_EQ(Exchange(port_, binary).status, 400);
  {
    TestClient half(port_);  // closes before the request is complete: no answer
    half.Send("GET /metrics HTT");
  }
  const Reply ok = Exchange(port_, "GET /metrics HTTP/1.1\r\n\r\n");
  EXPECT_EQ(ok.status, 200);
  EXPECT_EQ(ok.body, "up 1\n");
}

TEST_F(HttpServerTest, MutatedRequestsNeverBreakTheServer) {
  StartServer();
  const std::string valid =
      "POST /log?level=info HTTP/1.1\r\nHost: x\r\n"
      "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 11\r\n\r\nlevel=debug";
  uint32_t state = 12345;  // a fixed linear congruential sequence: the same cases every run
  auto next = [&state] {
    state = state * 1103515245u + 12345u;
    return state >> 8;
  };
  for (int i = 0; i < 200; ++i) {
    std::string request = valid;
    const int edits = 1 + static_cast<int>(next() % 4);
    for (int e = 0; e < edits; ++e) {
      const size_t at = next() % request.size();
      switch (next() % 3) {
        case 0:
          request[at] = static_cast<char>(next() % 256);
          break;
        case 1:
          request.erase(at, 1 + next() % 8);
          break;
        default:
          request.insert(at, std::string(1 + next() % 8, static_cast<char>(next() % 256)));
      }
      if (request.empty()) request = "x";
    }
    TestClient client(port_);
    client.Send(request);
    ::shutdown(client.fd(), SHUT_WR);  // no more bytes: an incomplete request just ends
    const std::string raw = client.ReadAll();
    if (!raw.empty()) {
      const int status = Parse(raw).status;
      EXPECT_TRUE(status == 200 || (status >= 400 && status <= 505))
          << status << " for " << ::testing::PrintToString(request);
    }
  }
  EXPECT_EQ(Exchange(port_, valid).body,
            "path=/log level=debug note=<none> q=<none> body=level=debug");
}

TEST_F(HttpServerTest, AbsoluteFormTargetAndBareLineFeedsAreAccepted) {
  StartServer();
  EXPECT_EQ(Exchange(port_, "GET http://example/metrics HTTP/1.1\r\n\r\n").status, 200);
  EXPECT_EQ(Exchange(port_, "GET /metrics HTTP/1.1\nHost: x\n\n").status, 200);
}

TEST_F(HttpServerTest, HandlerExceptionIs500) {
  StartServer();
  const Reply reply = Exchange(port_, "GET /throw HTTP/1.1\r\n\r\n");
  EXPECT_EQ(reply.status, 500);
  EXPECT_NE(reply.body.find("boom"), std::string::npos);
}

TEST_F(HttpServerTest, IdleConnectionIsClosedAfterTheReadTimeout) {
  HttpServerOptions options;
  options.read_timeout = std::chrono::milliseconds(200);
  StartServer(options);
  TestClient idle(port_);
  idle.Send("GET /metr");
  const auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(idle.ReadAll(), "");  // closed without an answer
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(4));
}

TEST_F(HttpServerTest, ConnectionsBeyondTheLimitAreClosed) {
  HttpServerOptions options;
  options.max_connections = 2;
  StartServer(options);
  TestClient first(port_);
  TestClient second(port_);
  first.Send("GET /metrics HTTP/1.1\r\n");  // incomplete: both stay open
  second.Send("GET /metrics HTTP/1.1\r\n");
  TestClient third(port_);
  third.Send("GET /metrics HTTP/1.1\r\n\r\n");
  EXPECT_EQ(third.ReadAll(), "");
  first.Send("\r\n");
  EXPECT_EQ(Parse(first.ReadAll()).status, 200);
}

TEST_F(HttpServerTest, StopClosesOpenConnectionsAndTheListener) {
  StartServer();
  TestClient idle(port_);
  idle.Send("GET /metrics HTTP/1.1\r\n");
  const Reply before = Exchange(port_, "GET /metrics HTTP/1.1\r\n\r\n");  // idle is accepted
  EXPECT_EQ(before.status, 200);
  const auto start = std::chrono::steady_clock::now();
  server_->Stop();
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(2));
  EXPECT_EQ(idle.ReadAll(), "");
  TestClient after(port_);
  EXPECT_FALSE(after.connected());
  server_->Stop();  // idempotent
}

TEST(HttpServerListenTest, AddressInUseIsAClearError) {
  HttpServer first(HttpServerOptions{.listen_address = "127.0.0.1:0"});
  ASSERT_TRUE(first.Start().ok());
  const std::string address = "127.0.0.1:" + std::to_string(first.port());
  HttpServer second(HttpServerOptions{.listen_address = address});
  auto started = second.Start();
  ASSERT_FALSE(started.ok());
  EXPECT_EQ(started.error().code, HttpServerError::Code::kListenFailed);
  EXPECT_EQ(started.error().message,
            "cannot listen on \"" + address + "\": Address already in use");
  EXPECT_EQ(second.port(), 0);
}

TEST(HttpServerListenTest, AllInterfacesWithPortZero) {
  HttpServer server(HttpServerOptions{.listen_address = ":0"});
  server.Handle("GET", "/healthz",
                [](const HttpRequest&) { return HttpResponse::Text(200, "ok"); });
  auto started = server.Start();
  ASSERT_TRUE(started.ok()) << started.error().message;
  ASSERT_NE(server.port(), 0);
  EXPECT_EQ(Exchange(server.port(), "GET /healthz HTTP/1.1\r\n\r\n").body, "ok");
  EXPECT_EQ(server.Start().error().code, HttpServerError::Code::kAlreadyStarted);
}

TEST(HttpServerListenTest, InvalidAddressesAreRefused) {
  for (const char* address :
       {"nonsense", "127.0.0.1:99999", "127.0.0.1:http", "::1:80", "[::1:80"}) {
    HttpServer server(HttpServerOptions{.listen_address = address});
    auto started = server.Start();
    ASSERT_FALSE(started.ok()) << address;
    EXPECT_NE(started.error().message.find(std::string("\"") + address + "\""), std::string::npos)
        << started.error().message;
  }
}

TEST(HttpParsingTest, SplitListenAddress) {
  EXPECT_EQ(SplitListenAddress(":80").value(), (std::pair<std::string, uint16_t>("", 80)));
  EXPECT_EQ(SplitListenAddress("0.0.0.0:8080").value(),
            (std::pair<std::string, uint16_t>("0.0.0.0", 8080)));
  EXPECT_EQ(SplitListenAddress("[::1]:0").value(), (std::pair<std::string, uint16_t>("::1", 0)));
  EXPECT_EQ(SplitListenAddress("localhost:65535").value().second, 65535);
  EXPECT_FALSE(SplitListenAddress("80").ok());
  EXPECT_FALSE(SplitListenAddress("host:").ok());
  EXPECT_FALSE(SplitListenAddress("host:65536").ok());
  EXPECT_FALSE(SplitListenAddress("host:-1").ok());
}

TEST(HttpParsingTest, PercentDecodingAndUrlEncodedForms) {
  EXPECT_EQ(PercentDecode("a%20b+c%2b", true).value(), "a b c+");
  EXPECT_EQ(PercentDecode("a+b", false).value(), "a+b");
  EXPECT_FALSE(PercentDecode("%", true).ok());
  EXPECT_FALSE(PercentDecode("%g0", true).ok());
  std::multimap<std::string, std::string> params;
  ASSERT_TRUE(ParseUrlEncoded("a=1&&b&a=2&c%3D=x%3Dy&=v", params).ok());
  EXPECT_EQ(params, (std::multimap<std::string, std::string>{
                        {"a", "1"}, {"a", "2"}, {"b", ""}, {"c=", "x=y"}, {"", "v"}}));
}

}  // namespace
}  // namespace zk2etcd::ops
