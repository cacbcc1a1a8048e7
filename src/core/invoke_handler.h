// How every adapter calls a subscription's handler: the one place that decides
// what a throwing handler means, so it is the same on every bus.
#pragma once

#include "core/bus.h"

namespace fanflow {

// Runs `handler` on `delivery`. A handler that throws dead-letters the message
// with the reason "handler threw: <what>" (escaped): a retry would only throw
// again, forever on buses that redeliver, and nothing may end the process.
Verdict InvokeHandler(const Handler& handler, const Delivery& delivery);

// The same for a burst: a throw dead-letters every delivery of the burst.
void InvokeHandler(const BurstHandler& handler, std::span<const Delivery> deliveries,
                   std::span<Verdict> verdicts);

}  // namespace fanflow
