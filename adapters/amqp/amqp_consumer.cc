#include "adapters/amqp/amqp_consumer.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <limits>
#include <optional>

#include "adapters/amqp/amqp_message.h"
#include "adapters/amqp/amqp_topology.h"
#include "core/event.h"
#include "core/invoke_handler.h"
#include "core/printable.h"
#include "core/routes.h"

namespace fanflow::amqp {
namespace {

constexpr amqp_channel_t kChannel = 1;
// How long a closing subscription waits out a pending retry delay before it
// hands the delivery back unchanged.
constexpr std::chrono::seconds kShutdownGrace{5};
// A publish that Verdict::AckAfterPublishing asked for failed: its delivery
// is requeued after this, not at once (a full queue refuses it again at once).
constexpr std::chrono::seconds kRepublishBackoff{1};
// Deliveries read per pump, so acks are flushed between bursts.
constexpr int kPumpBurst = 256;
// Default unacked deliveries per handler: with one, a handler that settled
// waits for its ack to reach the broker and the next delivery to come back
// (amqp_pipeline_bench end to end: about 10% more chunks/s with two, in a
// noisy comparison of this change alone).
constexpr int kPrefetchPerHandler = 2;

std::chrono::milliseconds Backoff(int failures) {
  return std::chrono::milliseconds(std::min<int64_t>(5000, int64_t{100} << std::min(failures, 6)));
}

}  // namespace

Result<std::unique_ptr<Subscription>> AmqpSubscription::Start(const AmqpConfig& config,
                                                              std::shared_ptr<Publisher> publisher,
                                                              const SubscribeOptions& options,
                                                              int max_burst, BurstHandler handler) {
  std::unique_ptr<AmqpSubscription> sub(new AmqpSubscription(config, std::move(publisher), options,
                                                             max_burst, std::move(handler)));
  if (Status s = sub->Connect(); !s.ok()) return s;
  sub->io_ = std::thread([s = sub.get()] { s->RunIo(); });
  for (int i = 0; i < options.concurrency; ++i)
    sub->handlers_.emplace_back([s = sub.get()] { s->RunHandler(); });
  return std::unique_ptr<Subscription>(std::move(sub));
}

AmqpSubscription::AmqpSubscription(const AmqpConfig& config, std::shared_ptr<Publisher> publisher,
                                   const SubscribeOptions& options, int max_burst,
                                   BurstHandler handler)
    : config_(config),
      publisher_(std::move(publisher)),
      options_(options),
      max_burst_(static_cast<size_t>(std::max(1, max_burst))),
      handler_(std::move(handler)),
      name_("fanflow consumer (group " + options.group + ")"),
      confirmed_(std::make_shared<Confirmed>()),
      waker_(confirmed_->waker) {
  confirmed_->name = name_;
}

AmqpSubscription::~AmqpSubscription() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  work_ready_.notify_all();
  stop_cv_.notify_all();
  for (auto& t : handlers_) t.join();
  {
    std::lock_guard<std::mutex> lock(mu_);
    handlers_done_ = true;
  }
  stop_cv_.notify_all();
  waker_.Ring();
  if (io_.joinable()) io_.join();
}

Status AmqpSubscription::Connect() {
  auto c = Connection::Open(config_, name_, config_.heartbeat_s, next_node_);
  if (!c.ok()) return c.status();
  Connection& conn = **c;
  if (Status s = conn.OpenChannel(kChannel); !s.ok()) return s;
  if (Status s = DeclareExchanges(conn, kChannel); !s.ok()) return s;
  for (const auto& type : options_.event_types)
    if (Status s = DeclareQueues(conn, kChannel, config_, options_.group, type, options_.ephemeral);
        !s.ok())
      return s;
  // Per consumer: quorum queues refuse a channel-wide (global) prefetch.
  const int prefetch =
      std::min(65535, config_.prefetch ? config_.prefetch : options_.PrefetchOr(kPrefetchPerHandler));
  amqp_basic_qos(conn.get(), kChannel, 0, static_cast<uint16_t>(prefetch), /*global=*/0);
  if (Status s = conn.Check(amqp_get_rpc_reply(conn.get()), kChannel, "basic.qos"); !s.ok())
    return s;
  consumer_tags_.clear();
  for (size_t i = 0; i < options_.event_types.size(); ++i) {
    const std::string queue = routes::AmqpQueue(options_.group, options_.event_types[i]);
    auto* ok = amqp_basic_consume(conn.get(), kChannel, amqp_cstring_bytes(queue.c_str()),
                                  amqp_empty_bytes,
                                  /*no_local=*/0, /*no_ack=*/0, /*exclusive=*/0, amqp_empty_table);
    if (Status s =
            conn.Check(amqp_get_rpc_reply(conn.get()), kChannel, "consume from '" + queue + "'");
        !s.ok())
      return s;
    consumer_tags_[ToString(ok->consumer_tag)] = i;
  }
  conn_ = std::move(c).value();
  return Status::Ok();
}

