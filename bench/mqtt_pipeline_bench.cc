// The MQTT pipeline pattern, measured against raw paho-mqtt-cpp in one run:
// QoS 1 publishes in a window of 100 (fanflow's default; the broker's Receive
// Maximum when that is lower, on both sides) while a member of a
// shared subscription (QoS 1) consumes them.
// - RawPaho: one publishing and one consuming client, the message counted in
//   paho's callback. `props:1` sends what fanflow sends on the wire (content
//   type, event id and publish time as properties): the ceiling for the same
//   messages. `props:0` sends the bare payload, for comparison.
// - Fanflow: EventBus::Publish of the whole batch, a subscription of
//   concurrency 2 whose handler counts.
// - EndToEnd: one real fan-out / fan-in (bench/pipeline_run), next to the raw
//   ceiling for its two message sizes, with 8 worker slots (the CLI's two
//   workers of 4) and with 32. paho serves every connection of a process with
//   one receive and one send thread under one process-wide lock, so 32 slots
//   publishing from one process mostly wait on that lock: 0.48-0.54 of raw
//   paho on a stock Mosquitto against 0.59 with 8 (2026-12-06). Separate
//   processes do not share it (bench/cli_pipeline.sh).
// Every case runs again against FANFLOW_BENCH_MQTT_STOCK_URL when it is set: a
// Mosquitto with its stock settings (scripts/mosquitto-start.sh with
// FANFLOW_MQTT_STOCK=1), arg stock:1, in tables of their own.
// Repetitions are interleaved at random; the tables at the end give medians
// and ratios. Each iteration uses a fresh topic and group; connecting and
// subscribing are outside the measured time. `cpu_us_per_msg` is this
// process's CPU time (all threads) per message: less noisy than throughput on
// shared cores.
//
//   export FANFLOW_TEST_MQTT_URL=mqtt://127.0.0.1:1884
//   FANFLOW_BENCH_MQTT_STOCK_URL=mqtt://127.0.0.1:1886 build-release/bench/mqtt_pipeline_bench
#include <benchmark/benchmark.h>
#include <mqtt/async_client.h>
#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <thread>

#include "adapters/mqtt/mqtt_options.h"
#include "bench/broker_bench.h"
#include "core/bus.h"
#include "core/bus_url.h"
#include "core/routes.h"

namespace fanflow {
namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;
using bench::CloudEventBody;
using bench::Unique;

constexpr int kMessages = 20000;
constexpr int kWindow = 100;
constexpr int kFanflowConcurrency = 2;

std::string BrokerUrl() { return bench::UrlFromEnv("FANFLOW_BENCH_MQTT_URL", "FANFLOW_TEST_MQTT_URL"); }
std::string StockUrl() {
  const char* url = std::getenv("FANFLOW_BENCH_MQTT_STOCK_URL");
  return url ? url : "";
}
// The broker of a case: its last arg says stock (1) or tuned (0).
std::string UrlOf(const benchmark::State& state, int arg) { return state.range(arg) ? StockUrl() : BrokerUrl(); }

// CPU seconds (user + system) this process has used so far, all threads.
double ProcessCpuSeconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  auto secs = [](const timeval& t) { return static_cast<double>(t.tv_sec) + t.tv_usec / 1e6; };
  return secs(u.ru_utime) + secs(u.ru_stime);
}

// Times one iteration from construction; Finish sets the counters.
class IterationClock {
 public:
  void Finish(benchmark::State& state) {
    const double seconds = std::chrono::duration<double>(Clock::now() - start_).count();
    state.SetIterationTime(seconds);
    state.counters["msg_per_s"] = kMessages / seconds;
    state.counters["cpu_us_per_msg"] = (ProcessCpuSeconds() - cpu_start_) * 1e6 / kMessages;
  }

 private:
  Clock::time_point start_ = Clock::now();
  double cpu_start_ = ProcessCpuSeconds();
};

// Waits (bounded) until `count` reaches `n`; false on timeout.
bool AwaitCount(const std::atomic<int>& count, int n) {
  auto deadline = Clock::now() + 120s;
  while (count.load() < n) {
    if (Clock::now() > deadline) return false;
    std::this_thread::sleep_for(200us);
  }
  return true;
}

