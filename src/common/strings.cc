#include "common/strings.h"

#include <cstdint>
#include <limits>

namespace zk2etcd {

std::string_view TrimWhitespace(std::string_view text) {
  const auto is_space = [](char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
  };
  while (!text.empty() && is_space(text.front())) text.remove_prefix(1);
  while (!text.empty() && is_space(text.back())) text.remove_suffix(1);
  return text;
}

std::vector<std::string> SplitCommaList(std::string_view text) {
  std::vector<std::string> items;
  while (true) {
    const size_t comma = text.find(',');
    const std::string_view item = TrimWhitespace(text.substr(0, comma));
    if (!item.empty()) items.emplace_back(item);
    if (comma == std::string_view::npos) break;
    text.remove_prefix(comma + 1);
  }
  return items;
}

std::string JoinCommaList(const std::vector<std::string>& items) {
  std::string joined;
  for (const std::string& item : items) {
    if (!joined.empty()) joined += ',';
    joined += item;
  }
  return joined;
}

namespace {

struct Unit {
  std::string_view name;
  int64_t nanoseconds;
};
// Longest names first so that "ms" is not read as "m" followed by garbage.
constexpr Unit kUnits[] = {
    {"ns", 1},       {"us", 1000},      {"\xC2\xB5s", 1000},      {"\xCE\xBCs", 1000},
    {"ms", 1000000}, {"s", 1000000000}, {"m", 60LL * 1000000000}, {"h", 3600LL * 1000000000},
};

}  // namespace

Result<std::chrono::nanoseconds, std::string> ParseGoDuration(std::string_view text) {
  const std::string original(text);
  auto invalid = [&original](std::string_view why) {
    return Unexpected{"invalid duration \"" + original + "\": " + std::string(why) +
                      " (examples: 30s, 5m, 1h30m, 500ms, 0)"};
  };
  bool negative = false;
  if (!text.empty() && (text.front() == '-' || text.front() == '+')) {
    negative = text.front() == '-';
    text.remove_prefix(1);
  }
  if (text == "0") return std::chrono::nanoseconds(0);
  if (text.empty()) return invalid("empty");

  long double total = 0;
  while (!text.empty()) {
    // Number: digits, optionally a fraction.
    size_t i = 0;
    long double number = 0;
    bool digits = false;
    while (i < text.size() && text[i] >= '0' && text[i] <= '9') {
      number = number * 10 + (text[i] - '0');
      digits = true;
      ++i;
    }
    if (i < text.size() && text[i] == '.') {
      ++i;
      long double scale = 0.1L;
      while (i < text.size() && text[i] >= '0' && text[i] <= '9') {
        number += (text[i] - '0') * scale;
        scale /= 10;
        digits = true;
        ++i;
      }
    }
    if (!digits) return invalid("expected a number");
    text.remove_prefix(i);
    const Unit* unit = nullptr;
    for (const Unit& candidate : kUnits) {
      if (text.starts_with(candidate.name) &&
          (unit == nullptr || candidate.name.size() > unit->name.size())) {
        unit = &candidate;
      }
    }
    if (unit == nullptr) return invalid(text.empty() ? "missing unit" : "unknown unit");
    text.remove_prefix(unit->name.size());
    total += number * unit->nanoseconds;
    if (total > static_cast<long double>(std::numeric_limits<int64_t>::max())) {
      return invalid("overflow");
    }
  }
  const auto nanos = static_cast<int64_t>(total);
  return std::chrono::nanoseconds(negative ? -nanos : nanos);
}

std::string FormatGoDuration(std::chrono::nanoseconds duration) {
  int64_t nanos = duration.count();
  if (nanos == 0) return "0s";
  std::string sign;
  uint64_t magnitude;
  if (nanos < 0) {
    sign = "-";
    magnitude = static_cast<uint64_t>(-(nanos + 1)) + 1;
  } else {
    magnitude = static_cast<uint64_t>(nanos);
  }
  auto fraction = [](uint64_t value, uint64_t unit) {
    std::string text = std::to_string(value / unit);
    uint64_t rest = value % unit;
    if (rest != 0) {
      std::string digits = std::to_string(rest + unit).substr(1);  // zero-padded
      while (!digits.empty() && digits.back() == '0') digits.pop_back();
      text += "." + digits;
    }
    return text;
  };
  if (magnitude < 1000) return sign + std::to_string(magnitude) + "ns";
  if (magnitude < 1000000) return sign + fraction(magnitude, 1000) + "\xC2\xB5s";
  if (magnitude < 1000000000) return sign + fraction(magnitude, 1000000) + "ms";
  const uint64_t second = 1000000000;
  const uint64_t hours = magnitude / (3600 * second);
  magnitude %= 3600 * second;
  const uint64_t minutes = magnitude / (60 * second);
  magnitude %= 60 * second;
  std::string text = sign;
  if (hours > 0) text += std::to_string(hours) + "h";
  if (hours > 0 || minutes > 0) text += std::to_string(minutes) + "m";
  return text + fraction(magnitude, second) + "s";
}

std::string UrlEncode(std::string_view text) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(text.size() * 3 / 2);
  for (const char c : text) {
    const auto byte = static_cast<unsigned char>(c);
    const bool unreserved = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
                            (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.' || c == '~';
    if (unreserved) {
      out += c;
    } else {
      out += '%';
      out += kHex[byte >> 4];
      out += kHex[byte & 15];
    }
  }
  return out;
}

std::string Quoted(std::string_view text) {
  std::string quoted;
  quoted.reserve(text.size() + 2);
  quoted += '"';
  quoted += text;
  quoted += '"';
  return quoted;
}

}  // namespace zk2etcd
