#include "testing/temp_dir.h"

#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>

namespace zk2etcd::testing {

namespace {

constexpr char kPrefix[] = "zk2etcd-test.";

void RemoveDirectoriesOfDeadProcesses() {
  std::error_code error;
  for (const auto& entry : std::filesystem::directory_iterator("/tmp", error)) {
    const std::string name = entry.path().filename().string();
    if (!name.starts_with(kPrefix)) continue;
    const pid_t pid = static_cast<pid_t>(std::atol(name.c_str() + sizeof(kPrefix) - 1));
    if (pid <= 0 || kill(pid, 0) == 0 || errno != ESRCH) continue;
    std::filesystem::remove_all(entry.path(), error);
  }
}

}  // namespace

FixtureResult<TempDir> TempDir::Create(const std::string& label) {
  static std::once_flag swept;
  std::call_once(swept, RemoveDirectoriesOfDeadProcesses);
  std::string pattern =
      "/tmp/" + std::string(kPrefix) + std::to_string(getpid()) + "." + label + ".XXXXXX";
  if (mkdtemp(pattern.data()) == nullptr) {
    return Unexpected{FixtureError{"mkdtemp " + pattern + ": " + std::strerror(errno)}};
  }
  return TempDir(pattern);
}

TempDir::~TempDir() {
  if (path_.empty()) return;
  std::error_code error;
  std::filesystem::remove_all(path_, error);
}

FixtureResult<void> WriteFile(const std::string& path, const std::string& contents) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << contents;
  out.close();
  if (!out) return Unexpected{FixtureError{"cannot write " + path}};
  return {};
}

}  // namespace zk2etcd::testing
