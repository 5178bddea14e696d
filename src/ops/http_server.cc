#include "ops/http_server.h"

#include <algorithm>
#include <array>
#include <asio.hpp>
#include <atomic>
#include <cctype>
#include <charconv>
#include <mutex>
#include <thread>
#include <unordered_set>

namespace zk2etcd::ops {

namespace {

using asio::ip::tcp;

// After an error response sent before the whole request was read, unread input is drained for
// this long (and at most kLingerMaxBytes) before closing, so that closing with unread data does
// not reset the connection and destroy the response before the client has read it.
constexpr std::chrono::milliseconds kLingerTime(1000);
constexpr size_t kLingerMaxBytes = 1 << 20;
constexpr size_t kReadChunk = 4096;
constexpr std::chrono::milliseconds kAcceptRetryDelay(100);

std::string_view ReasonPhrase(int status) {
  switch (status) {
    case 200:
      return "OK";
    case 201:
      return "Created";
    case 202:
      return "Accepted";
    case 204:
      return "No Content";
    case 301:
      return "Moved Permanently";
    case 302:
      return "Found";
    case 304:
      return "Not Modified";
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 408:
      return "Request Timeout";
    case 409:
      return "Conflict";
    case 411:
      return "Length Required";
    case 413:
      return "Content Too Large";
    case 415:
      return "Unsupported Media Type";
    case 429:
      return "Too Many Requests";
    case 431:
      return "Request Header Fields Too Large";
    case 500:
      return "Internal Server Error";
    case 501:
      return "Not Implemented";
    case 503:
      return "Service Unavailable";
    case 505:
      return "HTTP Version Not Supported";
    default:
      return "Unknown";
  }
}

char ToLower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

std::string Lowercase(std::string_view text) {
  std::string out(text);
  for (char& c : out) c = ToLower(c);
  return out;
}

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (ToLower(a[i]) != ToLower(b[i])) return false;
  }
  return true;
}

// RFC 9110 tchar.
bool IsTokenChar(char c) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
  return std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

bool IsToken(std::string_view text) {
  return !text.empty() && std::all_of(text.begin(), text.end(), IsTokenChar);
}

std::string_view TrimOws(std::string_view text) {
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) text.remove_prefix(1);
  while (!text.empty() && (text.back() == ' ' || text.back() == '\t')) text.remove_suffix(1);
  return text;
}

