#include "cli/etcd2etcd_config.h"

#include <algorithm>
#include <sstream>
#include <tuple>

#include "cli/config.h"
#include "common/strings.h"

namespace zk2etcd::cli {

namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

// One side's flags, named --<side>-<flag>.
void AddSideFlags(FlagSet& flags, const std::string& side, const std::string& what,
                  EtcdSideFlags* v) {
  flags.AddString(side + "-endpoints", &v->endpoints, "",
                  "comma-separated list of the " + what +
                      " etcd servers (host:port, http://host:port or https://host:port)");
  flags.AddString(side + "-cacert", &v->cacert, "",
                  "verify the " + what + " servers' certificates using this CA bundle");
  flags.AddString(side + "-cert", &v->cert, "",
                  "identify to the " + what + " servers using this TLS certificate file");
  flags.AddString(side + "-key", &v->key, "",
                  "identify to the " + what + " servers using this TLS key file");
  flags.AddString(side + "-server-name", &v->server_name, "",
                  "name to verify the " + what +
                      " servers' certificate against, instead of the "
                      "host");
  flags.AddString(side + "-user", &v->user, "", what + " etcd user name (etcd authentication)");
  flags.AddSecret(side + "-password", &v->password, what + " etcd password");
  flags.AddDuration(side + "-dial-timeout", &v->dial_timeout, seconds(5),
                    "how long one attempt to reach the " + what + " etcd may take");
  flags.AddDuration(side + "-request-timeout", &v->request_timeout, seconds(10),
                    "deadline of each request to the " + what + " etcd");
}

// One side's client options from its flags.
Result<etcd::GrpcEtcdClientOptions, std::string> ValidateSide(const std::string& side,
                                                              const EtcdSideFlags& f,
                                                              uint64_t concurrent) {
  const std::vector<std::string> endpoints = SplitCommaList(f.endpoints);
  if (endpoints.empty()) {
    return Unexpected{"--" + side + "-endpoints is empty: give host:port[,host:port...] (or " +
                      FlagSet::EnvVarName(side + "-endpoints") + ")"};
  }
  if (auto ok = CheckHostPorts("--" + side + "-endpoints", endpoints, true); !ok.ok()) {
    return Unexpected{ok.error()};
  }
  for (const auto& [flag, value] : {std::pair{side + "-dial-timeout", f.dial_timeout},
                                    std::pair{side + "-request-timeout", f.request_timeout}}) {
    if (auto ok = RequireDuration(flag, value, false); !ok.ok()) return Unexpected{ok.error()};
  }
  if (f.cert.empty() != f.key.empty()) {
    return Unexpected{"--" + side + "-cert and --" + side +
                      "-key go together: give both or neither"};
  }
  if (!f.password.empty() && f.user.empty()) {
    return Unexpected{"--" + side + "-password needs --" + side + "-user"};
  }
  for (const auto& [flag, path] :
       {std::pair{side + "-cacert", f.cacert}, std::pair{side + "-cert", f.cert},
        std::pair{side + "-key", f.key}}) {
    if (auto ok = RequireReadableFile(flag, path); !ok.ok()) return Unexpected{ok.error()};
  }
  etcd::GrpcEtcdClientOptions options;
  options.endpoints = endpoints;
  const bool https = std::any_of(endpoints.begin(), endpoints.end(),
                                 [](const std::string& e) { return e.starts_with("https://"); });
  if (https || !f.cacert.empty() || !f.cert.empty()) {
    options.tls = etcd::TlsOptions{f.cacert, f.cert, f.key, f.server_name};
  }
  options.user = f.user;
  options.password = f.password;
  options.dial_timeout = std::chrono::duration_cast<milliseconds>(f.dial_timeout);
  options.call_timeout = std::chrono::duration_cast<milliseconds>(f.request_timeout);
  options.max_txns_in_flight = static_cast<int>(std::min<uint64_t>(concurrent, 64));
  return options;
}

}  // namespace

bool KeyPrefixesOverlap(std::string_view a, std::string_view b) {
  return a.starts_with(b) || b.starts_with(a);
}

