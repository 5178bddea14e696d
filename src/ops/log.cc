#include "ops/log.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <ctime>
#include <system_error>

namespace zk2etcd::ops {

namespace {

constexpr std::string_view kLevelNames[] = {"debug", "info", "warn", "error", "panic", "fatal"};

// Length of the valid UTF-8 sequence at the start of `text`, or 0 if it is not valid.
size_t Utf8SequenceLength(std::string_view text) {
  const auto byte = [&](size_t i) { return static_cast<unsigned char>(text[i]); };
  const unsigned char lead = byte(0);
  size_t length;
  if (lead < 0x80) return 1;
  if (lead >= 0xC2 && lead <= 0xDF) {
    length = 2;
  } else if (lead >= 0xE0 && lead <= 0xEF) {
    length = 3;
  } else if (lead >= 0xF0 && lead <= 0xF4) {
    length = 4;
  } else {
    return 0;
  }
  if (text.size() < length) return 0;
  for (size_t i = 1; i < length; ++i) {
    if ((byte(i) & 0xC0) != 0x80) return 0;
  }
  if (length == 3 && lead == 0xE0 && byte(1) < 0xA0) return 0;  // overlong
  if (length == 3 && lead == 0xED && byte(1) > 0x9F) return 0;  // surrogate
  if (length == 4 && lead == 0xF0 && byte(1) < 0x90) return 0;  // overlong
  if (length == 4 && lead == 0xF4 && byte(1) > 0x8F) return 0;  // > U+10FFFF
  return length;
}

void AppendValue(std::string& out, const LogField::Value& value, LogFormat format) {
  std::visit(
      [&](const auto& v) {
        using T = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<T, std::string_view>) {
          const bool quote = format == LogFormat::kJson ||
                             v.find_first_of(" \"=\t\n") != std::string_view::npos || v.empty();
          if (quote) out += '"';
          AppendJsonEscaped(out, v);
          if (quote) out += '"';
        } else if constexpr (std::is_same_v<T, bool>) {
          out += v ? "true" : "false";
        } else if constexpr (std::is_same_v<T, double>) {
          char buffer[32];
          std::snprintf(buffer, sizeof(buffer), "%.6g", v);
          out += buffer;
        } else {
          out += std::to_string(v);
        }
      },
      value);
}

}  // namespace

std::string FormatTimestamp(std::chrono::system_clock::time_point time) {
  const auto since_epoch = time.time_since_epoch();
  const auto seconds = std::chrono::duration_cast<std::chrono::seconds>(since_epoch);
  const auto millis =
      std::chrono::duration_cast<std::chrono::milliseconds>(since_epoch - seconds).count();
  const std::time_t t = static_cast<std::time_t>(seconds.count());
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buffer[96];  // sized for any int fields, which silences -Wformat-truncation
  std::snprintf(buffer, sizeof(buffer), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                static_cast<int>(millis));
  return buffer;
}

Result<LogLevel, std::string> ParseLogLevel(std::string_view name) {
  if (name == "warning") return LogLevel::kWarn;
  for (size_t i = 0; i < std::size(kLevelNames); ++i) {
    if (name == kLevelNames[i]) return static_cast<LogLevel>(i);
  }
  return Unexpected{"unknown log level \"" + std::string(name) +
                    "\" (use debug, info, warn, error, panic or fatal)"};
}

std::string_view LogLevelName(LogLevel level) { return kLevelNames[static_cast<int>(level)]; }

Result<LogFormat, std::string> ParseLogFormat(std::string_view name) {
  if (name == "json") return LogFormat::kJson;
  if (name == "text") return LogFormat::kText;
  return Unexpected{"unknown log format \"" + std::string(name) + "\" (use json or text)"};
}

void AppendJsonEscaped(std::string& out, std::string_view text) {
  while (!text.empty()) {
    const char c = text.front();
    const size_t length = Utf8SequenceLength(text);
    if (length == 0) {
      char buffer[8];
      std::snprintf(buffer, sizeof(buffer), "\\u%04x", static_cast<unsigned char>(c));
      out += buffer;
      text.remove_prefix(1);
      continue;
    }
    if (length == 1) {
      switch (c) {
        case '"':
          out += "\\\"";
          break;
        case '\\':
          out += "\\\\";
          break;
        case '\n':
          out += "\\n";
          break;
        case '\r':
          out += "\\r";
          break;
        case '\t':
          out += "\\t";
          break;
        default:
          if (static_cast<unsigned char>(c) < 0x20) {
            char buffer[8];
            std::snprintf(buffer, sizeof(buffer), "\\u%04x", static_cast<unsigned char>(c));
            out += buffer;
          } else {
            out += c;
          }
      }
    } else {
      out.append(text.substr(0, length));
    }
    text.remove_prefix(length);
  }
}

void StderrLogSink::WriteLine(std::string_view line) {
  std::string buffer(line);
  buffer += '\n';
  // One write(2) per line keeps lines whole even when other processes share the descriptor.
  const char* data = buffer.data();
  size_t left = buffer.size();
  while (left > 0) {
    const ssize_t written = ::write(STDERR_FILENO, data, left);
    if (written <= 0) return;
    data += written;
    left -= static_cast<size_t>(written);
  }
}

void MemoryLogSink::WriteLine(std::string_view line) {
  std::lock_guard lock(mutex_);
  lines_.emplace_back(line);
}

std::vector<std::string> MemoryLogSink::Lines() const {
  std::lock_guard lock(mutex_);
  return lines_;
}