void AmqpSubscription::RunIo() {
  int failures = 0;
  while (true) {
    if (!conn_) {
      std::unique_lock<std::mutex> lock(mu_);
      if (stopping_) {
        // Nothing can be acked without a link: the broker requeued it all.
        stop_cv_.wait(lock, [&] { return handlers_done_; });
        return;
      }
      lock.unlock();
      Status s = Connect();
      if (!s.ok()) {
        if (failures++ % 10 == 0) spdlog::warn("amqp {}: {} (retrying)", name_, s.message());
        lock.lock();
        stop_cv_.wait_for(lock, Backoff(failures), [&] { return stopping_; });
        continue;
      }
      if (failures > 0 || next_node_ > 0)
        spdlog::info("amqp {}: consuming again from {}", name_, config_.NodeName(conn_->node()));
      failures = 0;
    }
    Status s = Flush();
    if (s.ok() && Drained()) break;
    if (s.ok()) s = Pump();
    if (s.ok()) {
      auto wait = conn_->PollInterval();
      for (const Settlement& d : deferred_)  // a requeue falls due
        wait = std::min(wait, std::chrono::ceil<std::chrono::milliseconds>(d.not_before - Clock::now()));
      auto readable = conn_->WaitReadable(waker_, std::max(wait, std::chrono::milliseconds(0)));
      if (!readable.ok()) s = readable.status();
    }
    if (!s.ok()) {
      spdlog::warn("amqp {}: lost the connection to {}: {}; reconnecting", name_,
                   config_.NodeName(conn_->node()), s.message());
      next_node_ = conn_->node() + 1;
      conn_.reset();
      unsettled_.clear();  // the broker requeued them; tags restart on the next link
      std::lock_guard<std::mutex> lock(mu_);
      ++generation_;
      work_.clear();  // the broker requeued these
    }
  }
  conn_.reset();  // closes: the broker requeues what was delivered but not handled
}

bool AmqpSubscription::Drained() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!handlers_done_ || !outbox_.empty()) return false;
  }
  if (!draining_since_) draining_since_ = Clock::now();
  // Confirms still to come are waited for a while, so that a clean stop does
  // not hand their deliveries out again. Requeues not yet due are left to the
  // broker, which requeues what a closed link held.
  std::lock_guard<std::mutex> lock(confirmed_->mu);
  return (confirmed_->pending == 0 && confirmed_->settled.empty()) ||
         Clock::now() - *draining_since_ > kShutdownGrace;
}

Status AmqpSubscription::Flush() {
  std::vector<Settlement> out;
  uint64_t generation;
  {
    std::lock_guard<std::mutex> lock(mu_);
    out.swap(outbox_);
    generation = generation_;
  }
  {
    std::lock_guard<std::mutex> lock(confirmed_->mu);
    out.insert(out.end(), confirmed_->settled.begin(), confirmed_->settled.end());
    confirmed_->settled.clear();
  }
  out.insert(out.end(), deferred_.begin(), deferred_.end());
  deferred_.clear();
  const auto now = Clock::now();
  // Requeues go first, one by one, so that no ack with `multiple` below takes them.
  std::vector<uint64_t> acks;
  for (const Settlement& s : out) {
    if (s.generation != generation) continue;  // its delivery was requeued with the old link
    if (s.ack) {
      acks.push_back(s.tag);
      continue;
    }
    if (s.not_before > now) {
      deferred_.push_back(s);
      continue;
    }
    if (int rc = amqp_basic_nack(conn_->get(), kChannel, s.tag, 0, /*requeue=*/1);
        rc != AMQP_STATUS_OK)
      return conn_->CheckCode(rc, "amqp nack");
    unsettled_.erase(s.tag);
  }
  for (uint64_t tag : acks) unsettled_.erase(tag);
  // Every tag below the oldest delivery still unsettled is settled, so one ack
  // with `multiple` at the highest of them acks them all (one frame, not one
  // each); the acks above it go one by one.
  const uint64_t oldest =
      unsettled_.empty() ? std::numeric_limits<uint64_t>::max() : *unsettled_.begin();
  uint64_t covered = 0;
  for (uint64_t tag : acks)
    if (tag < oldest) covered = std::max(covered, tag);
  if (covered > 0)
    if (int rc = amqp_basic_ack(conn_->get(), kChannel, covered, /*multiple=*/1);
        rc != AMQP_STATUS_OK)
      return conn_->CheckCode(rc, "amqp ack");
  for (uint64_t tag : acks) {
    if (tag < oldest) continue;
    if (int rc = amqp_basic_ack(conn_->get(), kChannel, tag, 0); rc != AMQP_STATUS_OK)
      return conn_->CheckCode(rc, "amqp ack");
  }
  return Status::Ok();
}

