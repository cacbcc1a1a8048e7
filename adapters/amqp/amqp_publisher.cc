#include "adapters/amqp/amqp_publisher.h"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "adapters/amqp/amqp_topology.h"

namespace fanflow::amqp {
namespace {

using Clock = std::chrono::steady_clock;
constexpr amqp_channel_t kChannel = 1;

std::chrono::milliseconds Backoff(int failures) {
  return std::chrono::milliseconds(std::min<int64_t>(5000, int64_t{100} << std::min(failures, 6)));
}

}  // namespace

Publisher::Publisher(AmqpConfig config) : config_(std::move(config)), thread_([this] { Run(); }) {}

Publisher::~Publisher() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  work_.notify_all();
  waker_.Ring();
  thread_.join();
  // What is left was not confirmed: its callers hear so.
  std::vector<std::shared_ptr<Batch>> left;
  for (auto& [seq, item] : unconfirmed_) left.push_back(item.batch);
  for (auto& item : queue_) left.push_back(item.batch);
  for (const auto& b : left)
    if (b->on_done && b->remaining > 0) {
      b->remaining = 0;
      b->on_done(Unavailable("amqp publish: the bus closed before the broker confirmed"));
    }
}

void Publisher::PublishAsync(std::vector<Outgoing> messages, std::function<void(const Status&)> done) {
  if (messages.empty()) return done(Status::Ok());
  auto batch = std::make_shared<Batch>();
  batch->remaining = messages.size();
  batch->on_done = std::move(done);
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) {
      batch->remaining = 0;
    } else {
      for (auto& m : messages) queue_.push_back(Item{batch, std::move(m)});
    }
  }
  if (batch->remaining == 0) return batch->on_done(Unavailable("amqp publish: the bus is closing"));
  work_.notify_one();
  waker_.Ring();
}

Status Publisher::Publish(std::vector<Outgoing> messages) {
  if (messages.empty()) return Status::Ok();
  auto batch = std::make_shared<Batch>();
  batch->remaining = messages.size();
  const auto deadline = Clock::now() + std::chrono::milliseconds(config_.publish_timeout_ms);
  std::unique_lock<std::mutex> lock(mu_);
  if (stopping_) return Unavailable("amqp publish: the bus is closing");
  for (auto& m : messages) queue_.push_back(Item{batch, std::move(m)});
  work_.notify_one();
  waker_.Ring();
  if (!batch->done.wait_until(lock, deadline, [&] { return batch->remaining == 0; })) {
    batch->abandoned = true;
    return Timeout("amqp publish to " + config_.redacted_url + ": " +
                   std::to_string(batch->remaining) + " of " + std::to_string(messages.size()) +
                   " messages not confirmed within " + std::to_string(config_.publish_timeout_ms) +
                   " ms" + (last_error_.ok() ? "" : " (" + last_error_.message() + ")"));
  }
  return batch->status;
}

void Publisher::Run() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stopping_) {
    if (!conn_) {
      // Connect lazily: an idle publisher does not chase a broker that is down.
      if (queue_.empty()) {
        work_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
        continue;
      }
      lock.unlock();
      bool up = Connect();
      lock.lock();
      if (!up) work_.wait_for(lock, Backoff(failures_), [&] { return stopping_; });
      continue;
    }
    lock.unlock();
    Status s = SendSome();
    if (s.ok()) s = ReadConfirms();
    if (s.ok()) {
      bool more_to_send;
      {
        std::lock_guard<std::mutex> l(mu_);
        more_to_send =
            !queue_.empty() && unconfirmed_.size() < static_cast<size_t>(config_.confirm_window);
      }
      if (!more_to_send) {
        auto readable = conn_->WaitReadable(waker_, conn_->PollInterval());
        if (!readable.ok()) s = readable.status();
      }
    }
    if (!s.ok()) Disconnect(s);
    lock.lock();
  }
  lock.unlock();
  conn_.reset();
}

bool Publisher::Connect() {
  auto c = Connection::Open(config_, "fanflow publisher", config_.heartbeat_s, next_node_);
  Status s = c.ok() ? Status::Ok() : c.status();
  if (s.ok()) s = (*c)->OpenChannel(kChannel);
  if (s.ok()) s = DeclareExchanges(**c, kChannel);
  if (s.ok()) {
    amqp_confirm_select((*c)->get(), kChannel);
    s = (*c)->Check(amqp_get_rpc_reply((*c)->get()), kChannel, "confirm.select");
  }
  std::lock_guard<std::mutex> lock(mu_);
  if (!s.ok()) {
    if (failures_++ % 10 == 0) spdlog::warn("amqp publisher: {} (retrying)", s.message());
    last_error_ = s;
    return false;
  }
  if (failures_ > 0 || next_node_ > 0)
    spdlog::info("amqp publisher: connected to {} again", config_.NodeName((*c)->node()));
  failures_ = 0;
  last_error_ = Status::Ok();
  conn_ = std::move(c).value();
  next_seq_ = 1;
  return true;
}

