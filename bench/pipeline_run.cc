#include "bench/pipeline_run.h"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <mutex>
#include <random>
#include <unordered_map>

#include "core/event.h"
#include "core/routes.h"
#include "pipeline/batch_run.h"
#include "pipeline/batch_runner.h"

namespace fanflow::bench {
namespace {

using Clock = std::chrono::steady_clock;

// When each process_chunk was handed to Publish and when its chunk_done
// reached the aggregator's handler, matched by the chunk index that ends both
// ids ("<batch>/chunk/<i>" and "<batch>/done/<i>"). Thread-safe.
class ChunkClock {
 public:
  void Published(const std::vector<Message>& messages) {
    const auto now = Clock::now();
    std::lock_guard<std::mutex> l(mu_);
    for (const Message& m : messages)
      if (m.type == kProcessChunk) published_.try_emplace(ChunkIndex(m.id), now);
  }

  void Done(const Message& m) {
    if (m.type != kChunkDone) return;
    const auto now = Clock::now();
    std::lock_guard<std::mutex> l(mu_);
    auto it = published_.find(ChunkIndex(m.id));
    if (it == published_.end()) return;
    // Only the first chunk_done of a chunk counts; a redelivery would skew p99.
    latencies_ms_.push_back(std::chrono::duration<double, std::milli>(now - it->second).count());
    published_.erase(it);
  }

  // The p-th percentile of the chunk latencies seen so far, in ms.
  double Percentile(double p) {
    std::lock_guard<std::mutex> l(mu_);
    if (latencies_ms_.empty()) return 0;
    std::sort(latencies_ms_.begin(), latencies_ms_.end());
    return latencies_ms_[static_cast<size_t>(p * static_cast<double>(latencies_ms_.size() - 1))];
  }

 private:
  static int64_t ChunkIndex(const std::string& id) {
    return std::strtoll(id.c_str() + id.rfind('/') + 1, nullptr, 10);
  }

  std::mutex mu_;
  std::unordered_map<int64_t, Clock::time_point> published_;  // guarded by mu_
  std::vector<double> latencies_ms_;                          // guarded by mu_
};

// A role's bus: forwards everything to its own connection and tells the
// ChunkClock what passes. It costs the broker nothing: no extra queue, no extra
// delivery, no JSON parse. Thread-safe.
class TimingBus final : public EventBus {
 public:
  TimingBus(std::unique_ptr<EventBus> inner, ChunkClock& clock) : inner_(std::move(inner)), clock_(clock) {}

  Status Publish(const std::vector<Message>& messages) override {
    clock_.Published(messages);
    return inner_->Publish(messages);
  }

  Result<std::unique_ptr<Subscription>> Subscribe(const SubscribeOptions& options,
                                                  Handler handler) override {
    if (options.group != routes::kAggregatorGroup) return inner_->Subscribe(options, std::move(handler));
    return SubscribeBursts(options, 1, OneAtATime(std::move(handler)));  // timed in one place
  }

  Result<std::unique_ptr<Subscription>> SubscribeBursts(const SubscribeOptions& options, int max_burst,
                                                        BurstHandler handler) override {
    if (options.group != routes::kAggregatorGroup)
      return inner_->SubscribeBursts(options, max_burst, std::move(handler));
    return inner_->SubscribeBursts(
        options, max_burst,
        [this, handler = std::move(handler)](std::span<const Delivery> d, std::span<Verdict> v) {
          for (const Delivery& one : d) clock_.Done(one.message);
          handler(d, v);
        });
  }

  Status DeclareGroup(const std::string& group, const std::vector<std::string>& types) override {
    return inner_->DeclareGroup(group, types);
  }
  Result<std::vector<QueueStats>> Stats(const std::string& group) override {
    return inner_->Stats(group);
  }
  Result<std::vector<DeadLetter>> ListDeadLetters(const std::string& group) override {
    return inner_->ListDeadLetters(group);
  }
  Result<int> ReplayDeadLetters(const std::string& group, const std::string& id) override {
    return inner_->ReplayDeadLetters(group, id);
  }
  Result<int> PurgeDeadLetters(const std::string& group) override {
    return inner_->PurgeDeadLetters(group);
  }
  std::string Describe() const override { return inner_->Describe(); }
  BusCapabilities Capabilities() const override { return inner_->Capabilities(); }

 private:
  const std::unique_ptr<EventBus> inner_;
  ChunkClock& clock_;
};

// One connection per role, as separate processes would have.
Result<std::unique_ptr<TimingBus>> OpenRoleBus(const std::string& url, ChunkClock& clock) {
  auto bus = OpenBus(url);
  if (!bus.ok()) return bus.status();
  return std::make_unique<TimingBus>(std::move(bus).value(), clock);
}

}  // namespace

std::string WorkerShape::Describe() const {
  if (prefetch == 0) return std::to_string(concurrency) + " worker slots";
  return std::to_string(concurrency) + " worker threads, prefetch " + std::to_string(prefetch);
}

Result<PipelineFigures> RunPipeline(const std::string& bus_url, int64_t items, int64_t chunk_size,
                                    const WorkerShape& workers) {
  ChunkClock clock;
  auto aggregator_bus = OpenRoleBus(bus_url, clock);
  if (!aggregator_bus.ok()) return aggregator_bus.status();
  auto worker_bus = OpenRoleBus(bus_url, clock);
  if (!worker_bus.ok()) return worker_bus.status();
  auto ventilator_bus = OpenRoleBus(bus_url, clock);
  if (!ventilator_bus.ok()) return ventilator_bus.status();
  BatchSpec spec;
  spec.source = "range:" + std::to_string(items);
  spec.chunk_size = chunk_size;
  spec.batch_id = "bench-" + std::to_string(std::random_device{}());
  auto start = MakeBatchStart(spec);
  if (!start.ok()) return start.status();
  auto processor = MakeProcessor(ProcessorOptions{});
  if (!processor.ok()) return processor.status();
  TemporaryLedger ledger{MakeTemporaryLedgerPath()};
  BatchRoles roles;
  roles.aggregator.state_path = ledger.path;
  roles.aggregator.lease = DefaultLease(**aggregator_bus);  // as `fanflow aggregator` does by default
  roles.processor = std::move(processor).value();
  roles.workers.concurrency = workers.concurrency;
  roles.workers.prefetch = workers.prefetch;

  auto run = BatchRun::Start({**aggregator_bus, **worker_bus, **ventilator_bus}, std::move(roles),
                             start.value(), false);
  if (!run.ok()) return run.status();
  const auto started = Clock::now();
  if (Status s = run.value()->Submit(); !s.ok()) return s;
  auto complete = run.value()->Wait(std::chrono::minutes(5), nullptr);
  if (!complete.ok()) return complete.status();
  PipelineFigures f;
  f.seconds = std::chrono::duration<double>(Clock::now() - started).count();
  if (complete->data["status"] != "succeeded")
    return Internal("bench batch ended " + complete->data["status"].get<std::string>());
  const double chunks = static_cast<double>(complete->data["chunks"].get<int64_t>());
  f.chunks_per_second = chunks / f.seconds;
  f.items_per_second = static_cast<double>(items) / f.seconds;
  f.p50_chunk_latency_ms = clock.Percentile(0.50);
  f.p99_chunk_latency_ms = clock.Percentile(0.99);
  return f;
}

}  // namespace fanflow::bench
