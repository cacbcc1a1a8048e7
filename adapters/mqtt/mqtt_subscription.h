// A consumer of one group over MQTT 5, and the state it shares with the bus.
#pragma once

#include <chrono>
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

#include "adapters/mqtt/mqtt_client.h"
#include "adapters/mqtt/mqtt_envelope.h"
#include "adapters/mqtt/mqtt_slot.h"
#include "core/bus.h"

namespace fanflow::mqtt {

class MqttSubscription;

// What the bus and its subscriptions share; subscriptions keep it alive, so they
// may outlive the EventBus object. `options` and `publisher` are immutable after
// construction (the Publisher is thread-safe); the rest is guarded by mu.
struct BusCore {
  MqttOptions options;
  std::unique_ptr<Publisher> publisher;
  std::mutex mu;
  std::vector<MqttSubscription*> subscriptions;
  std::set<std::pair<std::string, std::string>> known;  // declared or consumed here (not ephemeral)
};

// One persistent session "fanflow:<group>:<instance>.<slot>" (see InstanceSlot)
// subscribed with QoS 1 to the group's shared subscriptions of every type,
// main and retry. paho acknowledges on receipt, so the paho callback only moves
// each message into this object's queue; `concurrency` handler threads take
// from it (the cap; also advertised to the broker as Receive Maximum), and a
// message is settled after its handler returns: a retry is published to the
// group's retry topic with the attempt raised and the earliest redelivery time,
// a dead letter is retained under the group's dead-letter topic. Messages held
// for a delay wait here, not in a thread.
// Destruction stops delivery, waits for running handlers and publishes what was
// taken but not handled back to the group's retry topic; the session itself
// stays (unless ephemeral or elastic), so the broker goes on queueing the
// group's share. A member of an elastic group ends its session (it leaves the
// shared subscription at once) after declaring the group's parked session, so
// the group keeps a subscriber if it was the last member. A member that dies
// leaves the group when its short Session Expiry ends.
// Thread-safe; AddStats may be called from any thread.
class MqttSubscription final : public Subscription {
 public:
  [[nodiscard]] static Result<std::unique_ptr<Subscription>> Start(std::shared_ptr<BusCore> core,
                                                                   const SubscribeOptions& options,
                                                                   int max_burst, BurstHandler handler);
  ~MqttSubscription() override;

  const std::string& group() const { return options_.group; }
  const std::vector<std::string>& types() const { return options_.event_types; }
  // Adds what this consumer holds of `type` (waiting, running, age) to `s`.
  void AddStats(const std::string& type, QueueStats& s);

 private:
  using Clock = std::chrono::steady_clock;
  struct Pending {
    Envelope envelope;
    Clock::time_point due;
  };

  MqttSubscription(std::shared_ptr<BusCore> core, SubscribeOptions options, int max_burst,
                   BurstHandler handler);
  void OnMessage(const Incoming& in);  // paho's thread: never blocks
  void Enqueue(Envelope e);
  void RunHandlers();
  void Settle(Envelope e, Verdict& v);
  // Publishes what a Verdict::AckAfterPublishing names first, without waiting:
  // if it fails, the envelope is handled again (paho acked it on receipt).
  void PublishFirst(Envelope e, std::vector<Message> messages);
  // Drains and drops the parked sessions of this group's types; registers them
  // as not parked (all of them, or those that had a parked session).
  void RetireParked(bool register_all);
  // Declares the parked sessions of this group's types (a member leaving).
  void Park();
  void RunMaintenance();

  // Immutable after Start.
  const std::shared_ptr<BusCore> core_;
  const SubscribeOptions options_;
  const size_t max_burst_;  // deliveries per handler call, at most
  const BurstHandler handler_;
  std::map<std::string, std::string> type_by_topic_;
  std::optional<InstanceSlot> slot_;
  std::unique_ptr<Connection> consumer_;

  std::mutex mu_;
  std::condition_variable wake_;  // handler threads: work arrived or stopping
  std::condition_variable stop_;  // maintenance thread: stopping
  // Guarded by mu_.
  bool stopping_ = false;
  int idle_ = 0;  // handler threads waiting for work
  std::deque<Pending> ready_;
  std::multimap<Clock::time_point, Envelope> delayed_;
  std::map<std::string, int64_t> running_;  // by type
  std::vector<std::thread> threads_;  // handlers, then maintenance; joined on destruction

  // What PublishFirst's callbacks (paho's thread) reach the subscription
  // through; they share it, so it outlives the subscription.
  struct Publishing {
    std::mutex mu;
    std::condition_variable idle;  // pending reached 0
    MqttSubscription* sub;         // guarded by mu; null once the subscription is going
    int pending = 0;               // guarded by mu: publishes not settled yet
  };
  const std::shared_ptr<Publishing> publishing_ = std::make_shared<Publishing>();
};

}  // namespace fanflow::mqtt