Status Publisher::SendSome() {
  while (true) {
    Item item;
    uint64_t seq;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (queue_.empty() || unconfirmed_.size() >= static_cast<size_t>(config_.confirm_window))
        return Status::Ok();
      item = std::move(queue_.front());
      queue_.pop_front();
      if (item.batch->abandoned) continue;
      seq = next_seq_++;
    }
    int rc = PublishOne(conn_->get(), kChannel, item.out);
    {
      // Sent or not, it now waits for a confirm; a failed send is resent
      // after the reconnect.
      std::lock_guard<std::mutex> lock(mu_);
      unconfirmed_.emplace(seq, std::move(item));
    }
    if (rc != AMQP_STATUS_OK) return conn_->CheckCode(rc, "amqp publish");
  }
}

Status Publisher::ReadConfirms() {
  Status s;
  while (s.ok()) {
    amqp_frame_t frame;
    timeval now{0, 0};
    int rc = amqp_simple_wait_frame_noblock(conn_->get(), &frame, &now);
    if (rc == AMQP_STATUS_TIMEOUT) break;
    if (rc != AMQP_STATUS_OK) return conn_->CheckCode(rc, "amqp read confirms");
    const bool ack =
        frame.frame_type == AMQP_FRAME_METHOD && frame.payload.method.id == AMQP_BASIC_ACK_METHOD;
    const bool nack =
        frame.frame_type == AMQP_FRAME_METHOD && frame.payload.method.id == AMQP_BASIC_NACK_METHOD;
    if (ack || nack) {
      auto* a = static_cast<amqp_basic_ack_t*>(frame.payload.method.decoded);
      auto* n = static_cast<amqp_basic_nack_t*>(frame.payload.method.decoded);
      std::vector<std::shared_ptr<Batch>> finished;
      {
        std::lock_guard<std::mutex> lock(mu_);
        Settle(ack ? a->delivery_tag : n->delivery_tag, ack ? a->multiple : n->multiple, ack,
               finished);
      }
      // After unlocking: the woken caller does not block on mu_ at once.
      Finish(finished);
    } else {
      s = conn_->HandleFrame(frame);
    }
  }
  amqp_maybe_release_buffers(conn_->get());
  if (s.ok() && !conn_->alive()) s = Unavailable("amqp publisher: connection closed");
  return s;
}

void Publisher::Settle(uint64_t tag, bool multiple, bool ack,
                       std::vector<std::shared_ptr<Batch>>& finished) {
  auto first = multiple ? unconfirmed_.begin() : unconfirmed_.find(tag);
  auto last = multiple ? unconfirmed_.upper_bound(tag)
                       : (first == unconfirmed_.end() ? first : std::next(first));
  for (auto it = first; it != last; ++it) {
    Batch& b = *it->second.batch;
    if (!ack && b.status.ok()) {
      const Outgoing& o = it->second.out;
      b.status =
          Rejected("amqp: the broker refused message '" + o.message.id + "' (" + o.message.type +
                   ") sent to exchange '" + o.exchange + "' with key '" + o.routing_key +
                   "': a queue is full (overflow=reject-publish) or could not store it");
    }
    // Only callers whose batch is complete are woken (not every waiting caller).
    if (--b.remaining == 0) finished.push_back(it->second.batch);
  }
  unconfirmed_.erase(first, last);
}

void Publisher::Finish(const std::vector<std::shared_ptr<Batch>>& finished) {
  for (const auto& b : finished) {
    if (b->on_done)
      b->on_done(b->status);
    else
      b->done.notify_one();
  }
}

void Publisher::Disconnect(const Status& why) {
  spdlog::warn("amqp publisher: lost the connection to {}: {}; reconnecting",
               config_.NodeName(conn_->node()), why.message());
  next_node_ = conn_->node() + 1;
  conn_.reset();
  std::lock_guard<std::mutex> lock(mu_);
  // Unconfirmed messages go back in front, in their original order.
  for (auto it = unconfirmed_.rbegin(); it != unconfirmed_.rend(); ++it)
    if (!it->second.batch->abandoned) queue_.push_front(std::move(it->second));
  unconfirmed_.clear();
  last_error_ = why;
}

}  // namespace fanflow::amqp