namespace {

std::string ErrnoText(int error) { return std::generic_category().message(error); }

// Writes all of `data`; false (with errno set) if the descriptor refuses.
bool WriteAll(int fd, std::string_view data) {
  while (!data.empty()) {
    const ssize_t written = ::write(fd, data.data(), data.size());
    if (written < 0 && errno == EINTR) continue;
    if (written <= 0) return false;
    data.remove_prefix(static_cast<size_t>(written));
  }
  return true;
}

}  // namespace

Result<std::shared_ptr<RotatingFileLogSink>, std::string> RotatingFileLogSink::Open(
    std::string path, uint64_t max_bytes, int max_files) {
  if (max_files < 0) {
    return Unexpected{"log file \"" + path + "\": the number of old files to keep is negative"};
  }
  const int fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) return Unexpected{"cannot open log file \"" + path + "\": " + ErrnoText(errno)};
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const int error = errno;
    ::close(fd);
    return Unexpected{"cannot open log file \"" + path + "\": " + ErrnoText(error)};
  }
  return std::shared_ptr<RotatingFileLogSink>(new RotatingFileLogSink(
      std::move(path), max_bytes, max_files, fd, static_cast<uint64_t>(st.st_size)));
}

RotatingFileLogSink::RotatingFileLogSink(std::string path, uint64_t max_bytes, int max_files,
                                         int fd, uint64_t size)
    : path_(std::move(path)), max_bytes_(max_bytes), max_files_(max_files), fd_(fd), size_(size) {}

RotatingFileLogSink::~RotatingFileLogSink() {
  if (fd_ >= 0) ::close(fd_);
}

void RotatingFileLogSink::WriteLine(std::string_view line) {
  std::string buffer;
  buffer.reserve(line.size() + 1);
  buffer += line;
  buffer += '\n';
  std::lock_guard lock(mutex_);
  if (fd_ < 0 && !Reopen().ok()) return WriteToStderr(buffer);
  if (max_bytes_ > 0 && size_ > 0 && size_ + buffer.size() > max_bytes_) {
    Rotate();
    if (fd_ < 0) return WriteToStderr(buffer);
  }
  if (!WriteAll(fd_, buffer)) {
    const std::string reason = ErrnoText(errno);
    if (!warned_) {
      warned_ = true;
      WriteToStderr("zk2etcd: cannot write log file \"" + path_ + "\": " + reason +
                    "; this line follows on stderr\n");
    }
    return WriteToStderr(buffer);
  }
  size_ += buffer.size();
}

void RotatingFileLogSink::Rotate() {
  ::close(fd_);
  fd_ = -1;
  if (max_files_ == 0) {
    ::unlink(path_.c_str());
  } else {
    // path.<max_files> is overwritten by the first rename, which drops the oldest.
    for (int i = max_files_ - 1; i >= 1; --i) {
      const std::string from = path_ + "." + std::to_string(i);
      const std::string to = path_ + "." + std::to_string(i + 1);
      ::rename(from.c_str(), to.c_str());  // ENOENT while there are fewer old files is fine
    }
    ::rename(path_.c_str(), (path_ + ".1").c_str());
  }
  if (auto reopened = Reopen(); !reopened.ok() && !warned_) {
    warned_ = true;
    WriteToStderr("zk2etcd: " + reopened.error() + "; logging to stderr until it can be opened\n");
  }
}

Result<void, std::string> RotatingFileLogSink::Reopen() {
  const int fd = ::open(path_.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) return Unexpected{"cannot open log file \"" + path_ + "\": " + ErrnoText(errno)};
  struct stat st {};
  size_ = ::fstat(fd, &st) == 0 ? static_cast<uint64_t>(st.st_size) : 0;
  fd_ = fd;
  warned_ = false;
  return {};
}

void RotatingFileLogSink::WriteToStderr(std::string_view data) { WriteAll(STDERR_FILENO, data); }

void TeeLogSink::WriteLine(std::string_view line) {
  for (const auto& sink : sinks_) sink->WriteLine(line);
}

Logger::Logger(std::shared_ptr<LogSink> sink, LogFormat format, LogLevel level, const Clock& clock)
    : sink_(std::move(sink)), format_(format), level_(level), clock_(clock) {}

std::string Logger::Format(LogLevel level, std::string_view message,
                           std::initializer_list<LogField> fields) const {
  std::string line;
  line.reserve(128);
  const std::string timestamp = FormatTimestamp(clock_.WallNow());
  if (format_ == LogFormat::kJson) {
    line += "{\"level\":\"";
    line += LogLevelName(level);
    line += "\",\"ts\":\"";
    line += timestamp;
    line += "\",\"msg\":\"";
    AppendJsonEscaped(line, message);
    line += '"';
    for (const LogField& field : fields) {
      line += ",\"";
      AppendJsonEscaped(line, field.key);
      line += "\":";
      AppendValue(line, field.value, format_);
    }
    line += '}';
  } else {
    line += timestamp;
    line += ' ';
    std::string_view name = LogLevelName(level);
    for (char c : name) line += static_cast<char>(c - 'a' + 'A');
    line += ' ';
    AppendJsonEscaped(line, message);
    for (const LogField& field : fields) {
      line += ' ';
      line += field.key;
      line += '=';
      AppendValue(line, field.value, format_);
    }
  }
  return line;
}

void Logger::Log(LogLevel level, std::string_view message, std::initializer_list<LogField> fields) {
  if (!Enabled(level)) return;
  const std::string line = Format(level, message, fields);
  std::lock_guard lock(write_mutex_);
  sink_->WriteLine(line);
}

}  // namespace zk2etcd::ops
