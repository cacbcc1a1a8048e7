// Cancelling a batch. A client publishes a cancel_batch (PublishCancel, or
// RequestCancel to also wait for the answer); the aggregator decides an open
// batch `cancelled` and stops handing out its fan-out steps, and workers that
// keep a CancelledBatches skip the chunks of it still queued. A worker that
// misses the news only wastes work: the aggregator ignores a cancelled batch's
// late chunk_done events.
#pragma once

#include <chrono>
#include <cstddef>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>

#include "core/bus.h"
#include "core/event.h"

namespace fanflow {

// Publishes a cancel_batch for `batch_id` (id "<batch>/cancel"); `reason` may be
// empty. Refuses a batch id or reason the decoder would refuse.
[[nodiscard]] Status PublishCancel(EventBus& bus, std::string_view batch_id,
                                   std::string_view reason);

// Publishes the cancel and waits up to `wait` for the batch's batch_complete:
// status `cancelled` if this (or an earlier) cancel stopped it, another status
// if it had been decided before. kTimeout when no answer came: the aggregator
// knows no such batch (it dead-letters the cancel) or is not running.
[[nodiscard]] Result<Event> RequestCancel(EventBus& bus, std::string_view batch_id,
                                          std::string_view reason, std::chrono::milliseconds wait);

// The batches this process heard were cancelled: a private ephemeral group
// reads every batch_complete and keeps the ids of the last `capacity`
// cancelled ones. Thread-safe.
class CancelledBatches {
 public:
  [[nodiscard]] static Result<std::unique_ptr<CancelledBatches>> Start(EventBus& bus,
                                                                       size_t capacity = 10000);
  // 0 when `batch_id` is not known cancelled; else this skip's number, from 1
  // (so a caller can log the first one and count the rest).
  int64_t Skip(const std::string& batch_id);

 private:
  explicit CancelledBatches(size_t capacity) : capacity_(capacity) {}
  Verdict Handle(const Delivery& delivery);

  const size_t capacity_;
  std::mutex mu_;
  // Guarded by mu_: the ids with the chunks skipped, and their order of
  // arrival to forget the oldest.
  std::unordered_map<std::string, int64_t> skipped_;
  std::deque<std::string> order_;
  std::unique_ptr<Subscription> subscription_;  // last: stops before the state goes
};

}  // namespace fanflow
