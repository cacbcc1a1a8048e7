// Pieces every `fanflow` command shares: logging, opening the bus, waiting for
// a shutdown signal, and exit codes.
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <stop_token>
#include <string>
#include <thread>

#include "core/bus.h"
#include "core/event.h"

namespace fanflow::cli {

// Exit codes users can script against.
inline constexpr int kExitSucceeded = 0;
inline constexpr int kExitError = 1;      // broker, source, ledger trouble
inline constexpr int kExitUsage = 2;      // bad flag or config
inline constexpr int kExitPartial = 3;    // batch_complete status partial
inline constexpr int kExitFailed = 4;     // batch_complete status failed
inline constexpr int kExitTimedOut = 5;   // timed_out, or --timeout passed
inline constexpr int kExitCancelled = 6;  // batch_complete status cancelled

// Logs to stderr (stdout is for results), at "trace".."off".
void SetUpLogging(const std::string& level);

// Blocks SIGINT/SIGTERM in every thread started after this call, so that
// WaitForShutdownSignal can take them synchronously. Call first in main().
void BlockShutdownSignals();
// Returns the name of the signal that asked the service to stop.
std::string WaitForShutdownSignal();

// For a command that waits (run, submit --wait): a thread of its own takes
// SIGINT/SIGTERM and requests stop on token(); the command then stops what it
// started, says what is left running and returns ExitCode(). If it has not
// returned `grace` after the signal (a role or a broker call that does not let
// go), that thread runs `last_words` and ends the process with ExitCode().
// Needs BlockShutdownSignals. One per process at a time.
class InterruptWatch {
 public:
  InterruptWatch(std::chrono::milliseconds grace, std::function<void()> last_words);
  ~InterruptWatch();
  InterruptWatch(const InterruptWatch&) = delete;
  InterruptWatch& operator=(const InterruptWatch&) = delete;

  std::stop_token token() const { return stop_.get_token(); }
  bool interrupted() const { return stop_.stop_requested(); }
  // "SIGINT" or "SIGTERM"; "" before a signal came.
  std::string SignalName();
  // 128 + the signal: 130 for SIGINT, 143 for SIGTERM.
  int ExitCode();

 private:
  void Run();

  const std::chrono::milliseconds grace_;
  const std::function<void()> last_words_;
  std::stop_source stop_;
  std::mutex mu_;
  std::condition_variable returned_;
  // Guarded by mu_.
  int signal_ = 0;
  bool returning_ = false;
  std::thread thread_;  // last: starts once the state above exists
};

// Opens the bus; a service that needs other processes refuses inproc://.
[[nodiscard]] Result<std::unique_ptr<EventBus>> OpenServiceBus(const std::string& url,
                                                               const std::string& command,
                                                               bool needs_shared_bus);

// Prints a status to stderr and maps it to an exit code.
int Fail(const Status& status);

// The exit code a batch_complete stands for.
int ExitCodeFor(const Event& batch_complete);

// A one-line human summary of a batch_complete.
std::string Summary(const Event& batch_complete, double seconds);

}  // namespace fanflow::cli
