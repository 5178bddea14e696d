#include "cli/config.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <memory>
#include <set>

#include "cli/config_file.h"
#include "common/strings.h"
#include "zk/connect_string.h"

namespace zk2etcd::cli {

namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

// Whether `host` (lower case) names this machine's own addresses whatever the server binds: the
// loopback network (127.0.0.0/8, ::1, localhost) and the wildcard addresses (0.0.0.0, ::), which a
// client connects to as the loopback.
bool IsThisMachine(std::string_view host) {
  if (host.starts_with('[') && host.ends_with(']')) host = host.substr(1, host.size() - 2);
  if (host.starts_with("::ffff:")) host.remove_prefix(7);  // an IPv4-mapped address
  if (host == "localhost" || host.ends_with(".localhost") || host == "::1" || host == "::" ||
      host == "0:0:0:0:0:0:0:1" || host == "0:0:0:0:0:0:0:0" || host == "0.0.0.0" || host == "0") {
    return true;
  }
  // 127.x.y.z, each part a number.
  if (!host.starts_with("127.")) return false;
  int dots = 0;
  for (const char c : host) {
    if (c == '.') {
      ++dots;
    } else if (!std::isdigit(static_cast<unsigned char>(c))) {
      return false;
    }
  }
  return dots == 3;
}

// host:port in one spelling: no scheme, the host in lower case, this machine (IsThisMachine) as
// 127.0.0.1.
std::string NormalizedServer(std::string_view endpoint) {
  if (endpoint.starts_with("http://")) endpoint.remove_prefix(7);
  if (endpoint.starts_with("https://")) endpoint.remove_prefix(8);
  const size_t colon = endpoint.rfind(':');
  std::string host(endpoint.substr(0, colon));
  const std::string_view port =
      colon == std::string_view::npos ? std::string_view() : endpoint.substr(colon);
  std::transform(host.begin(), host.end(), host.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  if (IsThisMachine(host)) host = "127.0.0.1";
  return host + std::string(port);
}

}  // namespace

bool ShareAServer(const std::vector<std::string>& a, const std::vector<std::string>& b) {
  std::set<std::string> servers;
  for (const std::string& endpoint : a) servers.insert(NormalizedServer(endpoint));
  return std::any_of(b.begin(), b.end(), [&](const std::string& endpoint) {
    return servers.count(NormalizedServer(endpoint)) > 0;
  });
}

std::string ChrootOf(std::string_view connect_string) {
  auto parsed = zk::ParseConnectString(connect_string);
  return parsed.ok() ? parsed->chroot : std::string();
}

void WarnAboutIgnoredExcludes(const core::Scope& scope, const core::ScopeFlagNames& flags,
                              const std::vector<std::string>& not_chosen, ops::Logger& logger) {
  for (const std::string& exclude : scope.ignored_excludes()) {
    if (std::find(not_chosen.begin(), not_chosen.end(), exclude) != not_chosen.end()) continue;
    logger.Warn(std::string(flags.excludes) + " lies outside every " + std::string(flags.prefixes) +
                    " and excludes nothing",
                {{"exclude", exclude}});
  }
}

Result<ZooKeeperServers, std::string> ParseZooKeeperServers(std::string_view flag,
                                                            std::string_view value) {
  ZooKeeperServers servers;
  servers.connect_string = std::string(TrimWhitespace(value));
  std::string hosts = servers.connect_string;
  if (const size_t slash = hosts.find('/'); slash != std::string::npos) {
    servers.chroot = hosts.substr(slash);
    hosts.resize(slash);
  }
  servers.hosts = SplitCommaList(hosts);
  if (servers.hosts.empty()) {
    return Unexpected{std::string(flag) + " is empty: give host:port[,host:port...] (or " +
                      FlagSet::EnvVarName(flag.substr(flag.starts_with("--") ? 2 : 0)) + ")"};
  }
  if (auto ok = CheckHostPorts(flag, servers.hosts, false); !ok.ok()) {
    return Unexpected{ok.error()};
  }
  if (!servers.chroot.empty()) {
    if (auto ok = core::ValidateZkPath(servers.chroot, std::string(flag) + " chroot"); !ok.ok()) {
      return Unexpected{ok.error()};
    }
  }
  return servers;
}

Result<void, std::string> CheckDigest(std::string_view flag, std::string_view digest) {
  if (!digest.empty() && digest.find(':') == std::string_view::npos) {
    return Unexpected{std::string(flag) + " must be user:password"};
  }
  return {};
}

Result<void, std::string> CheckHostPorts(std::string_view flag,
                                         const std::vector<std::string>& list, bool allow_scheme) {
  for (const std::string& entry : list) {
    std::string_view address = entry;
    if (allow_scheme) {
      if (address.starts_with("http://")) address.remove_prefix(7);
      if (address.starts_with("https://")) address.remove_prefix(8);
    }
    const size_t colon = address.rfind(':');
    const std::string_view port = colon == std::string_view::npos ? "" : address.substr(colon + 1);
    const bool numeric = !port.empty() && port.size() <= 9 &&
                         port.find_first_not_of("0123456789") == std::string_view::npos;
    if (colon == 0 || colon == std::string_view::npos || !numeric ||
        address.find('/') != std::string_view::npos) {
      return Unexpected{std::string(flag) + ": \"" + entry + "\" is not host:port"};
    }
    if (const int number = std::stoi(std::string(port)); number == 0 || number > 65535) {
      return Unexpected{std::string(flag) + ": \"" + entry + "\": port " + std::string(port) +
                        " is out of range (1-65535)"};
    }
  }
  return {};
}

void AddLogFlags(FlagSet& flags, std::string* level, std::string* format, std::string* file,
                 uint64_t* file_max_size_mb, uint64_t* file_max_backups) {
  flags.AddString("log-level", level, "info",
                  "log output level, possible values: 'debug', 'info', 'warn', 'error', "
                  "'panic', 'fatal'");
  flags.AddString("log-format", format, "json", "log format: json or text");
  flags.AddString("log-file", file, "",
                  "write logs to this file instead of stderr, rotated by size");
  flags.AddUint("log-file-max-size-mb", file_max_size_mb, 100,
                "rotate the log file when it would exceed this many MiB");
  flags.AddUint("log-file-max-backups", file_max_backups, 5,
                "rotated log files to keep (file.1 ... file.N)");
}

void AddCommonFlags(FlagSet& flags, CommonFlags* v) {
  flags.AddString("zookeeper-servers", &v->zookeeper_servers, "",
                  "comma-separated list of zookeeper servers address (host:port, an optional "
                  "/chroot after the last one)");
  flags.AddString("zookeeper-prefix", &v->zookeeper_prefix, "/dubbo",
                  "comma-separated list of zookeeper path prefix to be synced");
  flags.AddString("zookeeper-exclude-prefix", &v->zookeeper_exclude_prefix,
                  std::string(kDefaultExcludePrefix),
                  "comma-separated list of zookeeper path prefix to be excluded");
  flags.AddSecret("zookeeper-digest", &v->zookeeper_digest,
                  "digest credentials user:password for zookeeper nodes with ACLs");
  flags.AddDuration("zookeeper-session-timeout", &v->zookeeper_session_timeout, seconds(30),
                    "zookeeper session timeout requested from the server");
  flags.AddString("etcd-servers", &v->etcd_servers, "",
                  "comma-separated list of etcd servers address");
  flags.AddString("etcd-cacert", &v->etcd_cacert, "",
                  "verify certificates of TLS-enabled secure servers using this CA bundle");
  flags.AddString("etcd-cert", &v->etcd_cert, "",
                  "identify secure client using this TLS certificate file");
  flags.AddString("etcd-key", &v->etcd_key, "", "identify secure client using this TLS key file");
  flags.AddString("etcd-server-name", &v->etcd_server_name, "",
                  "name to verify the etcd server certificate against, instead of the host");
  flags.AddString("etcd-user", &v->etcd_user, "", "etcd user name (etcd authentication)");
  flags.AddSecret("etcd-password", &v->etcd_password, "etcd password");
  flags.AddString("etcd-key-prefix", &v->etcd_key_prefix, "",
                  "prefix put before every zookeeper path to make its etcd key");
  flags.AddString("etcd-meta-prefix", &v->etcd_meta_prefix,
                  std::string(connectors::kDefaultMetaPrefix),
                  "where zk2etcd keeps its ownership and ordering records in etcd");
  flags.AddDuration("etcd-dial-timeout", &v->etcd_dial_timeout, seconds(5),
                    "how long one attempt to reach etcd may take");
  flags.AddDuration("etcd-request-timeout", &v->etcd_request_timeout, seconds(10),
                    "deadline of each etcd request");
  flags.AddString("redis-server", &v->redis_server, "",
                  "redis server address (host:port) holding the Go zk2etcd's ownership records; "
                  "empty: ownership records live in etcd only");
  flags.AddString("redis-username", &v->redis_username, "", "redis username");
  flags.AddSecret("redis-password", &v->redis_password, "redis password");
  AddLogFlags(flags, &v->log_level, &v->log_format, &v->log_file, &v->log_file_max_size_mb,
              &v->log_file_max_backups);
  flags.AddString("config", &v->config, "",
                  "YAML file of settings (flag names as keys); flags and ZK2ETCD_ variables win; "
                  "SIGHUP re-reads log-level and fullsync-interval from it");
  flags.AddBool("enable-event-log", &v->enable_event_log, false,
                "log one line per etcd mutation (operation, result, key, zxid, trace id)");
  flags.AddUint("concurrent", &v->concurrent, 50,
                "the concurrency of syncing workers: requests in flight on each side");
  flags.AddString("adopt", &v->adopt, "matching",
                  "keys in scope without any ownership record: matching adopts those equal to "
                  "their znode (others are reported as conflicts), all takes every one (updates "
                  "and deletes them like its own), none leaves them all alone");
}

Result<void, std::string> ApplyConfigFile(FlagSet& flags, const std::string& path) {
  if (path.empty()) return {};
  auto values = LoadConfigFile(path);
  if (!values.ok()) return Unexpected{values.error()};
  return flags.ApplyConfigValues(*values, "--config \"" + path + "\"");
}

Result<DiffCommandOptions, std::string> ValidateDiffCommandFlags(
    bool fix, const std::string& output, std::chrono::nanoseconds connect_timeout) {
  if (output != "text" && output != "json") {
    return Unexpected{"--output must be text or json, got " + Quoted(output)};
  }
  if (auto ok = RequireDuration("connect-timeout", connect_timeout, false); !ok.ok()) {
    return Unexpected{ok.error()};
  }
  return DiffCommandOptions{fix, output == "json", connect_timeout};
}

Result<void, std::string> RequireReadableFile(const std::string& flag, const std::string& path) {
  if (path.empty()) return {};
  int error = 0;
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    error = errno;
  } else {
    struct stat info {};
    if (::fstat(fd, &info) != 0) {
      error = errno;
    } else if (S_ISDIR(info.st_mode)) {
      error = EISDIR;
    }
    ::close(fd);
  }
  if (error == 0) return {};
  return Unexpected{"--" + flag + " " + Quoted(path) + ": cannot read the file (" +
                    std::strerror(error) + ")"};
}

