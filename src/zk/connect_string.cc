#include "zk/connect_string.h"

#include <charconv>

#include "common/strings.h"

namespace zk2etcd::zk {

namespace {

ZkError Invalid(std::string message) {
  return ZkError{ZkErrorCode::kInvalidArgument, std::move(message), -1};
}

Result<uint16_t, ZkError> ParsePort(std::string_view text, std::string_view entry) {
  unsigned value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || ec != std::errc() || end != text.data() + text.size() || value == 0 ||
      value > 65535) {
    return Unexpected{Invalid("bad port in ZooKeeper server \"" + std::string(entry) + "\"")};
  }
  return static_cast<uint16_t>(value);
}

Result<ServerAddress, ZkError> ParseServer(std::string_view entry) {
  ServerAddress address;
  std::string_view host = entry;
  std::string_view port;
  if (!entry.empty() && entry.front() == '[') {
    const size_t close = entry.find(']');
    if (close == std::string_view::npos) {
      return Unexpected{Invalid("unclosed '[' in ZooKeeper server \"" + std::string(entry) + "\"")};
    }
    host = entry.substr(1, close - 1);
    std::string_view rest = entry.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') {
        return Unexpected{Invalid("bad ZooKeeper server \"" + std::string(entry) + "\"")};
      }
      port = rest.substr(1);
      if (port.empty()) return Unexpected{Invalid("empty port in \"" + std::string(entry) + "\"")};
    }
  } else {
    const size_t colon = entry.rfind(':');
    if (colon != std::string_view::npos) {
      if (entry.find(':') != colon) {
        return Unexpected{
            Invalid("IPv6 address must be in brackets: \"" + std::string(entry) + "\"")};
      }
      host = entry.substr(0, colon);
      port = entry.substr(colon + 1);
      if (port.empty()) return Unexpected{Invalid("empty port in \"" + std::string(entry) + "\"")};
    }
  }
  if (host.empty()) {
    return Unexpected{Invalid("empty host in ZooKeeper server \"" + std::string(entry) + "\"")};
  }
  address.host = std::string(host);
  if (!port.empty()) {
    auto parsed = ParsePort(port, entry);
    if (!parsed.ok()) return Unexpected{parsed.error()};
    address.port = *parsed;
  }
  return address;
}

}  // namespace

std::string ServerAddress::ToString() const {
  if (host.find(':') != std::string::npos) return "[" + host + "]:" + std::to_string(port);
  return host + ":" + std::to_string(port);
}

Result<ConnectString, ZkError> ParseConnectString(std::string_view text) {
  ConnectString result;
  const std::string_view trimmed = TrimWhitespace(text);
  std::string_view hosts = trimmed;
  const size_t slash = trimmed.find('/');
  if (slash != std::string_view::npos) {
    hosts = trimmed.substr(0, slash);
    std::string_view chroot = trimmed.substr(slash);
    if (chroot != "/") {
      if (auto reason = InvalidPathReason(chroot)) {
        return Unexpected{Invalid("bad chroot \"" + std::string(chroot) + "\": " + *reason)};
      }
      result.chroot = std::string(chroot);
    }
  }
  for (const auto& entry : SplitCommaList(hosts)) {
    auto server = ParseServer(entry);
    if (!server.ok()) return Unexpected{server.error()};
    result.servers.push_back(std::move(server).value());
  }
  if (result.servers.empty()) {
    return Unexpected{Invalid("no ZooKeeper server in \"" + std::string(text) + "\"")};
  }
  return result;
}

std::optional<std::string> InvalidPathReason(std::string_view path, bool sequential) {
  if (path.empty()) return "path is empty";
  if (path.front() != '/') return "path must start with '/'";
  if (path.size() == 1) return std::nullopt;
  if (path.back() == '/' && !sequential) return "path must not end with '/'";
  size_t start = 1;
  while (start <= path.size()) {
    size_t end = path.find('/', start);
    if (end == std::string_view::npos) end = path.size();
    const std::string_view component = path.substr(start, end - start);
    const bool last = end == path.size();
    if (component.empty() && !(last && sequential)) return "path has an empty component";
    if (component == "." || component == "..") return "path has a relative component";
    start = end + 1;
  }
  for (const char c : path) {
    const auto byte = static_cast<unsigned char>(c);
    if (byte < 0x20 || byte == 0x7f) return "path has a control character";
  }
  return std::nullopt;
}

std::string ServerPath(std::string_view chroot, std::string_view client_path) {
  if (chroot.empty()) return std::string(client_path);
  if (client_path == "/") return std::string(chroot);
  std::string path;
  path.reserve(chroot.size() + client_path.size());
  path.append(chroot);
  path.append(client_path);
  return path;
}

std::string ClientPath(std::string_view chroot, std::string_view server_path) {
  if (chroot.empty()) return std::string(server_path);
  if (server_path == chroot) return "/";
  if (server_path.size() > chroot.size() && server_path.substr(0, chroot.size()) == chroot &&
      server_path[chroot.size()] == '/') {
    return std::string(server_path.substr(chroot.size()));
  }
  return std::string(server_path);
}

std::string_view ParentPath(std::string_view path) {
  if (path.size() <= 1) return "";
  const size_t slash = path.rfind('/');
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

std::string_view BaseName(std::string_view path) {
  const size_t slash = path.rfind('/');
  if (slash == std::string_view::npos) return path;
  return path.substr(slash + 1);
}

std::string JoinPath(std::string_view parent, std::string_view child) {
  std::string path(parent);
  if (path.empty() || path.back() != '/') path.push_back('/');
  path.append(child);
  return path;
}

}  // namespace zk2etcd::zk
