#include "cli/zk2zk_config.h"

#include <algorithm>
#include <atomic>
#include <memory>
#include <tuple>

#include "cli/config.h"
#include "common/strings.h"

namespace zk2etcd::cli {

namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

// One side's flags, named --<side>-<flag>.
void AddSideFlags(FlagSet& flags, const std::string& side, ZkSideFlags* v) {
  flags.AddString(side + "-servers", &v->servers, "",
                  "comma-separated list of the " + side +
                      " ensemble's servers (host:port, an optional /chroot after the last one)");
  flags.AddSecret(
      side + "-digest", &v->digest,
      "digest credentials user:password for the " + side + " ensemble's nodes with ACLs");
  flags.AddDuration(side + "-session-timeout", &v->session_timeout, seconds(10),
                    "session timeout requested from the " + side + " ensemble");
}

// One side's client options from its flags; `hosts` receives its host:port entries.
Result<zk::ZkClientOptions, std::string> ValidateSide(const std::string& side, const ZkSideFlags& f,
                                                      std::vector<std::string>* hosts) {
  auto servers = ParseZooKeeperServers("--" + side + "-servers", f.servers);
  if (!servers.ok()) return Unexpected{servers.error()};
  if (auto ok = CheckDigest("--" + side + "-digest", f.digest); !ok.ok()) {
    return Unexpected{ok.error()};
  }
  if (auto ok = RequireDuration(side + "-session-timeout", f.session_timeout, false); !ok.ok()) {
    return Unexpected{ok.error()};
  }
  zk::ZkClientOptions options;
  options.connect_string = servers->connect_string;
  options.outage_warned = std::make_shared<std::atomic<bool>>(false);
  options.session_timeout = std::chrono::duration_cast<milliseconds>(f.session_timeout);
  if (!f.digest.empty()) options.auth = {{"digest", f.digest}};
  *hosts = std::move(servers->hosts);
  return options;
}

}  // namespace

std::string MetaRootOf(std::string_view meta_path, std::string_view name) {
  return (meta_path == "/" ? "" : std::string(meta_path)) + "/" + std::string(name);
}

std::string Zk2ZkConfig::MetaRoot() const { return MetaRootOf(meta_path, name); }

std::string Zk2ZkConfig::ElectionPath() const { return MetaRoot() + "/election"; }

