// The AMQP pipeline pattern, measured twice in one run: persistent publishes
// with publisher confirms in a window of W while a consumer with prefetch P
// acks every message after "handling" it. Once with raw rabbitmq-c (the
// ceiling: one publishing and one consuming connection, no threads between),
// once through fanflow's adapter (EventBus::Publish of the whole batch, a
// subscription of concurrency 2). Repetitions are interleaved at random, and
// the table at the end gives the medians and their ratio.
//
//   FANFLOW_TEST_AMQP_URL=amqp://127.0.0.1:5673/ build-release/bench/amqp_pipeline_bench
//
// Each iteration moves kMessages messages through a fresh queue, declared
// with fanflow's topology (so both sides pay for the same queue arguments)
// and deleted afterwards.
#include <amqp.h>
#include <amqp_tcp_socket.h>
#include <benchmark/benchmark.h>

#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <thread>

#include "bench/broker_bench.h"
#include "core/bus.h"
#include "core/bus_url.h"
#include "core/routes.h"

namespace fanflow {
namespace {

constexpr int kMessages = 20000;
constexpr int kFanflowConcurrency = 2;

std::string BrokerUrl() { return bench::UrlFromEnv("FANFLOW_BENCH_AMQP_URL", "FANFLOW_TEST_AMQP_URL"); }

using bench::CloudEventBody;
using bench::kChunkDoneBytes;
using bench::kProcessChunkBytes;
using bench::Unique;

// A raw rabbitmq-c connection with channel 1 open, or error() says why not.
class RawConnection {
 public:
  explicit RawConnection(const BusUrl& url) : conn_(amqp_new_connection()) {
    amqp_socket_t* socket = amqp_tcp_socket_new(conn_);
    if (amqp_socket_open(socket, url.host.c_str(), url.port ? url.port : 5672) != AMQP_STATUS_OK) {
      error_ = "raw: cannot connect";
      return;
    }
    const std::string user = url.user.empty() ? "guest" : url.user;
    const std::string pass = url.password.empty() ? "guest" : url.password;
    amqp_rpc_reply_t r =
        amqp_login(conn_, url.path.empty() ? "/" : url.path.c_str(), 0, AMQP_DEFAULT_FRAME_SIZE, 10,
                   AMQP_SASL_METHOD_PLAIN, user.c_str(), pass.c_str());
    amqp_channel_open(conn_, 1);
    if (r.reply_type != AMQP_RESPONSE_NORMAL ||
        amqp_get_rpc_reply(conn_).reply_type != AMQP_RESPONSE_NORMAL)
      error_ = "raw: cannot log in / open a channel";
  }
  ~RawConnection() {
    if (error_.empty()) amqp_connection_close(conn_, AMQP_REPLY_SUCCESS);
    amqp_destroy_connection(conn_);
  }
  amqp_connection_state_t get() { return conn_; }
  const std::string& error() const { return error_; }

