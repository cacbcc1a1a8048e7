#include "adapters/amqp/amqp_topology.h"

#include <deque>
#include <vector>

#include "core/routes.h"

namespace fanflow::amqp {
namespace {

// A queue.declare argument table; owns the bytes the entries point at.
class Arguments {
 public:
  void Add(const char* key, const std::string& value) {
    strings_.push_back(value);
    amqp_table_entry_t e;
    e.key = amqp_cstring_bytes(key);
    e.value.kind = AMQP_FIELD_KIND_UTF8;
    e.value.value.bytes = amqp_cstring_bytes(strings_.back().c_str());
    entries_.push_back(e);
  }
  void Add(const char* key, int64_t value) {
    amqp_table_entry_t e;
    e.key = amqp_cstring_bytes(key);
    e.value.kind = AMQP_FIELD_KIND_I64;
    e.value.value.i64 = value;
    entries_.push_back(e);
  }
  amqp_table_t table() { return {static_cast<int>(entries_.size()), entries_.data()}; }

 private:
  std::deque<std::string> strings_;  // a deque never moves what it holds
  std::vector<amqp_table_entry_t> entries_;
};

// Which bus URL parameter sets a queue argument, for the 406 message.
std::string ParamFor(const std::string& server_text, bool dlq) {
  static const std::pair<const char*, const char*> kMap[] = {
      {"'x-queue-type'", "queue_type"},
      {"'x-max-length'", "max_length"},
      {"'x-overflow'", "overflow"},
      {"'x-expires'", "ephemeral_expires_ms (or the group is/was ephemeral)"},
      {"'durable'", "ephemeral (durable)"}};
  if (server_text.find("'x-message-ttl'") != std::string::npos)
    return dlq ? "dlq_ttl_ms" : "message_ttl_ms";
  for (const auto& [arg, param] : kMap)
    if (server_text.find(arg) != std::string::npos) return param;
  return "";
}

Status DeclareQueue(Connection& conn, amqp_channel_t channel, const std::string& name, bool durable,
                    Arguments& args, bool dlq) {
  amqp_queue_declare(conn.get(), channel, amqp_cstring_bytes(name.c_str()), /*passive=*/0, durable,
                     /*exclusive=*/0, /*auto_delete=*/0, args.table());
  Status s = conn.Check(amqp_get_rpc_reply(conn.get()), channel, "declare queue '" + name + "'");
  if (s.ok() || s.message().find("PRECONDITION_FAILED") == std::string::npos) return s;
  std::string param = ParamFor(s.message(), dlq);
  return InvalidArgument("queue '" + name +
                         "' already exists with other settings than this bus URL asks for [" +
                         s.message() + "]. Queue arguments cannot change in place: make the URL" +
                         (param.empty() ? "" : " parameter " + param) +
                         " match the existing queue, or delete the queue " +
                         "(rabbitmqctl delete_queue " + name + ") so it is declared anew");
}

Status Bind(Connection& conn, amqp_channel_t channel, const std::string& queue,
            const char* exchange, const std::string& key) {
  amqp_queue_bind(conn.get(), channel, amqp_cstring_bytes(queue.c_str()),
                  amqp_cstring_bytes(exchange), amqp_cstring_bytes(key.c_str()), amqp_empty_table);
  return conn.Check(amqp_get_rpc_reply(conn.get()), channel,
                    "bind queue '" + queue + "' to '" + exchange + "' with '" + key + "'");
}

Status DeclareExchange(Connection& conn, amqp_channel_t channel, const char* name,
                       const char* kind) {
  amqp_exchange_declare(conn.get(), channel, amqp_cstring_bytes(name), amqp_cstring_bytes(kind),
                        /*passive=*/0, /*durable=*/1, /*auto_delete=*/0, /*internal=*/0,
                        amqp_empty_table);
  return conn.Check(amqp_get_rpc_reply(conn.get()), channel,
                    std::string("declare exchange '") + name + "'");
}

}  // namespace

Status DeclareExchanges(Connection& conn, amqp_channel_t channel) {
  if (Status s = DeclareExchange(conn, channel, routes::kAmqpExchange, "topic"); !s.ok()) return s;
  return DeclareExchange(conn, channel, routes::kAmqpDeadLetterExchange, "direct");
}

Status DeclareQueues(Connection& conn, amqp_channel_t channel, const AmqpConfig& config,
                     const std::string& group, const std::string& type, bool ephemeral) {
  const QueueOptions& q = config.ForGroup(group);
  const std::string queue = routes::AmqpQueue(group, type);
  const std::string dlq = routes::AmqpDeadLetterQueue(group, type);
  // An ephemeral queue is classic on one node; on a cluster it is quorum too,
  // or a waiter whose queue's node died could not declare it again elsewhere.
  const std::string queue_type = ephemeral && !config.cluster() ? "classic" : q.queue_type;

  // The DLQ first, so the source queue's dead-letter route has a target.
  Arguments dlq_args;
  dlq_args.Add("x-queue-type", queue_type);
  if (q.dlq_ttl_ms) dlq_args.Add("x-message-ttl", *q.dlq_ttl_ms);
  if (ephemeral) dlq_args.Add("x-expires", config.ephemeral_expires_ms);
  if (Status s = DeclareQueue(conn, channel, dlq, true, dlq_args, true); !s.ok()) return s;
  if (Status s = Bind(conn, channel, dlq, routes::kAmqpDeadLetterExchange, dlq); !s.ok()) return s;

  Arguments args;
  args.Add("x-queue-type", queue_type);
  args.Add("x-dead-letter-exchange", std::string(routes::kAmqpDeadLetterExchange));
  args.Add("x-dead-letter-routing-key", dlq);
  if (q.message_ttl_ms) args.Add("x-message-ttl", *q.message_ttl_ms);
  if (q.max_length) {
    args.Add("x-max-length", *q.max_length);
    args.Add("x-overflow", q.overflow);
  }
  // Quorum queues can dead-letter with confirms, which needs reject-publish.
  if (queue_type == "quorum" && q.overflow == "reject-publish")
    args.Add("x-dead-letter-strategy", std::string("at-least-once"));
  if (ephemeral) args.Add("x-expires", config.ephemeral_expires_ms);
  if (Status s = DeclareQueue(conn, channel, queue, true, args, false); !s.ok()) return s;
  return Bind(conn, channel, queue, routes::kAmqpExchange, routes::AmqpRoutingKey(type));
}

Result<std::optional<QueueCounts>> InspectQueue(Connection& conn, amqp_channel_t channel,
                                                const std::string& queue) {
  auto* ok = amqp_queue_declare(conn.get(), channel, amqp_cstring_bytes(queue.c_str()),
                                /*passive=*/1, 0, 0, 0, amqp_empty_table);
  Status s = conn.Check(amqp_get_rpc_reply(conn.get()), channel, "inspect queue '" + queue + "'");
  if (s.ok()) return std::optional<QueueCounts>(QueueCounts{ok->message_count, ok->consumer_count});
  if (s.code() != StatusCode::kNotFound) return s;
  if (Status reopen = conn.OpenChannel(channel); !reopen.ok()) return reopen;
  return std::optional<QueueCounts>();
}

}  // namespace fanflow::amqp
