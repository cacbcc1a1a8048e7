// libFuzzer: the aggregator's input path. Each input is published on an
// in-process bus as a chunk_done body and as a batch_sealed body, and the
// aggregator (with a real SQLite ledger in a temp file) handles both before the
// next input: whatever the bytes, no crash, no hang, no sanitizer report.
// Uses only the bus port and Aggregator::Start.
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <thread>

#include "core/bus.h"
#include "core/event.h"
#include "core/routes.h"
#include "pipeline/aggregator.h"

namespace {

using namespace std::chrono_literals;

struct Harness {
  std::unique_ptr<fanflow::EventBus> bus;
  std::unique_ptr<fanflow::Aggregator> aggregator;
  std::string ledger_path;
};

void Die(const char* what, const fanflow::Status& s) {
  std::fprintf(stderr, "fuzz_chunk_done: %s: %s\n", what, s.ToString().c_str());
  std::abort();
}

// Until the aggregator has settled everything published so far.
void Drain(fanflow::EventBus& bus) {
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (true) {
    auto stats = bus.Stats(fanflow::routes::kAggregatorGroup);
    if (!stats.ok()) Die("stats", stats.status());
    int64_t waiting = 0;
    for (const auto& q : stats.value()) waiting += q.depth + q.in_flight;
    if (waiting == 0) return;
    if (std::chrono::steady_clock::now() > deadline) {
      std::fprintf(stderr, "fuzz_chunk_done: the aggregator did not settle an input within 10 s\n");
      std::abort();  // a wedge is a finding too
    }
    std::this_thread::sleep_for(20us);
  }
}

Harness& Get() {
  static Harness* h = [] {
    spdlog::set_level(spdlog::level::off);  // a log line per dead letter would be most of the time
    auto* h = new Harness;
    // In memory when the machine has /dev/shm: fsyncs would be most of the time.
    std::string path = (access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp");
    path += "/fanflow-fuzz-ledger-XXXXXX";
    const int fd = mkstemp(path.data());
    if (fd < 0) std::abort();
    close(fd);
    h->ledger_path = path;
    auto bus = fanflow::OpenBus("inproc://fuzz-chunk-done");
    if (!bus.ok()) Die("open bus", bus.status());
    h->bus = std::move(bus).value();
    fanflow::AggregatorOptions o;
    o.state_path = h->ledger_path;
    auto agg = fanflow::Aggregator::Start(*h->bus, o);
    if (!agg.ok()) Die("start aggregator", agg.status());
    h->aggregator = std::move(agg).value();
    // The batches of the seed corpus, admitted and sealed in their first step
    // (400 chunks of 100, the default fan-out window), so inputs reach the
    // ledger's placement and conflict checks.
    for (const char* batch : {"b-20240611-c210", "orders-2024-06-11", "b-20240611-7f3a"}) {
      auto start = fanflow::MakeEvent(fanflow::kStartFanout, std::string(batch) + "/start", batch, batch,
                                      {{"source", "range:40000"}, {"chunk_size", 100}});
      auto sealed = fanflow::MakeEvent(fanflow::kBatchSealed, std::string(batch) + "/sealed", batch, batch,
                                       {{"total_chunks", 400}, {"total_items", 40000}, {"step", 0}});
      for (const auto& e : {start, sealed}) {
        if (auto s = h->bus->Publish(fanflow::Message{e.type, e.id, fanflow::EncodeEvent(e)}); !s.ok())
          Die("admit", s);
        Drain(*h->bus);
      }
    }
    std::atexit([] {
      for (const char* suffix : {"", "-wal", "-shm"})
        std::remove((Get().ledger_path + suffix).c_str());
    });
    return h;
  }();
  return *h;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Harness& h = Get();
  const std::string body(reinterpret_cast<const char*>(data), size);
  for (const char* type : {fanflow::kChunkDone, fanflow::kBatchSealed, fanflow::kFanoutProgress,
                           fanflow::kStartFanout})
    if (auto s = h.bus->Publish(fanflow::Message{type, "", body}); !s.ok()) Die("publish", s);
  Drain(*h.bus);
  // Inproc keeps dead letters in memory; left there, every input would look
  // like a leak to libFuzzer, which then runs LeakSanitizer (10 ms) each time.
  if (auto n = h.bus->PurgeDeadLetters(""); !n.ok()) Die("purge", n.status());
  return 0;
}
