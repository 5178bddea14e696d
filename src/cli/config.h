// The flags shared by `sync` and `diff`, and their validation into the configuration the engine
// and the clients take.
//
// The Go zk2etcd v1.3.0's flags are a compatibility contract (names, defaults, meaning); the
// others are additions. Validation happens before any connection is attempted: every invalid
// value gives one line naming the flag (or ZK2ETCD_ variable) and the value. Not thread-safe;
// used once at start-up.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <ostream>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

#include "cli/flags.h"
#include "connectors/etcd/key_layout.h"
#include "core/scope.h"
#include "etcd/grpc_etcd_client.h"
#include "ops/log.h"
#include "ownership/redis_ownership_store.h"
#include "sync/reconciler.h"
#include "zk/asio_zk_client.h"

namespace zk2etcd::cli {

// --zookeeper-exclude-prefix when not given: Dubbo's configuration subtree.
inline constexpr std::string_view kDefaultExcludePrefix = "/dubbo/config";

struct CommonFlags {
  std::string zookeeper_servers;
  std::string zookeeper_prefix;
  std::string zookeeper_exclude_prefix;
  std::string zookeeper_digest;
  std::chrono::nanoseconds zookeeper_session_timeout{};
  std::string etcd_servers;
  std::string etcd_cacert;
  std::string etcd_cert;
  std::string etcd_key;
  std::string etcd_server_name;
  std::string etcd_user;
  std::string etcd_password;
  std::string etcd_key_prefix;
  std::string etcd_meta_prefix;
  std::chrono::nanoseconds etcd_dial_timeout{};
  std::chrono::nanoseconds etcd_request_timeout{};
  std::string redis_server;
  std::string redis_username;
  std::string redis_password;
  std::string log_level;
  std::string log_format;
  std::string log_file;
  uint64_t log_file_max_size_mb = 0;
  uint64_t log_file_max_backups = 0;
  bool enable_event_log = false;
  uint64_t concurrent = 0;
  std::string adopt;
  std::string config;
};

// Declares the shared flags with their defaults.
void AddCommonFlags(FlagSet& flags, CommonFlags* values);
// The --log-* flags, the same in every command (the zk2etcd flags and etcd2etcd's), into the
// given fields (which must outlive the FlagSet's parsing).
void AddLogFlags(FlagSet& flags, std::string* level, std::string* format, std::string* file,
                 uint64_t* file_max_size_mb, uint64_t* file_max_backups);

struct Config {
  core::Scope scope;
  connectors::KeyLayout layout;
  zk::ZkClientOptions zookeeper;
  etcd::GrpcEtcdClientOptions etcd;
  std::optional<ownership::RedisOptions> redis;
  ops::LogLevel log_level = ops::LogLevel::kInfo;
  ops::LogFormat log_format = ops::LogFormat::kJson;
  bool event_log = false;
  size_t concurrent = 50;
  std::string log_file;
  uint64_t log_file_max_bytes = 0;
  int log_file_max_backups = 0;
  sync::AdoptPolicy adopt = sync::AdoptPolicy::kMatching;
};

// Reads --config (if given) into the flags that the command line and environment left unset.
Result<void, std::string> ApplyConfigFile(FlagSet& flags, const std::string& path);

// What every command does first: reads the --config file `path` into `flags` (ApplyConfigFile),
// then calls `validate` (which returns a Result<SomeConfig, std::string>). An error of either is
// printed to `err` as "`command`: error" and the result is nullopt.
template <typename Validate>
auto ConfigFromFlags(FlagSet& flags, const std::string& path, std::string_view command,
                     std::ostream& err, const Validate& validate)
    -> std::optional<std::decay_t<decltype(*validate())>> {
  if (auto applied = ApplyConfigFile(flags, path); !applied.ok()) {
    err << command << ": " << applied.error() << "\n";
    return std::nullopt;
  }
  auto validated = validate();
  if (!validated.ok()) {
    err << command << ": " << validated.error() << "\n";
    return std::nullopt;
  }
  return std::move(validated).value();
}

// The excludes of `flags` that the operator did not choose (the default, when left as it is), for
// WarnAboutIgnoredExcludes.
std::vector<std::string> ExcludesNotChosen(const CommonFlags& flags);

// Checks every value; on success the result is ready for the clients (without logger, clock or
// observer, which the caller sets).
Result<Config, std::string> ValidateCommonFlags(const CommonFlags& flags);

// Checks that every entry of `list` is host:port (with allow_scheme, http:// or https:// may
// precede it); the error names `flag` and the entry.
Result<void, std::string> CheckHostPorts(std::string_view flag,
                                         const std::vector<std::string>& list, bool allow_scheme);

// A ZooKeeper connect string flag ("host:port[,host:port...][/chroot]"), checked.
struct ZooKeeperServers {
  std::string connect_string;      // as given, trimmed: what the client takes
  std::vector<std::string> hosts;  // the host:port entries
  std::string chroot;              // empty for none
};
// Fails (one line naming `flag`) on an empty list, an entry that is not host:port, or an invalid
// chroot.
Result<ZooKeeperServers, std::string> ParseZooKeeperServers(std::string_view flag,
                                                            std::string_view value);
// Checks a digest credential flag: empty, or user:password.
Result<void, std::string> CheckDigest(std::string_view flag, std::string_view digest);

// True when two server lists share a server, and so name the same cluster or ensemble: a
// host:port in both, whatever the http:// or https:// scheme, the case of the host, or the
// spelling of this machine's address (localhost, 127.0.0.0/8, [::1], and the wildcard addresses
// 0.0.0.0 and [::], through which a client reaches the loopback).
bool ShareAServer(const std::vector<std::string>& a, const std::vector<std::string>& b);

// The chroot of a ZooKeeper connect string ("host:port,host:port/chroot"), "" for none.
std::string ChrootOf(std::string_view connect_string);

// Logs a warning for each exclude that lies outside every prefix of `scope` and so excludes
// nothing (Scope::ignored_excludes), except those in `not_chosen`: a default the operator did not
// pick, or one the job adds itself. `flags` names the two flags in the line.
void WarnAboutIgnoredExcludes(const core::Scope& scope, const core::ScopeFlagNames& flags,
                              const std::vector<std::string>& not_chosen, ops::Logger& logger);

// What a job's `diff` command takes besides its scope: --fix, --output (text or json) and
// --connect-timeout, validated once for every job.
struct DiffCommandOptions {
  bool fix = false;
  bool json = false;
  std::chrono::nanoseconds connect_timeout{};
};
Result<DiffCommandOptions, std::string> ValidateDiffCommandFlags(
    bool fix, const std::string& output, std::chrono::nanoseconds connect_timeout);

// Checks that a duration flag is positive (or, with allow_zero, not negative).
// OK when `path` is empty or a file this process can read; else "--<flag> "<path>": cannot read
// the file (<reason>)" (a usage error, found before any connection).
Result<void, std::string> RequireReadableFile(const std::string& flag, const std::string& path);
Result<void, std::string> RequireDuration(std::string_view flag, std::chrono::nanoseconds value,
                                          bool allow_zero);

// The election identity of `sync`: --leader-elect-identity when given (surrounding whitespace
// trimmed), else `hostname` (a Kubernetes pod's name). Stable across restarts of one replica, so
// that a restarted process takes over the election key its killed predecessor left. Errors when
// both are empty.
Result<std::string, std::string> ElectionIdentity(std::string_view configured,
                                                  std::string_view hostname);

}  // namespace zk2etcd::cli