// What fanflow's adapter sets on a first publish (adapters/mqtt/mqtt_envelope.cc).
::mqtt::message_ptr RawMessage(const std::string& topic, const std::string& body, int i, bool props) {
  ::mqtt::message_ptr_builder b;
  b.topic(topic).payload(body).qos(1);
  if (props) {
    ::mqtt::properties p;
    p.add({::mqtt::property::CONTENT_TYPE, mqtt::kContentType});
    p.add({::mqtt::property::USER_PROPERTY, mqtt::kPropId, "raw-" + std::to_string(i)});
    p.add({::mqtt::property::USER_PROPERTY, mqtt::kPropPublishedAt,
           std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(
                              std::chrono::system_clock::now().time_since_epoch())
                              .count())});
    b.properties(std::move(p));
  }
  return b.finalize();
}

void BM_MqttPipeline_RawPaho(benchmark::State& state) {
  const std::string body = CloudEventBody(static_cast<int>(state.range(0)));
  const bool props = state.range(1) != 0;
  auto url = ParseBusUrl(UrlOf(state, 2));
  const std::string server = "tcp://" + url->host + ":" + std::to_string(url->port ? url->port : 1883);
  auto create =
      ::mqtt::create_options_builder().mqtt_version(MQTTVERSION_5).max_buffered_messages(10 * kWindow).finalize();
  auto connect = ::mqtt::connect_options_builder().mqtt_version(MQTTVERSION_5).clean_start(true).finalize();
  for (auto _ : state) {
    const std::string topic = routes::MqttTopic("fanflow." + Unique("bench_raw") + ".v1");
    std::atomic<int> got{0};
    ::mqtt::async_client consumer(server, Unique("bench-raw-c"), create);
    consumer.set_message_callback([&](::mqtt::const_message_ptr) { ++got; });
    ::mqtt::async_client publisher(server, Unique("bench-raw-p"), create);
    consumer.connect(connect)->wait();
    consumer.subscribe("$share/" + Unique("g") + "/" + topic, 1)->wait();
    auto connected = publisher.connect(connect);
    connected->wait();
    // Like fanflow's publisher, never more in flight than the broker's Receive
    // Maximum: paho holds the excess back for up to a second.
    const auto& connack = connected->get_connect_response().get_properties();
    const size_t in_flight =
        connack.contains(::mqtt::property::RECEIVE_MAXIMUM)
            ? std::min<size_t>(kWindow, ::mqtt::get<int>(connack, ::mqtt::property::RECEIVE_MAXIMUM))
            : kWindow;

    IterationClock clock;
    std::deque<::mqtt::delivery_token_ptr> window;
    for (int i = 0; i < kMessages; ++i) {
      if (window.size() >= in_flight) {
        window.front()->wait();
        window.pop_front();
      }
      window.push_back(publisher.publish(RawMessage(topic, body, i, props)));
    }
    for (auto& t : window) t->wait();
    const bool ok = AwaitCount(got, kMessages);
    clock.Finish(state);
    if (!ok) state.SkipWithError("raw consumer did not get every message in 120 s");
    publisher.disconnect()->wait();
    consumer.disconnect()->wait();
  }
}

void BM_MqttPipeline_Fanflow(benchmark::State& state) {
  const std::string body = CloudEventBody(static_cast<int>(state.range(0)));
  const std::string type = "fanflow." + Unique("bench_ff") + ".v1";
  std::vector<Message> batch;
  for (int i = 0; i < kMessages; ++i) batch.push_back(Message{type, std::to_string(i), body});
  for (auto _ : state) {
    auto bus = OpenBus(UrlOf(state, 1));
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
    IterationClock clock;
    Status published = (*bus)->Publish(batch);
    const bool ok = published.ok() && AwaitCount(got, kMessages);
    clock.Finish(state);
    if (!ok) state.SkipWithError(published.ok() ? "not every message arrived in 120 s" : published.ToString().c_str());
  }
}

// The whole pipeline on Mosquitto: start_fanout -> process_chunk x N -> sum
// workers -> chunk_done -> aggregator (SQLite ledger) -> batch_complete.
void BM_MqttPipeline_EndToEnd(benchmark::State& state) {
  bench::MeasureEndToEnd(state, UrlOf(state, 2), {static_cast<int>(state.range(3))});
}

