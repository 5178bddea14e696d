// HttpServer: a minimal HTTP/1.1 server for the operational endpoints (/metrics, /healthz,
// /readyz, /log). Not a general web server: one request per connection (every response carries
// "Connection: close"), bodies only with Content-Length, small bounded requests.
//
// It runs one thread of its own (an asio io_context); handlers run on that thread, one at a time,
// so they must be quick and must not call Stop(). Each connection holds at most
// max_header_bytes + max_body_bytes of request, has a deadline for reading its request, and the
// number of open connections is capped, so neither garbage nor idle clients exhaust memory.
//
// Thread-safe: Handle() may be called from any thread at any time (usually before Start());
// Start() and Stop() from any one thread except a handler's. Stop() is called by the destructor.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/result.h"

namespace zk2etcd::ops {

struct HttpRequest {
  std::string method;  // as sent, e.g. "GET"
  std::string target;  // the request-target as sent, e.g. "/log?level=debug"
  std::string path;    // percent-decoded path without the query, e.g. "/log"
  std::string query;   // raw query string without '?'
  // Header names in lower case; values with surrounding whitespace removed; in arrival order.
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  // Decoded parameters of the query string, and of the body when its Content-Type is
  // application/x-www-form-urlencoded (POST, PUT, PATCH).
  std::multimap<std::string, std::string> query_params;
  std::multimap<std::string, std::string> form_params;

  // The first header with this name (case-insensitive).
  std::optional<std::string_view> Header(std::string_view name) const;
  // As Go's Request.FormValue: the first body form value, else the first query value.
  std::optional<std::string_view> Param(std::string_view name) const;
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;  // extra headers

  static HttpResponse Text(int status, std::string body);
};

using HttpHandler = std::function<HttpResponse(const HttpRequest&)>;

struct HttpServerOptions {
  // "host:port", ":port" (all interfaces, IPv6 and IPv4), "[v6addr]:port"; port 0 picks a free
  // port (see HttpServer::port()).
  std::string listen_address = ":80";
  size_t max_header_bytes = 64 * 1024;  // request line and headers; more gets 431
  size_t max_body_bytes = 64 * 1024;    // more gets 413
  // From accepting a connection to having read its whole request; then the connection is
  // closed without a response.
  std::chrono::milliseconds read_timeout = std::chrono::seconds(10);
  // For writing the response.
  std::chrono::milliseconds write_timeout = std::chrono::seconds(10);
  // Connections beyond this are closed at once.
  size_t max_connections = 64;
};

struct HttpServerError {
  enum class Code {
    kInvalidAddress,  // listen_address does not parse or the host does not resolve
    kListenFailed,    // socket, bind or listen failed (in use, permission, no such address)
    kAlreadyStarted,
  };
  Code code = Code::kListenFailed;
  // Names the address and the OS's reason, e.g.
  // `cannot listen on "127.0.0.1:80": Permission denied`.
  std::string message;
};

// Splits "host:port" (":port", "[::1]:port") as Go's net.SplitHostPort does, and checks that the
// port is a number 0..65535. Exposed for tests and for the CLI's flag checking.
Result<std::pair<std::string, uint16_t>, std::string> SplitListenAddress(std::string_view address);

// Decodes %XX escapes, and '+' as a space when `plus_is_space`. Errors on a malformed escape.
Result<std::string, std::string> PercentDecode(std::string_view text, bool plus_is_space);
// Parses "a=1&b=x+y" into `out`; keys without '=' get an empty value. Errors on a malformed
// escape.
Result<void, std::string> ParseUrlEncoded(std::string_view text,
                                          std::multimap<std::string, std::string>& out);

class HttpServer {
 public:
  explicit HttpServer(HttpServerOptions options);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Routes requests for exactly `path` with `method` to `handler`; replaces an earlier handler
  // for the same pair. A path with other methods only gets 405; an unknown path 404.
  void Handle(std::string method, std::string path, HttpHandler handler);

  // Binds, listens and starts the server's thread. On error nothing is left running.
  Result<void, HttpServerError> Start();
  // The bound port (useful with port 0); 0 before a successful Start().
  uint16_t port() const;
  // Closes the listener and every open connection and joins the thread. Idempotent.
  void Stop();

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace zk2etcd::ops
