// A worker: consumes process_chunk as the `workers` group, never more than
// `concurrency` chunks at once in this process and, with a rate limit, never
// starting them faster than the limit (a chunk waits for its tokens holding its
// slot, so the queue absorbs a burst), runs the processor and emits
// chunk_done. A failed attempt is retried with exponential backoff and jitter
// (the attempt count travels with the delivery); after `max_attempts` the
// chunk is reported failed and dead-lettered with its last error. The chunks
// of a batch it heard was cancelled (pipeline/cancel.h) are acknowledged
// without being processed or reported.
// Thread-safe: the bus calls Handle from up to `concurrency` threads. On
// destruction a chunk still waiting for tokens is handed back with a retry (its
// attempt count rises by one) rather than holding up the shutdown.
#pragma once

#include <chrono>
#include <memory>
#include <stop_token>

#include "core/bus.h"
#include "pipeline/cancel.h"
#include "pipeline/processor.h"
#include "pipeline/rate_limiter.h"
#include "pipeline/source.h"

namespace fanflow {

struct WorkerOptions {
  int concurrency = 4;
  int prefetch = 0;  // SubscribeOptions::prefetch (0: the adapter's default)
  int max_attempts = 3;
  std::chrono::milliseconds backoff_base{200};
  std::chrono::milliseconds backoff_max{30000};
  RateLimit rate;  // unlimited by default
  SourcePolicy files;  // where claim checks may be read: nowhere by default
  bool skip_cancelled = true;  // listen for cancelled batches and skip their chunks
};

class Worker {
 public:
  [[nodiscard]] static Result<std::unique_ptr<Worker>> Start(EventBus& bus,
                                                             std::shared_ptr<Processor> processor,
                                                             WorkerOptions options);
  ~Worker();

  // Ends the chunks in flight now instead of letting them finish: processors
  // are asked to stop (sleep returns, an --exec command's process group is
  // killed) and each chunk goes back to the bus as a retry. Then destroy it.
  void Interrupt();

  // The delay before attempt `attempt + 1`: base * 2^(attempt-1), capped, with
  // jitter in [delay/2, delay] so retries of a burst spread out.
  static std::chrono::milliseconds Backoff(const WorkerOptions& options, int attempt);

 private:
  Worker(EventBus& bus, std::shared_ptr<Processor> processor, WorkerOptions options)
      : bus_(bus),
        processor_(std::move(processor)),
        options_(options),
        publish_then_ack_(bus.Capabilities().publish_then_ack) {
    if (options_.rate.enabled()) limiter_ = std::make_unique<RateLimiter>(options_.rate);
  }
  Verdict Handle(const Delivery& delivery);

  EventBus& bus_;
  const std::shared_ptr<Processor> processor_;
  const WorkerOptions options_;
  const bool publish_then_ack_;  // the bus acks a chunk once its chunk_done is confirmed
  std::unique_ptr<RateLimiter> limiter_;  // null: no rate limit
  std::unique_ptr<CancelledBatches> cancelled_;  // null: skip_cancelled is off
  std::stop_source interrupt_;
  std::unique_ptr<Subscription> subscription_;
};

}  // namespace fanflow