bool HasControlCharacter(std::string_view text) {
  return std::any_of(text.begin(), text.end(), [](char c) {
    const auto byte = static_cast<unsigned char>(c);
    return byte < 0x20 || byte == 0x7f;
  });
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Why a request could not be parsed: the status to answer and a short text.
struct ParseFailure {
  int status;
  std::string message;
};

// Parses the request line and headers (`head`, without the blank line ending it) into
// `request`, and the declared body length into `content_length`.
Result<void, ParseFailure> ParseHead(std::string_view head, HttpRequest& request,
                                     size_t& content_length) {
  std::vector<std::string_view> lines;
  while (!head.empty()) {
    const size_t newline = head.find('\n');
    std::string_view line = head.substr(0, newline);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    lines.push_back(line);
    head = newline == std::string_view::npos ? std::string_view() : head.substr(newline + 1);
  }
  // A server should ignore empty lines before the request line (RFC 9112 2.2).
  size_t first = 0;
  while (first < lines.size() && lines[first].empty()) ++first;
  if (first == lines.size()) return Unexpected{ParseFailure{400, "empty request"}};

  // method SP request-target SP HTTP-version
  const std::string_view request_line = lines[first];
  const size_t space1 = request_line.find(' ');
  const size_t space2 =
      space1 == std::string_view::npos ? space1 : request_line.find(' ', space1 + 1);
  if (space2 == std::string_view::npos ||
      request_line.find(' ', space2 + 1) != std::string_view::npos) {
    return Unexpected{ParseFailure{400, "malformed request line"}};
  }
  const std::string_view method = request_line.substr(0, space1);
  std::string_view target = request_line.substr(space1 + 1, space2 - space1 - 1);
  const std::string_view version = request_line.substr(space2 + 1);
  if (!IsToken(method)) return Unexpected{ParseFailure{400, "malformed method"}};
  if (version != "HTTP/1.1" && version != "HTTP/1.0") {
    if (version.size() == 8 && version.starts_with("HTTP/") && version[6] == '.' &&
        std::isdigit(static_cast<unsigned char>(version[5])) &&
        std::isdigit(static_cast<unsigned char>(version[7]))) {
      return Unexpected{ParseFailure{505, "unsupported HTTP version"}};
    }
    return Unexpected{ParseFailure{400, "malformed HTTP version"}};
  }
  if (target.empty() || HasControlCharacter(target)) {
    return Unexpected{ParseFailure{400, "malformed request target"}};
  }
  request.method = std::string(method);
  request.target = std::string(target);
  // absolute-form (RFC 9112 3.2.2): keep only the path and query.
  for (std::string_view scheme : {"http://", "https://"}) {
    if (target.size() > scheme.size() &&
        EqualsIgnoreCase(target.substr(0, scheme.size()), scheme)) {
      target.remove_prefix(scheme.size());
      const size_t slash = target.find_first_of("/?");
      target = slash == std::string_view::npos ? std::string_view("/") : target.substr(slash);
      if (target.front() == '?') return Unexpected{ParseFailure{400, "malformed request target"}};
    }
  }
  if (target.front() != '/' && target != "*") {
    return Unexpected{ParseFailure{400, "malformed request target"}};
  }
  const size_t question = target.find('?');
  auto path = PercentDecode(target.substr(0, question), /*plus_is_space=*/false);
  if (!path.ok()) return Unexpected{ParseFailure{400, "malformed path: " + path.error()}};
  request.path = std::move(path).value();
  if (question != std::string_view::npos) {
    request.query = std::string(target.substr(question + 1));
    if (auto parsed = ParseUrlEncoded(request.query, request.query_params); !parsed.ok()) {
      return Unexpected{ParseFailure{400, "malformed query: " + parsed.error()}};
    }
  }

  std::optional<size_t> length;
  for (size_t i = first + 1; i < lines.size(); ++i) {
    const std::string_view line = lines[i];
    if (line.empty()) break;  // the blank line ending the head
    if (line.front() == ' ' || line.front() == '\t') {
      return Unexpected{ParseFailure{400, "folded header lines are not supported"}};
    }
    const size_t colon = line.find(':');
    if (colon == std::string_view::npos || !IsToken(line.substr(0, colon))) {
      return Unexpected{ParseFailure{400, "malformed header line"}};
    }
    const std::string_view value = TrimOws(line.substr(colon + 1));
    if (std::any_of(value.begin(), value.end(), [](char c) { return c == '\r' || c == '\0'; })) {
      return Unexpected{ParseFailure{400, "malformed header value"}};
    }
    std::string name = Lowercase(line.substr(0, colon));
    if (name == "content-length") {
      if (value.empty() ||
          !std::all_of(value.begin(), value.end(), [](char c) { return c >= '0' && c <= '9'; })) {
        return Unexpected{ParseFailure{400, "malformed Content-Length"}};
      }
      if (value.size() > 18) return Unexpected{ParseFailure{413, "request body too large"}};
      size_t parsed = 0;
      std::from_chars(value.data(), value.data() + value.size(), parsed);
      if (length.has_value() && *length != parsed) {
        return Unexpected{ParseFailure{400, "conflicting Content-Length headers"}};
      }
      length = parsed;
    } else if (name == "transfer-encoding") {
      return Unexpected{ParseFailure{501, "Transfer-Encoding is not supported"}};
    }
    request.headers.emplace_back(std::move(name), std::string(value));
  }
  content_length = length.value_or(0);
  return {};
}

// Where the head ends: the index just past the blank line ("\r\n\r\n" or "\n\n"), searching
// from `from`; npos if not yet received.
size_t FindHeadEnd(std::string_view data, size_t from) {
  for (size_t i = data.find('\n', from); i != std::string_view::npos; i = data.find('\n', i + 1)) {
    if (i + 1 < data.size() && data[i + 1] == '\n') return i + 2;
    if (i + 2 < data.size() && data[i + 1] == '\r' && data[i + 2] == '\n') return i + 3;
  }
  return std::string_view::npos;
}

void ParseFormBody(HttpRequest& request, std::optional<ParseFailure>& failure) {
  if (request.method != "POST" && request.method != "PUT" && request.method != "PATCH") return;
  const auto content_type = request.Header("content-type");
  if (!content_type.has_value()) return;
  const std::string_view media_type = TrimOws(content_type->substr(0, content_type->find(';')));
  if (!EqualsIgnoreCase(media_type, "application/x-www-form-urlencoded")) return;
  if (auto parsed = ParseUrlEncoded(request.body, request.form_params); !parsed.ok()) {
    failure = ParseFailure{400, "malformed form body: " + parsed.error()};
  }
}

std::string SerializeResponse(const HttpResponse& response) {
  std::string out;
  out.reserve(response.body.size() + 256);
  out += "HTTP/1.1 ";
  out += std::to_string(response.status);
  out += ' ';
  out += ReasonPhrase(response.status);
  out += "\r\n";
  if (!response.content_type.empty() && !HasControlCharacter(response.content_type)) {
    out += "Content-Type: ";
    out += response.content_type;
    out += "\r\n";
  }
  out += "Content-Length: ";
  out += std::to_string(response.body.size());
  out += "\r\nConnection: close\r\n";
  for (const auto& [name, value] : response.headers) {
    // Names and values a handler got wrong are dropped rather than allowed to split the header.
    if (!IsToken(name) || HasControlCharacter(value)) continue;
    if (EqualsIgnoreCase(name, "content-length") || EqualsIgnoreCase(name, "connection") ||
        EqualsIgnoreCase(name, "content-type")) {
      continue;
    }
    out += name;
    out += ": ";
    out += value;
    out += "\r\n";
  }
  out += "\r\n";
  out += response.body;
  return out;
}

}  // namespace

