#include "bench/common/runner_support.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>
#include <thread>
#include <utility>

#include "common/strings.h"

namespace zk2etcd::bench {

double Since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

double Percentile(std::vector<double> values, double p) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  const size_t index = std::min(
      values.size() - 1, static_cast<size_t>(std::ceil(p * values.size())) - (p > 0 ? 1 : 0));
  return values[index];
}

void Summarize(const std::vector<double>& delays, DelayResult& result) {
  result.observed = delays.size();
  result.p50_ms = Percentile(delays, 0.50);
  result.p99_ms = Percentile(delays, 0.99);
  result.max_ms = delays.empty() ? 0 : *std::max_element(delays.begin(), delays.end());
}

std::string DelayText(const DelayResult& delay, int width) {
  char text[128];
  std::snprintf(text, sizeof(text), "%*.1f / %*.1f / %*.1f (%zu/%zu)", width, delay.p50_ms, width,
                delay.p99_ms, width, delay.max_ms, delay.observed, delay.written);
  return text;
}

size_t SendAtRate(int rate, int duration_s, const std::function<void(size_t i)>& send) {
  const auto start = std::chrono::steady_clock::now();
  const size_t total = static_cast<size_t>(rate) * static_cast<size_t>(duration_s);
  for (size_t i = 0; i < total; ++i) {
    std::this_thread::sleep_until(start +
                                  std::chrono::nanoseconds(static_cast<int64_t>(i * 1e9 / rate)));
    send(i);
  }
  return total;
}

// --- ToolProcess ----------------------------------------------------------------------------

ToolProcess::ToolProcess(std::string name, std::vector<std::string> argv, std::string log)
    : name_(std::move(name)), argv_(std::move(argv)), log_(std::move(log)) {}

bool ToolProcess::Start() {
  cpu_before_ = cpu_seconds_;
  auto started = process_.Start(argv_, log_);
  if (!started.ok()) std::cerr << name_ << ": " << started.error().message << "\n";
  return started.ok();
}

bool ToolProcess::Running() { return process_.running() && !process_.HasExited(); }

void ToolProcess::Sample() {
  if (!process_.running()) return;
  std::ifstream status("/proc/" + std::to_string(process_.pid()) + "/status");
  for (std::string line; std::getline(status, line);) {
    if (line.rfind("VmHWM:", 0) == 0) {
      peak_rss_kib_ = std::max(peak_rss_kib_, std::stol(line.substr(6)));
    }
  }
  std::ifstream stat("/proc/" + std::to_string(process_.pid()) + "/stat");
  std::string content;  // one line
  std::getline(stat, content);
  const size_t close = content.rfind(')');
  if (close == std::string::npos) return;
  // After the command name: state is field 3, utime and stime fields 14 and 15 (clock ticks).
  std::istringstream fields(content.substr(close + 2));
  std::vector<std::string> values;
  for (std::string field; fields >> field;) values.push_back(field);
  if (values.size() > 12) {
    cpu_seconds_ = cpu_before_ + (std::stod(values[11]) + std::stod(values[12])) /
                                     static_cast<double>(sysconf(_SC_CLK_TCK));
  }
}

void ToolProcess::Kill9() {
  Sample();
  process_.Kill9();
}

void ToolProcess::Stop() {
  Sample();
  if (process_.running()) process_.Terminate(std::chrono::seconds(15));
}

// --- Flags ----------------------------------------------------------------------------------

Flags& Flags::String(const std::string& name, std::string* out) {
  return Custom(name, [out](const std::string& value) {
    *out = value;
    return true;
  });
}

Flags& Flags::Size(const std::string& name, size_t* out) {
  return Custom(name, [out](const std::string& value) {
    *out = std::stoul(value);
    return true;
  });
}

Flags& Flags::Int(const std::string& name, int* out) {
  return Custom(name, [out](const std::string& value) {
    *out = std::stoi(value);
    return true;
  });
}

Flags& Flags::Double(const std::string& name, double* out) {
  return Custom(name, [out](const std::string& value) {
    *out = std::stod(value);
    return true;
  });
}

Flags& Flags::IntList(const std::string& name, std::vector<int>* out) {
  return Custom(name, [out](const std::string& value) {
    out->clear();
    for (const std::string& item : SplitCommaList(value)) out->push_back(std::stoi(item));
    return true;
  });
}

Flags& Flags::Custom(const std::string& name, std::function<bool(const std::string& value)> parse) {
  flags_.push_back({name, true, std::move(parse)});
  return *this;
}

Flags& Flags::Switch(const std::string& name, bool* out, bool value) {
  flags_.push_back({name, false, [out, value](const std::string&) {
                      *out = value;
                      return true;
                    }});
  return *this;
}

bool Flags::Parse(int argc, char** argv) const {
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    const Flag* match = nullptr;
    std::string value;
    for (const Flag& flag : flags_) {
      if (flag.takes_value ? arg.rfind("--" + flag.name + "=", 0) == 0 : arg == "--" + flag.name) {
        match = &flag;
        if (flag.takes_value) value = arg.substr(flag.name.size() + 3);
        break;
      }
    }
    if (match == nullptr) {
      std::cerr << "unknown argument " << arg << "\n";
      return false;
    }
    if (!match->apply(value)) return false;
  }
  return true;
}

bool Zk2etcdBinaryExists(const std::string& path) {
  if (access(path.c_str(), X_OK) == 0) return true;
  std::cerr << "no zk2etcd binary at " << path << " (--zk2etcd=PATH)\n";
  return false;
}

}  // namespace zk2etcd::bench
