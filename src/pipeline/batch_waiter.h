// Waits for one batch's batch_complete (for `submit --wait` and `run`), sees
// its batch_sealed, and optionally follows its progress from chunk_done.
// Subscribes as a private ephemeral group, so it must be started before the
// batch is submitted. A wait can be stopped (a signal). Thread-safe.
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <stop_token>
#include <string>

#include "core/bus.h"
#include "core/event.h"

namespace fanflow {

struct BatchProgress {
  int64_t chunks_done = 0;
  int64_t chunks_failed = 0;
  std::optional<int64_t> total_chunks;  // once sealed
};

class BatchWaiter {
 public:
  [[nodiscard]] static Result<std::unique_ptr<BatchWaiter>> Start(EventBus& bus,
                                                                  const std::string& batch_id,
                                                                  bool track_progress);

  // Blocks until the batch_complete arrives (or `timeout` passes, if non-zero:
  // kTimeout; or `stop` is requested: kCancelled), calling `on_progress` about
  // every `tick` while it waits.
  [[nodiscard]] Result<Event> Wait(std::chrono::milliseconds timeout,
                                   const std::function<void(const BatchProgress&)>& on_progress,
                                   std::stop_token stop = {},
                                   std::chrono::milliseconds tick = std::chrono::milliseconds(200));

  // What it has seen so far: a sealed batch or a chunk_done means a ventilator
  // took the batch up.
  BatchProgress Progress();

 private:
  explicit BatchWaiter(std::string batch_id) : batch_id_(std::move(batch_id)) {}
  Verdict Handle(const Delivery& delivery);

  const std::string batch_id_;
  std::mutex mu_;
  std::condition_variable_any done_cv_;
  // Guarded by mu_.
  BatchProgress progress_;
  std::set<int64_t> seen_chunks_;
  std::optional<Event> complete_;
  std::unique_ptr<Subscription> subscription_;  // last: stops before the state goes
};

// Why nothing will take a start_fanout published on `bus` now, as far as the
// bus can tell, for each group of routes::DefaultGroups(kStartFanout): no
// queue for it (the broker drops the start), no consumer (where Stats counts
// every process's consumers), or, where Stats cannot see other processes'
// consumers (MQTT), start_fanouts already waiting in a session no consumer has
// taken over. nullopt: something consumes it, or the bus cannot tell.
[[nodiscard]] Result<std::optional<std::string>> WhyStartsAreNotTaken(EventBus& bus);

}  // namespace fanflow