Result<void, std::string> RequireDuration(std::string_view flag, std::chrono::nanoseconds value,
                                          bool allow_zero) {
  if (value.count() < 0 || (!allow_zero && value.count() == 0)) {
    return Unexpected{"--" + std::string(flag) + " must be " +
                      (allow_zero ? "zero or positive" : "positive") + ", got " +
                      FormatGoDuration(value)};
  }
  return {};
}

Result<std::string, std::string> ElectionIdentity(std::string_view configured,
                                                  std::string_view hostname) {
  std::string identity(TrimWhitespace(configured));
  if (identity.empty()) identity = std::string(TrimWhitespace(hostname));
  if (identity.empty()) {
    return Unexpected{std::string(
        "--leader-elect-identity is empty and the hostname is unknown; set a stable identity")};
  }
  return identity;
}

std::vector<std::string> ExcludesNotChosen(const CommonFlags& f) {
  if (f.zookeeper_exclude_prefix == kDefaultExcludePrefix) {
    return {std::string(kDefaultExcludePrefix)};
  }
  return {};
}

Result<Config, std::string> ValidateCommonFlags(const CommonFlags& f) {
  // ZooKeeper servers: host:port list, the chroot (if any) after the last one.
  auto zk_servers = ParseZooKeeperServers("--zookeeper-servers", f.zookeeper_servers);
  if (!zk_servers.ok()) return Unexpected{zk_servers.error()};
  const std::vector<std::string> etcd_list = SplitCommaList(f.etcd_servers);
  if (etcd_list.empty()) {
    return Unexpected{std::string(
        "--etcd-servers is empty: give host:port[,host:port...] (or ZK2ETCD_ETCD_SERVERS)")};
  }
  if (auto ok = CheckHostPorts("--etcd-servers", etcd_list, true); !ok.ok()) {
    return Unexpected{ok.error()};
  }
  auto scope = core::Scope::Create(SplitCommaList(f.zookeeper_prefix),
                                   SplitCommaList(f.zookeeper_exclude_prefix));
  if (!scope.ok()) return Unexpected{scope.error()};
  auto layout = connectors::KeyLayout::Create(f.etcd_key_prefix, f.etcd_meta_prefix, *scope);
  if (!layout.ok()) return Unexpected{layout.error()};
  auto level = ops::ParseLogLevel(f.log_level);
  if (!level.ok()) return Unexpected{"--log-level: " + level.error()};
  auto format = ops::ParseLogFormat(f.log_format);
  if (!format.ok()) return Unexpected{"--log-format: " + format.error()};
  if (f.concurrent == 0 || f.concurrent > 10000) {
    return Unexpected{"--concurrent must be between 1 and 10000, got " +
                      std::to_string(f.concurrent)};
  }
  for (const auto& [flag, value] :
       {std::pair{"zookeeper-session-timeout", f.zookeeper_session_timeout},
        std::pair{"etcd-dial-timeout", f.etcd_dial_timeout},
        std::pair{"etcd-request-timeout", f.etcd_request_timeout}}) {
    if (auto ok = RequireDuration(flag, value, false); !ok.ok()) return Unexpected{ok.error()};
  }
  if (auto ok = CheckDigest("--zookeeper-digest", f.zookeeper_digest); !ok.ok()) {
    return Unexpected{ok.error()};
  }
  if (f.etcd_cert.empty() != f.etcd_key.empty()) {
    return Unexpected{std::string("--etcd-cert and --etcd-key go together: give both or neither")};
  }
  if (!f.etcd_password.empty() && f.etcd_user.empty()) {
    return Unexpected{std::string("--etcd-password needs --etcd-user")};
  }

  auto adopt = sync::ParseAdoptPolicy(f.adopt);
  if (!adopt.ok()) return Unexpected{"--adopt: " + adopt.error()};
  if (f.log_file_max_backups > 1000) {
    return Unexpected{std::string("--log-file-max-backups must be at most 1000")};
  }
  Config config{std::move(scope).value(),
                std::move(layout).value(),
                {},
                {},
                std::nullopt,
                *level,
                *format,
                f.enable_event_log,
                static_cast<size_t>(f.concurrent),
                f.log_file,
                f.log_file_max_size_mb * 1024 * 1024,
                static_cast<int>(f.log_file_max_backups)};
  config.adopt = *adopt;
  config.zookeeper.connect_string = zk_servers->connect_string;
  config.zookeeper.outage_warned = std::make_shared<std::atomic<bool>>(false);
  config.zookeeper.session_timeout =
      std::chrono::duration_cast<milliseconds>(f.zookeeper_session_timeout);
  if (!f.zookeeper_digest.empty()) config.zookeeper.auth = {{"digest", f.zookeeper_digest}};

  for (const auto& [flag, path] :
       {std::pair{"etcd-cacert", &f.etcd_cacert}, std::pair{"etcd-cert", &f.etcd_cert},
        std::pair{"etcd-key", &f.etcd_key}}) {
    if (auto ok = RequireReadableFile(flag, *path); !ok.ok()) return Unexpected{ok.error()};
  }
  config.etcd.endpoints = etcd_list;
  const bool https = std::any_of(etcd_list.begin(), etcd_list.end(),
                                 [](const std::string& e) { return e.starts_with("https://"); });
  if (https || !f.etcd_cacert.empty() || !f.etcd_cert.empty()) {
    config.etcd.tls = etcd::TlsOptions{f.etcd_cacert, f.etcd_cert, f.etcd_key, f.etcd_server_name};
  }
  config.etcd.user = f.etcd_user;
  config.etcd.password = f.etcd_password;
  config.etcd.dial_timeout = std::chrono::duration_cast<milliseconds>(f.etcd_dial_timeout);
  config.etcd.call_timeout = std::chrono::duration_cast<milliseconds>(f.etcd_request_timeout);
  config.etcd.max_txns_in_flight = static_cast<int>(std::min<uint64_t>(f.concurrent, 64));

  if (!TrimWhitespace(f.redis_server).empty()) {
    ownership::RedisOptions redis;
    redis.address = std::string(TrimWhitespace(f.redis_server));
    redis.username = f.redis_username;
    redis.password = f.redis_password;
    if (auto valid = ownership::RedisOwnershipStore::Create(redis); !valid.ok()) {
      return Unexpected{valid.error()};
    }
    config.redis = std::move(redis);
  }
  return config;
}

}  // namespace zk2etcd::cli
