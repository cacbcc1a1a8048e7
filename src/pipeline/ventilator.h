// The fan-out ventilator: turns fan-out steps into process_chunk events. The
// aggregator admits each start_fanout and hands out one bounded step at a time
// ("publish at most max_chunks chunks from this cursor"); the ventilator
// publishes them page by page for up to kStepBudget, then reports how far it
// got (fanout_progress, or batch_sealed with the totals once the source is
// exhausted), and acknowledges. A step lost with a killed ventilator is handed
// out again, and the chunks it may publish twice carry the same ids, so they
// are counted once. Thread-safe: handlers share nothing but the bus and, for
// `run --source -`, the stdin reader (guarded by stdin_mu_).
//
// A step with data.redrive is the aggregator's lease redrive instead: the one
// chunk it names was published but never finished (its worker was lost), and
// the ventilator reads it again from the page cursor the step carries and
// publishes it alone, with no report.
#pragma once

#include <chrono>
#include <memory>
#include <mutex>
#include <string>

#include "core/bus.h"
#include "core/event.h"
#include "pipeline/source.h"

namespace fanflow {

inline constexpr int64_t kDefaultPageChunks = 100;
inline constexpr int64_t kDefaultClaimCheckBytes = 256 * 1024;
// How long one step goes on publishing pages before it reports. A report per
// page cost a broker round trip per page; a second bounds what a killed
// ventilator publishes again.
inline constexpr std::chrono::milliseconds kStepBudget{1000};

struct VentilatorOptions {
  int concurrency = 1;  // batches fanned out at once
  SourcePolicy files;   // what a step's source may read: no file, no stdin by default
  // The one batch whose items this process reads from its own stdin (`fanflow
  // run --source -`); any other batch naming source "-" is refused.
  std::string stdin_batch;
};

class Ventilator {
 public:
  // Consumes fanout_step as the `ventilator` group.
  [[nodiscard]] static Result<std::unique_ptr<Ventilator>> Start(EventBus& bus, VentilatorOptions options);

 private:
  Ventilator(EventBus& bus, VentilatorOptions options) : bus_(bus), options_(std::move(options)) {}
  Verdict Handle(const Delivery& delivery);
  // Publishes the pages of one step from `source`, then its report.
  Status RunStep(const Event& step, Source& source);
  // A step of the stdin batch: stdin can only be read forward, once.
  Status RunStdinStep(const Event& step);
  // The step's source, under this ventilator's file policy.
  Result<std::unique_ptr<Source>> OpenStepSource(const Event& step) const;
  // Publishes again the one chunk a redrive step names.
  Status Redrive(const Event& step);

  EventBus& bus_;
  const VentilatorOptions options_;
  std::mutex stdin_mu_;
  std::unique_ptr<Source> stdin_;  // guarded by stdin_mu_; opened by the first step
  int64_t stdin_next_step_ = 0;    // guarded by stdin_mu_
  Message stdin_last_report_;      // guarded by stdin_mu_: sent again for a repeated step
  std::unique_ptr<Subscription> subscription_;
};

// Builds the start_fanout event that submits a batch.
Event MakeStartFanout(const std::string& batch_id, const std::string& correlation_id,
                      const std::string& source, int64_t chunk_size);

}  // namespace fanflow
