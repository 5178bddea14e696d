// A subcommand of zk2etcd: its name, a one-line summary, and a function that declares its flags
// into a FlagSet and returns the function that runs it once the flags are parsed. A group (e.g.
// `etcd2etcd`) has no flags of its own but subcommands (`zk2etcd etcd2etcd sync ...`).
#pragma once

#include <functional>
#include <memory>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

#include "cli/flags.h"

namespace zk2etcd::cli {

using CommandRunner = std::function<int(std::ostream& out, std::ostream& err)>;

struct Subcommand {
  std::string name;
  std::string summary;
  std::function<CommandRunner(FlagSet&)> define;  // empty for a group
  std::vector<Subcommand> subcommands = {};       // a group's
  std::string description = {};                   // a group's help text, before its commands
  // The command of the same list (top level or group) whose --config file this one also reads:
  // `sync` and `diff` of a job take one file, each ignoring the other's own settings.
  std::string shares_config_with = {};
};

// A subcommand whose flags fill a `Values`: `add_flags(flags, values)` declares them, and
// `run(values, flags, out, err)` runs the command once they are parsed (with the FlagSet, for
// --config and SIGHUP).
template <typename Values>
Subcommand CommandWithFlags(
    std::string name, std::string summary, std::function<void(FlagSet&, Values*)> add_flags,
    std::function<int(const Values&, FlagSet&, std::ostream& out, std::ostream& err)> run) {
  return {
      std::move(name), std::move(summary),
      [add_flags = std::move(add_flags), run = std::move(run)](FlagSet& flags) -> CommandRunner {
        auto values = std::make_shared<Values>();
        add_flags(flags, values.get());
        return [values, set = &flags, run](std::ostream& out, std::ostream& err) {
          return run(*values, *set, out, err);
        };
      }};
}

// Makes `first` and `second` (of the same list) read one --config file.
inline void ShareConfigFile(Subcommand& first, Subcommand& second) {
  first.shares_config_with = second.name;
  second.shares_config_with = first.name;
}

// The group of a job's `sync` and `diff` (`zk2etcd etcd2etcd sync ...`), which read one --config
// file; `description` is the group's help text.
inline Subcommand JobGroup(std::string name, std::string summary, std::string description,
                           Subcommand sync, Subcommand diff) {
  Subcommand group;
  group.name = std::move(name);
  group.summary = std::move(summary);
  group.description = std::move(description);
  group.subcommands = {std::move(sync), std::move(diff)};
  ShareConfigFile(group.subcommands[0], group.subcommands[1]);
  return group;
}

Subcommand SyncCommand();
Subcommand DiffCommand();
Subcommand GenzkCommand();
Subcommand Etcd2EtcdCommand();
Subcommand Zk2ZkCommand();

}  // namespace zk2etcd::cli
