#include "cli/flags.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <sstream>

#include "common/strings.h"

namespace zk2etcd::cli {

FlagSet::FlagSet(std::string command) : command_(std::move(command)) {}

std::string FlagSet::EnvVarName(std::string_view flag_name) {
  std::string name = "ZK2ETCD_";
  for (char c : flag_name) {
    name += c == '-' ? '_' : static_cast<char>(c >= 'a' && c <= 'z' ? c - 'a' + 'A' : c);
  }
  return name;
}

void FlagSet::Add(Flag flag, std::function<void()> apply_default) {
  apply_default();
  flags_.push_back(std::move(flag));
}

FlagSet::Flag FlagSet::MakeFlag(std::string name, Kind kind, std::string help,
                                std::string default_text,
                                std::function<Result<void, std::string>(std::string_view)> set) {
  Flag flag;
  flag.name = std::move(name);
  flag.kind = kind;
  flag.help = std::move(help);
  flag.default_text = std::move(default_text);
  flag.set = std::move(set);
  return flag;
}

void FlagSet::AddString(std::string name, std::string* target, std::string default_value,
                        std::string help) {
  std::string shown = default_value.empty() ? "" : "\"" + default_value + "\"";
  Add(MakeFlag(std::move(name), Kind::kString, std::move(help), std::move(shown),
       [target](std::string_view v) -> Result<void, std::string> {
         *target = std::string(v);
         return {};
       }),
      [target, default_value] { *target = default_value; });
}

void FlagSet::AddSecret(std::string name, std::string* target, std::string help) {
  Add(MakeFlag(std::move(name), Kind::kSecret, std::move(help), "",
       [target](std::string_view v) -> Result<void, std::string> {
         *target = std::string(v);
         return {};
       }),
      [target] { target->clear(); });
}

void FlagSet::AddBool(std::string name, bool* target, bool default_value, std::string help) {
  Add(MakeFlag(std::move(name), Kind::kBool, std::move(help), default_value ? "true" : "",
       [target](std::string_view v) -> Result<void, std::string> {
         if (v == "true" || v == "1" || v == "t" || v == "TRUE" || v == "True") {
           *target = true;
         } else if (v == "false" || v == "0" || v == "f" || v == "FALSE" || v == "False") {
           *target = false;
         } else {
           return Unexpected{std::string("expected true or false")};
         }
         return {};
       }),
      [target, default_value] { *target = default_value; });
}

void FlagSet::AddUint(std::string name, uint64_t* target, uint64_t default_value,
                      std::string help) {
  Add(MakeFlag(std::move(name), Kind::kUint, std::move(help), std::to_string(default_value),
       [target](std::string_view v) -> Result<void, std::string> {
         uint64_t parsed = 0;
         const auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), parsed);
         if (v.empty() || ec != std::errc() || end != v.data() + v.size()) {
           return Unexpected{std::string("expected a non-negative whole number")};
         }
         *target = parsed;
         return {};
       }),
      [target, default_value] { *target = default_value; });
}

void FlagSet::AddDuration(std::string name, std::chrono::nanoseconds* target,
                          std::chrono::nanoseconds default_value, std::string help) {
  Add(MakeFlag(std::move(name), Kind::kDuration, std::move(help), FormatGoDuration(default_value),
       [target](std::string_view v) -> Result<void, std::string> {
         auto parsed = ParseGoDuration(v);
         if (!parsed.ok()) return Unexpected{parsed.error()};
         *target = *parsed;
         return {};
       }),
      [target, default_value] { *target = default_value; });
}

void FlagSet::AddFloat(std::string name, double* target, double default_value, std::string help) {
  std::ostringstream shown;
  shown << default_value;
  Add(MakeFlag(std::move(name), Kind::kFloat, std::move(help), shown.str(),
               [target](std::string_view v) -> Result<void, std::string> {
                 const std::string text(v);
                 char* end = nullptr;
                 errno = 0;
                 const double parsed = std::strtod(text.c_str(), &end);
                 if (text.empty() || end != text.c_str() + text.size() || errno == ERANGE ||
                     !std::isfinite(parsed) || std::isspace(static_cast<unsigned char>(text[0]))) {
                   return Unexpected{std::string("expected a number")};
                 }
                 *target = parsed;
                 return {};
               }),
      [target, default_value] { *target = default_value; });
}

void FlagSet::ShareConfigWith(const FlagSet& sibling) {
  sibling_command_ = sibling.command_;
  sibling_settings_.clear();
  for (const Flag& flag : sibling.flags_) sibling_settings_.push_back(flag.name);
}

FlagSet::Flag* FlagSet::Find(std::string_view name) {
  for (Flag& flag : flags_) {
    if (flag.name == name) return &flag;
  }
  return nullptr;
}

bool FlagSet::NamesAFlag(std::string_view arg) const {
  if (arg == "-h" || arg == "-help" || arg == "--help") return true;
  if (!arg.starts_with("--")) return false;
  const size_t equals = arg.find('=');
  const std::string_view name =
      arg.substr(2, equals == std::string_view::npos ? std::string_view::npos : equals - 2);
  for (const Flag& flag : flags_) {
    if (flag.name == name) return true;
  }
  return false;
}

bool FlagSet::WasSet(std::string_view name) const {
  for (const Flag& flag : flags_) {
    if (flag.name == name) return flag.was_set;
  }
  return false;
}

