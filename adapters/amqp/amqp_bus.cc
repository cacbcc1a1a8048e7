#include "adapters/amqp/amqp_bus.h"

#include <spdlog/spdlog.h>

#include <ctime>
#include <functional>
#include <mutex>
#include <set>

#include "adapters/amqp/amqp_config.h"
#include "adapters/amqp/amqp_connection.h"
#include "adapters/amqp/amqp_consumer.h"
#include "adapters/amqp/amqp_message.h"
#include "adapters/amqp/amqp_publisher.h"
#include "adapters/amqp/amqp_topology.h"
#include "core/event.h"
#include "core/printable.h"
#include "core/routes.h"

namespace fanflow::amqp {
namespace {

constexpr amqp_channel_t kChannel = 1;
// Dead letters listed or replayed per queue and call, to bound memory.
constexpr int64_t kMaxDeadLettersPerQueue = 100000;

using GroupType = std::pair<std::string, std::string>;

// One message taken with basic.get and not yet acked.
struct Got {
  uint64_t tag;
  Incoming in;
  std::string body;
};

// basic.get of up to `limit` messages, all left unacked on `conn`'s channel
// (the caller acks or nacks them).
Result<std::vector<Got>> GetUnacked(Connection& conn, const std::string& queue, int64_t limit) {
  std::vector<Got> out;
  while (static_cast<int64_t>(out.size()) < limit) {
    amqp_maybe_release_buffers(conn.get());
    amqp_rpc_reply_t r =
        amqp_basic_get(conn.get(), kChannel, amqp_cstring_bytes(queue.c_str()), /*no_ack=*/0);
    if (Status s = conn.Check(r, kChannel, "basic.get from '" + queue + "'"); !s.ok()) return s;
    if (r.reply.id == AMQP_BASIC_GET_EMPTY_METHOD) break;
    uint64_t tag = static_cast<amqp_basic_get_ok_t*>(r.reply.decoded)->delivery_tag;
    amqp_message_t m;
    if (Status s =
            conn.Check(amqp_read_message(conn.get(), kChannel, &m, 0), kChannel, "read message");
        !s.ok())
      return s;
    out.push_back(Got{tag, ReadIncoming(m.properties), ToString(m.body)});
    amqp_destroy_message(&m);
  }
  return out;
}

// Hands every still-unacked message up to `last_tag` back to its queue.
Status NackUpTo(Connection& conn, uint64_t last_tag) {
  return conn.CheckCode(
      amqp_basic_nack(conn.get(), kChannel, last_tag, /*multiple=*/1, /*requeue=*/1), "nack");
}

// EventBus over RabbitMQ. Thread-safe: publishing goes through the shared
// Publisher (its own connection and I/O thread), each subscription has its own
// connection, and the admin calls (declare, stats, dead letters) share one
// short-RPC connection guarded by admin_mu_.
class AmqpBus final : public EventBus {
 public:
  explicit AmqpBus(AmqpConfig config)
      : config_(std::move(config)), publisher_(std::make_shared<Publisher>(config_)) {}

  Status Publish(const std::vector<Message>& messages) override {
    std::vector<Outgoing> out;
    out.reserve(messages.size());
    for (const Message& m : messages) {
      if (m.type.empty())
        return InvalidArgument("amqp publish: message '" + m.id + "' has no type");
      out.push_back(ToEventsExchange(m));
    }
    return publisher_->Publish(std::move(out));
  }

  Status DeclareGroup(const std::string& group, const std::vector<std::string>& types) override {
    if (Status s = CheckGroupName(group); !s.ok()) return s;
    Status s = Admin([&](Connection& c) {
      for (const auto& t : types)
        if (Status d = DeclareQueues(c, kChannel, config_, group, t, false); !d.ok()) return d;
      return Status::Ok();
    });
    if (s.ok()) Remember(group, types);
    return s;
  }

  Result<std::unique_ptr<Subscription>> Subscribe(const SubscribeOptions& options,
                                                  Handler handler) override {
    return SubscribeBursts(options, 1, OneAtATime(std::move(handler)));
  }

  Result<std::unique_ptr<Subscription>> SubscribeBursts(const SubscribeOptions& options, int max_burst,
                                                        BurstHandler handler) override {
    if (Status s = CheckGroupName(options.group); !s.ok()) return s;
    if (options.concurrency < 1) return InvalidArgument("subscribe: concurrency must be >= 1");
    if (options.event_types.empty()) return InvalidArgument("subscribe: no event types");
    auto sub = AmqpSubscription::Start(config_, publisher_, options, max_burst, std::move(handler));
    if (sub.ok()) Remember(options.group, options.event_types);
    return sub;
  }

