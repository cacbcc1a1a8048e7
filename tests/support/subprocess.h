// Runs programs from tests: the `fanflow` binary as a user would, or brokers'
// command-line clients. Every wait is bounded.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <string>
#include <vector>

namespace fanflow::testing {

struct ProcessResult {
  int exit_code = -1;  // -1: killed by a signal or timed out
  bool timed_out = false;
  std::string out;
  std::string err;
};

// Runs argv to completion (killed after `limit`), feeding `input` on stdin.
ProcessResult RunProcess(const std::vector<std::string>& argv, std::chrono::seconds limit,
                         const std::string& input = "");

// A program running in the background, its stdout/stderr sent to files.
// The destructor kills it (SIGKILL) if it still runs.
class BackgroundProcess {
 public:
  BackgroundProcess(const std::vector<std::string>& argv, const std::string& log_path);
  ~BackgroundProcess();
  BackgroundProcess(const BackgroundProcess&) = delete;
  BackgroundProcess& operator=(const BackgroundProcess&) = delete;

  pid_t pid() const { return pid_; }
  void Signal(int sig);
  // Waits for it to exit; returns its exit code, or -1 if it did not in time.
  int Wait(std::chrono::seconds limit);
  std::string Log() const;
  // Polls the log until it contains `text`; false if it did not within `limit`.
  bool WaitForLog(const std::string& text, std::chrono::milliseconds limit) const;

 private:
  pid_t pid_ = -1;
  std::string log_path_;
};

// Sends `sig` to `p` and waits (up to `limit`) for it to exit.
struct Stopped {
  int exit_code = -1;  // -1: it did not exit in time (then it was SIGKILLed)
  std::chrono::milliseconds took{0};
};
Stopped SignalAndWait(BackgroundProcess& p, int sig, std::chrono::seconds limit = std::chrono::seconds(10));

// The fanflow binary built next to the tests.
std::string FanflowBinary();

// A fresh directory under the system temp dir for one test.
std::string TempDir(const std::string& stem);

}  // namespace fanflow::testing
