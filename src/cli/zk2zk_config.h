// The flags of `zk2etcd zk2zk sync` and `zk2etcd zk2zk diff`, and their validation into the
// configuration the zk2zk job (zk2zk_job.h) is built from.
//
// Two ensembles, each with its own connection flags: --source-servers, --source-digest,
// --source-session-timeout, and the same with --target-. A connect string may end with a
// /chroot, which moves every path of that side. The job copies the --path subtrees (minus
// --exclude) of the source to the target (forward) and, with --reverse-ephemerals, the ephemeral
// nodes that exist only on the target back to the source (reverse); it keeps its own records
// under --meta-path/--name on both ensembles.
//
// Validation happens before any connection: every invalid value gives one line naming the flag
// and the value (the messages are in zk2zk_config_test.cc). Refused, among others: the same
// ensemble as source and target (a host:port in both lists), --path entries of which one lies at
// or below another, a path without a leading '/', a --meta-path at, inside or above a --path, a
// --name that is empty or not one path component.
//
// Not thread-safe; used once at start-up.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "cli/flags.h"
#include "cli/runtime.h"
#include "common/result.h"
#include "connectors/zookeeper/zk_walker.h"  // before zookeeper_source.h, which needs NodeFilter
#include "connectors/zookeeper/zookeeper_source.h"
#include "core/scope.h"
#include "ops/log.h"
#include "sync/reconciler.h"
#include "zk/asio_zk_client.h"

namespace zk2etcd::cli {

// The default --meta-path: the root of every zk2zk job's records, on both ensembles.
inline constexpr std::string_view kDefaultZk2ZkMetaPath = "/zk2zk";

// One ensemble's connection flags (--source-* or --target-*).
struct ZkSideFlags {
  std::string servers;
  std::string digest;
  std::chrono::nanoseconds session_timeout{};
};

// Every flag of both subcommands; a subcommand declares the ones it takes, the others keep their
// defaults (which are valid).
struct Zk2ZkFlags {
  ZkSideFlags source;
  ZkSideFlags target;
  std::string path;
  std::string exclude;
  std::string meta_path;
  std::string name;
  bool reverse_ephemerals = true;
  bool copy_acl = true;
  bool advance_sequence_counters = true;
  std::string adopt;
  std::string watch_mode;
  uint64_t concurrent = 0;
  std::string log_level;
  std::string log_format;
  std::string log_file;
  uint64_t log_file_max_size_mb = 0;
  uint64_t log_file_max_backups = 0;
  std::string config;
  // sync
  std::chrono::nanoseconds fullsync_interval{};
  bool leader_elect = true;
  std::string election_identity;
  std::string http_addr;
  std::chrono::nanoseconds shutdown_timeout{};
  std::string audit_log;
  std::chrono::nanoseconds progress_interval{};
  // diff
  bool fix = false;
  std::string output;
  std::chrono::nanoseconds connect_timeout{};
};

enum class Zk2ZkCommandKind { kSync, kDiff };

// Declares the flags of `command` with their defaults.
void AddZk2ZkFlags(FlagSet& flags, Zk2ZkFlags* values, Zk2ZkCommandKind command);

// A validated configuration. Client options lack logger, observer and clock (the caller's).
struct Zk2ZkConfig {
  explicit Zk2ZkConfig(core::Scope scope_in) : scope(std::move(scope_in)) {}

  // The --path subtrees minus --exclude, the meta root and /zookeeper.
  core::Scope scope;
  zk::ZkClientOptions source;
  zk::ZkClientOptions target;
  std::vector<std::string> paths;  // as given, sorted
  std::string meta_path;
  std::string name;
  bool reverse_ephemerals = true;
  bool copy_acl = true;
  bool advance_sequence_counters = true;
  sync::AdoptPolicy adopt = sync::AdoptPolicy::kNone;
  connectors::WatchMode watch_mode = connectors::WatchMode::kAuto;
  size_t concurrent = 50;
  LogSettings log;
  // sync
  std::chrono::nanoseconds fullsync_interval{std::chrono::minutes(5)};
  bool leader_elect = true;
  std::string identity;  // with leader_elect
  std::string http_addr;
  std::chrono::milliseconds shutdown_timeout{10000};
  std::string audit_log;  // empty: none; "-": stdout
  std::chrono::nanoseconds progress_interval{std::chrono::seconds(30)};
  // diff
  bool fix = false;
  bool json = false;
  std::chrono::nanoseconds connect_timeout{std::chrono::seconds(30)};

  // <meta-path>/<name>: the job's records on both ensembles.
  std::string MetaRoot() const;
  // <meta root>/election: the replicas' lock on the target.
  std::string ElectionPath() const;
};

// <meta_path>/<name> ("/" + name when meta_path is "/").
std::string MetaRootOf(std::string_view meta_path, std::string_view name);

// zk2zk's names for the flags of its scope, for messages.
inline constexpr core::ScopeFlagNames kZk2ZkScopeFlags{.prefixes = "--path",
                                                       .excludes = "--exclude"};

// Checks every value of `command`'s flags; `hostname` is the election identity's default.
Result<Zk2ZkConfig, std::string> ValidateZk2ZkFlags(const Zk2ZkFlags& flags,
                                                    Zk2ZkCommandKind command,
                                                    std::string_view hostname);

}  // namespace zk2etcd::cli
