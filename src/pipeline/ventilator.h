// The fan-out ventilator: turns a start_fanout into process_chunk events.
// Each delivery publishes the source page by page for up to kStepBudget, then
// a continuation (the same start_fanout with a cursor) with the last page, and
// acknowledges: a ventilator killed mid-way resumes from the last continuation,
// and the chunks it may publish twice carry the same ids, so they are counted
// once. When the last page is read it publishes batch_sealed (the total).
// Thread-safe: handlers share nothing but the bus.
#pragma once

#include <chrono>
#include <memory>

#include "core/bus.h"
#include "core/event.h"
#include "pipeline/source.h"

namespace fanflow {

inline constexpr int64_t kDefaultPageChunks = 100;
inline constexpr int64_t kDefaultClaimCheckBytes = 256 * 1024;
// How long one delivery goes on publishing pages before it hands the rest to a
// continuation. A continuation per page cost a broker round trip per page,
// which capped the fan-out at about 2,000 chunks/s on RabbitMQ; a second bounds
// what a killed ventilator publishes again.
inline constexpr std::chrono::milliseconds kStepBudget{1000};

struct VentilatorOptions {
  int concurrency = 1;  // batches fanned out at once
  SourcePolicy files;   // what a start_fanout's source may read: no file, no stdin by default
};

class Ventilator {
 public:
  // Consumes start_fanout as the `ventilator` group.
  [[nodiscard]] static Result<std::unique_ptr<Ventilator>> Start(EventBus& bus, VentilatorOptions options);

  // Handles one start_fanout (or continuation): publishes pages for up to
  // kStepBudget, or the whole source if it cannot be resumed elsewhere (stdin).
  [[nodiscard]] static Status FanOutStep(EventBus& bus, const Event& start, Source& source);

 private:
  Ventilator(EventBus& bus, VentilatorOptions options) : bus_(bus), options_(std::move(options)) {}
  Verdict Handle(const Delivery& delivery);

  EventBus& bus_;
  const VentilatorOptions options_;
  std::unique_ptr<Subscription> subscription_;
};

// Builds the start_fanout event that submits a batch.
Event MakeStartFanout(const std::string& batch_id, const std::string& correlation_id,
                      const std::string& source, int64_t chunk_size);

}  // namespace fanflow