 private:
  amqp_connection_state_t conn_;
  std::string error_;
};

void DeleteQueues(const BusUrl& url, const std::string& group, const std::string& type) {
  RawConnection c(url);
  if (!c.error().empty()) return;
  for (const std::string& q :
       {routes::AmqpQueue(group, type), routes::AmqpDeadLetterQueue(group, type)})
    amqp_queue_delete(c.get(), 1, amqp_cstring_bytes(q.c_str()), 0, 0);
}

// A fresh (group, type) with fanflow's queue arguments, declared through the bus.
bool DeclareFresh(benchmark::State& state, std::string& group, std::string& type) {
  group = Unique("bench");
  type = "fanflow." + Unique("bench") + ".v1";
  auto bus = OpenBus(BrokerUrl());
  if (!bus.ok() || !bus.value()->DeclareGroup(group, {type}).ok()) {
    state.SkipWithError("cannot declare the bench queue");
    return false;
  }
  return true;
}

// Raw consumer: qos, consume, ack each message as it comes; returns when all
// arrived ("") or why not. Sets `ready` once consuming (or failed).
std::string RawConsume(const BusUrl& url, const std::string& queue, int prefetch,
                       std::atomic<bool>& ready) {
  RawConnection c(url);
  ready = !c.error().empty();
  if (!c.error().empty()) return c.error();
  amqp_basic_qos(c.get(), 1, 0, static_cast<uint16_t>(prefetch), 0);
  amqp_basic_consume(c.get(), 1, amqp_cstring_bytes(queue.c_str()), amqp_empty_bytes, 0, 0, 0,
                     amqp_empty_table);
  ready = true;
  if (amqp_get_rpc_reply(c.get()).reply_type != AMQP_RESPONSE_NORMAL) return "raw: cannot consume";
  int got = 0;
  while (got < kMessages) {
    amqp_maybe_release_buffers(c.get());
    amqp_envelope_t env;
    timeval limit{30, 0};
    amqp_rpc_reply_t r = amqp_consume_message(c.get(), &env, &limit, 0);
    if (r.reply_type != AMQP_RESPONSE_NORMAL) return "raw: consume failed or timed out";
    benchmark::DoNotOptimize(env.message.body.len);
    amqp_basic_ack(c.get(), 1, env.delivery_tag, 0);
    amqp_destroy_envelope(&env);
    ++got;
  }
  return "";
}

// Raw publisher: persistent messages with the same properties fanflow sets,
// at most `window` unconfirmed; returns once all are confirmed ("") or why not.
std::string RawPublish(const BusUrl& url, const std::string& type, int window, const std::string& body) {
  RawConnection c(url);
  if (!c.error().empty()) return c.error();
  amqp_confirm_select(c.get(), 1);
  const std::string key = routes::AmqpRoutingKey(type);
  uint64_t sent = 0, confirmed = 0;
  while (confirmed < static_cast<uint64_t>(kMessages)) {
    while (sent < static_cast<uint64_t>(kMessages) &&
           sent - confirmed < static_cast<uint64_t>(window)) {
      const std::string id = type + "-" + std::to_string(sent);
      amqp_basic_properties_t p{};
      p._flags = AMQP_BASIC_CONTENT_TYPE_FLAG | AMQP_BASIC_DELIVERY_MODE_FLAG |
                 AMQP_BASIC_TIMESTAMP_FLAG | AMQP_BASIC_TYPE_FLAG | AMQP_BASIC_MESSAGE_ID_FLAG;
      p.content_type = amqp_cstring_bytes("application/cloudevents+json");
      p.delivery_mode = 2;
      p.timestamp = static_cast<uint64_t>(time(nullptr));
      p.type = amqp_cstring_bytes(type.c_str());
      p.message_id = amqp_cstring_bytes(id.c_str());
      amqp_basic_publish(c.get(), 1, amqp_cstring_bytes(routes::kAmqpExchange),
                         amqp_cstring_bytes(key.c_str()), 0, 0, &p,
                         amqp_bytes_t{body.size(), const_cast<char*>(body.data())});
      ++sent;
    }
    amqp_frame_t frame;
    timeval limit{30, 0};
    if (amqp_simple_wait_frame_noblock(c.get(), &frame, &limit) != AMQP_STATUS_OK)
      return "raw: no confirm within 30 s";
    if (frame.frame_type == AMQP_FRAME_METHOD && frame.payload.method.id == AMQP_BASIC_ACK_METHOD) {
      auto* ack = static_cast<amqp_basic_ack_t*>(frame.payload.method.decoded);
      confirmed = ack->multiple ? ack->delivery_tag : confirmed + 1;
    } else if (frame.frame_type == AMQP_FRAME_METHOD) {
      return "raw: the broker nacked or closed the channel";
    }
  }
  return "";
}

void BM_AmqpPipeline_RawClient(benchmark::State& state) {
  const int window = static_cast<int>(state.range(0)), prefetch = static_cast<int>(state.range(1));
  const std::string body = CloudEventBody(static_cast<int>(state.range(2)));
  auto url = ParseBusUrl(BrokerUrl());
  for (auto _ : state) {
    std::string group, type;
    if (!DeclareFresh(state, group, type)) return;
    std::atomic<bool> ready{false};
    std::string consume_error;
    std::thread consumer(
        [&] { consume_error = RawConsume(*url, routes::AmqpQueue(group, type), prefetch, ready); });
    while (!ready) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    auto start = std::chrono::steady_clock::now();
    std::string publish_error = RawPublish(*url, type, window, body);
    consumer.join();
    state.SetIterationTime(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    DeleteQueues(*url, group, type);
    if (!publish_error.empty() || !consume_error.empty()) {
      state.SkipWithError((publish_error + " " + consume_error).c_str());
      return;
    }
  }
  state.SetItemsProcessed(state.iterations() * kMessages);
}

void BM_AmqpPipeline_Fanflow(benchmark::State& state) {
  const int window = static_cast<int>(state.range(0)), prefetch = static_cast<int>(state.range(1));
  const std::string body = CloudEventBody(static_cast<int>(state.range(2)));
  auto url = ParseBusUrl(BrokerUrl());
  const std::string base = BrokerUrl(), sep = base.find('?') == std::string::npos ? "?" : "&";
  auto bus = OpenBus(base + sep + "confirm_window=" + std::to_string(window) +
                     "&prefetch=" + std::to_string(prefetch));
  if (!bus.ok()) {
    state.SkipWithError(bus.status().ToString().c_str());
    return;
  }
  std::vector<Message> batch;
  for (auto _ : state) {
    std::string group, type;
    if (!DeclareFresh(state, group, type)) return;
    batch.clear();
    for (int i = 0; i < kMessages; ++i)
      batch.push_back(Message{type, type + "-" + std::to_string(i), body});
    std::mutex mu;
    std::condition_variable all_in;
    int got = 0;
    auto sub = bus.value()->Subscribe({group, {type}, kFanflowConcurrency}, [&](const Delivery& d) {
      benchmark::DoNotOptimize(d.message.body.size());
      std::lock_guard<std::mutex> lock(mu);
      if (++got == kMessages) all_in.notify_one();
      return Verdict::Ack();
    });
    if (!sub.ok()) {
      state.SkipWithError(sub.status().ToString().c_str());
      return;
    }
    auto start = std::chrono::steady_clock::now();
    if (Status s = bus.value()->Publish(batch); !s.ok()) {
      state.SkipWithError(s.ToString().c_str());
      return;
    }
    {
      std::unique_lock<std::mutex> lock(mu);
      if (!all_in.wait_for(lock, std::chrono::seconds(60), [&] { return got == kMessages; })) {
        state.SkipWithError("fanflow: not every message arrived within 60 s");
        return;
      }
    }
    state.SetIterationTime(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    sub.value().reset();  // its last acks are sent before the queue goes
    DeleteQueues(*url, group, type);
  }
  state.SetItemsProcessed(state.iterations() * kMessages);
}

// The whole pipeline on RabbitMQ: start_fanout -> process_chunk x N -> sum
// workers -> chunk_done -> aggregator (SQLite ledger) -> batch_complete.
// Throughput is chunks (items) over the time from publishing start_fanout to
// receiving batch_complete. A chunk's latency is measured in process, at no
// cost to the broker: from its process_chunk being handed to Publish by the
// ventilator to its chunk_done entering the aggregator's handler (so it
// includes the wait in the workers' queue behind the chunks fanned out first).
// 8 worker threads, prefetch 256: a thread goes on to the next chunk at once,
// while the chunk holds its place in the prefetch until its chunk_done is
// confirmed (Verdict::AckAfterPublishing), so 256 is what may wait for
// confirms. 32 threads with their default prefetch of 64 measured slower.
constexpr bench::WorkerShape kEndToEndWorkers{8, 256};
void BM_AmqpPipeline_EndToEnd(benchmark::State& state) {
  bench::MeasureEndToEnd(state, BrokerUrl(), kEndToEndWorkers);
}
BENCHMARK(BM_AmqpPipeline_EndToEnd)
    ->ArgNames({"items", "chunk"})
    ->Args({200000, 100})
    ->Iterations(1)
    ->Repetitions(5)
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);

void Configure(benchmark::internal::Benchmark* b) {
  b->ArgNames({"window", "prefetch", "bytes"})
      ->Args({1000, 100, kChunkDoneBytes})
      ->Args({1000, 1000, kChunkDoneBytes})
      ->Args({1000, 100, kProcessChunkBytes})
      ->Iterations(1)
      ->Repetitions(5)
      ->UseManualTime()
      ->Unit(benchmark::kMillisecond);
}
BENCHMARK(BM_AmqpPipeline_RawClient)->Apply(Configure);
BENCHMARK(BM_AmqpPipeline_Fanflow)->Apply(Configure);

void PrintTables(const bench::TableReporter& report) {
  auto rates = [&](const std::string& side, int prefetch, int bytes) {
    return report.Values("BM_AmqpPipeline_" + side + "/window:1000/prefetch:" + std::to_string(prefetch) +
                             "/bytes:" + std::to_string(bytes),
                         "items_per_second");
  };
  std::printf("\n| pattern (%d persistent msgs) | raw rabbitmq-c msg/s | fanflow msg/s | ratio |\n|---|---|---|---|\n",
              kMessages);
  for (auto [prefetch, bytes] : {std::pair{100, kChunkDoneBytes}, {1000, kChunkDoneBytes}, {100, kProcessChunkBytes}})
    bench::PrintRatioRow("window 1000, prefetch " + std::to_string(prefetch) + ", " + std::to_string(bytes) + " B",
                         rates("RawClient", prefetch, bytes), rates("Fanflow", prefetch, bytes));
  bench::PrintEndToEndTable(report, "BM_AmqpPipeline_EndToEnd", rates("RawClient", 100, kProcessChunkBytes),
                            rates("RawClient", 100, kChunkDoneBytes), "rabbitmq-c", kEndToEndWorkers);
}

}  // namespace
}  // namespace fanflow

int main(int argc, char** argv) {
  return fanflow::bench::RunBrokerBench(
      argc, argv, fanflow::BrokerUrl(),
      "amqp_pipeline_bench: set FANFLOW_BENCH_AMQP_URL or FANFLOW_TEST_AMQP_URL "
      "(eval \"$(scripts/rabbitmq-start.sh)\")",
      fanflow::PrintTables);
}
