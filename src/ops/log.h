// Structured logging: one line per record, JSON (the Go tool's default, so existing log pipelines
// keep parsing) or text, with a level that can be changed while running.
//
// A Logger writes to a LogSink; the sink decides where lines go (stderr, a file, memory in tests).
// Records below the current level cost one atomic load. Thread-safe: any thread may log or change
// the level at any time; each line is written whole.
#pragma once

#include <atomic>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "common/clock.h"
#include "common/result.h"

namespace zk2etcd::ops {

enum class LogLevel { kDebug = 0, kInfo, kWarn, kError, kPanic, kFatal };
enum class LogFormat { kJson, kText };

// Accepts the Go tool's names: debug, info, warn (or warning), error, panic, fatal.
Result<LogLevel, std::string> ParseLogLevel(std::string_view name);
std::string_view LogLevelName(LogLevel level);
Result<LogFormat, std::string> ParseLogFormat(std::string_view name);

// A key and a value of a log record. Values are copied into the line at once, so views may refer
// to temporaries.
struct LogField {
  using Value = std::variant<std::string_view, int64_t, uint64_t, double, bool>;
  LogField(std::string_view k, std::string_view v) : key(k), value(v) {}
  LogField(std::string_view k, const char* v) : key(k), value(std::string_view(v)) {}
  LogField(std::string_view k, const std::string& v) : key(k), value(std::string_view(v)) {}
  LogField(std::string_view k, bool v) : key(k), value(v) {}
  LogField(std::string_view k, double v) : key(k), value(v) {}
  template <typename T>
    requires std::is_integral_v<T>
  LogField(std::string_view k, T v) : key(k) {
    if constexpr (std::is_signed_v<T>) {
      value = static_cast<int64_t>(v);
    } else {
      value = static_cast<uint64_t>(v);
    }
  }
  std::string_view key;
  Value value;
};

class LogSink {
 public:
  virtual ~LogSink() = default;
  // Writes one complete line (without the trailing newline). Called under the logger's lock.
  virtual void WriteLine(std::string_view line) = 0;
};

// Writes to stderr.
class StderrLogSink final : public LogSink {
 public:
  void WriteLine(std::string_view line) override;
};

// Keeps lines in memory; for tests.
class MemoryLogSink final : public LogSink {
 public:
  void WriteLine(std::string_view line) override;
  std::vector<std::string> Lines() const;

 private:
  mutable std::mutex mutex_;
  std::vector<std::string> lines_;
};

class Logger {
 public:
  Logger(std::shared_ptr<LogSink> sink, LogFormat format, LogLevel level, const Clock& clock);

  void SetLevel(LogLevel level) { level_.store(level, std::memory_order_relaxed); }
  LogLevel level() const { return level_.load(std::memory_order_relaxed); }
  bool Enabled(LogLevel level) const { return level >= this->level(); }

  void Log(LogLevel level, std::string_view message, std::initializer_list<LogField> fields = {});
  void Debug(std::string_view m, std::initializer_list<LogField> f = {}) {
    Log(LogLevel::kDebug, m, f);
  }
  void Info(std::string_view m, std::initializer_list<LogField> f = {}) {
    Log(LogLevel::kInfo, m, f);
  }
  void Warn(std::string_view m, std::initializer_list<LogField> f = {}) {
    Log(LogLevel::kWarn, m, f);
  }
  void Error(std::string_view m, std::initializer_list<LogField> f = {}) {
    Log(LogLevel::kError, m, f);
  }

  // Formats a record without writing it; exposed for tests of the two formats.
  std::string Format(LogLevel level, std::string_view message,
                     std::initializer_list<LogField> fields) const;

 private:
  std::shared_ptr<LogSink> sink_;
  const LogFormat format_;
  std::atomic<LogLevel> level_;
  const Clock& clock_;
  std::mutex write_mutex_;
};

// Appends `text` to `out` as a JSON string body (without quotes), escaping as RFC 8259 requires;
// bytes that are not valid UTF-8 are written as \u00XX so the line always parses.
void AppendJsonEscaped(std::string& out, std::string_view text);

}  // namespace zk2etcd::ops
