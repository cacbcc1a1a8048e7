#include "adapters/mqtt/mqtt_subscription.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <random>

#include "adapters/mqtt/mqtt_parked.h"
#include "core/event.h"
#include "core/invoke_handler.h"
#include "core/printable.h"
#include "core/routes.h"

namespace fanflow::mqtt {
namespace {

using namespace std::chrono_literals;

// How often a running consumer drains parked sessions that a DeclareGroup
// (re)created meanwhile: they would otherwise hold the share Mosquitto gives them.
constexpr auto kRetireEvery = 10s;
// A settle that could not be published is handled again after this.
constexpr auto kSettleBackoff = 1s;
// How long a closing subscription waits for the publishes its handlers started.
constexpr auto kSettleGrace = 5s;
// Receive Maximum advertised per handler thread. paho acknowledges on receipt,
// so it bounds only the messages on the wire, not those waiting here; one per
// handler halves the throughput (bench/mqtt_pipeline_bench: 0.43-0.48 of raw
// paho against 0.6-0.7 with 8 or more).
constexpr int kReceivePerHandler = 8;

// The group's filters of every event type it does not consume.
std::vector<std::string> StaleFilters(const SubscribeOptions& options) {
  std::vector<std::string> stale;
  for (const std::string& type : KnownEventTypes()) {
    const auto& consumed = options.event_types;
    if (std::find(consumed.begin(), consumed.end(), type) != consumed.end()) continue;
    stale.push_back(SharedMain(options.group, type));
    stale.push_back(SharedRetry(options.group, type));
  }
  return stale;
}

}  // namespace

MqttSubscription::MqttSubscription(std::shared_ptr<BusCore> core, SubscribeOptions options, int max_burst,
                                   BurstHandler handler)
    : core_(std::move(core)),
      options_(std::move(options)),
      max_burst_(static_cast<size_t>(std::max(1, max_burst))),
      handler_(std::move(handler)) {
  publishing_->sub = this;
}

Result<std::unique_ptr<Subscription>> MqttSubscription::Start(std::shared_ptr<BusCore> core,
                                                              const SubscribeOptions& options,
                                                              int max_burst, BurstHandler handler) {
  if (auto s = ValidateGroup(options.group); !s.ok()) return s;
  if (options.concurrency < 1) return InvalidArgument("subscribe: concurrency must be >= 1");
  if (options.event_types.empty()) return InvalidArgument("subscribe: no event types given");
  const MqttOptions& o = core->options;
  std::unique_ptr<MqttSubscription> sub(new MqttSubscription(core, options, max_burst, std::move(handler)));
  std::vector<std::string> filters;
  for (const auto& type : options.event_types) {
    sub->type_by_topic_[routes::MqttTopic(type)] = type;
    sub->type_by_topic_[RetryTopic(options.group, type)] = type;
    filters.push_back(SharedMain(options.group, type));
    filters.push_back(SharedRetry(options.group, type));
  }

  ConnectSpec spec;
  spec.receive_maximum =
      o.receive_maximum ? o.receive_maximum : std::min(options.PrefetchOr(kReceivePerHandler), 65535);
  if (options.ephemeral) {
    spec.client_id = UniqueClientId("eph");
  } else {
    auto slot = InstanceSlot::Claim(o.server_uri + "-" + options.group + "-" + o.instance);
    if (!slot.ok()) return slot.status();
    sub->slot_.emplace(std::move(slot).value());
    spec.client_id = ConsumerClientId(options.group, o.instance, sub->slot_->slot());
    spec.clean_start = false;
    spec.session_expiry_s = options.elastic ? o.elastic_session_expiry_s : o.session_expiry_s;
  }
  MqttSubscription* self = sub.get();
  auto conn = Connection::Create(o, spec, [self](Incoming in) { self->OnMessage(in); });
  if (!conn.ok()) return conn.status();
  sub->consumer_ = std::move(conn).value();
  for (int i = 0; i < options.concurrency; ++i) sub->threads_.emplace_back([self] { self->RunHandlers(); });

  auto resumed = sub->consumer_->Connect();
  if (!resumed.ok()) return resumed.status();
  if (auto s = sub->consumer_->Subscribe(filters, true); !s.ok()) return s;
  if (*resumed)  // the session may hold filters of types this group consumed before an upgrade
    if (auto s = sub->consumer_->Unsubscribe(StaleFilters(options)); !s.ok()) return s;
  spdlog::info("mqtt: consuming group '{}' as {} ({} session) on {}", options.group, spec.client_id,
               *resumed ? "resumed" : "new", o.described);
  if (!options.ephemeral) {
    sub->RetireParked(true);
    sub->threads_.emplace_back([self] { self->RunMaintenance(); });
  }
  {
    std::lock_guard<std::mutex> lock(core->mu);
    core->subscriptions.push_back(self);
    if (!options.ephemeral)  // an ephemeral group is gone with its subscription
      for (const auto& type : options.event_types) core->known.emplace(options.group, type);
  }
  return std::unique_ptr<Subscription>(std::move(sub));
}

MqttSubscription::~MqttSubscription() {
  {
    std::lock_guard<std::mutex> lock(core_->mu);
    auto& subs = core_->subscriptions;
    subs.erase(std::remove(subs.begin(), subs.end(), this), subs.end());
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  wake_.notify_all();
  stop_.notify_all();
  // No new deliveries; a persistent session goes on queueing the group's share.
  // A member of an elastic group leaves it instead, and a parked session keeps
  // the group subscribed in case it was the last one (its peers retire it).
  if (options_.elastic) Park();
  if (consumer_) consumer_->Disconnect(options_.ephemeral || options_.elastic);
  for (auto& t : threads_) t.join();
  consumer_.reset();
  {
    // Publishes a handler started are let finish a while, so that one that
    // fails is handed back below with the rest.
    std::unique_lock<std::mutex> lock(publishing_->mu);
    publishing_->idle.wait_for(lock, kSettleGrace, [&] { return publishing_->pending == 0; });
    publishing_->sub = nullptr;
  }
  // What was taken but never handled goes back to the group, delays kept.
  std::vector<OutMessage> back;
  for (auto& p : ready_) back.push_back(ToRetry(options_.group, p.envelope));
  for (auto& [due, e] : delayed_) back.push_back(ToRetry(options_.group, e));
  if (back.empty() || options_.ephemeral) return;
  Status s = core_->publisher->Publish(back);
  if (s.ok())
    spdlog::info("mqtt: group '{}': handed {} undelivered message(s) back to the broker", options_.group,
                 back.size());
  else
    spdlog::error("mqtt: group '{}': {} undelivered message(s) could not be handed back: {}",
                  options_.group, back.size(), s.ToString());
}

void MqttSubscription::OnMessage(const Incoming& in) {
  auto it = type_by_topic_.find(in.topic);
  if (it == type_by_topic_.end()) {
    spdlog::warn("mqtt: group '{}' got a message on unexpected topic '{}'; ignored", options_.group, in.topic);
    return;
  }
  Enqueue(FromIncoming(in, it->second));
}

void MqttSubscription::Enqueue(Envelope e) {
  auto now_ms = NowMillis();
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (e.not_before_ms > now_ms)
      delayed_.emplace(Clock::now() + std::chrono::milliseconds(e.not_before_ms - now_ms), std::move(e));
    else
      ready_.push_back({std::move(e), Clock::now()});
    if (idle_ == 0) return;  // busy handlers look at the queue before they wait
  }
  wake_.notify_one();
}

void MqttSubscription::RunHandlers() {
  std::unique_lock<std::mutex> lock(mu_);
  while (true) {
    // Delays that are over join the ready queue.
    auto now = Clock::now();
    while (!delayed_.empty() && delayed_.begin()->first <= now) {
      ready_.push_back({std::move(delayed_.begin()->second), now});
      delayed_.erase(delayed_.begin());
    }
    if (stopping_) return;
    if (ready_.empty()) {
      ++idle_;
      if (delayed_.empty())
        wake_.wait(lock);
      else
        wake_.wait_until(lock, delayed_.begin()->first);
      --idle_;
      continue;
    }
    std::vector<Envelope> burst;
    std::vector<Delivery> deliveries;
    while (!ready_.empty() && burst.size() < max_burst_) {
      burst.push_back(std::move(ready_.front().envelope));
      ready_.pop_front();
      const Envelope& e = burst.back();
      ++running_[e.message.type];
      deliveries.push_back(Delivery{e.message, options_.group, e.attempt, e.redelivered});
    }
    lock.unlock();
    std::vector<Verdict> verdicts(burst.size());
    InvokeHandler(handler_, deliveries, verdicts);
    for (size_t i = 0; i < burst.size(); ++i) Settle(std::move(burst[i]), verdicts[i]);
    lock.lock();
    for (const Delivery& d : deliveries) --running_[d.message.type];
  }
}

void MqttSubscription::Settle(Envelope e, Verdict& v) {
  if (v.kind == Verdict::Kind::kAck && !v.publish_first.empty())
    return PublishFirst(std::move(e), std::move(v.publish_first));
  if (v.kind == Verdict::Kind::kAck) return;  // paho acknowledged it on receipt
  Status s;
  if (v.kind == Verdict::Kind::kRetry) {
    ++e.attempt;
    e.redelivered = true;
    e.since_ms = NowMillis();  // waiting anew, as a fresh publish
    e.not_before_ms = v.delay.count() > 0 ? NowMillis() + v.delay.count() : 0;
    s = core_->publisher->Publish({ToRetry(options_.group, e)});
  } else {
    s = core_->publisher->Publish({ToDeadLetter(options_.group, e, v.reason)});
    if (s.ok())
      spdlog::warn("mqtt: dead-lettered {} from group '{}' after {} attempt(s): {}",
                   EscapeForLog(e.message.id), options_.group, e.attempt, EscapeForLog(v.reason));
  }
  if (s.ok()) return;
  // Not settled on the broker: keep it here and handle it again later.
  spdlog::error("mqtt: group '{}': could not settle {} ({}); handling it again", options_.group,
                EscapeForLog(e.message.id), s.ToString());
  if (v.kind == Verdict::Kind::kDeadLetter) e.not_before_ms = NowMillis() + kSettleBackoff.count() * 1000;
  Enqueue(std::move(e));
}

void MqttSubscription::PublishFirst(Envelope e, std::vector<Message> messages) {
  std::vector<OutMessage> out;
  out.reserve(messages.size());
  for (const Message& m : messages) out.push_back(ToMain(m));
  {
    std::lock_guard<std::mutex> lock(publishing_->mu);
    ++publishing_->pending;
  }
  core_->publisher->PublishAsync(
      out, [publishing = publishing_, e = std::make_shared<Envelope>(std::move(e))](const Status& s) {
        std::lock_guard<std::mutex> lock(publishing->mu);
        if (!s.ok() && publishing->sub) {
          spdlog::error("mqtt: group '{}': what {} published first failed ({}); handling it again",
                        publishing->sub->options_.group, EscapeForLog(e->message.id), s.ToString());
          e->not_before_ms = NowMillis() + kSettleBackoff.count() * 1000;
          publishing->sub->Enqueue(std::move(*e));
        }
        if (--publishing->pending == 0) publishing->idle.notify_all();
      });
}

void MqttSubscription::Park() {
  std::vector<OutMessage> registry;
  for (const auto& type : options_.event_types) {
    // Members leaving together take the parked session over from each other
    // (the same client id): one of them holds it subscribed; retry the others.
    Status s = DeclareParked(core_->options, options_.group, type);
    for (int i = 0; i < 3 && s.code() == StatusCode::kUnavailable; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50 + std::random_device{}() % 250));
      s = DeclareParked(core_->options, options_.group, type);
    }
    if (!s.ok()) {
      spdlog::warn("mqtt: group '{}': no parked session for {} after this member leaves: {}", options_.group,
                   type, s.ToString());
      continue;
    }
    registry.push_back(RegistryEntry(options_.group, type, true));
  }
  if (auto s = core_->publisher->Publish(registry); !s.ok())
    spdlog::warn("mqtt: group registry of '{}' not updated: {}", options_.group, s.ToString());
}

