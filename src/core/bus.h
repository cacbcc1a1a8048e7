// The event bus port: what the pipeline needs from any broker. Adapters
// (adapters/inproc, adapters/amqp, adapters/mqtt) implement it; no broker type
// appears here. The bus carries encoded CloudEvents as opaque bytes, so a
// malformed message published by a foreign client still reaches a handler,
// which dead-letters it with the reason.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "core/status.h"

namespace fanflow {

// One message on the bus. `type` is the CloudEvents type and selects the route
// (see core/routes.h); `body` is the structured-mode CloudEvent JSON.
struct Message {
  std::string type;
  std::string id;  // CloudEvents id; lets a broker de-duplicate and logs correlate
  std::string body;
};

// What a handler sees: the message plus delivery facts.
struct Delivery {
  Message message;
  std::string group;
  int attempt = 1;          // 1 on first delivery, +1 on each Verdict::Retry
  bool redelivered = false;  // the broker delivered it before (crash, requeue)
};

// What a handler decides about one delivery. The bus acknowledges to the broker
// only after the handler returns, i.e. after the work is durably handled.
struct Verdict {
  enum class Kind { kAck, kRetry, kDeadLetter };
  Kind kind = Kind::kAck;
  std::chrono::milliseconds delay{0};  // kRetry: redeliver no sooner than this
  std::string reason;                  // kRetry / kDeadLetter: why
  std::vector<Message> publish_first;  // kAck: see AckAfterPublishing

  static Verdict Ack() { return {}; }
  // Publish `messages`; the delivery counts as handled only once the bus
  // durably has them (AMQP: it is acked then), and if they cannot be published
  // it is handled again, after a second (AMQP: requeued; MQTT, which acked it
  // on receipt: handed to a handler of this subscription again). The handler
  // is free at once instead of waiting for the broker's confirm. Only on a bus
  // whose Capabilities().publish_then_ack; elsewhere a handler publishes, then
  // returns Ack().
  static Verdict AckAfterPublishing(std::vector<Message> messages) {
    Verdict v;
    v.publish_first = std::move(messages);
    return v;
  }
  static Verdict Retry(std::chrono::milliseconds delay, std::string reason) {
    return {Kind::kRetry, delay, std::move(reason), {}};
  }
  static Verdict DeadLetter(std::string reason) {
    return {Kind::kDeadLetter, std::chrono::milliseconds{0}, std::move(reason), {}};
  }
};

// Called on a bus thread, at most `concurrency` at a time per subscription.
using Handler = std::function<Verdict(const Delivery&)>;

// Several deliveries in one call, for a handler that settles them together (the
// aggregator: one ledger transaction for all): it sets verdicts[i] for
// deliveries[i]. Same threads and `concurrency` as a Handler.
using BurstHandler = std::function<void(std::span<const Delivery> deliveries, std::span<Verdict> verdicts)>;

// A Handler run as a BurstHandler of bursts of one: what an adapter that takes
// bursts runs for a plain Subscribe.
inline BurstHandler OneAtATime(Handler handler) {
  return [handler = std::move(handler)](std::span<const Delivery> d, std::span<Verdict> v) { v[0] = handler(d[0]); };
}

struct SubscribeOptions {
  std::string group;                     // consumer group: competing consumers share it
  std::vector<std::string> event_types;  // one queue per (group, type)
  int concurrency = 1;                   // hard cap of handlers in flight
  // A private, short-lived group (e.g. one `submit --wait`): its queues go away
  // once unused instead of piling up on the broker (AMQP: x-expires, 60 s by
  // default, so a waiter survives a broker restart; MQTT: no session kept).
  bool ephemeral = false;
  // Members of the group come and go (workers scaled up and down, hosts lost):
  // one that stops or dies for good must soon stop taking a share of the
  // group's messages (MQTT: a short Session Expiry; AMQP redelivers anyway).
  bool elastic = false;
  // Deliveries the broker may hand out before the handlers settled them: they
  // wait in the process for a free handler, so a handler does not idle for an
  // ack's round trip (AMQP basic.qos, MQTT Receive Maximum; the URL's
  // prefetch= / receive_maximum= override it). 0: the adapter's default, a
  // small multiple of `concurrency`. What waits here is not taken by the
  // group's other members; if the process dies, the broker hands it out again.
  int prefetch = 0;

