// ZooKeeper connection strings ("host1:port1,host2:port2/chroot") and znode paths: parsing,
// validation, and the mapping between the client's paths and the server's under a chroot.
// Pure functions; thread-safe.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "zk/zk_error.h"

namespace zk2etcd::zk {

inline constexpr uint16_t kDefaultZooKeeperPort = 2181;

struct ServerAddress {
  std::string host;  // a name or an address; IPv6 without brackets
  uint16_t port = kDefaultZooKeeperPort;
  std::string ToString() const;  // "host:port", "[v6]:port"
  bool operator==(const ServerAddress&) const = default;
};

struct ConnectString {
  std::vector<ServerAddress> servers;  // at least one
  std::string chroot;                  // "" for none, else a valid path other than "/"
};

// Parses "h1:p1,h2:p2/chroot". Entries are trimmed; a missing port is 2181; "[::1]:2181" is an
// IPv6 address; a chroot of "/" means none. Errors (kInvalidArgument) name the bad part.
Result<ConnectString, ZkError> ParseConnectString(std::string_view text);

// Why `path` is not a valid znode path, or nullopt if it is: it must start with '/', have no
// empty, "." or ".." component, no control characters, and no trailing '/' (allowed when
// `sequential`, where the server appends the sequence number).
std::optional<std::string> InvalidPathReason(std::string_view path, bool sequential = false);

// The server's path for a client path under `chroot` ("" for none).
std::string ServerPath(std::string_view chroot, std::string_view client_path);
// The client's path for a server path; a path outside the chroot is returned unchanged.
std::string ClientPath(std::string_view chroot, std::string_view server_path);

// "/a/b" -> "/a"; "/a" -> "/"; "/" -> "".
std::string_view ParentPath(std::string_view path);
// "/a/b" -> "b"; "/" -> "".
std::string_view BaseName(std::string_view path);
// "/a" + "b" -> "/a/b"; "/" + "b" -> "/b".
std::string JoinPath(std::string_view parent, std::string_view child);

}  // namespace zk2etcd::zk