void AddEtcd2EtcdFlags(FlagSet& flags, Etcd2EtcdFlags* v, MirrorCommand command) {
  AddSideFlags(flags, "source", "source", &v->source);
  AddSideFlags(flags, "dest", "destination", &v->dest);
  flags.AddString("prefix", &v->prefix, "",
                  "the etcd key prefix to mirror: every source key that starts with it (byte "
                  "for byte, as etcdctl's --prefix)");
  flags.AddString("dest-prefix", &v->dest_prefix, "",
                  "replaces --prefix at the start of every copied key; empty: keys keep their "
                  "names");
  flags.AddString("name", &v->name, "",
                  "the mirror's name: its checkpoint, ownership records and election live "
                  "under --meta-prefix/NAME on the destination (no '/')");
  flags.AddString("meta-prefix", &v->meta_prefix, std::string(kDefaultEtcd2EtcdMetaPrefix),
                  "where mirrors keep their records on the destination, outside the copied keys");
  flags.AddBool("copy-leases", &v->copy_leases, false,
                "bind each copy of a key with a lease to a destination lease of the same TTL, "
                "kept alive while the source's lives (then it ends with its TTL)");
  flags.AddString("adopt", &v->adopt, "matching",
                  "destination keys in range without the mirror's ownership record (written by "
                  "another tool, e.g. etcdctl make-mirror): matching adopts those equal to the "
                  "source (only the record is written) and leaves the others alone, none leaves "
                  "them all alone (foreign), all takes every one");
  flags.AddUint("concurrent", &v->concurrent, 50,
                "requests in flight on each side during a reconciliation");
  AddLogFlags(flags, &v->log_level, &v->log_format, &v->log_file, &v->log_file_max_size_mb,
              &v->log_file_max_backups);
  flags.AddString("config", &v->config, "",
                  "YAML file of settings (flag names as keys); flags and ZK2ETCD_ variables win");
  // The sync and diff defaults of the other's flags still apply (ValidateEtcd2EtcdFlags).
  v->lease_duration = seconds(5);
  v->shutdown_timeout = seconds(10);
  v->output = "text";
  v->connect_timeout = seconds(30);
  if (command == MirrorCommand::kSync) {
    flags.AddFloat("max-write-rate", &v->max_write_rate, 0,
                   "at most this many keys written per second (copies, changes and repairs "
                   "together); 0: unlimited");
    flags.AddBool("leader-elect", &v->leader_elect, true,
                  "elect a leader among replicas through the destination etcd; only the leader "
                  "writes");
    flags.AddDuration("leader-elect-lease-duration", &v->lease_duration, seconds(5),
                      "leadership lease: a standby takes over within it after the leader dies");
    flags.AddString("leader-elect-identity", &v->election_identity, "",
                    "this replica in the election, stable across its restarts; a restart takes "
                    "over its own stale leadership at once (default: the hostname, a "
                    "Kubernetes pod's name)");
    flags.AddDuration("reconcile-interval", &v->reconcile_interval, seconds(0),
                      "compare the whole range with the source and repair this often; 0s: only "
                      "at start and after a compaction");
    flags.AddString(
        "http-addr", &v->http_addr, ":80",
        "listen address of /metrics, /healthz, /readyz, /log, /debug/config and /reconcile");
    flags.AddDuration("shutdown-timeout", &v->shutdown_timeout, seconds(10),
                      "on SIGTERM, how long queued changes may take to be applied");
  } else {
    flags.AddBool("fix", &v->fix, false,
                  "repair the differences with the mirror's fenced writes (never a foreign key)");
    flags.AddString("output", &v->output, "text", "report format: text or json");
    flags.AddDuration("connect-timeout", &v->connect_timeout, seconds(30),
                      "give up (exit 2) when the servers cannot be reached for this long");
  }
}