  // `prefetch`, or the adapter's default of `per_handler` for each handler.
  int PrefetchOr(int per_handler) const { return prefetch ? prefetch : concurrency * per_handler; }
};

// A live subscription. Destroying it stops delivery and waits for handlers in
// flight; what was not acknowledged stays on the bus for another consumer.
class Subscription {
 public:
  virtual ~Subscription() = default;
};

struct QueueStats {
  std::string queue;  // the name the broker knows it by
  std::string group;
  std::string type;
  int64_t depth = 0;      // waiting, not yet delivered
  int64_t in_flight = 0;  // delivered, not yet acknowledged (-1: broker can't tell)
  int64_t consumers = 0;
  std::optional<double> oldest_age_seconds;  // age of the oldest waiting message
  int64_t dead_letters = 0;
  // Messages the broker discarded instead of queueing (e.g. a full queue). Where
  // the broker counts drops only globally (Mosquitto's $SYS), this is that count.
  int64_t dropped = 0;
  // Messages the broker holds in all queues together, where it tells
  // (Mosquitto's $SYS store count); -1: unknown.
  int64_t broker_stored = -1;
};

struct DeadLetter {
  std::string group;
  std::string type;
  std::string id;  // CloudEvents id when the body had one, else a bus-made id
  std::string body;
  std::string reason;
  int attempts = 0;
  std::string time;  // RFC 3339, when it was dead-lettered
};

// What an adapter does beyond the promises every adapter keeps (those the
// conformance suite pins: dead-lettering one message with its reason, retry
// with a delay, declared groups, stats). The pipeline asks the bus for these;
// it never guesses them from a URL.
struct BusCapabilities {
  // The client acknowledges a delivery as it receives it, before the handler
  // has run (paho on MQTT): what a consumer killed mid-handler held is gone from
  // the broker, so the pipeline must redrive it (the aggregator's lease).
  bool acks_on_receipt = false;
  // Queues can expire messages past a retention and dead-letter them as
  // expired (AMQP's message_ttl_ms).
  bool message_ttl = false;
  // A Retry's delay is waited out by the bus, off the handler slots; false:
  // the slot (and the unacknowledged message) waits it out (AMQP).
  bool delayed_retry = false;
  // Other processes reach the same queues (false: inproc://, one process).
  bool shared_between_processes = false;
  // Stats().consumers counts the consumers of every process; false: only this
  // bus's own subscriptions (MQTT brokers do not tell about other clients').
  bool counts_all_consumers = false;
  // Handlers may return Verdict::AckAfterPublishing.
  bool publish_then_ack = false;
};

class EventBus {
 public:
  virtual ~EventBus() = default;

  // Fixed for the life of the bus. Thread-safe.
  virtual BusCapabilities Capabilities() const = 0;

  // Returns once the bus has durably accepted every message (broker confirm /
  // PUBACK); a message with no queue bound for it is accepted and dropped, as
  // on a broker. Thread-safe.
  [[nodiscard]] virtual Status Publish(const std::vector<Message>& messages) = 0;
  [[nodiscard]] Status Publish(const Message& message) {
    return Publish(std::vector<Message>{message});
  }

  // Declares the group's queues (idempotent) and starts delivering to `handler`.
  [[nodiscard]] virtual Result<std::unique_ptr<Subscription>> Subscribe(
      const SubscribeOptions& options, Handler handler) = 0;

  // Subscribe, but a handler call takes up to `max_burst` deliveries that are
  // already waiting in this process (it never waits for more), so it hands them
  // back in one go instead of one thread hand-off each. An adapter that has no
  // such queue (this default) passes them one at a time.
  [[nodiscard]] virtual Result<std::unique_ptr<Subscription>> SubscribeBursts(
      const SubscribeOptions& options, int max_burst, BurstHandler handler) {
    (void)max_burst;
    return Subscribe(options, [handler = std::move(handler)](const Delivery& d) {
      Verdict v;
      handler(std::span<const Delivery>(&d, 1), std::span<Verdict>(&v, 1));
      return v;
    });
  }

  // Declares the group's queues without consuming, so events published before
  // the consumers start are kept.
  [[nodiscard]] virtual Status DeclareGroup(const std::string& group,
                                            const std::vector<std::string>& event_types) = 0;

  // Statistics of every queue this bus knows for `group` ("" = all groups).
  [[nodiscard]] virtual Result<std::vector<QueueStats>> Stats(const std::string& group) = 0;

  // Dead-letter tooling; `group` "" means every group.
  [[nodiscard]] virtual Result<std::vector<DeadLetter>> ListDeadLetters(const std::string& group) = 0;
  // Sends dead letters (all, or the one with `id`) back to their origin queue.
  [[nodiscard]] virtual Result<int> ReplayDeadLetters(const std::string& group,
                                                      const std::string& id) = 0;
  [[nodiscard]] virtual Result<int> PurgeDeadLetters(const std::string& group) = 0;

  // A short description for logs, without credentials.
  virtual std::string Describe() const = 0;
};

// Maps a bus URL to its adapter: inproc://, amqp://, amqps://, mqtt://, mqtts://.
[[nodiscard]] Result<std::unique_ptr<EventBus>> OpenBus(const std::string& url);

}  // namespace fanflow
