// The MQTT pipeline pattern, measured twice in one run: QoS 1 publishes in a
// window while a member of a shared subscription (QoS 1) consumes them. Once
// with raw paho-mqtt-cpp (the ceiling: one publishing and one consuming client,
// the message counted inside paho's callback, window 100 as fanflow's default),
// once through fanflow's adapter (EventBus::Publish of the whole batch, a
// subscription of concurrency 2 whose handler counts). Repetitions are
// interleaved at random; the table at the end gives the medians and the ratio.
//
//   FANFLOW_TEST_MQTT_URL=mqtt://127.0.0.1:1884 build/bench/mqtt_pipeline_bench
//
// Each iteration moves kMessages messages through a fresh topic and group;
// connecting and subscribing are outside the measured time.
#include <benchmark/benchmark.h>
#include <mqtt/async_client.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <map>
#include <random>
#include <thread>

#include "bench/medians.h"
#include "core/bus.h"
#include "core/bus_url.h"
#include "core/routes.h"

namespace fanflow {
namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

constexpr int kMessages = 20000;
constexpr int kWindow = 100;
constexpr int kFanflowConcurrency = 2;

std::string BrokerUrl() {
  const char* url = std::getenv("FANFLOW_BENCH_MQTT_URL");
  if (!url) url = std::getenv("FANFLOW_TEST_MQTT_URL");
  return url ? url : "";
}

// A chunk_done-sized CloudEvent (~330 bytes).
const std::string& Body() {
  static const std::string body =
      R"({"specversion":"1.0","id":"b-bench/chunk/000042/done","source":"fanflow","type":)"
      R"("fanflow.chunk_done.v1","time":"2026-11-22T21:45:00.123Z","subject":"b-bench",)"
      R"("datacontenttype":"application/json","correlationid":"b-bench","data":{"index":42,)"
      R"("status":"succeeded","items":100,"attempts":1,"result":50123,"worker":"bench-host-1234"}})";
  return body;
}

std::string Unique(const std::string& stem) {
  static std::mt19937_64 rng(std::random_device{}());
  return stem + std::to_string(rng() % 1000000000);
}

// Waits (bounded) until `count` reaches `n`; false on timeout.
bool AwaitCount(const std::atomic<int>& count, int n) {
  auto deadline = Clock::now() + 120s;
  while (count.load() < n) {
    if (Clock::now() > deadline) return false;
    std::this_thread::sleep_for(200us);
  }
  return true;
}

void BM_MqttPipeline_RawPaho(benchmark::State& state) {
  auto url = ParseBusUrl(BrokerUrl());
  const std::string server = "tcp://" + url->host + ":" + std::to_string(url->port ? url->port : 1883);
  auto create = ::mqtt::create_options_builder().mqtt_version(MQTTVERSION_5).max_buffered_messages(10 * kWindow).finalize();
  auto connect = ::mqtt::connect_options_builder().mqtt_version(MQTTVERSION_5).clean_start(true).finalize();
  for (auto _ : state) {
    const std::string topic = "fanflow/" + Unique("bench_raw_");
    std::atomic<int> got{0};
    ::mqtt::async_client consumer(server, Unique("bench-raw-c-"), create);
    consumer.set_message_callback([&](::mqtt::const_message_ptr) { ++got; });
    ::mqtt::async_client publisher(server, Unique("bench-raw-p-"), create);
    consumer.connect(connect)->wait();
    consumer.subscribe("$share/" + Unique("g") + "/" + topic, 1)->wait();
    publisher.connect(connect)->wait();

    auto start = Clock::now();
    std::deque<::mqtt::delivery_token_ptr> window;
    for (int i = 0; i < kMessages; ++i) {
      if (window.size() >= kWindow) {
        window.front()->wait();
        window.pop_front();
      }
      window.push_back(publisher.publish(topic, Body().data(), Body().size(), 1, false));
    }
    for (auto& t : window) t->wait();
    bool ok = AwaitCount(got, kMessages);
    double seconds = std::chrono::duration<double>(Clock::now() - start).count();
    state.SetIterationTime(seconds);
    state.counters["msg_per_s"] = kMessages / seconds;
    if (!ok) state.SkipWithError("raw consumer did not get every message in 120 s");
    publisher.disconnect()->wait();
    consumer.disconnect()->wait();
  }
}

void BM_MqttPipeline_Fanflow(benchmark::State& state) {
  const std::string type = "fanflow." + Unique("bench_ff_") + ".v1";
  std::vector<Message> batch;
  for (int i = 0; i < kMessages; ++i) batch.push_back(Message{type, std::to_string(i), Body()});
  for (auto _ : state) {
    auto bus = OpenBus(BrokerUrl());
    if (!bus.ok()) {
      state.SkipWithError(bus.status().ToString().c_str());
      break;
    }
    std::atomic<int> got{0};
    auto sub = (*bus)->Subscribe({Unique("g"), {type}, kFanflowConcurrency, true}, [&](const Delivery&) {
      ++got;
      return Verdict::Ack();
    });
    if (!sub.ok()) {
      state.SkipWithError(sub.status().ToString().c_str());
      break;
    }
    auto start = Clock::now();
    Status published = (*bus)->Publish(batch);
    bool ok = published.ok() && AwaitCount(got, kMessages);
    double seconds = std::chrono::duration<double>(Clock::now() - start).count();
    state.SetIterationTime(seconds);
    state.counters["msg_per_s"] = kMessages / seconds;
    if (!ok) state.SkipWithError(published.ok() ? "not every message arrived in 120 s" : published.ToString().c_str());
  }
}

void Configure(benchmark::internal::Benchmark* b) {
  b->Iterations(1)->Repetitions(5)->UseManualTime()->Unit(benchmark::kMillisecond);
}

BENCHMARK(BM_MqttPipeline_RawPaho)->Apply(Configure);
BENCHMARK(BM_MqttPipeline_Fanflow)->Apply(Configure);

// The usual console output, then one table row with both medians and the ratio.
using bench::Max;
using bench::Median;
using bench::Min;

class TableReporter : public benchmark::ConsoleReporter {
 public:
  TableReporter() : ConsoleReporter(OO_Tabular) {}

