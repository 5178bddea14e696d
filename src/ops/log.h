// Structured logging: one line per record, JSON (the Go tool's default, so existing log pipelines
// keep parsing) or text, with a level that can be changed while running.
//
// A Logger writes to a LogSink; the sink decides where lines go (stderr, a file, memory in tests).
// Records below the current level cost one atomic load. Thread-safe: any thread may log or change
// the level at any time; each line is written whole.
#pragma once

#include <atomic>
#include <chrono>
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
  requires std::is_integral_v<T> LogField(std::string_view k, T v) : key(k) {
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

// Appends lines to a file; when a line would take the file past max_bytes, renames path to
// path.1 (path.1 to path.2, ..., dropping path.<max_files>) and starts a new file, so at most
// max_files old files are kept (none when max_files is 0: the file is truncated instead). A line
// longer than max_bytes still goes whole into a fresh file; max_bytes 0 never rotates.
//
// If the file cannot be reopened after a rotation, lines go to stderr (with one warning) and each
// later line retries the file. Thread-safe (its own lock, besides the logger's).
class RotatingFileLogSink final : public LogSink {
 public:
  // Opens (creating or appending to) `path`. The error names the path and the OS's reason.
  static Result<std::shared_ptr<RotatingFileLogSink>, std::string> Open(std::string path,
                                                                        uint64_t max_bytes,
                                                                        int max_files);
  ~RotatingFileLogSink() override;
  RotatingFileLogSink(const RotatingFileLogSink&) = delete;
  RotatingFileLogSink& operator=(const RotatingFileLogSink&) = delete;

  void WriteLine(std::string_view line) override;

 private:
  RotatingFileLogSink(std::string path, uint64_t max_bytes, int max_files, int fd, uint64_t size);
  void Rotate();                              // REQUIRES: mutex_ held
  Result<void, std::string> Reopen();         // REQUIRES: mutex_ held
  void WriteToStderr(std::string_view data);  // the fallback

  const std::string path_;
  const uint64_t max_bytes_;
  const int max_files_;
  std::mutex mutex_;
  int fd_;               // GUARDED_BY(mutex_); -1 while the file is unavailable
  uint64_t size_;        // GUARDED_BY(mutex_)
  bool warned_ = false;  // GUARDED_BY(mutex_)
};

// Writes every line to each of its sinks in order (e.g. stderr and a file).
class TeeLogSink final : public LogSink {
 public:
  explicit TeeLogSink(std::vector<std::shared_ptr<LogSink>> sinks) : sinks_(std::move(sinks)) {}
  void WriteLine(std::string_view line) override;

 private:
  const std::vector<std::shared_ptr<LogSink>> sinks_;
};

class Logger {
 public:
  Logger(std::shared_ptr<LogSink> sink, LogFormat format, LogLevel level, const Clock& clock);
  // The clock that times the lines (callers that pace their own lines use it too).
  const Clock& clock() const { return clock_; }

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

// `time` as the logs write it: RFC 3339 in UTC with milliseconds, "2026-11-21T08:39:53.123Z".
std::string FormatTimestamp(std::chrono::system_clock::time_point time);

// Appends `text` to `out` as a JSON string body (without quotes), escaping as RFC 8259 requires;
// bytes that are not valid UTF-8 are written as \u00XX so the line always parses.
void AppendJsonEscaped(std::string& out, std::string_view text);

}  // namespace zk2etcd::ops
