// The flags of `zk2etcd etcd2etcd sync` and `zk2etcd etcd2etcd diff`, and their validation into
// the configuration the etcd2etcd job (etcd2etcd_job.h) is built from.
//
// Connections are given per side: --source-endpoints, --source-cacert, --source-cert,
// --source-key, --source-server-name, --source-user, --source-password, --source-dial-timeout,
// --source-request-timeout, and the same with --dest-. The mirror copies every key that starts
// with --prefix (byte for byte, as etcdctl's --prefix) to --dest-prefix + the rest of the key
// (the key itself without --dest-prefix), and keeps its own records (checkpoint, ownership
// records, election) under --meta-prefix/--name on the destination.
//
// Validation happens before any connection: every invalid value gives one line naming the flag
// and the value (the messages are in etcd2etcd_config_test.cc). Refused, among others: an empty
// endpoint list; a mirror into itself (both sides the same servers and the destination range
// overlapping the source range, or the meta records inside the source range); a --name that is
// empty or holds a '/'; certificate files that cannot be read; a negative --max-write-rate.
//
// Not thread-safe; used once at start-up.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "cli/config.h"
#include "cli/flags.h"
#include "common/result.h"
#include "etcd/grpc_etcd_client.h"
#include "ops/log.h"
#include "sync/reconciler.h"

namespace zk2etcd::cli {

// The default --meta-prefix: the root of every mirror's records on the destination.
inline constexpr std::string_view kDefaultEtcd2EtcdMetaPrefix = "/etcd2etcd";

// One side's connection flags (--source-* or --dest-*).
struct EtcdSideFlags {
  std::string endpoints;
  std::string cacert;
  std::string cert;
  std::string key;
  std::string server_name;
  std::string user;
  std::string password;
  std::chrono::nanoseconds dial_timeout{};
  std::chrono::nanoseconds request_timeout{};
};

// Every flag of both subcommands; a subcommand declares the ones it takes, the others keep their
// defaults (which are valid).
struct Etcd2EtcdFlags {
  EtcdSideFlags source;
  EtcdSideFlags dest;
  std::string prefix;
  std::string dest_prefix;
  std::string name;
  std::string meta_prefix;
  bool copy_leases = false;
  std::string adopt;
  uint64_t concurrent = 0;
  std::string log_level;
  std::string log_format;
  std::string log_file;
  uint64_t log_file_max_size_mb = 0;
  uint64_t log_file_max_backups = 0;
  std::string config;
  // sync
  double max_write_rate = 0;
  bool leader_elect = true;
  std::chrono::nanoseconds lease_duration{};
  std::string election_identity;
  std::chrono::nanoseconds reconcile_interval{};
  std::string http_addr;
  std::chrono::nanoseconds shutdown_timeout{};
  // diff
  bool fix = false;
  std::string output;
  std::chrono::nanoseconds connect_timeout{};
};

enum class MirrorCommand { kSync, kDiff };

// Declares the flags of `command` with their defaults.
void AddEtcd2EtcdFlags(FlagSet& flags, Etcd2EtcdFlags* values, MirrorCommand command);

// A validated configuration. Client options lack logger, observer and clock (the caller's).
struct Etcd2EtcdConfig {
  etcd::GrpcEtcdClientOptions source;
  etcd::GrpcEtcdClientOptions dest;
  std::string prefix;
  std::optional<std::string> dest_prefix;  // nullopt: keys keep their names
  std::string name;
  std::string meta_prefix;
  bool copy_leases = false;
  sync::AdoptPolicy adopt = sync::AdoptPolicy::kNone;
  size_t concurrent = 50;
  ops::LogLevel log_level = ops::LogLevel::kInfo;
  ops::LogFormat log_format = ops::LogFormat::kJson;
  std::string log_file;
  uint64_t log_file_max_bytes = 0;
  int log_file_max_backups = 0;
  // sync
  double max_write_rate = 0;  // keys per second; 0: unlimited
  bool leader_elect = true;
  std::chrono::seconds lease_duration{5};
  std::string identity;  // with leader_elect
  std::chrono::nanoseconds reconcile_interval{0};
  std::string http_addr;
  std::chrono::milliseconds shutdown_timeout{10000};
  // diff
  bool fix = false;
  bool json = false;
  std::chrono::nanoseconds connect_timeout{std::chrono::seconds(30)};

  // The destination key range the mirror writes: --dest-prefix, else --prefix.
  const std::string& DestinationRange() const { return dest_prefix ? *dest_prefix : prefix; }
};

// Checks every value of `command`'s flags; `hostname` is the election identity's default.
Result<Etcd2EtcdConfig, std::string> ValidateEtcd2EtcdFlags(const Etcd2EtcdFlags& flags,
                                                            MirrorCommand command,
                                                            std::string_view hostname);

// True when two key prefixes share a key (string semantics: one starts with the other).
bool KeyPrefixesOverlap(std::string_view a, std::string_view b);

// ShareAServer (two endpoint lists name the same cluster) is in cli/config.h.

}  // namespace zk2etcd::cli
