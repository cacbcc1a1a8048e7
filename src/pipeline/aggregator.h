// The fan-in aggregator, and the keeper of every batch's ledger. It admits each
// start_fanout (a batch id names one request: the same request again is
// answered with the same batch, another one is refused), hands the ventilator
// one bounded fan-out step at a time so a batch keeps at most `fanout_window`
// chunks outstanding, counts every chunk_done it can place (a known batch, an
// index that was published, the items that chunk has) once, and publishes one
// batch_complete per batch.
// With a lease it also leases the chunks of every page the ventilator reports
// publishing and has a ventilator publish again those whose chunk_done does
// not come in time (needed on MQTT, where the broker forgets a message once a
// worker has received it). With a deadline it decides a batch
// still open that long after its first event `timed_out`, listing the chunks
// still missing; chunks that arrive later are recorded but announce nothing.
// A cancel_batch decides an open batch `cancelled` at once: no step is handed
// out any more and its late chunk_done events are acknowledged and ignored.
// Owns its ledger and its subscription; handlers are serialized on mu_ and
// commit in groups: those queued behind one another share one ledger
// transaction, and each is acknowledged only once its group has committed.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "core/bus.h"
#include "core/event.h"
#include "core/tolerance.h"
#include "pipeline/ledger.h"

namespace fanflow {

// The lease `fanflow aggregator --lease auto` picks: 30 s on a bus whose
// clients acknowledge on receipt, before a message is handled (MQTT), where the
// aggregator leases every chunk reported published and redrives those a dead
// worker took; none elsewhere.
std::chrono::milliseconds DefaultLease(const EventBus& bus);

// The fields of a start_fanout's data that define its batch, defaults filled
// in, so that the same request compares equal however it was spelled: what the
// ledger keeps as BatchRecord::request.
nlohmann::json BatchRequestOf(const nlohmann::json& start_data);

struct AggregatorOptions {
  std::string state_path = "fanflow-ledger.db";
  Durability durability = Durability::kNormal;
  Tolerance tolerance;
  std::chrono::milliseconds lease{0};  // 0: no redrive
  int max_redrives = 5;  // then the chunk is reported failed
  // Chunks of one batch published and not yet done, at most: the ventilator
  // gets the next step once a batch is down to half of it, so batches share
  // the workers instead of the first one filling the queue. 400 keeps a parked
  // session on a stock Mosquitto (max_queued_messages 1000) below its limit:
  // it holds at most a window of chunks and their chunk_done.
  int64_t fanout_window = 400;
  int64_t max_batch_chunks = 10'000'000;   // a larger batch is refused
  int64_t max_batch_items = 1'000'000'000;
  // A fan-out step not reported within this is handed out again (its
  // ventilator died; on MQTT the step was acknowledged on receipt).
  std::chrono::milliseconds step_lease{10000};
  // The bus kept nothing of an earlier run (in-process queues die with their
  // process): open batches fan out again from their first chunk, and the
  // ledger counts what it already has once.
  bool refan_open_batches = false;
  // Handler threads. Each takes the events waiting in the process as one
  // burst, handled in one ledger transaction (the ledger is written one at a
  // time anyway, under mu_), so one thread keeps up: the events that arrive
  // while it commits form the next burst. Handlers that take one event at a
  // time (a bus without bursts) group their events the same way when several
  // of them queue for mu_. amqp_pipeline_bench end to end, 16 threads taking
  // one event each against one taking bursts: 30-70 us less CPU per chunk.
  int concurrency = 1;
  std::chrono::milliseconds deadline{0};  // 0: a batch may take forever
  // A results file per batch, written before its batch_complete ("{batch}" is
  // replaced by the batch id, see ResultsPathFor); "": none.
  std::string results;
};

class Aggregator {
 public:
  [[nodiscard]] static Result<std::unique_ptr<Aggregator>> Start(EventBus& bus,
                                                                 AggregatorOptions options);
  ~Aggregator();

 private:
  Aggregator(EventBus& bus, AggregatorOptions options, std::unique_ptr<Ledger> ledger)
      : bus_(bus), options_(std::move(options)), ledger_(std::move(ledger)) {}

