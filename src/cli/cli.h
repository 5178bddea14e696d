// The zk2etcd command line: subcommands, their flags, and the exit-status contract.
//
// Exit status: 0 success; 2 for a usage error (unknown subcommand or flag, invalid value), always
// with one line on stderr saying what is wrong; other non-zero values are a subcommand's own
// (e.g. `diff` returns 1 when differences remain). Run is re-entrant: it touches no globals, so
// tests call it directly.
#pragma once

#include <ostream>
#include <string>
#include <vector>

#include "cli/flags.h"

namespace zk2etcd::cli {

inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;
inline constexpr int kExitUsage = 2;

// Runs the command line `args` (args[0] is the program name).
int Run(const std::vector<std::string>& args, const EnvLookup& env, std::ostream& out,
        std::ostream& err);

// Entry point for main(): the process's arguments, environment and standard streams.
int Main(int argc, char** argv);

}  // namespace zk2etcd::cli
