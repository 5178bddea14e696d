// zk2etcd_etcd2etcd_benchmark: `zk2etcd etcd2etcd sync` next to `etcdctl make-mirror` (etcd 3.4),
// measured in one run on this machine, next to the servers' own limits.
//
// It starts a source etcd on loopback (testing/ fixtures), writes --keys keys of --value-bytes
// under /registry/ into it, and then, each against a fresh destination etcd:
//   raw ingest  the same keys, each with an ownership record (~40 bytes, as a mirror writes),
//               written by this runner straight into an empty destination: transactions of 60 keys
//               + 60 records, 4, 8 and 16 in flight, each into a fresh server; the fastest is the
//               reference for "within 2x the raw ingest"
//   per tool    (zk2etcd etcd2etcd sync --leader-elect=false; etcdctl make-mirror)
//     initial copy   from the tool's start until the destination holds every key (a count_only
//                    Range polled every --poll-ms), then every value checked against the source
//     delay          puts to the source at each of --rates for --rate-seconds (single-put
//                    transactions from a client with a window of 512, so that none waits in the
//                    client), each value carrying its send time; a watch on the destination and
//                    one on the source
//                    (etcd's own put -> watch delay, the part no tool can remove) see each put;
//                    p50/p99/max and how many arrived
//     restart        with the destination equal to the source: kill -9 the tool, make --changes
//                    changes in the source (60% updates, 20% new keys, 20% deletes), start the
//                    tool again and time until the destination holds exactly the changed keys'
//                    source state; bounded by --restart-timeout (then: how many stale and behind)
//     memory, CPU    VmHWM and utime+stime of each tool process, from /proc
// The source is restored to its initial keys between the tools. Prints a markdown table.
// A benchmark, not a test: build it in Release.
//
//   zk2etcd_etcd2etcd_benchmark --zk2etcd=build/release/src/zk2etcd --keys=100000
//       --rates=100,1000 --rate-seconds=10 [--skip-make-mirror] [--log-dir=DIR]
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <mutex>
#include <optional>
#include <thread>

#include "bench/common/runner_support.h"
#include "common/clock.h"
#include "etcd/grpc_etcd_client.h"
#include "testing/etcd_server.h"
#include "testing/process.h"
#include "testing/temp_dir.h"

