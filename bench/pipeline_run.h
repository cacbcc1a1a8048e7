// One real fan-out / fan-in through a bus, timed: ventilator, workers (sum)
// and aggregator run in this process, talking over the bus URL given. The
// broker benches run it next to their raw-client ceiling, in the same run.
#pragma once

#include <string>

#include "core/status.h"

namespace fanflow::bench {

struct PipelineFigures {
  double seconds = 0;
  double chunks_per_second = 0;
  double items_per_second = 0;
  double p50_chunk_latency_ms = 0;     // process_chunk seen -> its chunk_done seen
  double p99_chunk_latency_ms = 0;
};

[[nodiscard]] Result<PipelineFigures> RunPipeline(const std::string& bus_url, int64_t items,
                                                  int64_t chunk_size, int concurrency);

}  // namespace fanflow::bench