  Result<std::vector<QueueStats>> Stats(const std::string& group) override {
    std::vector<QueueStats> out;
    Status s = Admin([&](Connection& c) {
      out.clear();
      for (const auto& [g, t] : Known(group)) {
        auto q = InspectQueue(c, kChannel, routes::AmqpQueue(g, t));
        if (!q.ok()) return q.status();
        if (!*q) continue;  // a default group nobody declared
        auto d = InspectQueue(c, kChannel, routes::AmqpDeadLetterQueue(g, t));
        if (!d.ok()) return d.status();
        QueueStats st;
        st.queue = routes::AmqpQueue(g, t);
        st.group = g;
        st.type = t;
        st.depth = (*q)->ready;
        st.in_flight = -1;  // passive declare does not count unacked messages
        st.consumers = (*q)->consumers;
        st.dead_letters = *d ? (*d)->ready : 0;
        // st.dropped stays 0: a full queue dead-letters its head (drop-head)
        // or refuses the publish (reject-publish); it never discards silently.
        if (st.depth > 0) {
          auto age = OldestAge(c, st.queue);
          if (!age.ok()) return age.status();
          st.oldest_age_seconds = *age;
        }
        out.push_back(std::move(st));
      }
      return Status::Ok();
    });
    if (!s.ok()) return s;
    return out;
  }

  Result<std::vector<DeadLetter>> ListDeadLetters(const std::string& group) override {
    std::vector<DeadLetter> out;
    Status s = Admin([&](Connection& c) {
      out.clear();
      return ForEachDeadLetterQueue(c, group, [&](const GroupType& gt, std::vector<Got>& got) {
        for (const Got& g : got) out.push_back(ToDeadLetter(gt, g));
        return NackUpTo(c, got.back().tag);
      });
    });
    if (!s.ok()) return s;
    return out;
  }

  Result<int> ReplayDeadLetters(const std::string& group, const std::string& id) override {
    int replayed = 0;
    Status s = Admin([&](Connection& c) {
      replayed = 0;
      return ForEachDeadLetterQueue(c, group, [&](const GroupType& gt, std::vector<Got>& got) {
        std::vector<Outgoing> back;
        std::vector<uint64_t> tags;
        uint64_t last_kept = 0;
        for (const Got& g : got) {
          std::string gid = DeadLetterId(g.in, g.body);
          if (!id.empty() && gid != id) {
            last_kept = g.tag;
            continue;
          }
          back.push_back(Outgoing{"", routes::AmqpQueue(gt.first, gt.second),
                                  Message{gt.second, gid, g.body}, 1, std::nullopt});
          tags.push_back(g.tag);
        }
        // Acked only once the origin queue has the copy.
        Status p = publisher_->Publish(std::move(back));
        for (uint64_t tag : tags) {
          if (!p.ok()) break;
          p = c.CheckCode(amqp_basic_ack(c.get(), kChannel, tag, 0), "ack dead letter");
        }
        if (!p.ok()) return p;
        replayed += static_cast<int>(tags.size());
        return last_kept ? NackUpTo(c, last_kept) : Status::Ok();  // the ones not replayed stay
      });
    });
    if (!s.ok()) return s;
    return replayed;
  }

  Result<int> PurgeDeadLetters(const std::string& group) override {
    int purged = 0;
    Status s = Admin([&](Connection& c) {
      purged = 0;
      for (const auto& [g, t] : Known(group)) {
        const std::string dlq = routes::AmqpDeadLetterQueue(g, t);
        auto d = InspectQueue(c, kChannel, dlq);
        if (!d.ok()) return d.status();
        if (!*d) continue;
        auto* ok = amqp_queue_purge(c.get(), kChannel, amqp_cstring_bytes(dlq.c_str()));
        if (Status p = c.Check(amqp_get_rpc_reply(c.get()), kChannel, "purge '" + dlq + "'");
            !p.ok())
          return p;
        purged += static_cast<int>(ok->message_count);
      }
      return Status::Ok();
    });
    if (!s.ok()) return s;
    return purged;
  }

  std::string Describe() const override { return config_.redacted_url; }

  BusCapabilities Capabilities() const override {
    BusCapabilities c;
    // x-message-ttl, dead-lettered through the DLX: classic queues, and quorum
    // queues since RabbitMQ 3.10 (queue-wide TTL; fanflow sets no per-message one).
    c.message_ttl = true;
    // delayed_retry stays false: the consumer holds the delivery unacked, in
    // its handler slot, until the delay is over (amqp_consumer.cc).
    c.shared_between_processes = true;
    c.counts_all_consumers = true;  // queue.declare's consumer_count
    c.publish_then_ack = true;      // the publisher's confirm settles the delivery
    return c;
  }

  // Opens the admin connection now, so NewAmqpBus reports a bad URL or login.
  Status Probe() {
    return Admin([](Connection&) { return Status::Ok(); });
  }

 private:
  // Runs `fn` on the admin connection, (re)opened as needed. A call that
  // failed on a stale link (broker restarted since) is tried once more.
  Status Admin(const std::function<Status(Connection&)>& fn) {
    std::lock_guard<std::mutex> lock(admin_mu_);
    Status s;
    for (int attempt = 0; attempt < 2; ++attempt) {
      bool fresh = !admin_;
      if (!admin_) {
        auto c = Connection::Open(config_, "fanflow admin", /*heartbeat_s=*/0, admin_next_node_);
        if (!c.ok()) return c.status();
        if (s = (*c)->OpenChannel(kChannel); s.ok()) s = DeclareExchanges(**c, kChannel);
        if (!s.ok()) return s;
        admin_ = std::move(c).value();
      }
      s = fn(*admin_);
      if (s.ok()) return s;
      bool link_lost = !admin_->alive();
      if (link_lost) admin_next_node_ = admin_->node() + 1;
      admin_.reset();  // a channel error closed the channel; start clean next time
      if (!link_lost || fresh) return s;
    }
    return s;
  }