void MqttSubscription::RetireParked(bool register_all) {
  std::vector<OutMessage> registry;
  for (const auto& type : options_.event_types) {
    auto drained = DrainParked(core_->options, options_.group, type, true);
    if (!drained.ok()) {
      spdlog::warn("mqtt: group '{}': parked session not checked: {}", options_.group,
                   drained.status().ToString());
      continue;
    }
    for (const auto& in : drained->messages) Enqueue(FromIncoming(in, type));
    if (!drained->messages.empty())
      spdlog::info("mqtt: group '{}': took over {} message(s) parked for {}", options_.group,
                   drained->messages.size(), type);
    // Cleared only once the parked session is surely gone: a consumer that
    // is taken over mid-drain leaves it for the next check.
    if (drained->complete && (register_all || drained->session_present))
      registry.push_back(RegistryEntry(options_.group, type, false));
  }
  if (auto s = core_->publisher->Publish(registry); !s.ok())
    spdlog::warn("mqtt: group registry of '{}' not updated: {}", options_.group, s.ToString());
}

void MqttSubscription::RunMaintenance() {
  // Spread the checks of many consumers of one group.
  std::mt19937 rng(std::random_device{}());
  std::unique_lock<std::mutex> lock(mu_);
  while (!stopping_) {
    auto jitter = std::chrono::milliseconds(rng() % 3000);
    if (stop_.wait_for(lock, kRetireEvery + jitter, [&] { return stopping_; })) return;
    lock.unlock();
    RetireParked(false);
    lock.lock();
  }
}

void MqttSubscription::AddStats(const std::string& type, QueueStats& s) {
  std::lock_guard<std::mutex> lock(mu_);
  if (std::find(options_.event_types.begin(), options_.event_types.end(), type) ==
      options_.event_types.end())
    return;
  ++s.consumers;
  int64_t oldest = 0;
  auto count = [&](const Envelope& e) {
    if (e.message.type != type) return;
    ++s.depth;
    if (!oldest || e.since_ms < oldest) oldest = e.since_ms;
  };
  for (const auto& p : ready_) count(p.envelope);
  for (const auto& [due, e] : delayed_) count(e);
  if (auto it = running_.find(type); it != running_.end()) s.in_flight += it->second;
  if (oldest) {
    double age = (NowMillis() - oldest) / 1000.0;
    if (!s.oldest_age_seconds || age > *s.oldest_age_seconds) s.oldest_age_seconds = age;
  }
}

}  // namespace fanflow::mqtt
