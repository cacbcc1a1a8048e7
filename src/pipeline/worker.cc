#include "pipeline/worker.h"

#include <spdlog/spdlog.h>

#include <cmath>
#include <random>

#include "core/event.h"
#include "core/printable.h"
#include "core/routes.h"
#include "pipeline/source.h"

namespace fanflow {

Result<std::unique_ptr<Worker>> Worker::Start(EventBus& bus, std::shared_ptr<Processor> processor,
                                              WorkerOptions options) {
  if (options.concurrency < 1) return InvalidArgument("--concurrency must be >= 1");
  if (options.max_attempts < 1) return InvalidArgument("--max-attempts must be >= 1");
  std::unique_ptr<Worker> w(new Worker(bus, std::move(processor), options));
  if (options.skip_cancelled) {
    auto cancelled = CancelledBatches::Start(bus);
    if (!cancelled.ok()) return cancelled.status();
    w->cancelled_ = std::move(cancelled).value();
  }
  SubscribeOptions subscribe{routes::kWorkerGroup, {kProcessChunk}, options.concurrency};
  subscribe.elastic = true;
  subscribe.prefetch = options.prefetch;
  auto sub = bus.Subscribe(subscribe,
                           [raw = w.get()](const Delivery& d) { return raw->Handle(d); });
  if (!sub.ok()) return sub.status();
  w->subscription_ = std::move(sub).value();
  return w;
}

Worker::~Worker() {
  if (limiter_) limiter_->Cancel();
  subscription_.reset();
}

void Worker::Interrupt() {
  interrupt_.request_stop();
  if (limiter_) limiter_->Cancel();
}

std::chrono::milliseconds Worker::Backoff(const WorkerOptions& o, int attempt) {
  thread_local std::mt19937_64 rng(std::random_device{}());
  double full = static_cast<double>(o.backoff_base.count()) * std::pow(2.0, std::max(0, attempt - 1));
  full = std::min(full, static_cast<double>(o.backoff_max.count()));
  std::uniform_real_distribution<double> jitter(full / 2, full);
  return std::chrono::milliseconds(static_cast<int64_t>(jitter(rng)));
}

Verdict Worker::Handle(const Delivery& d) {
  // Inline items stay JSON text for a processor that reads them so.
  std::string items_json;
  auto decoded = DecodeEvent(d.message.body, processor_->TakesItemsText() ? &items_json : nullptr);
  if (!decoded.ok()) return Verdict::DeadLetter(decoded.status().message());
  const Event& e = decoded.value();
  if (e.type != kProcessChunk)
    return Verdict::DeadLetter("type: a worker does not consume '" + e.type + "'");
  const int64_t index = e.data["chunk_index"].get<int64_t>();
  const int64_t item_count = e.data["item_count"].get<int64_t>();
  if (const int64_t skips = cancelled_ ? cancelled_->Skip(e.subject) : 0; skips > 0) {
    spdlog::log(skips == 1 ? spdlog::level::info : spdlog::level::debug,
                "[batch {}] chunk {} skipped: the batch was cancelled ({} skipped here so far)", e.subject,
                index, skips);
    return Verdict::Ack();
  }
  if (limiter_ && !limiter_->Acquire(options_.rate.unit == RateUnit::kItems
                                         ? static_cast<double>(item_count)
                                         : 1.0))
    return Verdict::Retry(std::chrono::milliseconds(0), "worker stopping before the chunk started");

  const auto started = std::chrono::steady_clock::now();
  Result<nlohmann::json> result = InvalidArgument("no items");
  bool retryable = true;
  if (e.data.contains("ref")) {
    const auto& r = e.data["ref"];
    auto items = LoadClaimCheck({r["path"], r["offset"].get<int64_t>(), r["length"].get<int64_t>()},
                                options_.files);
    // A claim check the policy or its bounds refuse is refused again on retry.
    retryable = items.ok() || items.status().code() != StatusCode::kInvalidArgument;
    result = items.ok() ? processor_->Process(
                              {e.subject, index, items.value(), interrupt_.get_token(), &e})
                        : items.status();
  } else if (!items_json.empty()) {
    result = processor_->ProcessText({e.subject, index, items_json, interrupt_.get_token(), &e});
  } else {
    result = processor_->Process({e.subject, index, e.data["items"], interrupt_.get_token(), &e});
  }
  if (!result.ok() && interrupt_.stop_requested())
    return Verdict::Retry(std::chrono::milliseconds(0), "worker interrupted mid-chunk");
  const double ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started).count();

  nlohmann::json done = {{"chunk_index", index}, {"items", item_count}, {"attempts", d.attempt},
                         {"duration_ms", ms}};
  if (result.ok()) {
    done["status"] = "succeeded";
    done["result"] = result.value();
  } else {
    const std::string error = result.status().message();
    if (retryable && d.attempt < options_.max_attempts) {
      auto delay = Backoff(options_, d.attempt);
      spdlog::warn("[batch {}] chunk {} attempt {}/{} failed, retry in {} ms: {}", e.subject, index,
                   d.attempt, options_.max_attempts, delay.count(), EscapeForLog(error));
      return Verdict::Retry(delay, error);
    }
    done["status"] = "failed";
    done["error"] = error;
  }
  Event out = MakeEvent(kChunkDone, e.subject + "/done/" + std::to_string(index), e.subject,
                        e.correlation_id, done);
  Message chunk_done{out.type, out.id, EncodeEvent(out)};
  // The chunk is acknowledged once its chunk_done is confirmed; where the bus
  // can do that itself, this handler does not wait for the confirm.
  if (result.ok() && publish_then_ack_) return Verdict::AckAfterPublishing({std::move(chunk_done)});
  if (Status s = bus_.Publish(chunk_done); !s.ok()) {
    // The chunk is not acknowledged, so it comes back; nothing is lost.
    spdlog::error("[batch {}] chunk {} done but chunk_done not published: {}", e.subject, index,
                  s.ToString());
    return Verdict::Retry(std::chrono::seconds(1), s.ToString());
  }
  if (result.ok()) return Verdict::Ack();
  if (!retryable) {
    spdlog::error("[batch {}] chunk {} refused: {}", e.subject, index, result.status().message());
    return Verdict::DeadLetter(result.status().message());
  }
  spdlog::error("[batch {}] chunk {} failed after {} attempts: {}", e.subject, index, d.attempt,
                EscapeForLog(result.status().message()));
  return Verdict::DeadLetter("attempts exhausted (" + std::to_string(d.attempt) +
                             "): " + result.status().message());
}

}  // namespace fanflow
