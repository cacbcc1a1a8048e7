#include "adapters/inproc/inproc_bus.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <thread>

#include "core/event.h"
#include "core/invoke_handler.h"
#include "core/printable.h"
#include "core/routes.h"

namespace fanflow::inproc {
namespace {

using Clock = std::chrono::steady_clock;

struct Pending {
  Message message;
  int attempt = 1;
  bool redelivered = false;
  Clock::time_point enqueued_at;
};

struct Consumer;

struct Queue {
  std::string group;
  std::string type;
  std::deque<Pending> ready;
  int64_t delayed = 0;  // waiting in the retry timer
  int64_t in_flight = 0;
  std::vector<Consumer*> consumers;
  std::deque<DeadLetter> dead;
  bool dropped = false;  // an ephemeral group's queue after its subscription ended
};

struct Consumer {
  std::vector<Queue*> queues;
  std::condition_variable wake;
  bool stopping = false;
  size_t next = 0;  // round robin over queues
};

// The shared state of one named in-process bus. All state is guarded by one
// mutex: handlers run outside it, so it is held only for queue bookkeeping.
class InprocBus final : public EventBus, public std::enable_shared_from_this<InprocBus> {
 public:
  explicit InprocBus(size_t capacity) : capacity_(capacity), timer_([this] { RunTimer(); }) {}

  ~InprocBus() override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      closing_ = true;
    }
    timer_wake_.notify_all();
    timer_.join();
  }

  Status Publish(const std::vector<Message>& messages) override {
    std::unique_lock<std::mutex> lock(mu_);
    for (const Message& m : messages) {
      auto it = by_type_.find(m.type);
      if (it == by_type_.end()) continue;  // nobody bound: accepted and dropped
      for (Queue* q : it->second) {
        space_.wait(lock, [&] { return q->ready.size() < capacity_ || q->dropped || closing_; });
        Enqueue(q, Pending{m, 1, false, Clock::now()});
      }
    }
    return Status::Ok();
  }