// ---- requests, responses, parsing helpers ----

std::optional<std::string_view> HttpRequest::Header(std::string_view name) const {
  for (const auto& [key, value] : headers) {
    if (EqualsIgnoreCase(key, name)) return std::string_view(value);
  }
  return std::nullopt;
}

std::optional<std::string_view> HttpRequest::Param(std::string_view name) const {
  const std::string key(name);
  if (auto it = form_params.find(key); it != form_params.end()) return std::string_view(it->second);
  if (auto it = query_params.find(key); it != query_params.end()) {
    return std::string_view(it->second);
  }
  return std::nullopt;
}

HttpResponse HttpResponse::Text(int status, std::string body) {
  HttpResponse response;
  response.status = status;
  response.body = std::move(body);
  return response;
}

Result<std::pair<std::string, uint16_t>, std::string> SplitListenAddress(std::string_view address) {
  const size_t colon = address.rfind(':');
  if (colon == std::string_view::npos) return Unexpected{std::string("missing port in address")};
  std::string_view host = address.substr(0, colon);
  const std::string_view port = address.substr(colon + 1);
  if (host.starts_with('[')) {
    if (!host.ends_with(']')) return Unexpected{std::string("missing ']' in address")};
    host = host.substr(1, host.size() - 2);
  } else if (host.find_first_of(":[]") != std::string_view::npos) {
    return Unexpected{std::string("too many colons in address (write IPv6 as [addr]:port)")};
  }
  unsigned value = 0;
  const auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
  if (port.empty() || ec != std::errc() || end != port.data() + port.size() || value > 65535) {
    return Unexpected{"invalid port \"" + std::string(port) + "\""};
  }
  return std::pair<std::string, uint16_t>(std::string(host), static_cast<uint16_t>(value));
}

Result<std::string, std::string> PercentDecode(std::string_view text, bool plus_is_space) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (c == '%') {
      const int high = i + 2 < text.size() ? HexValue(text[i + 1]) : -1;
      const int low = i + 2 < text.size() ? HexValue(text[i + 2]) : -1;
      if (high < 0 || low < 0) {
        return Unexpected{"invalid escape \"" + std::string(text.substr(i, 3)) + "\""};
      }
      out += static_cast<char>(high * 16 + low);
      i += 2;
    } else if (c == '+' && plus_is_space) {
      out += ' ';
    } else {
      out += c;
    }
  }
  return out;
}