void AddZk2ZkFlags(FlagSet& flags, Zk2ZkFlags* v, Zk2ZkCommandKind command) {
  AddSideFlags(flags, "source", &v->source);
  AddSideFlags(flags, "target", &v->target);
  flags.AddString("path", &v->path, "/dubbo",
                  "comma-separated list of the subtrees to copy (none at or below another)");
  flags.AddString("exclude", &v->exclude, "",
                  "comma-separated list of subtrees inside --path to leave out");
  flags.AddString("meta-path", &v->meta_path, std::string(kDefaultZk2ZkMetaPath),
                  "where zk2zk jobs keep their records on both ensembles, outside every --path");
  flags.AddString("name", &v->name, "default",
                  "the job's name: its ownership records and election live under "
                  "--meta-path/NAME (one path component)");
  flags.AddBool("reverse-ephemerals", &v->reverse_ephemerals, true,
                "also copy the ephemeral nodes that exist only on the target back to the source, "
                "so that clients still on the source see providers that moved");
  flags.AddBool("copy-acl", &v->copy_acl, true, "create copies with the original node's ACL");
  flags.AddBool("advance-sequence-counters", &v->advance_sequence_counters, true,
                "after copying a sequential name, move its parent's counter past it, so that a "
                "client's next sequential create sorts after the copies");
  flags.AddString("adopt", &v->adopt, "none",
                  "nodes in scope without the job's ownership record: none leaves them all alone, "
                  "matching adopts those equal to the original, all takes every one");
  flags.AddString("watch-mode", &v->watch_mode, "auto",
                  "auto: persistent recursive watches (ZooKeeper 3.6+), else one-shot watches on "
                  "every node; persistent; classic");
  flags.AddUint("concurrent", &v->concurrent, 50,
                "requests in flight on each ensemble during a reconciliation");
  AddLogFlags(flags, &v->log_level, &v->log_format, &v->log_file, &v->log_file_max_size_mb,
              &v->log_file_max_backups);
  flags.AddString("config", &v->config, "",
                  "YAML file of settings (flag names as keys); flags and ZK2ETCD_ variables win");
  // The sync and diff defaults of the other's flags still apply (ValidateZk2ZkFlags).
  v->fullsync_interval = std::chrono::minutes(5);
  v->shutdown_timeout = seconds(10);
  v->progress_interval = seconds(30);
  v->output = "text";
  v->connect_timeout = seconds(30);
  if (command == Zk2ZkCommandKind::kSync) {
    flags.AddDuration("fullsync-interval", &v->fullsync_interval, std::chrono::minutes(5),
                      "compare both directions completely and repair this often; 0s: only at "
                      "start and after reconnects");
    flags.AddBool("leader-elect", &v->leader_elect, true,
                  "elect a leader among replicas through a lock on the target ensemble; only the "
                  "leader writes");
    flags.AddString("leader-elect-identity", &v->election_identity, "",
                    "this replica in the election, stable across its restarts; a restart takes "
                    "over its own stale lock node at once (default: the hostname, a Kubernetes "
                    "pod's name)");
    flags.AddString("http-addr", &v->http_addr, ":80",
                    "listen address of /metrics, /healthz, /readyz, /log and /debug/config");
    flags.AddDuration("shutdown-timeout", &v->shutdown_timeout, seconds(10),
                      "on SIGTERM, how long queued writes may take to finish");
    flags.AddString("audit-log", &v->audit_log, "",
                    "append one JSON line per write (time, direction, op, path, outcome, "
                    "trace_id) to this file; -: standard output; empty: none");
    flags.AddDuration("progress-interval", &v->progress_interval, seconds(30),
                      "log both ensembles' node counts and the writes so far this often; 0s: "
                      "never");
  } else {
    flags.AddBool("fix", &v->fix, false,
                  "repair the differences with the job's fenced writes (never a node it did "
                  "not write)");
    flags.AddString("output", &v->output, "text", "report format: text or json");
    flags.AddDuration("connect-timeout", &v->connect_timeout, seconds(30),
                      "give up (exit 2) when an ensemble cannot be reached for this long");
  }
}

