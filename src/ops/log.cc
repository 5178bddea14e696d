#include "ops/log.h"

#include <cinttypes>
#include <cstdio>
#include <ctime>
#include <unistd.h>

namespace zk2etcd::ops {

namespace {

constexpr std::string_view kLevelNames[] = {"debug", "info", "warn", "error", "panic", "fatal"};

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
        case '"': out += "\\\""; break;
        case '\\': out += "\\\\"; break;
        case '\n': out += "\\n"; break;
        case '\r': out += "\\r"; break;
        case '\t': out += "\\t"; break;
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

Logger::Logger(std::shared_ptr<LogSink> sink, LogFormat format, LogLevel level,
               const Clock& clock)
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

void Logger::Log(LogLevel level, std::string_view message,
                 std::initializer_list<LogField> fields) {
  if (!Enabled(level)) return;
  const std::string line = Format(level, message, fields);
  std::lock_guard lock(write_mutex_);
  sink_->WriteLine(line);
}

}  // namespace zk2etcd::ops