Result<void, std::string> ParseUrlEncoded(std::string_view text,
                                          std::multimap<std::string, std::string>& out) {
  while (!text.empty()) {
    const size_t amp = text.find('&');
    const std::string_view pair = text.substr(0, amp);
    text = amp == std::string_view::npos ? std::string_view() : text.substr(amp + 1);
    if (pair.empty()) continue;
    const size_t equals = pair.find('=');
    auto key = PercentDecode(pair.substr(0, equals), true);
    if (!key.ok()) return Unexpected{key.error()};
    auto value = PercentDecode(
        equals == std::string_view::npos ? std::string_view() : pair.substr(equals + 1), true);
    if (!value.ok()) return Unexpected{value.error()};
    out.emplace(std::move(key).value(), std::move(value).value());
  }
  return {};
}

// ---- the server ----

class HttpServer::Impl {
 public:
  explicit Impl(HttpServerOptions options) : options_(std::move(options)) {}

  void Handle(std::string method, std::string path, HttpHandler handler) {
    std::lock_guard lock(routes_mutex_);
    routes_[std::move(path)][std::move(method)] =
        std::make_shared<const HttpHandler>(std::move(handler));
  }

  Result<void, HttpServerError> Start();
  void Stop();
  uint16_t port() const { return port_.load(); }

 private:
  class Connection;

  Result<void, std::string> Listen(const std::string& host, uint16_t port);
  void DoAccept();
  void CloseAll();  // on the io thread
  HttpResponse Dispatch(const HttpRequest& request);

  const HttpServerOptions options_;

  std::mutex routes_mutex_;
  std::map<std::string, std::map<std::string, std::shared_ptr<const HttpHandler>>> routes_;

  std::mutex lifecycle_mutex_;
  bool started_ = false;  // GUARDED_BY(lifecycle_mutex_)
  bool stopped_ = false;  // GUARDED_BY(lifecycle_mutex_)
  std::thread thread_;
  std::atomic<uint16_t> port_{0};

  asio::io_context io_;
  tcp::acceptor acceptor_{io_};
  asio::steady_timer accept_retry_timer_{io_};
  // Touched only on the io thread.
  bool stopping_ = false;
  std::unordered_set<std::shared_ptr<Connection>> connections_;
};

// One accepted connection: reads one request within the deadline, answers, closes. Lives in
// Impl::connections_ and in its pending handlers; all its methods run on the io thread.
class HttpServer::Impl::Connection : public std::enable_shared_from_this<Connection> {
 public:
  Connection(Impl& server, tcp::socket socket)
      : server_(server), socket_(std::move(socket)), timer_(socket_.get_executor()) {}

  void Start() {
    ArmTimer(server_.options_.read_timeout);
    DoRead();
  }

  void Close() {
    auto self = shared_from_this();
    if (closed_) return;
    closed_ = true;
    asio::error_code ignored;
    timer_.cancel();
    socket_.shutdown(tcp::socket::shutdown_both, ignored);
    socket_.close(ignored);
    server_.connections_.erase(self);
  }

 private:
  void ArmTimer(std::chrono::milliseconds duration) {
    timer_.expires_after(duration);
    timer_.async_wait([self = shared_from_this()](const asio::error_code& ec) {
      if (ec != asio::error::operation_aborted) self->Close();
    });
  }

  void DoRead() {
    socket_.async_read_some(asio::buffer(chunk_),
                            [self = shared_from_this()](const asio::error_code& ec, size_t n) {
                              if (self->closed_) return;
                              if (ec) {  // EOF or error before a whole request: nothing to answer
                                self->Close();
                                return;
                              }
                              self->data_.append(self->chunk_.data(), n);
                              self->OnData();
                            });
  }

  void OnData() {
    const HttpServerOptions& options = server_.options_;
    if (head_end_ == std::string::npos) {
      head_end_ = FindHeadEnd(data_, scanned_);
      // A terminator may straddle reads: its '\n' can be one of the last two bytes.
      scanned_ = data_.size() >= 2 ? data_.size() - 2 : 0;
      if (head_end_ == std::string::npos) {
        if (data_.size() > options.max_header_bytes) {
          return RespondEarly(431, "request header too large");
        }
        return DoRead();
      }
      if (head_end_ > options.max_header_bytes) {
        return RespondEarly(431, "request header too large");
      }
      if (auto parsed =
              ParseHead(std::string_view(data_).substr(0, head_end_), request_, content_length_);
          !parsed.ok()) {
        return RespondEarly(parsed.error().status, parsed.error().message);
      }
      if (content_length_ > options.max_body_bytes) {
        return RespondEarly(413, "request body too large");
      }
    }
    if (data_.size() - head_end_ < content_length_) return DoRead();

    request_.body = data_.substr(head_end_, content_length_);
    std::string().swap(data_);
    std::optional<ParseFailure> failure;
    ParseFormBody(request_, failure);
    if (failure.has_value()) return RespondEarly(failure->status, failure->message);
    Respond(server_.Dispatch(request_), /*linger=*/false);
  }

