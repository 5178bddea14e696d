// A subcommand of zk2etcd: its name, a one-line summary, and a function that declares its flags
// into a FlagSet and returns the function that runs it once the flags are parsed.
#pragma once

#include <functional>
#include <ostream>
#include <string>

#include "cli/flags.h"

namespace zk2etcd::cli {

using CommandRunner = std::function<int(std::ostream& out, std::ostream& err)>;

struct Subcommand {
  std::string name;
  std::string summary;
  std::function<CommandRunner(FlagSet&)> define;
};

Subcommand SyncCommand();
Subcommand DiffCommand();
Subcommand GenzkCommand();

}  // namespace zk2etcd::cli
