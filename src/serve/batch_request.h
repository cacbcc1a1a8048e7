// What a POST /v1/batches may ask for: the body's fields checked one by one
// (every error names its field) and turned into the start_fanout serve
// publishes, and the ?wait= parameter. No state.
#pragma once

#include <chrono>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>

#include "core/event.h"
#include "http/http_server.h"
#include "pipeline/source.h"

namespace fanflow {

// The start_fanout `body` asks for, or why it is refused. A jsonl: source must
// be an absolute path `files` allows; it is opened once, nothing is read.
// `new_batch_id` names a batch whose body has no batch_id.
[[nodiscard]] Result<Event> StartFromBody(const nlohmann::json& body, const SourcePolicy& files,
                                          const std::function<std::string()>& new_batch_id);

// ?wait=SECONDS (0 when absent), at most `max`.
[[nodiscard]] Result<std::chrono::milliseconds> WaitOf(const HttpRequest& r,
                                                       std::chrono::seconds max);

}  // namespace fanflow
