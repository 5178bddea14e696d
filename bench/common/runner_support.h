// What the benchmark runners (bench/sync, bench/etcd2etcd) have in common: elapsed seconds,
// percentiles and delay summaries, fixed-rate sending, a tool under test as a child process with
// its peak memory and CPU time from /proc, command-line flags, and the delay cell of the printed
// tables. For benchmark runners only: nothing in src/ or testing/ links it.
//
// Thread-safety: the free functions keep no state and may be called from any thread (Summarize
// writes only its `result`; the caller guards it). ToolProcess and Flags are not thread-safe: use
// each object from one thread at a time.
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <string>
#include <vector>

#include "testing/process.h"

namespace zk2etcd::bench {

// Seconds since `start` (steady clock).
double Since(std::chrono::steady_clock::time_point start);

// The `p` quantile (0 <= p <= 1) of `values`, nearest rank; 0 when there are none.
double Percentile(std::vector<double> values, double p);

// The delay from a change to where it is watched, at a fixed change rate.
struct DelayResult {
  int rate = 0;         // changes per second
  size_t written = 0;   // changes made
  size_t observed = 0;  // changes seen arrive
  double p50_ms = 0, p99_ms = 0, max_ms = 0;
};

// Fills in `result`'s observed count, p50, p99 and max from `delays` (ms, one per change seen).
void Summarize(const std::vector<double>& delays, DelayResult& result);

// "p50 / p99 / max (observed/written)", each delay in ms with one decimal, right-aligned in
// `width` characters (0: no padding).
std::string DelayText(const DelayResult& delay, int width = 0);

// Calls send(i) for i = 0 .. rate * duration_s - 1, the i-th at start + i / rate s (open loop: a
// slow call delays the calls after it, not the schedule). Returns how many calls it made.
size_t SendAtRate(int rate, int duration_s, const std::function<void(size_t i)>& send);

// A tool under test, run as a child process with stdout and stderr appended to `log`, with its
// peak resident memory (VmHWM) and CPU time (user + system) read from /proc by Sample. The CPU
// time adds up over restarts (Start after Kill9 or Stop).
class ToolProcess {
 public:
  ToolProcess(std::string name, std::vector<std::string> argv, std::string log);

  // Starts the process; says why not on stderr when it cannot.
  bool Start();
  // False once the process has exited (it should run until Kill9 or Stop).
  bool Running();
  // Reads the peak memory and CPU time so far; a no-op when not running.
  void Sample();
  // Sample, then SIGKILL.
  void Kill9();
  // Sample, then SIGTERM, and SIGKILL after 15 s.
  void Stop();

  const std::string& name() const { return name_; }
  const std::string& log() const { return log_; }
  double peak_rss_mib() const { return static_cast<double>(peak_rss_kib_) / 1024; }
  double cpu_seconds() const { return cpu_seconds_; }

 private:
  std::string name_;
  std::vector<std::string> argv_;
  std::string log_;
  testing::ChildProcess process_;
  long peak_rss_kib_ = 0;
  double cpu_seconds_ = 0, cpu_before_ = 0;
};

// Command-line flags: --NAME=VALUE flags and bare --NAME switches, each bound to a variable. A
// malformed number throws (std::stoi and the like), as a runner's own parsing did.
class Flags {
 public:
  Flags& String(const std::string& name, std::string* out);
  Flags& Size(const std::string& name, size_t* out);
  Flags& Int(const std::string& name, int* out);
  Flags& Double(const std::string& name, double* out);
  // A comma-separated list; replaces what `out` held.
  Flags& IntList(const std::string& name, std::vector<int>* out);
  // --NAME=VALUE handled by `parse`, which returns false (after saying why on stderr) to stop.
  Flags& Custom(const std::string& name, std::function<bool(const std::string& value)> parse);
  // The bare --NAME sets `*out` to `value`.
  Flags& Switch(const std::string& name, bool* out, bool value);

  // Applies argv[1..argc-1] in order. False on an unknown argument (said on stderr) or when a
  // Custom flag refused its value.
  bool Parse(int argc, char** argv) const;

 private:
  struct Flag {
    std::string name;
    bool takes_value;
    std::function<bool(const std::string& value)> apply;
  };
  std::vector<Flag> flags_;
};

// True when `path` is an executable file; otherwise says so on stderr (naming --zk2etcd=PATH).
bool Zk2etcdBinaryExists(const std::string& path);

}  // namespace zk2etcd::bench
