#include "pipeline/batch_waiter.h"

#include <random>

#include "core/routes.h"

namespace fanflow {

Result<std::unique_ptr<BatchWaiter>> BatchWaiter::Start(EventBus& bus, const std::string& batch_id,
                                                        bool track_progress) {
  std::unique_ptr<BatchWaiter> w(new BatchWaiter(batch_id));
  std::vector<std::string> types = {kBatchComplete, kBatchSealed};
  if (track_progress) types.push_back(kChunkDone);
  std::string group = "wait-" + std::to_string(std::random_device{}());
  SubscribeOptions options{group, types, 1, /*ephemeral=*/true};
  auto sub = bus.Subscribe(options, [raw = w.get()](const Delivery& d) { return raw->Handle(d); });
  if (!sub.ok()) return sub.status();
  w->subscription_ = std::move(sub).value();
  return w;
}

Verdict BatchWaiter::Handle(const Delivery& d) {
  auto e = DecodeEvent(d.message.body);
  // Other batches' events and foreign junk are not this waiter's business.
  if (!e.ok() || e->subject != batch_id_) return Verdict::Ack();
  std::lock_guard<std::mutex> lock(mu_);
  if (e->type == kBatchComplete) {
    if (!complete_) complete_ = e.value();
    done_cv_.notify_all();
  } else if (e->type == kBatchSealed) {
    progress_.total_chunks = e->data["total_chunks"].get<int64_t>();
  } else if (e->type == kChunkDone && seen_chunks_.insert(e->data["chunk_index"].get<int64_t>()).second) {
    ++(e->data["status"] == "succeeded" ? progress_.chunks_done : progress_.chunks_failed);
  }
  return Verdict::Ack();
}

Result<Event> BatchWaiter::Wait(std::chrono::milliseconds timeout,
                                const std::function<void(const BatchProgress&)>& on_progress,
                                std::stop_token stop, std::chrono::milliseconds tick) {
  using Clock = std::chrono::steady_clock;
  const auto deadline = Clock::now() + timeout;
  auto done = [&] { return complete_.has_value(); };
  std::unique_lock<std::mutex> lock(mu_);
  while (!complete_) {
    if (stop.stop_requested()) return Cancelled("stopped waiting for batch " + batch_id_);
    if (timeout.count() > 0 && Clock::now() >= deadline)
      return Timeout("no batch_complete for batch " + batch_id_ + " within " +
                     std::to_string(timeout.count() / 1000.0) + " s");
    if (on_progress) {
      done_cv_.wait_until(lock, stop, timeout.count() > 0 ? std::min(Clock::now() + tick, deadline)
                                                          : Clock::now() + tick, done);
      if (!complete_) on_progress(progress_);
    } else if (timeout.count() > 0) {
      done_cv_.wait_until(lock, stop, deadline, done);
    } else {
      done_cv_.wait(lock, stop, done);
    }
  }
  return *complete_;
}

BatchProgress BatchWaiter::Progress() {
  std::lock_guard<std::mutex> lock(mu_);
  return progress_;
}

Result<std::optional<std::string>> WhyStartsAreNotTaken(EventBus& bus) {
  const BusCapabilities caps = bus.Capabilities();
  for (const std::string& group : routes::DefaultGroups(kStartFanout)) {
    auto stats = bus.Stats(group);
    if (!stats.ok()) return stats.status();
    const QueueStats* q = nullptr;
    for (const QueueStats& s : stats.value())
      if (s.type == kStartFanout) q = &s;
    if (!q)
      return std::optional<std::string>("no queue of group '" + group +
                                        "' takes start_fanout, so the bus dropped it (declare "
                                        "them with `fanflow topology`, start an aggregator, submit again)");
    if (caps.counts_all_consumers && q->consumers == 0)
      return std::optional<std::string>("group '" + group + "' has no consumer (is a `fanflow aggregator` running? it admits batches); " +
                                        std::to_string(q->depth) + " start_fanout wait in its queue");
    if (!caps.counts_all_consumers && q->depth > 0)
      return std::optional<std::string>(std::to_string(q->depth) + " start_fanout wait for group '" + group +
                                        "' where no consumer has taken them over (is a `fanflow aggregator` running? it admits batches)");
  }
  return std::optional<std::string>();
}

}  // namespace fanflow
