#include "pipeline/batch_waiter.h"

#include <random>

namespace fanflow {

Result<std::unique_ptr<BatchWaiter>> BatchWaiter::Start(EventBus& bus, const std::string& batch_id,
                                                        bool track_progress) {
  std::unique_ptr<BatchWaiter> w(new BatchWaiter(batch_id));
  std::vector<std::string> types = {kBatchComplete};
  if (track_progress) types.insert(types.end(), {kChunkDone, kBatchSealed});
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
                                std::chrono::milliseconds tick) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  std::unique_lock<std::mutex> lock(mu_);
  while (!complete_) {
    if (timeout.count() > 0 && std::chrono::steady_clock::now() >= deadline)
      return Timeout("no batch_complete for batch " + batch_id_ + " within " +
                     std::to_string(timeout.count() / 1000.0) + " s");
    done_cv_.wait_for(lock, tick);
    if (on_progress && !complete_) on_progress(progress_);
  }
  return *complete_;
}

}  // namespace fanflow
