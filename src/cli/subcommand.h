// A subcommand of zk2etcd: its name, a one-line summary, and a function that declares its flags
// into a FlagSet and returns the function that runs it once the flags are parsed. A group (e.g.
// `etcd2etcd`) has no flags of its own but subcommands (`zk2etcd etcd2etcd sync ...`).
#pragma once

#include <functional>
#include <ostream>
#include <string>
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

// Makes `first` and `second` (of the same list) read one --config file.
inline void ShareConfigFile(Subcommand& first, Subcommand& second) {
  first.shares_config_with = second.name;
  second.shares_config_with = first.name;
}

Subcommand SyncCommand();
Subcommand DiffCommand();
Subcommand GenzkCommand();
Subcommand Etcd2EtcdCommand();
Subcommand Zk2ZkCommand();

}  // namespace zk2etcd::cli
