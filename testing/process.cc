#include "testing/process.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <future>
#include <mutex>
#include <queue>
#include <sstream>
#include <thread>

namespace zk2etcd::testing {

namespace {

// Forks every child from one thread that lives as long as the process, because
// PR_SET_PDEATHSIG fires when the *thread* that forked exits, and tests may start servers from
// short-lived threads.
class Spawner {
 public:
  static Spawner& Instance() {
    static Spawner* spawner = new Spawner();  // never destroyed: its thread runs until exit
    return *spawner;
  }

  pid_t Spawn(const std::vector<std::string>& argv, int output_fd, int* error_number) {
    std::packaged_task<std::pair<pid_t, int>()> task(
        [&] { return ForkExec(argv, output_fd); });
    auto future = task.get_future();
    {
      std::lock_guard lock(mutex_);
      tasks_.push(std::move(task));
    }
    wake_.notify_one();
    const auto [pid, error] = future.get();
    *error_number = error;
    return pid;
  }

 private:
  Spawner() {
    std::thread([this] { Loop(); }).detach();
  }

  void Loop() {
    while (true) {
      std::packaged_task<std::pair<pid_t, int>()> task;
      {
        std::unique_lock lock(mutex_);
        wake_.wait(lock, [this] { return !tasks_.empty(); });
        task = std::move(tasks_.front());
        tasks_.pop();
      }
      task();
    }
  }

  static std::pair<pid_t, int> ForkExec(const std::vector<std::string>& argv, int output_fd) {
    std::vector<char*> args;
    for (const std::string& arg : argv) args.push_back(const_cast<char*>(arg.c_str()));
    args.push_back(nullptr);
    // A pipe with CLOEXEC tells the parent whether exec succeeded: it closes on success and
    // carries errno on failure.
    int status_pipe[2];
    if (pipe2(status_pipe, O_CLOEXEC) != 0) return {-1, errno};
    const pid_t parent = getpid();
    const pid_t pid = fork();
    if (pid < 0) {
      const int error = errno;
      close(status_pipe[0]);
      close(status_pipe[1]);
      return {-1, error};
    }
    if (pid == 0) {
      // Child: only async-signal-safe calls from here to exec.
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (getppid() != parent) _exit(127);  // the parent died before prctl
      setpgid(0, 0);  // a terminal's Ctrl-C reaches the test, which then kills its servers
      const int devnull = open("/dev/null", O_RDONLY);
      if (devnull >= 0) dup2(devnull, STDIN_FILENO);
      if (output_fd >= 0) {
        dup2(output_fd, STDOUT_FILENO);
        dup2(output_fd, STDERR_FILENO);
      }
      execvp(args[0], args.data());
      const int error = errno;
      ssize_t ignored = write(status_pipe[1], &error, sizeof(error));
      (void)ignored;
      _exit(127);
    }
    close(status_pipe[1]);
    int exec_error = 0;
    const ssize_t got = read(status_pipe[0], &exec_error, sizeof(exec_error));
    close(status_pipe[0]);
    if (got == sizeof(exec_error)) {
      waitpid(pid, nullptr, 0);
      return {-1, exec_error};
    }
    return {pid, 0};
  }