  Status DeclareGroup(const std::string& group, const std::vector<std::string>& types) override {
    if (Status s = CheckGroupName(group); !s.ok()) return s;
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& t : types) QueueFor(group, t);
    return Status::Ok();
  }

  Result<std::unique_ptr<Subscription>> Subscribe(const SubscribeOptions& options,
                                                  Handler handler) override {
    return SubscribeBursts(options, 1, OneAtATime(std::move(handler)));
  }
  Result<std::unique_ptr<Subscription>> SubscribeBursts(const SubscribeOptions& options, int max_burst,
                                                        BurstHandler handler) override;

  Result<std::vector<QueueStats>> Stats(const std::string& group) override {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<QueueStats> out;
    auto now = Clock::now();
    for (auto& [key, q] : queues_) {
      if (!group.empty() && q->group != group) continue;
      QueueStats s;
      s.queue = key.first + "/" + routes::ShortName(q->type);
      s.group = q->group;
      s.type = q->type;
      s.depth = static_cast<int64_t>(q->ready.size()) + q->delayed;
      s.in_flight = q->in_flight;
      s.consumers = static_cast<int64_t>(q->consumers.size());
      if (!q->ready.empty())
        s.oldest_age_seconds =
            std::chrono::duration<double>(now - q->ready.front().enqueued_at).count();
      s.dead_letters = static_cast<int64_t>(q->dead.size());
      out.push_back(std::move(s));
    }
    return out;
  }

  Result<std::vector<DeadLetter>> ListDeadLetters(const std::string& group) override {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<DeadLetter> out;
    for (auto& [key, q] : queues_)
      if (group.empty() || q->group == group) out.insert(out.end(), q->dead.begin(), q->dead.end());
    return out;
  }

  Result<int> ReplayDeadLetters(const std::string& group, const std::string& id) override {
    std::lock_guard<std::mutex> lock(mu_);
    int replayed = 0;
    for (auto& [key, q] : queues_) {
      if (!group.empty() && q->group != group) continue;
      for (auto it = q->dead.begin(); it != q->dead.end();) {
        if (!id.empty() && it->id != id) {
          ++it;
          continue;
        }
        Enqueue(q.get(), Pending{Message{it->type, it->id, it->body}, 1, false, Clock::now()});
        it = q->dead.erase(it);
        ++replayed;
      }
    }
    return replayed;
  }

  Result<int> PurgeDeadLetters(const std::string& group) override {
    std::lock_guard<std::mutex> lock(mu_);
    int purged = 0;
    for (auto& [key, q] : queues_) {
      if (!group.empty() && q->group != group) continue;
      purged += static_cast<int>(q->dead.size());
      q->dead.clear();
    }
    return purged;
  }

  std::string Describe() const override { return "inproc://"; }

  BusCapabilities Capabilities() const override {
    BusCapabilities c;
    c.delayed_retry = true;         // the retry timer holds them
    c.counts_all_consumers = true;  // every consumer is in this process
    return c;
  }

 private:
  friend class InprocSubscription;

  // Requires mu_.
  Queue* QueueFor(const std::string& group, const std::string& type) {
    auto& slot = queues_[{group, type}];
    if (!slot) {
      slot = std::make_unique<Queue>();
      slot->group = group;
      slot->type = type;
      by_type_[type].push_back(slot.get());
    }
    return slot.get();
  }

  // Requires mu_. Forgets an ephemeral group's queue: no publish reaches it
  // any more. The object stays (retired_) for publishers still holding it.
  void DropQueue(Queue* q) {
    q->dropped = true;
    q->ready.clear();
    q->dead.clear();
    auto& bound = by_type_[q->type];
    bound.erase(std::remove(bound.begin(), bound.end(), q), bound.end());
    auto it = queues_.find({q->group, q->type});
    retired_.push_back(std::move(it->second));
    queues_.erase(it);
    space_.notify_all();
  }

  // Requires mu_.
  void Enqueue(Queue* q, Pending p) {
    if (q->dropped) return;
    q->ready.push_back(std::move(p));
    for (Consumer* c : q->consumers) c->wake.notify_one();
  }

  // Requires mu_. Applies a handler's verdict to a delivery taken from `q`.
  void Settle(Queue* q, Pending p, const Verdict& v) {
    --q->in_flight;
    space_.notify_all();
    switch (v.kind) {
      case Verdict::Kind::kAck:
        return;
      case Verdict::Kind::kRetry:
        ++p.attempt;
        p.redelivered = true;
        ++q->delayed;
        retry_timer_.emplace(Clock::now() + v.delay, std::make_pair(q, std::move(p)));
        timer_wake_.notify_all();
        return;
      case Verdict::Kind::kDeadLetter: {
        DeadLetter d;
        d.group = q->group;
        d.type = q->type;
        d.id = p.message.id.empty() ? "inproc-" + std::to_string(++dead_seq_) : p.message.id;
        d.body = std::move(p.message.body);
        d.reason = v.reason;
        d.attempts = p.attempt;
        d.time = NowRfc3339();
        spdlog::warn("dead-lettered {} from group '{}': {}", EscapeForLog(d.id), d.group,
                     EscapeForLog(d.reason));
        q->dead.push_back(std::move(d));
        return;
      }
    }
  }

  // Moves retries whose delay is over back to their queue.
  void RunTimer() {
    std::unique_lock<std::mutex> lock(mu_);
    while (!closing_) {
      if (retry_timer_.empty()) {
        timer_wake_.wait(lock);
        continue;
      }
      auto first = retry_timer_.begin();
      if (first->first > Clock::now()) {
        timer_wake_.wait_until(lock, first->first);
        continue;
      }
      Queue* q = first->second.first;
      Pending p = std::move(first->second.second);
      retry_timer_.erase(first);
      --q->delayed;
      p.enqueued_at = Clock::now();
      Enqueue(q, std::move(p));
    }
  }

  const size_t capacity_;
  std::mutex mu_;
  std::condition_variable space_;       // a queue got room
  std::condition_variable timer_wake_;  // the retry timer has new work
  // Guarded by mu_.
  bool closing_ = false;
  std::map<std::pair<std::string, std::string>, std::unique_ptr<Queue>> queues_;
  std::map<std::string, std::vector<Queue*>> by_type_;
  std::multimap<Clock::time_point, std::pair<Queue*, Pending>> retry_timer_;
  std::vector<std::unique_ptr<Queue>> retired_;
  uint64_t dead_seq_ = 0;
  std::thread timer_;  // last: starts after the state above exists
};

// `concurrency` threads that each take up to max_burst deliveries at a time
// from the group's queues, so at most `concurrency` handlers run at once.
class InprocSubscription final : public Subscription {
 public:
  InprocSubscription(std::shared_ptr<InprocBus> bus, std::vector<Queue*> queues, int concurrency,
                     bool ephemeral, int max_burst, BurstHandler handler)
      : bus_(std::move(bus)),
        max_burst_(static_cast<size_t>(std::max(1, max_burst))),
        handler_(std::move(handler)),
        ephemeral_(ephemeral) {
    consumer_.queues = std::move(queues);
    for (Queue* q : consumer_.queues) q->consumers.push_back(&consumer_);
    for (int i = 0; i < concurrency; ++i) threads_.emplace_back([this] { Run(); });
  }

  ~InprocSubscription() override {
    {
      std::lock_guard<std::mutex> lock(bus_->mu_);
      consumer_.stopping = true;
      for (Queue* q : consumer_.queues) {
        auto& cs = q->consumers;
        cs.erase(std::remove(cs.begin(), cs.end(), &consumer_), cs.end());
      }
    }
    consumer_.wake.notify_all();
    for (auto& t : threads_) t.join();
    if (!ephemeral_) return;
    std::lock_guard<std::mutex> lock(bus_->mu_);
    for (Queue* q : consumer_.queues)
      if (q->consumers.empty() && !q->dropped) bus_->DropQueue(q);
  }