Result<Etcd2EtcdConfig, std::string> ValidateEtcd2EtcdFlags(const Etcd2EtcdFlags& f,
                                                            MirrorCommand command,
                                                            std::string_view hostname) {
  Etcd2EtcdConfig config;
  if (f.concurrent == 0 || f.concurrent > 10000) {
    return Unexpected{"--concurrent must be between 1 and 10000, got " +
                      std::to_string(f.concurrent)};
  }
  auto source = ValidateSide("source", f.source, f.concurrent);
  if (!source.ok()) return Unexpected{source.error()};
  auto dest = ValidateSide("dest", f.dest, f.concurrent);
  if (!dest.ok()) return Unexpected{dest.error()};
  config.source = std::move(source).value();
  config.dest = std::move(dest).value();

  if (f.prefix.empty()) {
    return Unexpected{
        std::string("--prefix is empty: give the etcd key prefix to mirror, e.g. "
                    "--prefix=/registry (or ZK2ETCD_PREFIX)")};
  }
  if (f.name.empty()) {
    return Unexpected{
        std::string("--name is empty: name the mirror (its checkpoint, ownership records and "
                    "election live under --meta-prefix/NAME)")};
  }
  if (f.name.find('/') != std::string::npos) {
    return Unexpected{"--name " + Quoted(f.name) + " must not contain '/'"};
  }
  if (f.meta_prefix.empty()) {
    return Unexpected{std::string("--meta-prefix is empty: give a key prefix outside the copied "
                                  "keys, e.g. ") +
                      std::string(kDefaultEtcd2EtcdMetaPrefix)};
  }
  config.prefix = f.prefix;
  if (!f.dest_prefix.empty()) config.dest_prefix = f.dest_prefix;
  config.name = f.name;
  config.meta_prefix = f.meta_prefix;

  const bool same_cluster = ShareAServer(config.source.endpoints, config.dest.endpoints);
  if (same_cluster && KeyPrefixesOverlap(config.prefix, config.DestinationRange())) {
    if (!config.dest_prefix) {
      return Unexpected{
          "--source-endpoints and --dest-endpoints name the same etcd cluster and "
          "no --dest-prefix is given: the mirror would copy --prefix " +
          Quoted(config.prefix) + " into itself"};
    }
    return Unexpected{"--dest-prefix " + Quoted(*config.dest_prefix) + " overlaps --prefix " +
                      Quoted(config.prefix) +
                      " on the same etcd cluster (--source-endpoints and --dest-endpoints share "
                      "a server): the mirror would copy into itself"};
  }
  if (KeyPrefixesOverlap(config.meta_prefix, config.DestinationRange())) {
    return Unexpected{"--meta-prefix " + Quoted(config.meta_prefix) +
                      " overlaps the destination keys " + Quoted(config.DestinationRange()) +
                      " (--" + std::string(config.dest_prefix ? "dest-prefix" : "prefix") +
                      "): the mirror's records must lie outside the keys it copies"};
  }
  if (same_cluster && KeyPrefixesOverlap(config.meta_prefix, config.prefix)) {
    return Unexpected{"--meta-prefix " + Quoted(config.meta_prefix) + " overlaps --prefix " +
                      Quoted(config.prefix) +
                      " on the same etcd cluster: the mirror would copy its own records"};
  }

  auto adopt = sync::ParseAdoptPolicy(f.adopt);
  if (!adopt.ok()) return Unexpected{"--adopt: " + adopt.error()};
  config.adopt = *adopt;
  config.copy_leases = f.copy_leases;
  config.concurrent = static_cast<size_t>(f.concurrent);
  auto level = ops::ParseLogLevel(f.log_level);
  if (!level.ok()) return Unexpected{"--log-level: " + level.error()};
  auto format = ops::ParseLogFormat(f.log_format);
  if (!format.ok()) return Unexpected{"--log-format: " + format.error()};
  if (f.log_file_max_backups > 1000) {
    return Unexpected{std::string("--log-file-max-backups must be at most 1000")};
  }
  config.log_level = *level;
  config.log_format = *format;
  config.log_file = f.log_file;
  config.log_file_max_bytes = f.log_file_max_size_mb * 1024 * 1024;
  config.log_file_max_backups = static_cast<int>(f.log_file_max_backups);

  if (command == MirrorCommand::kSync) {
    if (!(f.max_write_rate >= 0)) {
      std::ostringstream shown;
      shown << f.max_write_rate;
      return Unexpected{
          "--max-write-rate must be zero (unlimited) or a positive number of keys "
          "per second, got " +
          shown.str()};
    }
    config.max_write_rate = f.max_write_rate;
    for (const auto& [flag, value, zero_ok] :
         {std::tuple{"reconcile-interval", f.reconcile_interval, true},
          std::tuple{"shutdown-timeout", f.shutdown_timeout, false}}) {
      if (auto ok = RequireDuration(flag, value, zero_ok); !ok.ok()) {
        return Unexpected{ok.error()};
      }
    }
    config.reconcile_interval = f.reconcile_interval;
    config.shutdown_timeout = std::chrono::duration_cast<milliseconds>(f.shutdown_timeout);
    config.leader_elect = f.leader_elect;
    if (f.leader_elect) {
      if (f.lease_duration < seconds(2)) {
        return Unexpected{"--leader-elect-lease-duration must be at least 2s, got " +
                          FormatGoDuration(f.lease_duration)};
      }
      config.lease_duration = std::chrono::duration_cast<seconds>(f.lease_duration);
      auto identity = ElectionIdentity(f.election_identity, hostname);
      if (!identity.ok()) return Unexpected{identity.error()};
      config.identity = std::move(identity).value();
    }
    config.http_addr = f.http_addr;
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
