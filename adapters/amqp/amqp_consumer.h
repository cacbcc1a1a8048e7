// One subscription of a consumer group to its queues. Internal.
#pragma once

#include <condition_variable>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "adapters/amqp/amqp_config.h"
#include "adapters/amqp/amqp_connection.h"
#include "adapters/amqp/amqp_publisher.h"
#include "core/bus.h"

namespace fanflow::amqp {

// Consumes the group's queues (one per event type) with manual acks.
//
// Threads: one I/O thread owns the connection: it reads deliveries, sends the
// acks handed back to it (one frame with `multiple` for those below the oldest
// unsettled delivery), and services heartbeats. `concurrency` handler
// threads run the handler, so at most that many run at once (a BurstHandler
// takes up to max_burst of the deliveries waiting at once); basic.qos caps
// the unacked deliveries of each queue's consumer at config.prefetch, else
// SubscribeOptions::prefetch, else twice the concurrency. A delivery is acked
// only after its handler returned, and after the retry copy / dead letter it
// produced was confirmed by the broker (through the shared Publisher). A
// Verdict::AckAfterPublishing frees its handler at once: the publisher's
// confirm hands the ack to the I/O thread (a failed publish: a requeue, after
// kRepublishBackoff so a full queue is not hammered). On a
// lost link the I/O thread reconnects with backoff (to the next node of a
// cluster), redeclares and consumes again; the broker has requeued everything
// unacked, so settlements of the old link are dropped.
//
// Destruction stops taking deliveries, waits for running handlers (a pending
// retry delay is waited out if it ends within kShutdownGrace, else the delivery
// is requeued as is), acks what they settled, and closes: the broker requeues
// the rest for other consumers.
class AmqpSubscription final : public Subscription {
 public:
  // Connects, declares the queues and starts consuming. Errors (broker down,
  // credentials, a queue with other arguments) come back before any thread starts.
  [[nodiscard]] static Result<std::unique_ptr<Subscription>> Start(
      const AmqpConfig& config, std::shared_ptr<Publisher> publisher,
      const SubscribeOptions& options, int max_burst, BurstHandler handler);
  ~AmqpSubscription() override;

 private:
  using Clock = std::chrono::steady_clock;
  struct Work {
    uint64_t generation;  // the connection it came on
    uint64_t tag;
    size_t queue;  // index into options_.event_types
    Delivery delivery;
  };
  struct Settlement {
    uint64_t generation;
    uint64_t tag;
    bool ack;                         // false: nack and requeue
    Clock::time_point not_before{};  // a requeue sent no sooner
  };
  // Settlements made on the publisher's thread once what a verdict published
  // first is confirmed. Its callbacks share it, so it outlives the subscription.
  struct Confirmed {
    std::string name;  // the subscription's, for logs
    Waker waker;       // wakes the I/O thread
    std::mutex mu;
    std::vector<Settlement> settled;  // guarded by mu
    int pending = 0;                  // guarded by mu: publishes not confirmed yet
  };

  AmqpSubscription(const AmqpConfig& config, std::shared_ptr<Publisher> publisher,
                   const SubscribeOptions& options, int max_burst, BurstHandler handler);
  Status Connect();  // I/O thread (or Start): connection, queues, qos, consumers
  Status Pump();     // I/O thread: deliveries and other frames that arrived
  Status ReadDeliveries(std::vector<Work>& burst);  // I/O thread: Pump's reading
  Status Flush();                                   // I/O thread: acks / nacks the handlers settled
  bool Drained();  // I/O thread: stopping, and every settlement sent (or given up on)
  void RunIo();
  void RunHandler();
  void TakeWork(std::vector<Work>& taken);  // requires mu_: up to max_burst_ deliveries
  std::vector<Settlement> HandleBurst(std::vector<Work>& burst);
  // The verdict carried out: a retry copy (once `handled` + its delay passed)
  // or dead letter published, then the settlement to send; none yet when it
  // comes with the confirm of what the verdict publishes first.
  std::optional<Settlement> Settle(const Work& work, const Delivery& delivery, Verdict& verdict,
                                   Clock::time_point handled);
  void SettleWhenConfirmed(const Work& work, std::vector<Message> messages);
  bool WaitRetryUntil(Clock::time_point until);  // false: requeue instead

  const AmqpConfig config_;
  const std::shared_ptr<Publisher> publisher_;
  const SubscribeOptions options_;
  const size_t max_burst_;
  const BurstHandler handler_;
  const std::string name_;  // for logs and the connection name
  const std::shared_ptr<Confirmed> confirmed_;
  Waker& waker_;  // confirmed_'s

  std::mutex mu_;
  std::condition_variable work_ready_;  // work_ has a delivery, or stopping_
  std::condition_variable stop_cv_;     // stopping_ / handlers_done_ changed
  // Guarded by mu_.
  bool stopping_ = false;
  bool handlers_done_ = false;
  uint64_t generation_ = 0;  // written by the I/O thread only
  std::deque<Work> work_;
  std::vector<Settlement> outbox_;

  // I/O thread only.
  std::unique_ptr<Connection> conn_;
  size_t next_node_ = 0;                         // the node to try first: the one after a node lost
  std::map<std::string, size_t> consumer_tags_;  // tag -> queue index
  std::set<uint64_t> unsettled_;  // delivery tags of this link not acked / nacked yet
  std::vector<Settlement> deferred_;  // requeues not due yet
  std::optional<Clock::time_point> draining_since_;  // handlers done, settlements still coming

  std::vector<std::thread> handlers_;
  std::thread io_;
};

}  // namespace fanflow::amqp