  // Decodes each delivery, then handles them all in one group transaction.
  void HandleBurst(std::span<const Delivery> deliveries, std::span<Verdict> verdicts);
  // Requires mu_. One event, decoded.
  Verdict HandleEvent(const Delivery& delivery, const Event& event);
  // Runs `handle` (`events` events) under mu_ inside the open group
  // transaction; returns once the group has committed, with the commit's status.
  Status InGroup(int events, const std::function<void()>& handle);
  // Requires mu_. Commits the open group and wakes its members; before
  // anything is published, so that what the ledger says was decided is durable.
  Status FinishGroup();
  // Ack once `recorded` is ok, else log and retry the event later.
  static Verdict Settled(const Status& recorded, const std::string& batch_id, const std::string& event_id);
  // Each requires mu_ and handles one event type.
  Verdict HandleStart(const Event& start);
  Verdict HandleProgress(const Event& report);
  Verdict HandleChunkDone(const Delivery& delivery, const Event& done);
  // A fanout_progress with publishing: true, for the current step of `b`.
  Verdict HandlePublishing(const BatchRecord& b, const Event& report);
  // A publishing report that its step's final report overtook: only its lease.
  Verdict LeaseLatePage(const BatchRecord& b, const Event& report);
  // Leases the chunks of the report's page up to `end_chunk` (with a lease).
  Status LeasePage(const Event& report, int64_t end_chunk);
  // Requires mu_. After the batch's counts changed: its next step or its end,
  // from one read of its record.
  Status Advance(const std::string& batch_id);
  Verdict HandleCancel(const Event& cancel);
  // Requires mu_. Hands the ventilator the batch's next step if it is waiting
  // for one and below half its window (`b` is updated to the step issued).
  Status NextStepIfRoom(BatchRecord& b);
  // Requires mu_. Publishes the batch's current step (again).
  Status PublishStep(const BatchRecord& b);
  // Requires mu_. Decides and announces the batch if every chunk is in.
  Status CompleteIfDone(const BatchRecord& b);
  // Requires mu_. Records the one batch_complete of `b` (`extra` is merged
  // into its data) and announces it.
  Status Decide(const BatchRecord& b, const std::string& status, const nlohmann::json& extra);
  // The batch's own tolerance / deadline (data.tolerate, data.deadline_seconds
  // of its request), else the aggregator's.
  Tolerance ToleranceOf(const BatchRecord& b) const;
  std::chrono::milliseconds DeadlineOf(const BatchRecord& b) const;
  // Requires mu_. Decides every open batch past its deadline timed_out.
  Status ExpireBatches();
  // Requires mu_. Publishes the decided event, then remembers it was.
  Status Announce(const std::string& batch_id, const std::string& event_json);
  // Requires mu_. What follows a recorded chunk: the next step, the decision.
  Status RecordOutcome(const ChunkOutcome& outcome, ChunkRecorded recorded);
  // Redrives expired leases, hands out stalled or waiting fan-out steps and
  // expires batches past their deadline.
  void TimerLoop();
  // Requires mu_. The fan-out steps to hand out again, or at last.
  Status ResumeFanouts();
  // Requires mu_. The chunks to publish again; gives up on over-redriven ones.
  Result<std::vector<Message>> ExpiredChunks();

  EventBus& bus_;
  const AggregatorOptions options_;

  std::mutex mu_;
  std::unique_ptr<Ledger> ledger_;  // guarded by mu_
  bool stopping_ = false;           // guarded by mu_
  // One group transaction. Its members wait on `mu`, not on the aggregator's.
  struct Group {
    std::mutex mu;
    std::condition_variable committed_cv;
    bool committed = false;  // guarded by mu
    Status status;           // guarded by mu
  };
  std::shared_ptr<Group> group_ = std::make_shared<Group>();  // the open one; guarded by mu_
  int group_size_ = 0;                                        // guarded by mu_
  std::atomic<int> queued_{0};  // handlers waiting for mu_: the last of a run commits
  std::condition_variable stop_cv_;
  std::unique_ptr<Subscription> subscription_;
  std::thread timer_;
};

}  // namespace fanflow