 private:
  void Run() {
    std::unique_lock<std::mutex> lock(bus_->mu_);
    while (true) {
      Queue* q = nullptr;
      consumer_.wake.wait(lock, [&] { return consumer_.stopping || (q = NextReady()) != nullptr; });
      if (consumer_.stopping) return;
      std::vector<std::pair<Queue*, Pending>> burst;
      std::vector<Delivery> deliveries;
      do {
        Pending& p = burst.emplace_back(q, std::move(q->ready.front())).second;
        q->ready.pop_front();
        ++q->in_flight;
        deliveries.push_back(Delivery{p.message, q->group, p.attempt, p.redelivered});
      } while (burst.size() < max_burst_ && (q = NextReady()) != nullptr);
      bus_->space_.notify_all();
      lock.unlock();
      std::vector<Verdict> verdicts(burst.size());
      InvokeHandler(handler_, deliveries, verdicts);
      lock.lock();
      for (size_t i = 0; i < burst.size(); ++i) bus_->Settle(burst[i].first, std::move(burst[i].second), verdicts[i]);
    }
  }

  // Requires bus mu_.
  Queue* NextReady() {
    const size_t n = consumer_.queues.size();
    for (size_t i = 0; i < n; ++i) {
      Queue* q = consumer_.queues[(consumer_.next + i) % n];
      if (!q->ready.empty()) {
        consumer_.next = (consumer_.next + i + 1) % n;
        return q;
      }
    }
    return nullptr;
  }

  const std::shared_ptr<InprocBus> bus_;  // keeps the queues alive
  const size_t max_burst_;
  const BurstHandler handler_;
  const bool ephemeral_;
  Consumer consumer_;  // guarded by bus_->mu_
  std::vector<std::thread> threads_;
};

Result<std::unique_ptr<Subscription>> InprocBus::SubscribeBursts(const SubscribeOptions& options,
                                                                  int max_burst, BurstHandler handler) {
  if (Status s = CheckGroupName(options.group); !s.ok()) return s;
  if (options.concurrency < 1) return InvalidArgument("subscribe: concurrency must be >= 1");
  // Held while the subscription registers with its queues; its threads start
  // waiting for mu_ and take deliveries once this returns.
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<Queue*> queues;
  for (const auto& t : options.event_types) queues.push_back(QueueFor(options.group, t));
  return std::unique_ptr<Subscription>(
      new InprocSubscription(shared_from_this(), std::move(queues), options.concurrency,
                             options.ephemeral, max_burst, std::move(handler)));
}

// What OpenBus hands out: every handle opened with the same name in one
// process reaches the same queues, as clients of one broker do.
class InprocHandle final : public EventBus {
 public:
  explicit InprocHandle(std::shared_ptr<InprocBus> bus) : bus_(std::move(bus)) {}
  Status Publish(const std::vector<Message>& m) override { return bus_->Publish(m); }
  Status DeclareGroup(const std::string& g, const std::vector<std::string>& t) override {
    return bus_->DeclareGroup(g, t);
  }
  Result<std::unique_ptr<Subscription>> Subscribe(const SubscribeOptions& o, Handler h) override {
    return bus_->Subscribe(o, std::move(h));
  }
  Result<std::unique_ptr<Subscription>> SubscribeBursts(const SubscribeOptions& o, int max_burst,
                                                        BurstHandler h) override {
    return bus_->SubscribeBursts(o, max_burst, std::move(h));
  }
  Result<std::vector<QueueStats>> Stats(const std::string& g) override { return bus_->Stats(g); }
  Result<std::vector<DeadLetter>> ListDeadLetters(const std::string& g) override {
    return bus_->ListDeadLetters(g);
  }
  Result<int> ReplayDeadLetters(const std::string& g, const std::string& id) override {
    return bus_->ReplayDeadLetters(g, id);
  }
  Result<int> PurgeDeadLetters(const std::string& g) override { return bus_->PurgeDeadLetters(g); }
  std::string Describe() const override { return bus_->Describe(); }
  BusCapabilities Capabilities() const override { return bus_->Capabilities(); }

 private:
  const std::shared_ptr<InprocBus> bus_;
};

}  // namespace

Result<std::unique_ptr<EventBus>> NewInprocBus(const BusUrl& url) {
  size_t capacity = 10000;
  if (auto it = url.query.find("capacity"); it != url.query.end()) {
    const std::string& v = it->second;
    if (v.empty() || v.size() > 9 || v.find_first_not_of("0123456789") != std::string::npos ||
        std::stoul(v) == 0)
      return InvalidArgument("inproc:// capacity must be a whole number >= 1, got '" + v + "'");
    capacity = std::stoul(v);
  }
  // The named bus lives while any handle or subscription holds it.
  static std::mutex registry_mu;
  static std::map<std::string, std::weak_ptr<InprocBus>> registry;
  std::lock_guard<std::mutex> lock(registry_mu);
  std::shared_ptr<InprocBus> bus = registry[url.host].lock();
  if (!bus) {
    bus = std::make_shared<InprocBus>(capacity);
    registry[url.host] = bus;
  }
  return std::unique_ptr<EventBus>(std::make_unique<InprocHandle>(std::move(bus)));
}

}  // namespace fanflow::inproc
