#include "pipeline/cancel.h"

#include <random>

#include "core/printable.h"
#include "pipeline/batch_waiter.h"

namespace fanflow {
namespace {

Result<Message> CancelMessage(std::string_view batch_id, std::string_view reason) {
  if (Status s = CheckName(batch_id, "batch id", kMaxSubjectLength); !s.ok()) return s;
  nlohmann::json data = {{"requested_at", NowRfc3339()}};
  if (!reason.empty()) data["reason"] = std::string(reason);
  const std::string id(batch_id);
  Event cancel = MakeEvent(kCancelBatch, id + "/cancel", id, id, std::move(data));
  std::string body = EncodeEvent(cancel);
  // A reason the aggregator would dead-letter is refused here instead.
  if (auto back = DecodeEvent(body); !back.ok()) return back.status();
  return Message{cancel.type, cancel.id, std::move(body)};
}

}  // namespace

Status PublishCancel(EventBus& bus, std::string_view batch_id, std::string_view reason) {
  auto message = CancelMessage(batch_id, reason);
  if (!message.ok()) return message.status();
  return bus.Publish(message.value());
}

Result<Event> RequestCancel(EventBus& bus, std::string_view batch_id, std::string_view reason,
                            std::chrono::milliseconds wait) {
  auto message = CancelMessage(batch_id, reason);
  if (!message.ok()) return message.status();
  // Listening before publishing, so the answer cannot come first.
  auto waiter = BatchWaiter::Start(bus, std::string(batch_id), false);
  if (!waiter.ok()) return waiter.status();
  if (Status s = bus.Publish(message.value()); !s.ok()) return s;
  auto answer = waiter.value()->Wait(wait, nullptr);
  if (!answer.ok() && answer.status().code() == StatusCode::kTimeout)
    return Timeout(answer.status().message() +
                   ": is an aggregator running, and does it know the batch? (an unknown batch's "
                   "cancel is in `fanflow dlq list --group aggregator`)");
  return answer;
}

Result<std::unique_ptr<CancelledBatches>> CancelledBatches::Start(EventBus& bus, size_t capacity) {
  std::unique_ptr<CancelledBatches> c(new CancelledBatches(capacity));
  SubscribeOptions options{"cancels-" + std::to_string(std::random_device{}()),
                           {kBatchComplete},
                           1,
                           /*ephemeral=*/true};
  auto sub = bus.Subscribe(options, [raw = c.get()](const Delivery& d) { return raw->Handle(d); });
  if (!sub.ok()) return sub.status();
  c->subscription_ = std::move(sub).value();
  return c;
}

int64_t CancelledBatches::Skip(const std::string& batch_id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = skipped_.find(batch_id);
  return it == skipped_.end() ? 0 : ++it->second;
}

Verdict CancelledBatches::Handle(const Delivery& d) {
  auto e = DecodeEvent(d.message.body);
  // Other outcomes and foreign junk are none of a worker's business.
  if (!e.ok() || e->type != kBatchComplete || e->data["status"] != "cancelled")
    return Verdict::Ack();
  std::lock_guard<std::mutex> lock(mu_);
  if (!skipped_.emplace(e->subject, 0).second) return Verdict::Ack();
  order_.push_back(e->subject);
  if (order_.size() > capacity_) {
    skipped_.erase(order_.front());
    order_.pop_front();
  }
  return Verdict::Ack();
}

}  // namespace fanflow
