// The in-process bus: the embedded default (`inproc://`). Queues live in memory,
// one per (consumer group, event type), so it only connects code in one process.
#pragma once

#include <memory>

#include "core/bus.h"
#include "core/bus_url.h"

namespace fanflow::inproc {

// Handles opened with the same name (inproc://NAME, "" by default) in one
// process share one set of queues. Options read from the URL query: inproc://?capacity=N (messages a queue holds
// before Publish blocks, default 10000; this is what keeps memory flat when a
// producer outruns its consumers).
[[nodiscard]] Result<std::unique_ptr<EventBus>> NewInprocBus(const BusUrl& url);

}  // namespace fanflow::inproc
