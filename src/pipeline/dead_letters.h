// Dead-letter tooling on top of the bus port, for `fanflow dlq`: the same on
// every bus. Classifies reasons and presents a dead letter with its original
// event. Stateless functions; thread-safe as the bus is.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/bus.h"

namespace fanflow {

// A short, stable name for why a message was dead-lettered: malformed_json,
// schema (the reason names the field), limits (the body broke a decoder limit),
// unknown_type, attempts_exhausted (the reason carries the last error), expired
// (retention/TTL), or other.
std::string DeadLetterCategory(const std::string& reason);

// id, group, type, attempts, time, reason, category, the batch id and chunk
// index when the body is a fanflow event, and, with `with_event`, the original
// event: parsed JSON when it is JSON within the decoder's limits, else the raw
// body as a string plus `event_base64`, its exact bytes. Strings may hold
// invalid UTF-8: dump the result with DumpForDisplay.
nlohmann::json DeadLetterToJson(const DeadLetter& letter, bool with_event);

// j.dump(indent) that replaces invalid UTF-8 instead of throwing.
std::string DumpForDisplay(const nlohmann::json& j, int indent = -1);

// The dead letters of `group` ("" every group) whose id is `id` ("" all).
[[nodiscard]] Result<std::vector<DeadLetter>> FindDeadLetters(EventBus& bus,
                                                              const std::string& group,
                                                              const std::string& id);

}  // namespace fanflow