void Configure(benchmark::internal::Benchmark* b) {
  b->Iterations(1)->Repetitions(5)->UseManualTime()->Unit(benchmark::kMillisecond);
}

// The brokers to measure: the tuned one, and the stock one when it is given.
std::vector<int64_t> Brokers() { return StockUrl().empty() ? std::vector<int64_t>{0} : std::vector<int64_t>{0, 1}; }

void RawCases(benchmark::internal::Benchmark* b) {
  for (int64_t stock : Brokers()) {
    b->Args({bench::kChunkDoneBytes, 1, stock})->Args({bench::kProcessChunkBytes, 1, stock});
    if (!stock) b->Args({bench::kChunkDoneBytes, 0, stock});
  }
  Configure(b);
}

void FanflowCases(benchmark::internal::Benchmark* b) {
  for (int64_t stock : Brokers()) b->Args({bench::kChunkDoneBytes, stock})->Args({bench::kProcessChunkBytes, stock});
  Configure(b);
}

constexpr int kEndToEndSlots[] = {8, 32};

void EndToEndCases(benchmark::internal::Benchmark* b) {
  for (int64_t stock : Brokers())
    for (int slots : kEndToEndSlots) b->Args({200000, 100, stock, slots});
  Configure(b);
}

BENCHMARK(BM_MqttPipeline_RawPaho)->ArgNames({"bytes", "props", "stock"})->Apply(RawCases);
BENCHMARK(BM_MqttPipeline_Fanflow)->ArgNames({"bytes", "stock"})->Apply(FanflowCases);
BENCHMARK(BM_MqttPipeline_EndToEnd)->ArgNames({"items", "chunk", "stock", "slots"})->Apply(EndToEndCases);

void PrintTables(const bench::TableReporter& report) {
  for (int64_t stock : Brokers()) {
    const std::string b = "/stock:" + std::to_string(stock);
    auto rates = [&](const std::string& prefix) { return report.Values(prefix + b, "msg_per_s"); };
    auto raw = [&](int bytes, int props) {
      return rates("BM_MqttPipeline_RawPaho/bytes:" + std::to_string(bytes) + "/props:" + std::to_string(props));
    };
    auto fanflow = [&](int bytes) { return rates("BM_MqttPipeline_Fanflow/bytes:" + std::to_string(bytes)); };
    std::printf("\n%s\n\n| pattern (%d QoS 1 msgs, window %d) | raw paho msg/s | fanflow msg/s | ratio |\n|---|---|---|---|\n",
                stock ? "Stock Mosquitto (FANFLOW_BENCH_MQTT_STOCK_URL)" : "Tuned Mosquitto (docker/mosquitto.conf)",
                kMessages, kWindow);
    for (int bytes : {bench::kChunkDoneBytes, bench::kProcessChunkBytes})
      bench::PrintRatioRow(std::to_string(bytes) + " B, raw with fanflow's properties", raw(bytes, 1),
                           fanflow(bytes));
    if (!stock)
      bench::PrintRatioRow(std::to_string(bench::kChunkDoneBytes) + " B, raw with bare payloads",
                           raw(bench::kChunkDoneBytes, 0), fanflow(bench::kChunkDoneBytes));
    for (int slots : kEndToEndSlots)
      bench::PrintEndToEndTable(report,
                                "BM_MqttPipeline_EndToEnd/items:200000/chunk:100" + b + "/slots:" +
                                    std::to_string(slots),
                                raw(bench::kProcessChunkBytes, 1), raw(bench::kChunkDoneBytes, 1), "paho", {slots});
  }
}

}  // namespace
}  // namespace fanflow

int main(int argc, char** argv) {
  return fanflow::bench::RunBrokerBench(
      argc, argv, fanflow::BrokerUrl(),
      "mqtt_pipeline_bench: set FANFLOW_BENCH_MQTT_URL or FANFLOW_TEST_MQTT_URL "
      "(eval \"$(scripts/mosquitto-start.sh)\")",
      fanflow::PrintTables);
}