  void Remember(const std::string& group, const std::vector<std::string>& types) {
    std::lock_guard<std::mutex> lock(known_mu_);
    for (const auto& t : types) known_.insert({group, t});
  }

  // The (group, type) pairs this bus declared or subscribed, plus the standard
  // deployment's, restricted to `group` unless it is "".
  std::set<GroupType> Known(const std::string& group) {
    std::set<GroupType> all;
    {
      std::lock_guard<std::mutex> lock(known_mu_);
      all = known_;
    }
    for (const auto& t : KnownEventTypes())
      for (const auto& g : routes::DefaultGroups(t)) all.insert({g, t});
    if (group.empty()) return all;
    std::set<GroupType> mine;
    for (const auto& gt : all)
      if (gt.first == group) mine.insert(gt);
    return mine;
  }

  // Calls visit(group/type, messages) with every message of each existing
  // dead-letter queue, fetched unacked; visit must ack or nack them.
  Status ForEachDeadLetterQueue(
      Connection& c, const std::string& group,
      const std::function<Status(const GroupType&, std::vector<Got>&)>& visit) {
    for (const auto& gt : Known(group)) {
      const std::string dlq = routes::AmqpDeadLetterQueue(gt.first, gt.second);
      auto d = InspectQueue(c, kChannel, dlq);
      if (!d.ok()) return d.status();
      if (!*d) continue;
      // Not bounded by the passive declare's count: it may lag a requeue.
      auto got = GetUnacked(c, dlq, kMaxDeadLettersPerQueue);
      if (!got.ok()) return got.status();
      if (got->empty()) continue;  // taken meanwhile
      if (Status s = visit(gt, *got); !s.ok()) return s;
    }
    return Status::Ok();
  }

  static DeadLetter ToDeadLetter(const GroupType& gt, const Got& g) {
    DeadLetter d;
    d.group = gt.first;
    d.type = gt.second;
    d.id = DeadLetterId(g.in, g.body);
    d.body = g.body;
    d.reason =
        g.in.reason.empty() ? "unknown (no x-fanflow-reason or x-death header)" : g.in.reason;
    d.attempts = g.in.attempts > 0 ? g.in.attempts : g.in.attempt;
    d.time = g.in.dead_lettered_at;
    return d;
  }

  // Age of the head message from its timestamp: peeked with basic.get and
  // handed straight back (requeued at the head).
  static Result<std::optional<double>> OldestAge(Connection& c, const std::string& queue) {
    auto got = GetUnacked(c, queue, 1);
    if (!got.ok()) return got.status();
    if (got->empty()) return std::optional<double>();  // a consumer took it meanwhile
    if (Status s = NackUpTo(c, got->front().tag); !s.ok()) return s;
    if (!got->front().in.timestamp_s) return std::optional<double>();
    return std::optional<double>(std::max<double>(
        0, static_cast<double>(std::time(nullptr) - *got->front().in.timestamp_s)));
  }

  const AmqpConfig config_;
  const std::shared_ptr<Publisher> publisher_;  // shared with the subscriptions
  std::mutex admin_mu_;
  std::unique_ptr<Connection> admin_;  // guarded by admin_mu_
  size_t admin_next_node_ = 0;         // guarded by admin_mu_; the node after one lost
  std::mutex known_mu_;
  std::set<GroupType> known_;  // guarded by known_mu_
};

// Says at start-up what a lost node of the cluster would cost.
void LogReplication(const AmqpConfig& config) {
  if (!config.cluster()) return;
  bool quorum = config.defaults.queue_type == "quorum";
  for (const auto& [group, q] : config.per_group) quorum = quorum && q.queue_type == "quorum";
  if (quorum)
    spdlog::info(
        "amqp: the URL names {} nodes: queues are quorum queues, replicated on the "
        "cluster (dead-letter queues too); classic queues would not be",
        config.nodes.size());
  else
    spdlog::warn(
        "amqp: the URL names {} nodes but queue_type=classic: a classic queue lives on "
        "one node, and a lost node takes its queues away until it returns",
        config.nodes.size());
}

}  // namespace

Result<std::unique_ptr<EventBus>> NewAmqpBus(const BusUrl& url) {
  auto config = ParseAmqpConfig(url);
  if (!config.ok()) return config.status();
  LogReplication(*config);
  auto bus = std::make_unique<AmqpBus>(std::move(config).value());
  if (Status s = bus->Probe(); !s.ok()) return s;
  spdlog::debug("amqp bus on {}", bus->Describe());
  return std::unique_ptr<EventBus>(std::move(bus));
}

}  // namespace fanflow::amqp
