// Pieces every `fanflow` command shares: logging, opening the bus, waiting for
// a shutdown signal, and exit codes.
#pragma once

#include <memory>
#include <string>

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

// Logs to stderr (stdout is for results), at "trace".."off".
void SetUpLogging(const std::string& level);

// Blocks SIGINT/SIGTERM in every thread started after this call, so that
// WaitForShutdownSignal can take them synchronously. Call first in main().
void BlockShutdownSignals();
// Returns the name of the signal that asked the service to stop.
std::string WaitForShutdownSignal();

// Opens the bus; a service that needs other processes refuses inproc://.
[[nodiscard]] Result<std::unique_ptr<EventBus>> OpenServiceBus(const std::string& url,
                                                               const std::string& command,
                                                               bool needs_shared_bus);

// Prints a status to stderr and maps it to an exit code.
int Fail(const Status& status);

// "b-20261122T214500-1a2b3c": sortable, unique enough for batch ids.
std::string NewBatchId();

// The exit code a batch_complete stands for.
int ExitCodeFor(const Event& batch_complete);

// A one-line human summary of a batch_complete.
std::string Summary(const Event& batch_complete, double seconds);

}  // namespace fanflow::cli