Status AmqpSubscription::Pump() {
  std::vector<Work> burst;
  Status s = ReadDeliveries(burst);
  if (!burst.empty()) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (Work& w : burst) {
        w.generation = generation_;
        work_.push_back(std::move(w));
      }
    }
    // After unlocking: a woken handler does not block on mu_ at once. One
    // handler per max_burst_ deliveries: the others would find nothing left.
    for (size_t i = 0; i < burst.size(); i += max_burst_) work_ready_.notify_one();
  }
  return s;
}

Status AmqpSubscription::ReadDeliveries(std::vector<Work>& burst) {
  for (int i = 0; i < kPumpBurst; ++i) {
    amqp_maybe_release_buffers(conn_->get());
    amqp_envelope_t env;
    timeval now{0, 0};
    amqp_rpc_reply_t r = amqp_consume_message(conn_->get(), &env, &now, 0);
    if (r.reply_type == AMQP_RESPONSE_NORMAL) {
      // Even a delivery we do not hand out stays unsettled: no multiple ack takes it.
      unsettled_.insert(env.delivery_tag);
      auto it = consumer_tags_.find(ToString(env.consumer_tag));
      if (it != consumer_tags_.end()) {
        Incoming in = ReadIncoming(env.message.properties);
        burst.push_back(Work{0, env.delivery_tag, it->second,
                             Delivery{Message{options_.event_types[it->second], in.message_id,
                                              ToString(env.message.body)},
                                      options_.group, in.attempt,
                                      // A retry copy is a new message, but the event was
                                      // delivered before.
                                      env.redelivered != 0 || in.attempt > 1}});
      }
      amqp_destroy_envelope(&env);
      continue;
    }
    if (r.reply_type != AMQP_RESPONSE_LIBRARY_EXCEPTION ||
        r.library_error != AMQP_STATUS_UNEXPECTED_STATE) {
      if (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION && r.library_error == AMQP_STATUS_TIMEOUT)
        return Status::Ok();
      return conn_->Check(r, kChannel, "amqp consume");
    }
    // Not a delivery: a server cancel (queue deleted), channel or connection close.
    amqp_frame_t frame;
    if (int rc = amqp_simple_wait_frame(conn_->get(), &frame); rc != AMQP_STATUS_OK)
      return conn_->CheckCode(rc, "amqp read frame");
    if (frame.frame_type == AMQP_FRAME_METHOD &&
        frame.payload.method.id == AMQP_BASIC_CANCEL_METHOD)
      return Unavailable("the broker cancelled the consumer (queue deleted?)");
    if (Status s = conn_->HandleFrame(frame); !s.ok()) return s;
  }
  return Status::Ok();
}

void AmqpSubscription::RunHandler() {
  std::vector<Work> taken;
  while (true) {
    if (taken.empty()) {
      std::unique_lock<std::mutex> lock(mu_);
      work_ready_.wait(lock, [&] { return stopping_ || !work_.empty(); });
      if (stopping_) return;  // what is still queued goes back to the broker
      TakeWork(taken);
    }
    std::vector<Settlement> settled = HandleBurst(taken);
    taken.clear();
    {
      // One lock to hand the settlements back and take the next deliveries.
      std::lock_guard<std::mutex> lock(mu_);
      outbox_.insert(outbox_.end(), settled.begin(), settled.end());
      if (!stopping_) TakeWork(taken);
    }
    waker_.Ring();
  }
}

void AmqpSubscription::TakeWork(std::vector<Work>& taken) {
  while (!work_.empty() && taken.size() < max_burst_) {
    taken.push_back(std::move(work_.front()));
    work_.pop_front();
  }
}