  void ReportRuns(const std::vector<Run>& runs) override {
    ConsoleReporter::ReportRuns(runs);
    for (const Run& r : runs)
      if (r.run_type == Run::RT_Iteration && !r.error_occurred)
        if (auto it = r.counters.find("msg_per_s"); it != r.counters.end())
          rates_[r.run_name.function_name].push_back(it->second.value);
  }

  void PrintTable() {
    auto& raw = rates_["BM_MqttPipeline_RawPaho"];
    auto& ff = rates_["BM_MqttPipeline_Fanflow"];
    if (raw.empty() || ff.empty()) return;
    std::printf("\n| pattern (%d QoS 1 msgs, ~%zu B, window %d) | raw paho msg/s | fanflow msg/s | ratio |\n",
                kMessages, Body().size(), kWindow);
    std::printf("|---|---|---|---|\n");
    std::printf("| publish + shared-subscription consume (medians of %zu / %zu runs) | %.0f (%.0f-%.0f) | "
                "%.0f (%.0f-%.0f) | %.2f |\n",
                raw.size(), ff.size(), Median(raw), Min(raw), Max(raw), Median(ff), Min(ff), Max(ff),
                Median(ff) / Median(raw));
  }

 private:
  std::map<std::string, std::vector<double>> rates_;
};

}  // namespace
}  // namespace fanflow

int main(int argc, char** argv) {
  std::vector<char*> args(argv, argv + argc);
  std::string interleave = "--benchmark_enable_random_interleaving=true";
  args.insert(args.begin() + 1, interleave.data());
  int n = static_cast<int>(args.size());
  benchmark::Initialize(&n, args.data());
  if (fanflow::BrokerUrl().empty()) {
    std::fprintf(stderr,
                 "mqtt_pipeline_bench: set FANFLOW_BENCH_MQTT_URL or FANFLOW_TEST_MQTT_URL "
                 "(eval \"$(scripts/mosquitto-start.sh)\")\n");
    return 1;
  }
  fanflow::TableReporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  reporter.PrintTable();
  benchmark::Shutdown();
  return 0;
}
