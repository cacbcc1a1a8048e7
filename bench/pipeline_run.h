// One real fan-out / fan-in through a bus, timed: ventilator, workers (sum)
// and aggregator run in this process, talking over the bus URL given. The
// broker benches run it next to their raw-client ceiling, in the same run.
// The pipeline talks to the bus through a timing decorator, so measuring
// latency adds no queue, delivery or parse on the broker's side.
#pragma once

#include <string>

#include "core/status.h"

namespace fanflow::bench {

struct PipelineFigures {
  double seconds = 0;
  double chunks_per_second = 0;
  double items_per_second = 0;
  // A chunk's latency: its process_chunk handed to Publish by the ventilator
  // -> its chunk_done entering the aggregator's handler (measured in process).
  double p50_chunk_latency_ms = 0;
  double p99_chunk_latency_ms = 0;
};

// The workers' handler threads and their prefetch (0: the bus's default).
struct WorkerShape {
  int concurrency = 8;
  int prefetch = 0;
  std::string Describe() const;  // "8 worker slots" / "8 worker threads, prefetch 256"
};

[[nodiscard]] Result<PipelineFigures> RunPipeline(const std::string& bus_url, int64_t items,
                                                  int64_t chunk_size, const WorkerShape& workers);

}  // namespace fanflow::bench