std::vector<AmqpSubscription::Settlement> AmqpSubscription::HandleBurst(std::vector<Work>& burst) {
  std::vector<Delivery> deliveries;
  deliveries.reserve(burst.size());
  for (Work& w : burst) deliveries.push_back(std::move(w.delivery));
  std::vector<Verdict> verdicts(burst.size());
  InvokeHandler(handler_, deliveries, verdicts);
  // Retry delays of one burst run from the same moment, not one after another.
  const auto handled = Clock::now();
  std::vector<Settlement> settled;
  settled.reserve(burst.size());
  for (size_t i = 0; i < burst.size(); ++i)
    if (auto s = Settle(burst[i], deliveries[i], verdicts[i], handled)) settled.push_back(*s);
  return settled;
}

std::optional<AmqpSubscription::Settlement> AmqpSubscription::Settle(const Work& w, const Delivery& d,
                                                                     Verdict& v, Clock::time_point handled) {
  Settlement ack{w.generation, w.tag, true}, requeue{w.generation, w.tag, false};
  if (v.kind == Verdict::Kind::kAck && !v.publish_first.empty()) {
    SettleWhenConfirmed(w, std::move(v.publish_first));
    return std::nullopt;
  }
  if (v.kind == Verdict::Kind::kAck) return ack;

  Outgoing out;
  out.message = d.message;
  if (v.kind == Verdict::Kind::kRetry) {
    if (!WaitRetryUntil(handled + v.delay)) {
      spdlog::info(
          "amqp {}: closing during a retry delay; '{}' goes back to its queue as attempt {}", name_,
          d.message.id, d.attempt);
      return requeue;
    }
    // A copy straight to this group's queue (default exchange), not to every group.
    out.routing_key = routes::AmqpQueue(options_.group, d.message.type);
    out.attempt = d.attempt + 1;
  } else {
    out.exchange = routes::kAmqpDeadLetterExchange;
    out.routing_key = routes::AmqpDeadLetterQueue(options_.group, d.message.type);
    out.dead = DeadLetter{options_.group, d.message.type, d.message.id, "",
                          v.reason,       d.attempt,      NowRfc3339()};
  }
  // The original stays unacked until its successor is confirmed.
  if (Status s = publisher_->Publish({std::move(out)}); !s.ok()) {
    spdlog::error("amqp {}: could not {} '{}': {}; requeueing it", name_,
                  v.kind == Verdict::Kind::kRetry ? "schedule a retry of" : "dead-letter",
                  EscapeForLog(d.message.id), s.message());
    return requeue;
  }
  if (v.kind == Verdict::Kind::kDeadLetter)
    spdlog::warn("dead-lettered {} from group '{}' after {} attempt(s): {}",
                 EscapeForLog(d.message.id), options_.group, d.attempt, EscapeForLog(v.reason));
  return ack;
}

void AmqpSubscription::SettleWhenConfirmed(const Work& w, std::vector<Message> messages) {
  std::vector<Outgoing> out;
  out.reserve(messages.size());
  for (Message& m : messages) out.push_back(ToEventsExchange(std::move(m)));
  {
    std::lock_guard<std::mutex> lock(confirmed_->mu);
    ++confirmed_->pending;
  }
  // Runs on the publisher's thread: it only hands the settlement over.
  publisher_->PublishAsync(std::move(out), [confirmed = confirmed_,
                                            settlement = Settlement{w.generation, w.tag, true}](
                                               const Status& s) mutable {
    if (!s.ok()) {
      spdlog::warn("amqp {}: what a delivery published first was not confirmed ({}); it is handed out again",
                   confirmed->name, s.message());
      settlement.ack = false;
      settlement.not_before = Clock::now() + kRepublishBackoff;
    }
    std::lock_guard<std::mutex> lock(confirmed->mu);
    --confirmed->pending;
    confirmed->settled.push_back(settlement);
    confirmed->waker.Ring();
  });
}

bool AmqpSubscription::WaitRetryUntil(Clock::time_point until) {
  std::unique_lock<std::mutex> lock(mu_);
  if (stop_cv_.wait_until(lock, until, [&] { return stopping_; }) && Clock::now() < until) {
    if (until - Clock::now() > kShutdownGrace) return false;
    lock.unlock();
    std::this_thread::sleep_until(until);
  }
  return true;
}

}  // namespace fanflow::amqp
