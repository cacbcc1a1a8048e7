// The one retention rule every bus configuration must pass: a dead-letter
// queue must keep its messages longer than the queue they come from. A message
// keeps its original age when it is dead-lettered (on managed queues, and for
// per-message TTLs), so a dead-letter retention that is not longer would
// expire it on arrival or soon after: the dead letter is lost without a trace.
// Used by the AMQP adapter's URL options and by `fanflow monitor`'s flags.
#pragma once

#include <chrono>
#include <optional>
#include <string>

#include "core/status.h"

namespace fanflow {

// Unset means "kept until consumed" (no TTL). `where` names the setting in the
// error, e.g. "group workers" or "--dlq-retention workers=600".
[[nodiscard]] Status ValidateRetention(std::optional<std::chrono::milliseconds> source,
                                       std::optional<std::chrono::milliseconds> dead_letters,
                                       const std::string& where);

}  // namespace fanflow