  // Answers a request that was refused before it was read whole.
  void RespondEarly(int status, std::string_view message) {
    std::string body = std::to_string(status) + " " + std::string(message) + "\n";
    Respond(HttpResponse::Text(status, std::move(body)), /*linger=*/true);
  }

  void Respond(const HttpResponse& response, bool linger) {
    std::string().swap(data_);
    out_ = SerializeResponse(response);
    ArmTimer(server_.options_.write_timeout);
    asio::async_write(socket_, asio::buffer(out_),
                      [self = shared_from_this(), linger](const asio::error_code& ec, size_t) {
                        if (self->closed_) return;
                        if (ec || !linger) return self->Close();
                        self->Linger();
                      });
  }

  void Linger() {
    std::string().swap(out_);
    asio::error_code ignored;
    socket_.shutdown(tcp::socket::shutdown_send, ignored);
    ArmTimer(kLingerTime);
    DoDrain();
  }

  void DoDrain() {
    socket_.async_read_some(asio::buffer(chunk_),
                            [self = shared_from_this()](const asio::error_code& ec, size_t n) {
                              if (self->closed_) return;
                              self->drained_ += n;
                              if (ec || self->drained_ > kLingerMaxBytes) return self->Close();
                              self->DoDrain();
                            });
  }

  Impl& server_;
  tcp::socket socket_;
  asio::steady_timer timer_;
  std::array<char, kReadChunk> chunk_{};
  std::string data_;  // received bytes of the request, bounded by the size limits
  size_t scanned_ = 0;
  size_t head_end_ = std::string::npos;
  size_t content_length_ = 0;
  size_t drained_ = 0;
  HttpRequest request_;
  std::string out_;
  bool closed_ = false;
};

Result<void, std::string> HttpServer::Impl::Listen(const std::string& host, uint16_t port) {
  std::vector<tcp::endpoint> endpoints;
  if (host.empty()) {
    // All interfaces: IPv6 accepting IPv4 too, or IPv4 alone where IPv6 is unavailable.
    endpoints.emplace_back(tcp::v6(), port);
    endpoints.emplace_back(tcp::v4(), port);
  } else {
    asio::error_code ec;
    const asio::ip::address address = asio::ip::make_address(host, ec);
    if (!ec) {
      endpoints.emplace_back(address, port);
    } else {
      tcp::resolver resolver(io_);
      const auto results = resolver.resolve(host, std::to_string(port), ec);
      if (ec) return Unexpected{"cannot resolve host \"" + host + "\": " + ec.message()};
      for (const auto& entry : results) endpoints.push_back(entry.endpoint());
      if (endpoints.empty()) return Unexpected{"no address for host \"" + host + "\""};
    }
  }
  std::string last_error;
  for (size_t i = 0; i < endpoints.size(); ++i) {
    const tcp::endpoint& endpoint = endpoints[i];
    asio::error_code ec;
    acceptor_.open(endpoint.protocol(), ec);
    if (ec) {
      last_error = ec.message();
      continue;
    }
    acceptor_.set_option(tcp::acceptor::reuse_address(true), ec);
    if (host.empty() && endpoint.protocol() == tcp::v6()) {
      acceptor_.set_option(asio::ip::v6_only(false), ec);
    }
    acceptor_.bind(endpoint, ec);
    if (!ec) acceptor_.listen(asio::socket_base::max_listen_connections, ec);
    if (!ec) return {};
    last_error = ec.message();
    asio::error_code ignored;
    acceptor_.close(ignored);
    // On all interfaces, IPv4 is tried after IPv6 only when IPv6 itself is the problem: a port
    // in use or a privileged port is the answer for both.
    if (host.empty() && (ec == asio::error::address_in_use || ec == asio::error::access_denied)) {
      break;
    }
  }
  return Unexpected{last_error};
}

