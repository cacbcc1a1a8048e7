#include "bench/pipeline_run.h"

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <mutex>
#include <random>
#include <unordered_map>

#include "core/event.h"
#include "pipeline/aggregator.h"
#include "pipeline/batch_waiter.h"
#include "pipeline/ventilator.h"
#include "pipeline/worker.h"

namespace fanflow::bench {
namespace {

using Clock = std::chrono::steady_clock;

// Sees each process_chunk and chunk_done of one batch as a private group and
// keeps, per chunk, how long its chunk_done came after it.
class LatencyTap {
 public:
  Status Start(EventBus& bus, const std::string& batch_id) {
    batch_id_ = batch_id;
    SubscribeOptions o{"bench-tap-" + batch_id, {kProcessChunk, kChunkDone}, 4, true};
    auto sub = bus.Subscribe(o, [this](const Delivery& d) { return Seen(d); });
    if (!sub.ok()) return sub.status();
    sub_ = std::move(sub).value();
    return Status::Ok();
  }
  double Percentile(double p) {
    std::lock_guard<std::mutex> l(mu_);
    if (latencies_ms_.empty()) return 0;
    std::sort(latencies_ms_.begin(), latencies_ms_.end());
    return latencies_ms_[static_cast<size_t>(p * static_cast<double>(latencies_ms_.size() - 1))];
  }
  void Stop() { sub_.reset(); }

 private:
  Verdict Seen(const Delivery& d) {
    const auto now = Clock::now();
    auto e = DecodeEvent(d.message.body);
    if (!e.ok() || e->subject != batch_id_) return Verdict::Ack();
    const int64_t index = e->data["chunk_index"].get<int64_t>();
    std::lock_guard<std::mutex> l(mu_);
    auto [it, fresh] = seen_.try_emplace(index, now);
    if (!fresh) {
      // The second sighting of a chunk: its chunk_done (the tap may see the
      // two in either order on a busy broker).
      latencies_ms_.push_back(
          std::abs(std::chrono::duration<double, std::milli>(now - it->second).count()));
    }
    return Verdict::Ack();
  }

  std::string batch_id_;
  std::mutex mu_;
  std::unordered_map<int64_t, Clock::time_point> seen_;
  std::vector<double> latencies_ms_;
  std::unique_ptr<Subscription> sub_;
};

}  // namespace

Result<PipelineFigures> RunPipeline(const std::string& bus_url, int64_t items, int64_t chunk_size,
                                    int concurrency) {
  auto bus = OpenBus(bus_url);
  if (!bus.ok()) return bus.status();
  const std::string batch_id = "bench-" + std::to_string(std::random_device{}());
  AggregatorOptions agg_options;
  agg_options.state_path = (std::filesystem::temp_directory_path() / (batch_id + ".db")).string();
  auto aggregator = Aggregator::Start(*bus.value(), agg_options);
  if (!aggregator.ok()) return aggregator.status();
  auto processor = MakeProcessor(ProcessorOptions{});
  if (!processor.ok()) return processor.status();
  WorkerOptions worker_options;
  worker_options.concurrency = concurrency;
  auto worker = Worker::Start(*bus.value(), std::move(processor).value(), worker_options);
  if (!worker.ok()) return worker.status();
  auto ventilator = Ventilator::Start(*bus.value(), 1);
  if (!ventilator.ok()) return ventilator.status();
  LatencyTap tap;
  if (Status s = tap.Start(*bus.value(), batch_id); !s.ok()) return s;
  auto waiter = BatchWaiter::Start(*bus.value(), batch_id, false);
  if (!waiter.ok()) return waiter.status();

  const auto started = Clock::now();
  Event start = MakeStartFanout(batch_id, batch_id, "range:" + std::to_string(items), chunk_size);
  if (Status s = bus.value()->Publish(Message{start.type, start.id, EncodeEvent(start)}); !s.ok())
    return s;
  auto complete = waiter.value()->Wait(std::chrono::minutes(5), nullptr);
  if (!complete.ok()) return complete.status();
  PipelineFigures f;
  f.seconds = std::chrono::duration<double>(Clock::now() - started).count();
  if (complete->data["status"] != "succeeded")
    return Internal("bench batch ended " + complete->data["status"].get<std::string>());
  const double chunks = static_cast<double>(complete->data["chunks"].get<int64_t>());
  f.chunks_per_second = chunks / f.seconds;
  f.items_per_second = static_cast<double>(items) / f.seconds;
  tap.Stop();
  f.p50_chunk_latency_ms = tap.Percentile(0.50);
  f.p99_chunk_latency_ms = tap.Percentile(0.99);
  for (const char* suffix : {"", "-wal", "-shm"})
    std::filesystem::remove(agg_options.state_path + suffix);
  return f;
}

}  // namespace fanflow::bench
