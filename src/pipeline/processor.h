// What a worker does to a chunk. Built in: `sum`, `sleep`; `--exec CMD`,
// which runs CMD per chunk (chunk JSON on stdin, result JSON on stdout,
// non-zero exit = failure); and `--coprocess CMD`, long-lived copies of CMD
// that take one chunk per line (coprocess.h). Processors are called from
// several worker threads at once and must be thread-safe.
#pragma once

#include <nlohmann/json.hpp>
#include <chrono>
#include <memory>
#include <stop_token>
#include <string>
#include <string_view>

#include "core/event.h"
#include "core/status.h"

namespace fanflow {

struct ChunkInput {
  std::string batch_id;
  int64_t chunk_index = 0;
  const nlohmann::json& items;  // an array of items
  // Asked to stop (the worker is interrupted): Process returns Cancelled soon.
  std::stop_token stop = {};
  // The process_chunk it came in (its items may be a claim check's); null
  // when the chunk did not come from a bus.
  const Event* event = nullptr;
};

// The same chunk with its items as JSON text: an array, already checked
// within the decoder's limits (no deeper than 64 levels, strings of at most
// 1 MiB, at most 1,000,000 elements per array or object).
struct ChunkText {
  std::string batch_id;
  int64_t chunk_index = 0;
  std::string_view items_json;
  std::stop_token stop = {};
  // The process_chunk it came in, its items left out of `data`.
  const Event* event = nullptr;
};

class Processor {
 public:
  virtual ~Processor() = default;
  // The chunk's result (merged into the batch result), or why it failed.
  [[nodiscard]] virtual Result<nlohmann::json> Process(const ChunkInput& chunk) = 0;

  // A processor that reads the items' JSON text itself returns true, and the
  // worker calls ProcessText for a chunk whose items came inline, without ever
  // building them as a DOM (in-process, that DOM was a third of a chunk's CPU).
  // Process is still called for items loaded from a claim check.
  [[nodiscard]] virtual bool TakesItemsText() const { return false; }
  // By default: the items parsed, then Process.
  [[nodiscard]] virtual Result<nlohmann::json> ProcessText(const ChunkText& chunk);
};

struct ProcessorOptions {
  std::string name = "sum";  // sum | sleep | exec | coprocess
  std::string command;       // exec, coprocess: run with /bin/sh -c
  int copies = 1;            // coprocess: long-lived copies, at most
  double sleep_scale = 1.0;  // sleep: ms slept per unit of `value`
  std::chrono::milliseconds timeout{0};  // 0: none; past it the attempt fails
};

[[nodiscard]] Result<std::unique_ptr<Processor>> MakeProcessor(const ProcessorOptions& options);

}  // namespace fanflow
