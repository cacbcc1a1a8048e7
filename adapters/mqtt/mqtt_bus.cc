#include "adapters/mqtt/mqtt_bus.h"

#include <spdlog/spdlog.h>

#include "adapters/mqtt/mqtt_broker_check.h"
#include "adapters/mqtt/mqtt_dead_letters.h"
#include "adapters/mqtt/mqtt_parked.h"
#include "adapters/mqtt/mqtt_subscription.h"

namespace fanflow::mqtt {
namespace {

// The EventBus over Mosquitto. Publishing goes through one windowed Publisher;
// every Subscription has a connection of its own; admin calls (DeclareGroup,
// Stats, dead letters) open short connections. Thread-safe.
class MqttBus final : public EventBus {
 public:
  explicit MqttBus(std::shared_ptr<BusCore> core) : core_(std::move(core)) {}

  Status Publish(const std::vector<Message>& messages) override {
    std::vector<OutMessage> out;
    out.reserve(messages.size());
    for (const Message& m : messages) {
      if (m.type.empty()) return InvalidArgument("publish: a message without a type has no route");
      out.push_back(ToMain(m));
    }
    return core_->publisher->Publish(out);
  }

  Result<std::unique_ptr<Subscription>> Subscribe(const SubscribeOptions& options, Handler handler) override {
    return MqttSubscription::Start(core_, options, 1, OneAtATime(std::move(handler)));
  }
  Result<std::unique_ptr<Subscription>> SubscribeBursts(const SubscribeOptions& options, int max_burst,
                                                        BurstHandler handler) override {
    return MqttSubscription::Start(core_, options, max_burst, std::move(handler));
  }

  Status DeclareGroup(const std::string& group, const std::vector<std::string>& types) override {
    if (auto s = ValidateGroup(group); !s.ok()) return s;
    std::vector<OutMessage> registry;
    for (const auto& type : types) {
      if (auto s = DeclareParked(core_->options, group, type); !s.ok()) return s;
      registry.push_back(RegistryEntry(group, type, true));
    }
    {
      std::lock_guard<std::mutex> lock(core_->mu);
      for (const auto& type : types) core_->known.emplace(group, type);
    }
    return core_->publisher->Publish(registry);
  }

  Result<std::vector<QueueStats>> Stats(const std::string& group) override {
    auto view = ReadBrokerView(core_->options, group);
    if (!view.ok()) return view.status();
    std::set<std::pair<std::string, std::string>> pairs = view->registered;
    for (const auto& d : view->dead_letters) pairs.emplace(d.letter.group, d.letter.type);
    {
      std::lock_guard<std::mutex> lock(core_->mu);
      for (const auto& p : core_->known)
        if (group.empty() || p.first == group) pairs.insert(p);
      for (MqttSubscription* sub : core_->subscriptions)
        if (group.empty() || sub->group() == group)
          for (const auto& type : sub->types()) pairs.emplace(sub->group(), type);
    }
    std::vector<QueueStats> out;
    for (const auto& [g, type] : pairs) {
      QueueStats s;
      s.queue = SharedMain(g, type);
      s.group = g;
      s.type = type;
      s.dropped = view->dropped.value_or(0);
      s.broker_stored = view->stored.value_or(-1);
      for (const auto& d : view->dead_letters)
        if (d.letter.group == g && d.letter.type == type) ++s.dead_letters;
      {
        std::lock_guard<std::mutex> lock(core_->mu);
        for (MqttSubscription* sub : core_->subscriptions)
          if (sub->group() == g) sub->AddStats(type, s);
      }
      if (view->parked.count({g, type}))
        if (auto s2 = CountParked(g, type, s); !s2.ok()) return s2;
      out.push_back(std::move(s));
    }
    return out;
  }

  Result<std::vector<DeadLetter>> ListDeadLetters(const std::string& group) override {
    auto view = ReadBrokerView(core_->options, group);
    if (!view.ok()) return view.status();
    std::vector<DeadLetter> out;
    for (auto& d : view->dead_letters) out.push_back(std::move(d.letter));
    return out;
  }

  Result<int> ReplayDeadLetters(const std::string& group, const std::string& id) override {
    return mqtt::ReplayDeadLetters(core_->options, *core_->publisher, group, id);
  }

  Result<int> PurgeDeadLetters(const std::string& group) override {
    return mqtt::PurgeDeadLetters(core_->options, *core_->publisher, group);
  }

  std::string Describe() const override { return core_->options.described; }

  BusCapabilities Capabilities() const override {
    BusCapabilities c;
    c.acks_on_receipt = true;  // paho sends PUBACK before the handler runs
    c.delayed_retry = true;    // the subscription keeps delayed envelopes aside
    c.shared_between_processes = true;
    c.publish_then_ack = true;  // a failed publish hands the envelope to a handler again
    // counts_all_consumers stays false: Mosquitto does not say who else holds a
    // shared subscription, so Stats counts only this bus's subscriptions.
    return c;
  }

 private:
  // Mosquitto does not tell how many messages a session holds: count those of
  // the parked session by taking them and handing them straight back (to the
  // group's retry topic, where the parked session or a consumer gets them again).
  Status CountParked(const std::string& group, const std::string& type, QueueStats& s) {
    auto parked = DrainParked(core_->options, group, type, false);
    if (!parked.ok()) return parked.status();
    const std::vector<Incoming>& messages = parked->messages;
    if (messages.empty()) return Status::Ok();
    std::vector<OutMessage> back;
    int64_t oldest = 0;
    for (const Incoming& in : messages) {
      Envelope e = FromIncoming(in, type);
      if (!oldest || e.since_ms < oldest) oldest = e.since_ms;
      back.push_back(ToRetry(group, e));
    }
    s.depth += static_cast<int64_t>(messages.size());
    double age = (NowMillis() - oldest) / 1000.0;
    if (!s.oldest_age_seconds || age > *s.oldest_age_seconds) s.oldest_age_seconds = age;
    return core_->publisher->Publish(back);
  }

  const std::shared_ptr<BusCore> core_;
};

// Whether this process opens a bus on `server_uri` for the first time: the
// broker's settings are checked (and hinted at) once per process.
bool FirstOpenOf(const std::string& server_uri) {
  static std::mutex mu;
  static std::set<std::string> seen;
  std::lock_guard<std::mutex> lock(mu);
  return seen.insert(server_uri).second;
}

}  // namespace

Result<std::unique_ptr<EventBus>> NewMqttBus(const BusUrl& url) {
  auto options = ParseOptions(url);
  if (!options.ok()) return options.status();
  auto core = std::make_shared<BusCore>();
  core->options = std::move(options).value();
  // The core owns both, and its options outlive its publisher.
  const MqttOptions& o = core->options;
  auto publisher = Publisher::Open(o, [&o] { RestoreParked(o); });
  if (!publisher.ok()) return publisher.status();
  core->publisher = std::move(publisher).value();
  spdlog::debug("mqtt: bus open on {}", core->options.described);
  if (FirstOpenOf(core->options.server_uri)) {
    auto limits = CheckBrokerLimits(core->options, *core->publisher);
    if (limits.ok())
      LogBrokerHints(core->options, *limits);
    else
      spdlog::debug("mqtt: broker settings not checked: {}", limits.status().ToString());
  }
  return std::unique_ptr<EventBus>(std::make_unique<MqttBus>(std::move(core)));
}

}  // namespace fanflow::mqtt
