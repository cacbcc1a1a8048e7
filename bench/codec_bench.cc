// The CloudEvents codec on the two events every chunk costs: the process_chunk
// a worker decodes (100 range items inline, as `fanflow submit --source range:N`
// sends them) and the small chunk_done the aggregator decodes.
#include <benchmark/benchmark.h>

#include <string>

#include "core/event.h"
#include "pipeline/source.h"

namespace fanflow {
namespace {

constexpr int64_t kChunkItems = 100;
constexpr uint64_t kSeed = 7;

// The process_chunk the ventilator builds for chunk 3 of a range source.
Event ProcessChunkEvent() {
  const int64_t first = 3 * kChunkItems;
  nlohmann::json items = nlohmann::json::array();
  for (int64_t i = first; i < first + kChunkItems; ++i)
    items.push_back({{"id", i}, {"value", RangeItemValue(kSeed, i)}});
  return MakeEvent(kProcessChunk, "bench-batch/chunk/3", "bench-batch", "bench-corr",
                   {{"chunk_index", 3},
                    {"first_item", first},
                    {"item_count", kChunkItems},
                    {"items", std::move(items)}});
}

// The chunk_done a worker publishes for it with the sum processor.
Event ChunkDoneEvent() {
  return MakeEvent(kChunkDone, "bench-batch/done/3", "bench-batch", "bench-corr",
                   {{"chunk_index", 3},
                    {"items", kChunkItems},
                    {"attempts", 1},
                    {"duration_ms", 0.042},
                    {"status", "succeeded"},
                    {"result", 50123}});
}

// items/s counts what one event stands for: range items for a chunk, the event
// itself for a chunk_done. events/s is reported for both.
void ReportRates(benchmark::State& state, size_t bytes_per_event, int64_t items_per_event) {
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(bytes_per_event));
  state.SetItemsProcessed(state.iterations() * items_per_event);
  state.counters["events/s"] =
      benchmark::Counter(static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
  state.counters["event_bytes"] = static_cast<double>(bytes_per_event);
}

void EncodeLoop(benchmark::State& state, const Event& event, int64_t items_per_event) {
  size_t bytes = 0;
  for (auto _ : state) {
    std::string body = EncodeEvent(event);
    bytes = body.size();
    benchmark::DoNotOptimize(body.data());
  }
  ReportRates(state, bytes, items_per_event);
}

void DecodeLoop(benchmark::State& state, const Event& event, int64_t items_per_event) {
  const std::string body = EncodeEvent(event);
  for (auto _ : state) {
    Result<Event> decoded = DecodeEvent(body);
    if (!decoded.ok()) {
      state.SkipWithError(decoded.status().ToString().c_str());
      return;
    }
    benchmark::DoNotOptimize(decoded.value().data);
  }
  ReportRates(state, body.size(), items_per_event);
}

void BM_Codec_EncodeChunk(benchmark::State& state) { EncodeLoop(state, ProcessChunkEvent(), kChunkItems); }
void BM_Codec_DecodeChunk(benchmark::State& state) { DecodeLoop(state, ProcessChunkEvent(), kChunkItems); }
void BM_Codec_EncodeChunkDone(benchmark::State& state) { EncodeLoop(state, ChunkDoneEvent(), 1); }
void BM_Codec_DecodeChunkDone(benchmark::State& state) { DecodeLoop(state, ChunkDoneEvent(), 1); }

BENCHMARK(BM_Codec_EncodeChunk);
BENCHMARK(BM_Codec_DecodeChunk);
BENCHMARK(BM_Codec_EncodeChunkDone);
BENCHMARK(BM_Codec_DecodeChunkDone);

}  // namespace
}  // namespace fanflow