Result<void, std::string> FlagSet::Parse(const std::vector<std::string>& args,
                                         const EnvLookup& env) {
  const std::string see_help = " (see '" + command_ + " --help')";
  auto bad_value = [&](const Flag& flag, std::string_view source, std::string_view value,
                       const std::string& why) {
    std::string shown = flag.kind == Kind::kSecret ? "" : " \"" + std::string(value) + "\"";
    return Unexpected{"invalid value" + shown + " for " + std::string(source) + ": " + why};
  };

  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (arg == "-h" || arg == "--help" || arg == "-help") {
      help_requested_ = true;
      continue;
    }
    if (arg == "--") {
      if (i + 1 < args.size()) {
        return Unexpected{"unexpected argument \"" + args[i + 1] + "\"" + see_help};
      }
      break;
    }
    if (!arg.starts_with("--")) {
      if (arg.starts_with("-") && arg.size() > 1) {
        return Unexpected{"unknown shorthand flag " + arg + see_help};
      }
      return Unexpected{"unexpected argument \"" + arg + "\"" + see_help};
    }
    const size_t equals = arg.find('=');
    const std::string name = arg.substr(2, equals == std::string::npos ? std::string::npos
                                                                        : equals - 2);
    Flag* flag = Find(name);
    if (flag == nullptr) return Unexpected{"unknown flag --" + name + see_help};
    std::string value;
    if (equals != std::string::npos) {
      value = arg.substr(equals + 1);
    } else if (flag->kind == Kind::kBool) {
      value = "true";
    } else if (i + 1 < args.size() && !NamesAFlag(args[i + 1])) {
      value = args[++i];
    } else if (i + 1 < args.size()) {
      // "--prefix --http-addr=:0" forgot the value: taking the next flag as it would hide both.
      // Only the next flag's name is shown: its value may be a secret.
      const std::string next = args[i + 1].substr(0, args[i + 1].find('='));
      return Unexpected{"flag --" + name + " needs a value, and " + next +
                        " that follows it is a flag (write --" + name + "=VALUE)" + see_help};
    } else {
      return Unexpected{"flag --" + name + " needs a value" + see_help};
    }
    if (auto set = flag->set(value); !set.ok()) {
      return bad_value(*flag, "--" + name, value, set.error());
    }
    flag->was_set = true;
    flag->current = value;
  }

  for (Flag& flag : flags_) {
    if (flag.was_set) continue;
    const std::string variable = EnvVarName(flag.name);
    const std::optional<std::string> value = env(variable);
    if (!value) continue;
    if (auto set = flag.set(*value); !set.ok()) {
      return bad_value(flag, variable, *value, set.error());
    }
    flag.was_set = true;
    flag.current = *value;
  }
  return {};
}

Result<void, std::string> FlagSet::ApplyConfigValues(
    const std::vector<std::pair<std::string, std::string>>& values, const std::string& source) {
  for (const auto& [name, value] : values) {
    Flag* flag = Find(name);
    if (flag == nullptr) {
      if (std::find(sibling_settings_.begin(), sibling_settings_.end(), name) !=
          sibling_settings_.end()) {
        continue;  // a setting of the sibling command: the file serves both
      }
      std::string help = "'" + command_ + " --help'";
      if (!sibling_command_.empty()) help += " or '" + sibling_command_ + " --help'";
      return Unexpected{source + ": unknown setting \"" + name +
                        "\" (settings are the flag names of " + help + ", without the dashes)"};
    }
    if (flag->was_set) continue;
    if (auto set = flag->set(value); !set.ok()) {
      const std::string shown = flag->kind == Kind::kSecret ? "" : " \"" + value + "\"";
      return Unexpected{source + ": invalid value" + shown + " for " + name + ": " + set.error()};
    }
    flag->current = value;
  }
  return {};
}

std::vector<std::string> FlagSet::Dump() const {
  std::vector<std::string> lines;
  for (const Flag& flag : flags_) {
    std::string value = flag.current.empty() && !flag.was_set ? flag.default_text : flag.current;
    // The help shows a string's default quoted; here it is the value itself.
    if (flag.kind == Kind::kString && value == flag.default_text && value.size() >= 2 &&
        value.front() == '"' && value.back() == '"') {
      value = value.substr(1, value.size() - 2);
    }
    if (flag.kind == Kind::kBool && value.empty()) value = "false";
    if (value.empty() && !flag.derived.empty()) value = flag.derived;
    if (flag.kind == Kind::kSecret) value = flag.current.empty() ? "" : "<redacted>";
    lines.push_back(flag.name + "=" + value);
  }
  return lines;
}

void FlagSet::SetDerived(std::string_view name, std::string value) {
  if (Flag* flag = Find(name)) flag->derived = std::move(value);
}

std::string FlagSet::FlagUsage() const {
  std::vector<std::pair<std::string, const Flag*>> rows;
  size_t width = 0;
  for (const Flag& flag : flags_) {
    std::string left = "      --" + flag.name;
    switch (flag.kind) {
      case Kind::kString: left += " string"; break;
      case Kind::kSecret: left += " string"; break;
      case Kind::kBool: break;
      case Kind::kUint: left += " uint"; break;
      case Kind::kDuration: left += " duration"; break;
      case Kind::kFloat:
        left += " float";
        break;
    }
    width = std::max(width, left.size());
    rows.emplace_back(std::move(left), &flag);
  }
  std::string out = "Flags:\n";
  for (const auto& [left, flag] : rows) {
    out += left + std::string(width - left.size() + 3, ' ') + flag->help;
    if (!flag->default_text.empty()) out += " (default " + flag->default_text + ")";
    out += " [$" + EnvVarName(flag->name) + "]\n";
  }
  const std::string help = "  -h, --help";
  out += help + std::string(width > help.size() ? width - help.size() + 3 : 3, ' ') + "help for " +
         command_.substr(command_.rfind(' ') + 1) + "\n";
  return out;
}

}  // namespace zk2etcd::cli
