#include "pipeline/child_process.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

extern char** environ;

namespace fanflow {

Result<ChildProcess> SpawnShell(const std::string& command,
                                const std::vector<std::string>& extra_env) {
  signal(SIGPIPE, SIG_IGN);
  int in[2], out[2], err[2];
  if (pipe2(in, O_CLOEXEC)) return Internal("cannot create pipes: " + std::string(strerror(errno)));
  if (pipe2(out, O_CLOEXEC)) {
    close(in[0]);
    close(in[1]);
    return Internal("cannot create pipes: " + std::string(strerror(errno)));
  }
  if (pipe2(err, O_CLOEXEC)) {
    for (int fd : {in[0], in[1], out[0], out[1]}) close(fd);
    return Internal("cannot create pipes: " + std::string(strerror(errno)));
  }
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, in[0], 0);
  posix_spawn_file_actions_adddup2(&fa, out[1], 1);
  posix_spawn_file_actions_adddup2(&fa, err[1], 2);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP);
  posix_spawnattr_setpgroup(&attr, 0);

  std::vector<std::string> env_store = extra_env;
  std::vector<char*> envp;
  for (char** e = environ; *e; ++e) envp.push_back(*e);
  for (auto& e : env_store) envp.push_back(e.data());
  envp.push_back(nullptr);
  const char* argv[] = {"/bin/sh", "-c", command.c_str(), nullptr};
  pid_t pid = 0;
  int rc = posix_spawn(&pid, "/bin/sh", &fa, &attr, const_cast<char**>(argv), envp.data());
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  for (int fd : {in[0], out[1], err[1]}) close(fd);
  if (rc != 0) {
    for (int fd : {in[1], out[0], err[0]}) close(fd);
    return Internal("cannot start /bin/sh: " + std::string(strerror(rc)));
  }
  return ChildProcess{pid, in[1], out[0], err[0]};
}

bool ReadSome(int& fd, std::string& out, size_t limit, bool keep_tail) {
  char buf[65536];
  ssize_t n = read(fd, buf, sizeof buf);
  if (n > 0) {
    if (keep_tail) {
      out.append(buf, static_cast<size_t>(n));
      if (out.size() > limit) out.erase(0, out.size() - limit);
    } else {
      const size_t room = limit - std::min(out.size(), limit);
      out.append(buf, std::min(static_cast<size_t>(n), room));
    }
    return true;
  }
  if (n < 0 && (errno == EINTR || errno == EAGAIN)) return true;
  close(fd);
  fd = -1;
  return false;
}

std::string DescribeExit(int wstatus) {
  if (WIFEXITED(wstatus)) return "exited with " + std::to_string(WEXITSTATUS(wstatus));
  if (WIFSIGNALED(wstatus)) return "killed by signal " + std::to_string(WTERMSIG(wstatus));
  return "stopped";
}

std::string StderrTail(std::string text, size_t max) {
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.pop_back();
  if (text.size() > max) text = "..." + text.substr(text.size() - max);
  return text;
}

}  // namespace fanflow