Result<void, HttpServerError> HttpServer::Impl::Start() {
  std::lock_guard lock(lifecycle_mutex_);
  if (started_) {
    return Unexpected{
        HttpServerError{HttpServerError::Code::kAlreadyStarted, "HTTP server already started"}};
  }
  const std::string& address = options_.listen_address;
  auto split = SplitListenAddress(address);
  if (!split.ok()) {
    return Unexpected{
        HttpServerError{HttpServerError::Code::kInvalidAddress,
                        "invalid listen address \"" + address + "\": " + split.error()}};
  }
  if (auto listened = Listen(split->first, split->second); !listened.ok()) {
    const bool resolve_failed = listened.error().starts_with("cannot resolve") ||
                                listened.error().starts_with("no address");
    return Unexpected{HttpServerError{resolve_failed ? HttpServerError::Code::kInvalidAddress
                                                     : HttpServerError::Code::kListenFailed,
                                      "cannot listen on \"" + address + "\": " + listened.error()}};
  }
  asio::error_code ec;
  port_ = acceptor_.local_endpoint(ec).port();
  started_ = true;
  DoAccept();
  thread_ = std::thread([this] { io_.run(); });
  return {};
}

void HttpServer::Impl::DoAccept() {
  acceptor_.async_accept([this](const asio::error_code& ec, tcp::socket socket) {
    if (stopping_ || ec == asio::error::operation_aborted) return;
    if (ec) {
      // Out of descriptors and the like: try again shortly rather than spin.
      accept_retry_timer_.expires_after(kAcceptRetryDelay);
      accept_retry_timer_.async_wait([this](const asio::error_code& wait_ec) {
        if (!wait_ec && !stopping_) DoAccept();
      });
      return;
    }
    if (connections_.size() >= options_.max_connections) {
      asio::error_code ignored;
      socket.close(ignored);
    } else {
      auto connection = std::make_shared<Connection>(*this, std::move(socket));
      connections_.insert(connection);
      connection->Start();
    }
    DoAccept();
  });
}

void HttpServer::Impl::CloseAll() {
  stopping_ = true;
  asio::error_code ignored;
  acceptor_.close(ignored);
  accept_retry_timer_.cancel();
  const std::vector<std::shared_ptr<Connection>> open(connections_.begin(), connections_.end());
  for (const auto& connection : open) connection->Close();
}

void HttpServer::Impl::Stop() {
  std::lock_guard lock(lifecycle_mutex_);
  if (!started_ || stopped_) return;
  stopped_ = true;
  // With the acceptor, the timers and every socket closed, run() runs the aborted handlers and
  // returns.
  asio::post(io_, [this] { CloseAll(); });
  thread_.join();
}

HttpResponse HttpServer::Impl::Dispatch(const HttpRequest& request) {
  std::shared_ptr<const HttpHandler> handler;
  std::string allowed;
  {
    std::lock_guard lock(routes_mutex_);
    const auto path = routes_.find(request.path);
    if (path == routes_.end()) return HttpResponse::Text(404, "404 page not found\n");
    const auto method = path->second.find(request.method);
    if (method != path->second.end()) {
      handler = method->second;
    } else {
      for (const auto& [name, unused] : path->second) {
        if (!allowed.empty()) allowed += ", ";
        allowed += name;
      }
    }
  }
  if (handler == nullptr) {
    HttpResponse response = HttpResponse::Text(405, "405 method not allowed\n");
    response.headers.emplace_back("Allow", std::move(allowed));
    return response;
  }
  try {
    return (*handler)(request);
  } catch (const std::exception& e) {
    return HttpResponse::Text(500, std::string("500 internal error: ") + e.what() + "\n");
  } catch (...) {
    return HttpResponse::Text(500, "500 internal error\n");
  }
}

HttpServer::HttpServer(HttpServerOptions options)
    : impl_(std::make_unique<Impl>(std::move(options))) {}

HttpServer::~HttpServer() { Stop(); }

void HttpServer::Handle(std::string method, std::string path, HttpHandler handler) {
  impl_->Handle(std::move(method), std::move(path), std::move(handler));
}

Result<void, HttpServerError> HttpServer::Start() { return impl_->Start(); }

uint16_t HttpServer::port() const { return impl_->port(); }

void HttpServer::Stop() { impl_->Stop(); }

}  // namespace zk2etcd::ops
