// The in-process bus from Publish to handler: each iteration publishes
// kMessages chunk_done-sized messages to one subscribed group and waits until
// the handler has seen all of them, so the time covers the whole hand-off
// (enqueue, wake-up, delivery copy, settle), not only the enqueue.
#include <benchmark/benchmark.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>
#include <vector>

#include "core/bus.h"
#include "core/event.h"

namespace fanflow {
namespace {

constexpr int64_t kMessages = 1000;  // per iteration; below the default queue capacity
constexpr auto kDrainLimit = std::chrono::seconds(30);

// Counts deliveries; the benchmark thread waits for a multiple of kMessages.
// `seen_` is touched by the bus's handler threads, mu_ only pairs with done_
// so that a wake-up is never lost.
class DeliveryCounter {
 public:
  Verdict Count() {
    if ((seen_.fetch_add(1, std::memory_order_relaxed) + 1) % kMessages == 0) {
      std::lock_guard<std::mutex> lock(mu_);
      done_.notify_all();
    }
    return Verdict::Ack();
  }
  bool WaitFor(int64_t total) {
    std::unique_lock<std::mutex> lock(mu_);
    return done_.wait_for(lock, kDrainLimit, [&] { return seen_.load() >= total; });
  }

 private:
  std::atomic<int64_t> seen_{0};
  std::mutex mu_;
  std::condition_variable done_;
};

// Args: messages per Publish call (1 = single publishes), handler concurrency.
void BM_InprocBus_PublishToHandler(benchmark::State& state) {
  const int64_t batch = state.range(0);
  const int concurrency = static_cast<int>(state.range(1));
  // A private bus per case: no queue left over from another benchmark.
  auto bus = OpenBus("inproc://bench-publish-b" + std::to_string(batch) + "-c" +
                     std::to_string(concurrency));
  if (!bus.ok()) {
    state.SkipWithError(bus.status().ToString().c_str());
    return;
  }
  DeliveryCounter counter;
  auto sub = bus.value()->Subscribe({"bench", {kChunkDone}, concurrency},
                                    [&counter](const Delivery&) { return counter.Count(); });
  if (!sub.ok()) {
    state.SkipWithError(sub.status().ToString().c_str());
    return;
  }

  const Event done = MakeEvent(kChunkDone, "bench-batch/done/0", "bench-batch", "bench-corr",
                               {{"chunk_index", 0}, {"items", 100}, {"attempts", 1},
                                {"status", "succeeded"}, {"result", 50123}});
  const std::vector<Message> messages(batch, Message{done.type, done.id, EncodeEvent(done)});
  int64_t published = 0;
  for (auto _ : state) {
    for (int64_t sent = 0; sent < kMessages; sent += batch) {
      Status s = batch == 1 ? bus.value()->Publish(messages.front()) : bus.value()->Publish(messages);
      if (!s.ok()) {
        state.SkipWithError(s.ToString().c_str());
        return;
      }
    }
    published += kMessages;
    if (!counter.WaitFor(published)) {
      state.SkipWithError("the handler did not see every message within 30 s");
      return;
    }
  }
  state.SetItemsProcessed(published);
}

BENCHMARK(BM_InprocBus_PublishToHandler)
    ->ArgNames({"batch", "concurrency"})
    ->ArgsProduct({{1, kMessages}, {1, 4}})
    ->UseRealTime();

}  // namespace
}  // namespace fanflow