namespace zk2etcd::bench {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;
using std::chrono::seconds;

const std::string kPrefix = "/registry/";
const std::string kDelayPrefix = "/registry/zz-bench-delay/";
const std::string kNewPrefix = "/registry/zz-bench-new/";

struct Options {
  std::string zk2etcd = "build/release/src/zk2etcd";
  std::string etcdctl = "/usr/bin/etcdctl";
  size_t keys = 100000;
  size_t value_bytes = 200;
  std::vector<int> rates = {100, 1000};
  int rate_seconds = 10;
  bool make_mirror = true;
  size_t changes = 500;
  int in_flight = 8;
  int poll_ms = 100;
  int copy_timeout_s = 900;
  int restart_timeout_s = 120;
  std::string log_dir;
};

std::string LoadAverage() {
  std::ifstream in("/proc/loadavg");
  std::string a, b, c;
  in >> a >> b >> c;
  return a + " " + b + " " + c;
}

// A registry-shaped key: 1,000 namespaces of services.
std::string Key(size_t i) {
  return kPrefix + "services/endpoints/namespace-" + std::to_string(i % 1000) + "/service-" +
         std::to_string(i);
}

// A value of `bytes` bytes, different per key and generation.
std::string Value(size_t i, int generation, size_t bytes) {
  std::string value = "{\"kind\":\"Endpoints\",\"i\":" + std::to_string(i) +
                      ",\"generation\":" + std::to_string(generation) + ",\"pad\":\"";
  while (value.size() + 2 < bytes) value.push_back(static_cast<char>('a' + (value.size() % 26)));
  return value + "\"}";
}

std::unique_ptr<etcd::EtcdClient> ClientFor(const std::string& endpoint, int in_flight,
                                            const zk2etcd::Clock& clock) {
  etcd::GrpcEtcdClientOptions options;
  options.endpoints = {endpoint};
  options.max_txns_in_flight = in_flight;
  options.call_timeout = milliseconds(60000);
  auto client = etcd::NewGrpcEtcdClient(options, clock);
  if (!client.ok()) std::cerr << "cannot connect to " << endpoint << "\n";
  return client.ok() ? std::move(client).value() : nullptr;
}

// Sends the transactions (all at once into the client's window) and waits for the answers.
// Returns false when one failed or the wait exceeded `timeout`.
bool SendAll(etcd::EtcdClient& etcd, std::vector<etcd::TxnRequest> txns, seconds timeout) {
  std::mutex mutex;
  std::condition_variable done;
  size_t outstanding = txns.size();
  bool ok = true;
  for (etcd::TxnRequest& txn : txns) {
    etcd.TxnAsync(std::move(txn), {}, [&](etcd::EtcdResult<etcd::TxnResponse> response) {
      std::lock_guard lock(mutex);
      if (!response.ok()) {
        if (ok) std::cerr << "transaction failed: " << response.error().message << "\n";
        ok = false;
      }
      if (--outstanding == 0) done.notify_all();
    });
  }
  std::unique_lock lock(mutex);
  if (!done.wait_for(lock, timeout, [&] { return outstanding == 0; })) {
    std::cerr << "transactions still outstanding after " << timeout.count() << " s\n";
    // The callbacks reference this frame: wait for them, whatever it takes (each call times out).
    done.wait(lock, [&] { return outstanding == 0; });
    return false;
  }
  return ok;
}

// Puts keys 0..keys-1 (generation 0) in transactions of 120 puts.
bool LoadSource(etcd::EtcdClient& etcd, size_t keys, size_t value_bytes) {
  std::vector<etcd::TxnRequest> txns;
  for (size_t first = 0; first < keys; first += 120) {
    etcd::TxnRequest txn;
    for (size_t i = first; i < std::min(keys, first + 120); ++i) {
      txn.success.push_back(etcd::Op::Put(Key(i), Value(i, 0, value_bytes)));
    }
    txns.push_back(std::move(txn));
  }
  return SendAll(etcd, std::move(txns), seconds(600));
}

int64_t Count(etcd::EtcdClient& etcd, const std::string& prefix) {
  auto count = etcd::CountRange(etcd, etcd::RangeRequest::Prefix(prefix));
  return count.ok() ? *count : -1;
}

std::map<std::string, std::string> Snapshot(etcd::EtcdClient& etcd, const std::string& prefix) {
  std::map<std::string, std::string> keys;
  auto all = etcd::RangeAll(etcd, etcd::RangeRequest::Prefix(prefix), 10000);
  if (!all.ok()) {
    std::cerr << "cannot read " << prefix << ": " << all.error().message << "\n";
    return keys;
  }
  for (etcd::KeyValue& kv : all->kvs) keys.emplace(std::move(kv.key), std::move(kv.value));
  return keys;
}

struct Differences {
  size_t missing = 0, extra = 0, changed = 0;
  size_t total() const { return missing + extra + changed; }
  std::string text() const {
    return std::to_string(missing) + " missing, " + std::to_string(extra) + " extra, " +
           std::to_string(changed) + " with another value";
  }
};

Differences Compare(etcd::EtcdClient& source, etcd::EtcdClient& dest) {
  const auto a = Snapshot(source, kPrefix);
  const auto b = Snapshot(dest, kPrefix);
  Differences d;
  for (const auto& [key, value] : a) {
    auto it = b.find(key);
    if (it == b.end()) {
      ++d.missing;
    } else if (it->second != value) {
      ++d.changed;
    }
  }
  for (const auto& [key, value] : b) d.extra += a.count(key) == 0;
  return d;
}

// --- The raw ingest reference -----------------------------------------------------------------

// Every key with an ownership record of ~40 bytes (as a mirror's record: the source revision and
// a marker), written into an empty destination: 60 keys + 60 records per transaction.
double RawIngest(etcd::EtcdClient& dest, size_t keys, size_t value_bytes) {
  std::vector<etcd::TxnRequest> txns;
  for (size_t first = 0; first < keys; first += 60) {
    etcd::TxnRequest txn;
    for (size_t i = first; i < std::min(keys, first + 60); ++i) {
      const std::string key = Key(i);
      txn.success.push_back(etcd::Op::Put(key, Value(i, 0, value_bytes)));
      char record[48];
      std::snprintf(record, sizeof(record), "{\"rev\":%016zx,\"src\":\"bench-raw\"}", i + 1);
      txn.success.push_back(etcd::Op::Put("/etcd2etcd/raw/records" + key, record));
    }
    txns.push_back(std::move(txn));
  }
  const auto start = Clock::now();
  if (!SendAll(dest, std::move(txns), seconds(600))) return -1;
  return Since(start);
}

// --- A tool under test ---------------------------------------------------------------------

struct ToolResult {
  std::string name;
  bool started = false;
  double copy_s = -1;         // -1: did not complete within the timeout
  int64_t copied_at_end = 0;  // keys in the destination when the copy ended or timed out
  double copy_elapsed_s = 0;  // the time that count was reached in
  Differences after_copy;
  std::vector<std::pair<DelayResult, DelayResult>> delays;  // tool, source watch
  std::vector<DelayResult> shares;  // per put: destination arrival - source arrival
  Differences before_kill;
  double restart_s = -1;      // -1: never equal within the timeout
  size_t restart_stale = 0;   // deleted in the source, still in the destination
  size_t restart_behind = 0;  // changed keys whose destination state is not the source's
  double restart_timeout_s = 0;
  Differences after_restart;
  double peak_rss_mib = 0;
  double cpu_seconds = 0;
};

// 1. Starts the tool and waits until the destination holds `expected` keys under the prefix.
void InitialCopy(ToolProcess& tool, etcd::EtcdClient& source, etcd::EtcdClient& dest,
                 int64_t expected, const Options& options, ToolResult& result) {
  const auto start = Clock::now();
  if (!tool.Start()) return;
  result.started = true;
  int64_t count = 0;
  while (Since(start) < options.copy_timeout_s) {
    std::this_thread::sleep_for(milliseconds(options.poll_ms));
    tool.Sample();
    count = Count(dest, kPrefix);
    if (count >= expected) break;
    if (!tool.Running()) {
      std::cerr << tool.name() << ": exited during the initial copy (see " << tool.log() << ")\n";
      result.started = false;
      return;
    }
  }
  result.copy_elapsed_s = Since(start);
  result.copied_at_end = count;
  if (count >= expected) result.copy_s = result.copy_elapsed_s;
  std::cerr << tool.name() << ": initial copy " << count << "/" << expected << " keys in "
            << result.copy_elapsed_s << " s\n";
  result.after_copy = Compare(source, dest);
  std::cerr << tool.name() << ": after the copy: " << result.after_copy.text() << "\n";
}

// Waits until the destination equals the source (differences re-read every 0.5 s), at most
// `timeout`. Returns the last differences.
Differences WaitEqual(etcd::EtcdClient& source, etcd::EtcdClient& dest, seconds timeout) {
  const auto start = Clock::now();
  Differences d = Compare(source, dest);
  while (d.total() > 0 && Since(start) < static_cast<double>(timeout.count())) {
    std::this_thread::sleep_for(milliseconds(500));
    d = Compare(source, dest);
  }
  return d;
}

// 3. Puts at `rate`/s for `duration_s` into the source; each put's send time is in its value.
// Returns (destination watch, source watch).
// `share` gets, for every put both watches saw, the destination's arrival minus the source's:
// the tool's own part of the delay.
std::pair<DelayResult, DelayResult> MeasureDelay(etcd::EtcdClient& source, etcd::EtcdClient& dest,
                                                 int rate, int duration_s, size_t value_bytes,
                                                 DelayResult& share) {
  DelayResult tool_result, source_result;
  tool_result.rate = source_result.rate = share.rate = rate;
  std::mutex mutex;
  std::vector<double> tool_delays, source_delays;
  std::map<std::string, double> tool_arrivals, source_arrivals;  // stamp -> seconds since origin
  const auto origin = Clock::now();
  auto collect = [&](std::vector<double>& into, std::map<std::string, double>& arrivals) {
    return [&, into_ptr = &into,
            arrivals_ptr = &arrivals](etcd::EtcdResult<etcd::WatchEvents> events) {
      if (!events.ok()) return;
      const double now = Since(origin);
      std::lock_guard lock(mutex);
      for (const auto& event : events->events) {
        const std::string& value = event.kv.value;
        if (event.type != etcd::WatchEvent::Type::kPut || value.rfind("bench:", 0) != 0) continue;
        into_ptr->push_back((now - std::stod(value.substr(6, 20))) * 1000);
        arrivals_ptr->emplace(value.substr(0, value.find(';')), now);
      }
    };
  };
  auto dest_watch =
      dest.Watch(etcd::WatchRequest::Prefix(kDelayPrefix, 0), collect(tool_delays, tool_arrivals));
  auto source_watch = source.Watch(etcd::WatchRequest::Prefix(kDelayPrefix, 0),
                                   collect(source_delays, source_arrivals));
  std::this_thread::sleep_for(milliseconds(300));
  tool_result.written = SendAtRate(rate, duration_s, [&](size_t i) {
    char stamp[40];
    std::snprintf(stamp, sizeof(stamp), "bench:%.9f;", Since(origin));
    std::string value = stamp;
    value.resize(std::max(value.size(), value_bytes), 'v');
    etcd::TxnRequest txn;
    txn.success.push_back(etcd::Op::Put(kDelayPrefix + "k" + std::to_string(i % 1000), value));
    source.TxnAsync(std::move(txn), {}, [](etcd::EtcdResult<etcd::TxnResponse>) {});
  });
  // Let the last changes arrive (a growing backlog shows as missing observations).
  std::this_thread::sleep_for(seconds(2));
  dest_watch.reset();
  source_watch.reset();
  source_result.written = tool_result.written;
  std::lock_guard lock(mutex);
  Summarize(tool_delays, tool_result);
  Summarize(source_delays, source_result);
  std::vector<double> shares;
  for (const auto& [stamp, arrival] : tool_arrivals) {
    auto it = source_arrivals.find(stamp);
    if (it != source_arrivals.end()) shares.push_back((arrival - it->second) * 1000);
  }
  Summarize(shares, share);
  share.written = tool_result.written;
  return {tool_result, source_result};
}

// The changes made while the tool is down: key -> its source state afterwards (nullopt: deleted).
using ChangeSet = std::map<std::string, std::optional<std::string>>;

ChangeSet MakeChanges(etcd::EtcdClient& source, size_t keys, size_t changes, size_t value_bytes) {
  ChangeSet changed;
  const size_t stride = std::max<size_t>(1, keys / std::max<size_t>(1, changes));
  for (size_t j = 0; j < changes; ++j) {
    const size_t i = (j * stride + 7) % keys;
    bool ok = true;
    if (j % 5 == 3) {  // a new key
      const std::string key = kNewPrefix + "k" + std::to_string(j);
      const std::string value = Value(keys + j, 1, value_bytes);
      ok = source.Put(key, value).ok();
      changed[key] = value;
    } else if (j % 5 == 4) {  // a delete
      ok = source.Delete(Key(i)).ok();
      changed[Key(i)] = std::nullopt;
    } else {  // an update
      const std::string value = Value(i, 1, value_bytes);
      ok = source.Put(Key(i), value).ok();
      changed[Key(i)] = value;
    }
    if (!ok) std::cerr << "a change to the source failed\n";
  }
  return changed;
}

// Reads the changed keys on the destination (transactions of 100 reads); counts those deleted in
// the source but still present (stale) and the others not in their source state (behind).
std::pair<size_t, size_t> CheckChanges(etcd::EtcdClient& dest, const ChangeSet& changed) {
  std::vector<etcd::TxnRequest> txns;
  std::vector<std::vector<const ChangeSet::value_type*>> order;
  for (const auto& entry : changed) {
    if (txns.empty() || txns.back().success.size() == 100) {
      txns.emplace_back();
      order.emplace_back();
    }
    etcd::RangeRequest read;
    read.key = entry.first;
    txns.back().success.push_back(etcd::Op::Range(read));
    order.back().push_back(&entry);
  }
  std::mutex mutex;
  std::condition_variable done;
  size_t outstanding = txns.size(), stale = 0, behind = 0;
  for (size_t t = 0; t < txns.size(); ++t) {
    dest.TxnAsync(std::move(txns[t]), {}, [&, t](etcd::EtcdResult<etcd::TxnResponse> response) {
      std::lock_guard lock(mutex);
      for (size_t k = 0; k < order[t].size(); ++k) {
        const auto& [key, want] = *order[t][k];
        const bool present =
            response.ok() && k < response->responses.size() && !response->responses[k].kvs.empty();
        if (!want.has_value()) {
          stale += present;
        } else if (!present || response->responses[k].kvs[0].value != *want) {
          ++behind;
        }
      }
      if (--outstanding == 0) done.notify_all();
    });
  }
  std::unique_lock lock(mutex);
  done.wait(lock, [&] { return outstanding == 0; });
  return {stale, behind};
}

// 4. Kill -9, changes, restart; time until the changed keys hold their source state.
void Restart(ToolProcess& tool, etcd::EtcdClient& source, etcd::EtcdClient& dest,
             const Options& options, double timeout_s, ToolResult& result, ChangeSet& changed) {
  tool.Kill9();
  changed = MakeChanges(source, options.keys, options.changes, options.value_bytes);
  result.restart_timeout_s = timeout_s;
  const auto start = Clock::now();
  if (!tool.Start()) return;
  std::pair<size_t, size_t> state;
  while (Since(start) < timeout_s) {
    state = CheckChanges(dest, changed);
    tool.Sample();
    if (state.first == 0 && state.second == 0) {
      result.restart_s = Since(start);
      break;
    }
    std::this_thread::sleep_for(milliseconds(20));
  }
  result.restart_stale = state.first;
  result.restart_behind = state.second;
  std::cerr << tool.name() << ": after the restart: "
            << (result.restart_s >= 0 ? "equal in " + std::to_string(result.restart_s) + " s"
                                      : "not equal after " + std::to_string(timeout_s) + " s")
            << ", " << state.first << " stale, " << state.second << " behind\n";
  result.after_restart = Compare(source, dest);
  std::cerr << tool.name() << ": whole prefix after the restart: " << result.after_restart.text()
            << "\n";
}

// Puts the source back to its initial keys (generation 0), without the benchmark's own keys.
void RestoreSource(etcd::EtcdClient& source, const ChangeSet& changed, const Options& options) {
  (void)source.Delete(kDelayPrefix, etcd::PrefixEnd(kDelayPrefix));
  (void)source.Delete(kNewPrefix, etcd::PrefixEnd(kNewPrefix));
  for (size_t i = 0; i < options.keys; ++i) {
    if (changed.count(Key(i))) (void)source.Put(Key(i), Value(i, 0, options.value_bytes));
  }
}

ToolResult RunTool(const std::string& name, const std::vector<std::string>& argv,
                   etcd::EtcdClient& source, etcd::EtcdClient& writer, etcd::EtcdClient& dest,
                   const Options& options, const std::string& log_dir, ChangeSet& changed) {
  ToolResult result;
  result.name = name;
  ToolProcess tool(name, argv, log_dir + "/" + name + ".log");
  const int64_t expected = Count(source, kPrefix);
  InitialCopy(tool, source, dest, expected, options, result);
  if (!result.started || result.copy_s < 0) {
    tool.Stop();
    result.peak_rss_mib = tool.peak_rss_mib();
    result.cpu_seconds = tool.cpu_seconds();
    return result;
  }
  for (int rate : options.rates) {
    DelayResult share;
    result.delays.push_back(
        MeasureDelay(writer, dest, rate, options.rate_seconds, options.value_bytes, share));
    result.shares.push_back(share);
    tool.Sample();
    const auto& [d, s] = result.delays.back();
    std::cerr << name << ": delay@" << rate << " p50/p99/max " << d.p50_ms << "/" << d.p99_ms << "/"
              << d.max_ms << " ms (" << d.observed << "/" << d.written << "); source watch "
              << s.p50_ms << "/" << s.p99_ms << "/" << s.max_ms << "; the tool's share "
              << result.shares.back().p50_ms << "/" << result.shares.back().p99_ms << "/"
              << result.shares.back().max_ms << "\n";
  }
  result.before_kill = WaitEqual(source, dest, seconds(30));
  std::cerr << name << ": before kill -9: " << result.before_kill.text() << "\n";
  // make-mirror copies everything again after a restart: give it its copy time and half again.
  const double timeout =
      std::min<double>(options.restart_timeout_s, std::max(30.0, 1.5 * result.copy_s + 10));
  Restart(tool, source, dest, options, name == "zk2etcd" ? options.restart_timeout_s : timeout,
          result, changed);
  tool.Stop();
  result.peak_rss_mib = tool.peak_rss_mib();
  result.cpu_seconds = tool.cpu_seconds();
  return result;
}

// The duration of zk2etcd's first reconciliation (the copy proper, without process start and
// connections), from its JSON log; -1 when absent.
double FirstReconcileSeconds(const std::string& log_path) {
  std::ifstream log(log_path);
  for (std::string line; std::getline(log, line);) {
    // MirrorService's line: "reconciliation done" with its "duration_ms".
    if (line.find("\"reconciliation done\"") == std::string::npos) continue;
    const size_t at = line.find("\"duration_ms\":");
    if (at != std::string::npos) return std::stod(line.substr(at + 14)) / 1000;
  }
  return -1;
}

std::string Fixed(double value, int digits) {
  char text[64];
  std::snprintf(text, sizeof(text), "%.*f", digits, value);
  return text;
}

std::string Thousands(double value) {
  std::string digits = std::to_string(static_cast<long long>(std::llround(value)));
  for (int at = static_cast<int>(digits.size()) - 3; at > 0; at -= 3) digits.insert(at, ",");
  return digits;
}

std::string CopyCell(const ToolResult& r, size_t keys) {
  if (!r.started) return "did not start";
  if (r.copy_s < 0) {
    return "not done after " + Fixed(r.copy_elapsed_s, 0) + " s: " + Thousands(r.copied_at_end) +
           " keys (" + Thousands(r.copied_at_end / r.copy_elapsed_s) + " keys/s)";
  }
  return Fixed(r.copy_s, 2) + " s (" + Thousands(keys / r.copy_s) + " keys/s)";
}

std::string RestartCell(const ToolResult& r, size_t changes) {
  if (r.copy_s < 0) return "-";
  if (r.restart_s >= 0) {
    return Fixed(r.restart_s, 2) + " s (whole prefix after: " +
           (r.after_restart.total() ? r.after_restart.text() : "equal") + ")";
  }
  return "not equal after " + Fixed(r.restart_timeout_s, 0) + " s: of the " +
         std::to_string(changes) + " changed keys " + std::to_string(r.restart_stale) +
         " deleted in the source still present, " + std::to_string(r.restart_behind) +
         " behind; whole prefix: " + r.after_restart.text();
}

int Main(int argc, char** argv) {
  Options options;
  const bool parsed = Flags()
                          .String("zk2etcd", &options.zk2etcd)
                          .String("etcdctl", &options.etcdctl)
                          .Size("keys", &options.keys)
                          .Size("value-bytes", &options.value_bytes)
                          .IntList("rates", &options.rates)
                          .Int("rate-seconds", &options.rate_seconds)
                          .Size("changes", &options.changes)
                          .Int("in-flight", &options.in_flight)
                          .Int("poll-ms", &options.poll_ms)
                          .Int("copy-timeout", &options.copy_timeout_s)
                          .Int("restart-timeout", &options.restart_timeout_s)
                          .String("log-dir", &options.log_dir)
                          .Switch("skip-make-mirror", &options.make_mirror, false)
                          .Parse(argc, argv);
  if (!parsed) return 2;
  if (!Zk2etcdBinaryExists(options.zk2etcd)) return 2;
  if (options.make_mirror && access(options.etcdctl.c_str(), X_OK) != 0) {
    std::cerr << "no etcdctl at " << options.etcdctl
              << " (--etcdctl=PATH, or --skip-make-mirror)\n";
    return 2;
  }
  const std::string load_before = LoadAverage();
  SystemClock clock;
  auto dir = testing::TempDir::Create("e2e-bench");
  if (!dir.ok()) return 1;
  const std::string log_dir = options.log_dir.empty() ? dir->path() : options.log_dir;
  std::error_code ignored;
  std::filesystem::create_directories(log_dir, ignored);

  std::cerr << "starting the source etcd and writing " << options.keys << " keys...\n";
  auto source_server = testing::EtcdServer::Start();
  if (!source_server.ok()) {
    std::cerr << "cannot start etcd: " << source_server.error().message << "\n";
    return 1;
  }
  auto source = ClientFor((*source_server)->endpoint(), options.in_flight, clock);
  if (!source) return 1;
  // The writer of the delay scenario: a window wide enough that no put waits in the client (with
  // 8 in flight and ~10 ms fsyncs under load, 1,000 puts/s queued there for seconds).
  auto writer = ClientFor((*source_server)->endpoint(), 512, clock);
  if (!writer) return 1;
  const auto load_start = Clock::now();
  if (!LoadSource(*source, options.keys, options.value_bytes)) return 1;
  const double load_s = Since(load_start);

  // 2. Raw ingest into an empty destination, with 4, 8 and 16 transactions in flight (a fresh
  // server each); the fastest is the reference.
  double raw_s = -1;
  int raw_window = 0;
  std::string raw_runs;
  for (int window : {4, 8, 16}) {
    auto server = testing::EtcdServer::Start();
    if (!server.ok()) return 1;
    auto dest = ClientFor((*server)->endpoint(), window, clock);
    if (!dest) return 1;
    const double seconds = RawIngest(*dest, options.keys, options.value_bytes);
    std::cerr << "raw ingest, " << window << " in flight: " << options.keys << " keys + records in "
              << seconds << " s\n";
    raw_runs +=
        (raw_runs.empty() ? "" : ", ") + std::to_string(window) + ": " + Fixed(seconds, 2) + " s";
    if (seconds > 0 && (raw_s < 0 || seconds < raw_s)) {
      raw_s = seconds;
      raw_window = window;
    }
    dest.reset();
    (*server)->Stop();
  }

  std::vector<ToolResult> results;
  struct Candidate {
    std::string name;
    std::function<std::vector<std::string>(const std::string&, const std::string&)> argv;
  };
  std::vector<Candidate> candidates = {
      {"zk2etcd", [&](const std::string& src, const std::string& dst) {
         return std::vector<std::string>{options.zk2etcd,
                                         "etcd2etcd",
                                         "sync",
                                         "--source-endpoints=" + src,
                                         "--dest-endpoints=" + dst,
                                         "--prefix=" + kPrefix,
                                         "--name=bench",
                                         "--leader-elect=false",
                                         "--http-addr=127.0.0.1:0",
                                         "--log-level=info"};
       }}};
  if (options.make_mirror) {
    candidates.push_back({"make-mirror", [&](const std::string& src, const std::string& dst) {
                            return std::vector<std::string>{options.etcdctl, "make-mirror",
                                                            "--endpoints=" + src,
                                                            "--prefix=" + kPrefix, dst};
                          }});
  }
  for (const Candidate& candidate : candidates) {
    auto server = testing::EtcdServer::Start();
    if (!server.ok()) return 1;
    auto dest = ClientFor((*server)->endpoint(), options.in_flight, clock);
    if (!dest) return 1;
    std::cerr << candidate.name << ": initial copy, delays, kill -9 and restart...\n";
    ChangeSet changed;
    results.push_back(RunTool(candidate.name,
                              candidate.argv((*source_server)->endpoint(), (*server)->endpoint()),
                              *source, *writer, *dest, options, log_dir, changed));
    RestoreSource(*source, changed, options);
    dest.reset();
    (*server)->Stop();
  }
  const std::string load_after = LoadAverage();

  // Report.
  const size_t n = options.keys;
  std::printf(
      "\n%zu keys of %zu-byte values under %s; %ld cores; load average before %s, "
      "after %s\n",
      n, options.value_bytes, kPrefix.c_str(), sysconf(_SC_NPROCESSORS_ONLN), load_before.c_str(),
      load_after.c_str());
  std::printf("source loaded (120-put transactions, %d in flight): %.2f s (%s keys/s)\n\n",
              options.in_flight, load_s, Thousands(n / load_s).c_str());
  std::printf("| figure | zk2etcd etcd2etcd sync | etcdctl make-mirror | reference | goal |\n");
  std::printf("|---|---|---|---|---|\n");
  const ToolResult* ours = results.empty() ? nullptr : &results[0];
  const ToolResult* theirs = results.size() > 1 ? &results[1] : nullptr;
  auto cell = [&](const ToolResult* r, auto&& fn) -> std::string { return r ? fn(*r) : "-"; };
  std::printf(
      "| initial copy of %s keys | %s | %s | raw ingest (key + record, 60+60-put txns, "
      "%d in flight; in flight 4, 8, 16: %s): %s s (%s keys/s) | >= 20x make-mirror's "
      "rate; <= 2x raw ingest |\n",
      Thousands(n).c_str(), cell(ours, [&](const ToolResult& r) { return CopyCell(r, n); }).c_str(),
      cell(theirs, [&](const ToolResult& r) { return CopyCell(r, n); }).c_str(), raw_window,
      raw_runs.c_str(), Fixed(raw_s, 2).c_str(), Thousands(n / raw_s).c_str());
  for (size_t k = 0; k < options.rates.size(); ++k) {
    auto delay = [&](const ToolResult* r) -> std::string {
      return r && k < r->delays.size() ? DelayText(r->delays[k].first) : "-";
    };
    auto floor = [&](const ToolResult* r) -> std::string {
      return r && k < r->delays.size() ? DelayText(r->delays[k].second) : "-";
    };
    std::printf(
        "| delay at %d puts/s, p50 / p99 / max ms (arrived/sent) | %s | %s | etcd's own "
        "put -> watch on the source: %s (during zk2etcd), %s (during make-mirror) | p99 < "
        "10 ms |\n",
        options.rates[k], delay(ours).c_str(), delay(theirs).c_str(), floor(ours).c_str(),
        floor(theirs).c_str());
  }
  for (size_t k = 0; k < options.rates.size(); ++k) {
    auto share = [&](const ToolResult* r) -> std::string {
      return r && k < r->shares.size() ? DelayText(r->shares[k]) : "-";
    };
    std::printf(
        "| the tool's share at %d puts/s (per put: destination watch minus source watch), "
        "p50 / p99 / max ms (seen on both) | %s | %s | | |\n",
        options.rates[k], share(ours).c_str(), share(theirs).c_str());
  }
  std::printf(
      "| restart after kill -9 with %zu changes, until the destination equals the source "
      "| %s | %s | | |\n",
      options.changes,
      cell(ours, [&](const ToolResult& r) { return RestartCell(r, options.changes); }).c_str(),
      cell(theirs, [&](const ToolResult& r) { return RestartCell(r, options.changes); }).c_str());
  std::printf("| peak memory (VmHWM, MiB) | %s | %s | | |\n",
              cell(ours, [](const ToolResult& r) { return Fixed(r.peak_rss_mib, 1); }).c_str(),
              cell(theirs, [](const ToolResult& r) { return Fixed(r.peak_rss_mib, 1); }).c_str());
  std::printf("| CPU seconds (user + system, whole run) | %s | %s | | |\n",
              cell(ours, [](const ToolResult& r) { return Fixed(r.cpu_seconds, 1); }).c_str(),
              cell(theirs, [](const ToolResult& r) { return Fixed(r.cpu_seconds, 1); }).c_str());

  std::printf("\nchecks:\n");
  for (const ToolResult& r : results) {
    std::printf("  %s: after the copy %s; before kill -9 %s\n", r.name.c_str(),
                r.after_copy.text().c_str(), r.before_kill.text().c_str());
  }
  if (ours && ours->copy_s > 0) {
    const double reconcile_s = FirstReconcileSeconds(log_dir + "/zk2etcd.log");
    std::printf(
        "  zk2etcd's own log: first reconciliation (read, compare, repair) %.2f s of the "
        "%.2f s copy\n",
        reconcile_s, ours->copy_s);
    std::printf("goals:\n  initial copy / raw ingest time: %.2f (goal <= 2)\n",
                ours->copy_s / raw_s);
    if (theirs) {
      const double their_rate =
          theirs->copy_s > 0 ? n / theirs->copy_s
                             : theirs->copied_at_end / std::max(1e-9, theirs->copy_elapsed_s);
      std::printf("  copy rate zk2etcd / make-mirror: %.1f (goal >= 20)\n",
                  (n / ours->copy_s) / their_rate);
    }
    for (const auto& [d, s] : ours->delays) {
      std::printf("  delay@%d p99 %.1f ms (goal < 10; etcd's own p99 %.1f ms)\n", d.rate, d.p99_ms,
                  s.p99_ms);
    }
  }
  std::printf("logs: %s\n", log_dir.c_str());
  std::fflush(stdout);
  return 0;
}

}  // namespace
}  // namespace zk2etcd::bench

int main(int argc, char** argv) { return zk2etcd::bench::Main(argc, argv); }
