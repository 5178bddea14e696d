// FlagSet: command-line flags in the Go pflag style that the Go zk2etcd's users already type
// (--name=value, --name value, boolean --name or --name=false, -h/--help), each also settable
// through an environment variable ZK2ETCD_<NAME> (upper case, '-' becomes '_'), the Kubernetes
// habit. Precedence: command line, then environment, then the default.
//
// A FlagSet writes parsed values into variables owned by the caller. Not thread-safe; used once,
// at start-up.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"

namespace zk2etcd::cli {

// Looks up an environment variable; returns nullopt when unset.
using EnvLookup = std::function<std::optional<std::string>(const std::string& name)>;

class FlagSet {
 public:
  // `command` is what the user typed before the flags, e.g. "zk2etcd sync"; used in messages.
  explicit FlagSet(std::string command);

  void AddString(std::string name, std::string* target, std::string default_value,
                 std::string help);
  // A secret's value is never printed: help shows no default and errors do not echo it.
  void AddSecret(std::string name, std::string* target, std::string help);
  void AddBool(std::string name, bool* target, bool default_value, std::string help);
  void AddUint(std::string name, uint64_t* target, uint64_t default_value, std::string help);
  void AddDuration(std::string name, std::chrono::nanoseconds* target,
                   std::chrono::nanoseconds default_value, std::string help);
  // A decimal number ("2.5", "-1", "1e3"); the range is for the caller to check.
  void AddFloat(std::string name, double* target, double default_value, std::string help);

  // Parses `args` (everything after the command). Positional arguments are refused. On error the
  // message is one line naming the flag or variable and the bad value. Sets help_requested()
  // instead of failing when -h or --help is present. A flag that needs a value and is followed by
  // another of this set's flags ("--prefix --http-addr=:0") is an error, not that flag as value.
  Result<void, std::string> Parse(const std::vector<std::string>& args, const EnvLookup& env);

  // Fills the flags that neither the command line nor the environment set from a configuration
  // file's values (flag name -> value). A name that is a flag of the sibling command (see
  // ShareConfigWith) is skipped; any other unknown name is an error naming `source`.
  Result<void, std::string> ApplyConfigValues(
      const std::vector<std::pair<std::string, std::string>>& values, const std::string& source);

  // One --config file serves both commands of a job (`sync` and `diff`): a setting that only
  // `sibling` has (e.g. fullsync-interval when running diff) is ignored here rather than refused.
  void ShareConfigWith(const FlagSet& sibling);

  bool help_requested() const { return help_requested_; }
  // True when the flag was given on the command line or through the environment.
  bool WasSet(std::string_view name) const;

  // Lines "name=value" for every flag, as the program uses it (for /debug/config): unquoted,
  // false for an unset switch, the derived value (SetDerived) for one left empty, secrets shown
  // as <redacted> when set.
  std::vector<std::string> Dump() const;
  // The value the program derived for flag `name` when it was left empty (e.g. the hostname as
  // --leader-elect-identity), for Dump.
  void SetDerived(std::string_view name, std::string value);

  // "Flags:" section for --help: one line per flag with type, help, default and variable.
  std::string FlagUsage() const;
  const std::string& command() const { return command_; }

  static std::string EnvVarName(std::string_view flag_name);

 private:
  enum class Kind { kString, kSecret, kBool, kUint, kDuration, kFloat };
  struct Flag {
    std::string name;
    Kind kind;
    std::string help;
    std::string default_text;
    std::function<Result<void, std::string>(std::string_view)> set;
    bool was_set = false;  // by the command line or the environment
    std::string current;   // the value as text, for Dump
    std::string derived;   // SetDerived
  };

  static Flag MakeFlag(std::string name, Kind kind, std::string help, std::string default_text,
                       std::function<Result<void, std::string>(std::string_view)> set);
  Flag* Find(std::string_view name);
  // True when `arg` asks for help (as Parse reads it) or is "--NAME" / "--NAME=..." for one of
  // this set's flags.
  bool NamesAFlag(std::string_view arg) const;
  void Add(Flag flag, std::function<void()> apply_default);

  std::string command_;
  std::vector<Flag> flags_;
  bool help_requested_ = false;
  std::string sibling_command_;                // empty: no sibling shares the config file
  std::vector<std::string> sibling_settings_;  // the sibling's flag names
};

}  // namespace zk2etcd::cli