  std::mutex mutex_;
  std::condition_variable wake_;
  std::queue<std::packaged_task<std::pair<pid_t, int>()>> tasks_;
};

}  // namespace

bool InCi() {
  const char* ci = std::getenv("CI");
  return ci != nullptr && std::string(ci) == "true";
}

bool ProgramExists(const std::string& program) {
  if (program.find('/') != std::string::npos) return access(program.c_str(), X_OK) == 0;
  const char* path = std::getenv("PATH");
  std::stringstream dirs(path != nullptr ? path : "/usr/bin:/bin");
  std::string dir;
  while (std::getline(dirs, dir, ':')) {
    if (!dir.empty() && access((dir + "/" + program).c_str(), X_OK) == 0) return true;
  }
  return false;
}

ChildProcess::~ChildProcess() { Kill9(); }

FixtureResult<void> ChildProcess::Start(std::vector<std::string> argv,
                                        const std::string& log_path) {
  if (!ProgramExists(argv.at(0))) {
    return Unexpected{FixtureError{argv[0] + " is not installed (run scripts/install-deps.sh)",
                                   true}};
  }
  const int fd =
      log_path.empty() ? -1 : open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (!log_path.empty() && fd < 0) {
    return Unexpected{FixtureError{"cannot open " + log_path + ": " + std::strerror(errno)}};
  }
  int error = 0;
  const pid_t pid = Spawner::Instance().Spawn(argv, fd, &error);
  if (fd >= 0) close(fd);
  if (pid < 0) {
    return Unexpected{FixtureError{"cannot start " + argv[0] + ": " + std::strerror(error),
                                   error == ENOENT}};
  }
  pid_ = pid;
  return {};
}

bool ChildProcess::HasExited() {
  int status = 0;
  const pid_t result = waitpid(pid_, &status, WNOHANG);
  if (result == pid_ || (result < 0 && errno == ECHILD)) {
    pid_ = -1;
    return true;
  }
  return false;
}

int ChildProcess::WaitFor(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return status;
    }
    if (std::chrono::steady_clock::now() >= deadline) return -1;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

void ChildProcess::Reap() {
  if (pid_ > 0) {
    waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }
}

void ChildProcess::Kill9() {
  if (pid_ <= 0) return;
  kill(pid_, SIGKILL);
  Reap();
}

void ChildProcess::Terminate(std::chrono::milliseconds grace) {
  if (pid_ <= 0) return;
  kill(pid_, SIGCONT);  // a paused process cannot act on SIGTERM
  kill(pid_, SIGTERM);
  const auto deadline = std::chrono::steady_clock::now() + grace;
  while (std::chrono::steady_clock::now() < deadline) {
    if (HasExited()) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  Kill9();
}

namespace {

// Whether every thread of `pid` is stopped (`stopped`) or none is, from /proc/PID/task/*/stat:
// the third field is the state, 'T' for a thread stopped by a signal. A signal to a process
// stops its threads one by one, so kill() returning says nothing about the state reached.
bool AllThreadsInState(pid_t pid, bool stopped) {
  const std::string tasks = "/proc/" + std::to_string(pid) + "/task";
  std::error_code error;
  for (const auto& task : std::filesystem::directory_iterator(tasks, error)) {
    std::ifstream stat(task.path() / "stat");
    std::string line;
    if (!std::getline(stat, line)) continue;  // the thread has just exited
    const size_t name_end = line.rfind(')');  // the name may hold spaces and parentheses
    if (name_end == std::string::npos || name_end + 2 >= line.size()) continue;
    const char state = line[name_end + 2];
    if ((state == 'T') != stopped) return false;
  }
  return !error;
}

void WaitForThreadsState(pid_t pid, bool stopped) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!AllThreadsInState(pid, stopped) && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

}  // namespace

void ChildProcess::Pause() {
  if (pid_ <= 0) return;
  kill(pid_, SIGSTOP);
  WaitForThreadsState(pid_, /*stopped=*/true);
}

void ChildProcess::Resume() {
  if (pid_ <= 0) return;
  kill(pid_, SIGCONT);
  WaitForThreadsState(pid_, /*stopped=*/false);
}

FixtureResult<std::string> RunCommand(const std::vector<std::string>& argv,
                                      std::chrono::milliseconds timeout) {
  char path[] = "/tmp/zk2etcd-cmd-XXXXXX";
  const int fd = mkstemp(path);
  if (fd < 0) return Unexpected{FixtureError{std::string("mkstemp: ") + std::strerror(errno)}};
  close(fd);
  std::string output;
  ChildProcess child;
  if (auto started = child.Start(argv, path); !started.ok()) {
    unlink(path);
    return Unexpected{started.error()};
  }
  const int status = child.WaitFor(timeout);
  {
    std::ifstream in(path);
    std::stringstream buffer;
    buffer << in.rdbuf();
    output = buffer.str();
  }
  unlink(path);
  std::string command;
  for (const std::string& arg : argv) command += (command.empty() ? "" : " ") + arg;
  if (status == -1) {
    child.Kill9();
    return Unexpected{FixtureError{"timed out after " + std::to_string(timeout.count()) +
                                   " ms: " + command + "\n" + output}};
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    return Unexpected{FixtureError{"failed (status " + std::to_string(status) + "): " + command +
                                   "\n" + output}};
  }
  return output;
}

std::string TailOfFile(const std::string& path, size_t max_bytes) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return "(no log at " + path + ")";
  in.seekg(0, std::ios::end);
  const auto size = static_cast<size_t>(in.tellg());
  const size_t start = size > max_bytes ? size - max_bytes : 0;
  in.seekg(static_cast<std::streamoff>(start));
  std::string text(size - start, '\0');
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  return text;
}

}  // namespace zk2etcd::testing