Result<Zk2ZkConfig, std::string> ValidateZk2ZkFlags(const Zk2ZkFlags& f, Zk2ZkCommandKind command,
                                                    std::string_view hostname) {
  std::vector<std::string> source_hosts, target_hosts;
  auto source = ValidateSide("source", f.source, &source_hosts);
  if (!source.ok()) return Unexpected{source.error()};
  auto target = ValidateSide("target", f.target, &target_hosts);
  if (!target.ok()) return Unexpected{target.error()};
  if (ShareAServer(source_hosts, target_hosts)) {
    return Unexpected{"--source-servers " + Quoted(source->connect_string) +
                      " and --target-servers " + Quoted(target->connect_string) +
                      " share a server: source and target must be different ensembles"};
  }

  std::vector<std::string> paths = SplitCommaList(f.path);
  if (paths.empty()) {
    return Unexpected{std::string("--path is empty: give at least one subtree to copy")};
  }
  for (const std::string& path : paths) {
    if (auto valid = core::ValidateZkPath(path, "--path"); !valid.ok()) {
      return Unexpected{valid.error()};
    }
  }
  std::sort(paths.begin(), paths.end());
  for (size_t i = 0; i < paths.size(); ++i) {
    for (size_t j = 0; j < paths.size(); ++j) {
      if (i == j || !core::IsSameOrBelow(paths[j], paths[i])) continue;
      const std::string what =
          paths[i] == paths[j] ? "is given twice" : "lies below --path " + Quoted(paths[i]);
      return Unexpected{"--path " + Quoted(paths[j]) + " " + what + ": give each subtree once"};
    }
  }
  if (auto valid = core::ValidateZkPath(f.meta_path, "--meta-path"); !valid.ok()) {
    return Unexpected{valid.error()};
  }
  for (const std::string& path : paths) {
    if (core::IsSameOrBelow(f.meta_path, path) || core::IsSameOrBelow(path, f.meta_path)) {
      return Unexpected{"--meta-path " + Quoted(f.meta_path) + " overlaps --path " + Quoted(path) +
                        ": the job's records must lie outside the nodes it copies"};
    }
  }
  if (f.name.empty()) {
    return Unexpected{
        std::string("--name is empty: name the job (its records and election live under "
                    "--meta-path/NAME)")};
  }
  if (f.name.find('/') != std::string::npos || !core::ValidateZkPath("/" + f.name, "--name").ok()) {
    return Unexpected{"--name " + Quoted(f.name) + " must be one path component (no '/')"};
  }
  std::vector<std::string> excludes = SplitCommaList(f.exclude);
  for (const std::string& exclude : excludes) {
    if (auto valid = core::ValidateZkPath(exclude, "--exclude"); !valid.ok()) {
      return Unexpected{valid.error()};
    }
  }
  excludes.push_back(MetaRootOf(f.meta_path, f.name));
  auto scope = core::Scope::Create(paths, excludes, kZk2ZkScopeFlags);
  if (!scope.ok()) return Unexpected{scope.error()};

  Zk2ZkConfig config(std::move(scope).value());
  config.source = std::move(source).value();
  config.target = std::move(target).value();
  config.paths = std::move(paths);
  config.meta_path = f.meta_path;
  config.name = f.name;
  config.reverse_ephemerals = f.reverse_ephemerals;
  config.copy_acl = f.copy_acl;
  config.advance_sequence_counters = f.advance_sequence_counters;

  auto adopt = sync::ParseAdoptPolicy(f.adopt);
  if (!adopt.ok()) return Unexpected{"--adopt: " + adopt.error()};
  config.adopt = *adopt;
  auto watch_mode = connectors::ParseWatchMode(f.watch_mode);
  if (!watch_mode.ok()) return Unexpected{"--watch-mode: " + watch_mode.error()};
  config.watch_mode = *watch_mode;
  if (f.concurrent == 0 || f.concurrent > 10000) {
    return Unexpected{"--concurrent must be between 1 and 10000, got " +
                      std::to_string(f.concurrent)};
  }
  config.concurrent = static_cast<size_t>(f.concurrent);
  auto level = ops::ParseLogLevel(f.log_level);
  if (!level.ok()) return Unexpected{"--log-level: " + level.error()};
  auto format = ops::ParseLogFormat(f.log_format);
  if (!format.ok()) return Unexpected{"--log-format: " + format.error()};
  if (f.log_file_max_backups > 1000) {
    return Unexpected{std::string("--log-file-max-backups must be at most 1000")};
  }
  config.log = LogSettings{*level, *format, f.log_file, f.log_file_max_size_mb * 1024 * 1024,
                           static_cast<int>(f.log_file_max_backups)};

  if (command == Zk2ZkCommandKind::kSync) {
    for (const auto& [flag, value, zero_ok] :
         {std::tuple{"fullsync-interval", f.fullsync_interval, true},
          std::tuple{"shutdown-timeout", f.shutdown_timeout, false},
          std::tuple{"progress-interval", f.progress_interval, true}}) {
      if (auto ok = RequireDuration(flag, value, zero_ok); !ok.ok()) {
        return Unexpected{ok.error()};
      }
    }
    config.fullsync_interval = f.fullsync_interval;
    config.shutdown_timeout = std::chrono::duration_cast<milliseconds>(f.shutdown_timeout);
    config.progress_interval = f.progress_interval;
    config.leader_elect = f.leader_elect;
    if (f.leader_elect) {
      auto identity = ElectionIdentity(f.election_identity, hostname);
      if (!identity.ok()) return Unexpected{identity.error()};
      config.identity = std::move(identity).value();
    }
    config.http_addr = f.http_addr;
    config.audit_log = std::string(TrimWhitespace(f.audit_log));
  } else {
    auto diff = ValidateDiffCommandFlags(f.fix, f.output, f.connect_timeout);
    if (!diff.ok()) return Unexpected{diff.error()};
    config.fix = diff->fix;
    config.json = diff->json;
    config.connect_timeout = diff->connect_timeout;
  }
  return config;
}

}  // namespace zk2etcd::cli
