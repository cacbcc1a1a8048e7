// The one composition root of a batch run in one process: `fanflow run`, the
// pipeline benches and RunBatch (pipeline/batch_runner.h) all start their
// aggregator, workers, ventilator and waiter here. Internal: not installed.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <stop_token>
#include <string>
#include <vector>

#include "core/bus.h"
#include "core/event.h"
#include "pipeline/aggregator.h"
#include "pipeline/batch_waiter.h"
#include "pipeline/processor.h"
#include "pipeline/ventilator.h"
#include "pipeline/worker.h"

namespace fanflow {

// "b-20261122T214500-1a2b3c": sortable, unique enough for batch ids.
std::string NewBatchId();

// The bus each role uses: the same one (`fanflow run`), or one connection per
// role, as separate processes would have (the broker benches).
struct BatchBuses {
  EventBus& aggregator;
  EventBus& workers;
  EventBus& ventilator;
};

struct BatchRoles {
  // Its lease already chosen; refan_open_batches is set by Start from the bus.
  AggregatorOptions aggregator;
  std::shared_ptr<Processor> processor;
  // Its `files` (RunFiles) are the ventilator's too.
  WorkerOptions workers;
};

// What a run reads: its start's jsonl: file's directory (the file resolved),
// `dirs`, and stdin when the source is "-".
[[nodiscard]] Result<SourcePolicy> RunFiles(const Event& start, std::vector<std::string> dirs);

// A batch run: its roles, and the waiter for its batch_complete, which Start
// subscribes before Submit publishes the start_fanout, so the announcement
// cannot pass it by. One owner; destroying it stops the roles (the ventilator
// first, the aggregator last), letting the chunks in flight finish.
class BatchRun {
 public:
  // Starts the roles and the waiter for `start` on `buses`. `track_progress`:
  // Wait's on_progress sees chunk counts.
  [[nodiscard]] static Result<std::unique_ptr<BatchRun>> Start(BatchBuses buses, BatchRoles roles,
                                                               Event start, bool track_progress);

  // Publishes the start_fanout on the ventilator's bus.
  [[nodiscard]] Status Submit();

  // BatchWaiter::Wait: the batch_complete, or Timeout / Cancelled.
  [[nodiscard]] Result<Event> Wait(std::chrono::milliseconds timeout,
                                   const std::function<void(const BatchProgress&)>& on_progress,
                                   std::stop_token stop = {});

  // Stops the roles now: the ventilator, then the workers, whose chunks in
  // flight are interrupted and go back to the bus as retries, then the
  // aggregator. What the ledger counted stays counted.
  void Stop();

 private:
  BatchRun(EventBus& ventilator_bus, Event start)
      : ventilator_bus_(ventilator_bus), start_(std::move(start)) {}

  EventBus& ventilator_bus_;
  const Event start_;
  // Started in this order, so destroyed in the reverse: the waiter and the
  // ventilator first, the aggregator last.
  std::unique_ptr<Aggregator> aggregator_;
  std::unique_ptr<Worker> workers_;
  std::unique_ptr<Ventilator> ventilator_;
  std::unique_ptr<BatchWaiter> waiter_;
};

// Removes a temporary ledger and its WAL files on scope exit (or on Remove,
// e.g. from a signal's last words); an empty path is no ledger.
struct TemporaryLedger {
  std::string path;
  ~TemporaryLedger() { Remove(); }
  void Remove() const;
};

// A new empty file in the temporary directory, for a run's ledger.
std::string MakeTemporaryLedgerPath();

}  // namespace fanflow
