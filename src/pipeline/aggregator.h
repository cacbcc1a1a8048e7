// The fan-in aggregator: consumes chunk_done and batch_sealed, counts every
// chunk once in its SQLite ledger, and publishes one batch_complete per batch.
// With a lease it also watches process_chunk and redrives chunks whose
// chunk_done does not come in time (needed on MQTT, where the broker forgets a
// message once a worker has received it). With a deadline it decides a batch
// still open that long after its first event `timed_out`, listing the chunks
// still missing; chunks that arrive later are recorded but announce nothing.
// Owns its ledger and its subscription; handlers are serialized on mu_.
#pragma once

#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "core/bus.h"
#include "pipeline/ledger.h"

namespace fanflow {

// How many failed chunks a batch tolerates before it is `failed` rather than
// `partial` (Step Functions' ToleratedFailureCount / Percentage).
struct Tolerance {
  bool set = false;
  bool percent = false;
  double value = 0;
  // "" (no threshold), "N" or "N%".
  [[nodiscard]] static Result<Tolerance> Parse(const std::string& text);
  bool Exceeded(int64_t failed, int64_t total) const;
};

// The lease `fanflow aggregator --lease auto` picks: 30 s on a bus whose
// clients acknowledge on receipt, before a message is handled (MQTT), where the
// aggregator leases every chunk it sees published and redrives those a dead
// worker took; none elsewhere.
std::chrono::milliseconds DefaultLease(const EventBus& bus);

struct AggregatorOptions {
  std::string state_path = "fanflow-ledger.db";
  Durability durability = Durability::kNormal;
  Tolerance tolerance;
  std::chrono::milliseconds lease{0};  // 0: no redrive
  int max_redrives = 5;  // then the chunk is reported failed
  // Deliveries in flight: the ledger is still written one at a time (mu_), but
  // a broker can keep this many unacknowledged, so each ack's round trip does
  // not stall the next delivery (with 1, RabbitMQ hands out one at a time).
  int concurrency = 8;
  std::chrono::milliseconds deadline{0};  // 0: a batch may take forever
};

class Aggregator {
 public:
  [[nodiscard]] static Result<std::unique_ptr<Aggregator>> Start(EventBus& bus,
                                                                 AggregatorOptions options);
  ~Aggregator();

  // The batch_complete already decided for `batch_id`, if any: lets a rerun of
  // a finished batch answer at once instead of waiting for a second announcement.
  [[nodiscard]] Result<std::optional<std::string>> DecidedCompletion(const std::string& batch_id);

 private:
  Aggregator(EventBus& bus, AggregatorOptions options, std::unique_ptr<Ledger> ledger)
      : bus_(bus), options_(std::move(options)), ledger_(std::move(ledger)) {}

  Verdict Handle(const Delivery& delivery);
  // Ack once `recorded` is ok, else log and retry the event later.
  static Verdict Settled(const Status& recorded, const std::string& batch_id, const std::string& event_id);
  // Requires mu_. Decides and announces the batch if every chunk is in.
  Status CompleteIfDone(const std::string& batch_id);
  // Requires mu_. Records the one batch_complete of `b` (`extra` is merged
  // into its data) and announces it.
  Status Decide(const BatchRecord& b, const std::string& status, const nlohmann::json& extra);
  // Requires mu_. Decides every open batch past the deadline timed_out.
  Status ExpireBatches();
  // Requires mu_. Publishes the decided event, then remembers it was.
  Status Announce(const std::string& batch_id, const std::string& event_json);
  Status RecordOutcome(const ChunkOutcome& outcome);
  // Redrives expired leases and expires batches past their deadline.
  void TimerLoop();
  // Requires mu_. The chunks to publish again; gives up on over-redriven ones.
  Result<std::vector<Message>> ExpiredChunks();

  EventBus& bus_;
  const AggregatorOptions options_;

  std::mutex mu_;
  std::unique_ptr<Ledger> ledger_;  // guarded by mu_
  bool stopping_ = false;           // guarded by mu_
  std::condition_variable stop_cv_;
  std::unique_ptr<Subscription> subscription_;
  std::thread timer_;
};

}  // namespace fanflow
