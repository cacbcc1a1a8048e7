// Runs one whole batch in this process, as `fanflow run` does: an aggregator,
// workers calling your Processor, a ventilator, and a waiter for the batch's
// batch_complete, all on one bus. Installed as <fanflow/batch_runner.h>; see
// docs/CPP_API.md. One run at a time per bus: the roles of two would share its
// consumer groups (give each its own, e.g. inproc://a and inproc://b).
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <stop_token>
#include <string>
#include <vector>

#include "core/bus.h"
#include "core/event.h"
#include "core/status.h"
#include "pipeline/processor.h"

namespace fanflow {

// What to fan out: one batch's start_fanout.
struct BatchSpec {
  std::string source;         // range:N[:SEED], jsonl:PATH, or - (this process's stdin)
  int64_t chunk_size = 100;   // items per chunk
  int64_t page_chunks = 100;  // chunks the ventilator reads per page
  int64_t claim_check_bytes = 256 * 1024;  // a larger chunk travels as a file reference
  std::string batch_id;                    // "": a new one, "b-<UTC time>-<random>"
  std::string correlation_id;              // "": the batch id
  std::string combine = "merge";           // how chunk results combine: merge | concat | none
};

// The batch's start_fanout; a jsonl: path becomes absolute and must name a
// file, nothing is read yet. A bad spec is InvalidArgument naming the flag
// `fanflow run` takes it from (e.g. "--batch-id: ...").
[[nodiscard]] Result<Event> MakeBatchStart(const BatchSpec& spec);

// How the batch runs here.
struct RunOptions {
  int concurrency = 4;   // chunks processed at once
  int max_attempts = 3;  // per chunk; then the chunk counts as failed
  // More directories files may be read under (the jsonl: source's own
  // directory always may be).
  std::vector<std::string> data_dirs;
  // The ledger. "": a temporary file, removed after. A rerun with the same
  // ledger and batch id answers a finished batch again and goes on with an
  // unfinished one.
  std::string state_path;
  std::chrono::milliseconds timeout{0};  // 0: none; past it, Timeout
  std::stop_token stop = {};             // requested: the roles stop, Cancelled
};

// Runs the batch on `bus` and returns its batch_complete: data.status is
// succeeded, partial, failed or timed_out; data.result consolidates the
// chunks' results (docs/CPP_API.md, "Results"). A processor's error, or an
// exception escaping Process, fails that attempt; after max_attempts the chunk
// is failed and dead-lettered with it.
[[nodiscard]] Result<Event> RunBatch(EventBus& bus, std::shared_ptr<Processor> processor,
                                     const BatchSpec& spec, const RunOptions& options = {});

}  // namespace fanflow
