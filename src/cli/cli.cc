#include "cli/cli.h"

#include <cstdlib>
#include <functional>
#include <iostream>

#include "cli/subcommand.h"
#include "cli/version.h"

namespace zk2etcd::cli {

namespace {

std::vector<Subcommand> Subcommands() {
  std::vector<Subcommand> commands;
  commands.push_back(SyncCommand());
  commands.push_back(DiffCommand());
  ShareConfigFile(commands[0], commands[1]);
  commands.push_back(GenzkCommand());
  commands.push_back(Etcd2EtcdCommand());
  commands.push_back(Zk2ZkCommand());
  commands.push_back(
      {"version", "print the version, git commit, build date and library versions", [](FlagSet&) {
         return [](std::ostream& out, std::ostream&) {
           out << FormatVersion(GetBuildInfo());
           return kExitOk;
         };
       }});
  return commands;
}

std::string CommandList(const std::vector<Subcommand>& commands) {
  std::string out;
  for (const Subcommand& command : commands) {
    out += "  " + command.name + std::string(10 - std::min<size_t>(command.name.size(), 9), ' ') +
           command.summary + "\n";
  }
  return out;
}

std::string GroupUsage(const Subcommand& group) {
  return group.description + "\n\nUsage:\n  zk2etcd " + group.name +
         " <command> [flags]\n\nCommands:\n" + CommandList(group.subcommands) + "\nUse \"zk2etcd " +
         group.name + " <command> --help\" for a command's flags.\n";
}

std::string RootUsage(const std::vector<Subcommand>& commands) {
  std::string out =
      "zk2etcd copies a ZooKeeper subtree into etcd and keeps the two identical.\n\n"
      "Usage:\n  zk2etcd <command> [flags]\n\nCommands:\n";
  out += CommandList(commands);
  out +=
      "  help      help about any command\n\n"
      "Every flag can also be set through an environment variable: --etcd-servers is\n"
      "ZK2ETCD_ETCD_SERVERS. Use \"zk2etcd <command> --help\" for a command's flags.\n";
  return out;
}

}  // namespace

int Run(const std::vector<std::string>& args, const EnvLookup& env, std::ostream& out,
        std::ostream& err) {
  const std::vector<Subcommand> commands = Subcommands();
  if (args.size() < 2) {
    out << RootUsage(commands);
    return kExitOk;
  }
  std::string name = args[1];
  std::vector<std::string> rest(args.begin() + 2, args.end());
  if (name == "-h" || name == "--help") {
    out << RootUsage(commands);
    return kExitOk;
  }
  bool help = false;
  if (name == "help") {
    if (rest.empty()) {
      out << RootUsage(commands);
      return kExitOk;
    }
    name = rest[0];
    rest.erase(rest.begin());  // a group's command may follow: zk2etcd help etcd2etcd sync
    help = true;
  }
  if (name == "--version") name = "version";
  for (const Subcommand& found : commands) {
    if (found.name != name) continue;
    const Subcommand* command = &found;
    const std::vector<Subcommand>* siblings = &commands;
    std::string group_name = "zk2etcd";
    std::string full_name = "zk2etcd " + found.name;
    if (!found.subcommands.empty()) {
      // A group: the next argument names one of its commands.
      if (rest.empty() || rest[0] == "-h" || rest[0] == "--help" || rest[0] == "help") {
        if (rest.size() >= 2 && rest[0] == "help") {
          help = true;
          rest.erase(rest.begin());
        } else {
          out << GroupUsage(found);
          return kExitOk;
        }
      }
      const std::string child = rest[0];
      rest.erase(rest.begin());
      command = nullptr;
      for (const Subcommand& candidate : found.subcommands) {
        if (candidate.name == child) command = &candidate;
      }
      if (command == nullptr) {
        err << full_name << ": unknown command \"" << child << "\" (see '" << full_name
            << " --help')\n";
        return kExitUsage;
      }
      siblings = &found.subcommands;
      group_name = full_name;
      full_name += " " + command->name;
    }
    if (help) rest.clear();
    FlagSet flags(full_name);
    auto run = command->define(flags);
    for (const Subcommand& sibling : *siblings) {
      if (sibling.name != command->shares_config_with || !sibling.define) continue;
      FlagSet sibling_flags(group_name + " " + sibling.name);
      sibling.define(sibling_flags);  // only to learn its flags' names
      flags.ShareConfigWith(sibling_flags);
    }
    if (auto parsed = flags.Parse(rest, env); !parsed.ok()) {
      err << full_name << ": " << parsed.error() << "\n";
      return kExitUsage;
    }
    if (help || flags.help_requested()) {
      out << command->summary << "\n\nUsage:\n  " << full_name << " [flags]\n\n"
          << flags.FlagUsage();
      return kExitOk;
    }
    return run(out, err);
  }
  if (name.starts_with("-")) {
    err << "zk2etcd: unknown flag " << name << " before the command (see 'zk2etcd --help')\n";
  } else {
    err << "zk2etcd: unknown command \"" << name << "\" (see 'zk2etcd --help')\n";
  }
  return kExitUsage;
}

int Main(int argc, char** argv) {
  std::vector<std::string> args(argv, argv + argc);
  const EnvLookup env = [](const std::string& variable) -> std::optional<std::string> {
    const char* value = std::getenv(variable.c_str());
    if (value == nullptr) return std::nullopt;
    return std::string(value);
  };
  const int status = Run(args, env, std::cout, std::cerr);
  std::cout.flush();
  return status;
}

}  // namespace zk2etcd::cli
