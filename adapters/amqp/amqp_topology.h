// The broker objects fanflow declares, idempotently (names from core/routes.h):
//   exchange "fanflow"      topic, durable: every event, routing key = short name
//   exchange "fanflow.dlx"  direct, durable: dead letters, routing key = DLQ name
//   queue "fanflow.<group>.<short>"      bound to "fanflow" with the short name;
//                                        x-dead-letter-exchange "fanflow.dlx",
//                                        x-dead-letter-routing-key its DLQ
//   queue "fanflow.<group>.<short>.dlq"  bound to "fanflow.dlx" with its own name
// Internal; every call runs on a connection the caller owns.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "adapters/amqp/amqp_config.h"
#include "adapters/amqp/amqp_connection.h"

namespace fanflow::amqp {

[[nodiscard]] Status DeclareExchanges(Connection& conn, amqp_channel_t channel);

// Declares the queue of (group, type), its DLQ and both bindings. An existing
// queue with other arguments gives an InvalidArgument naming the queue, the
// argument and the URL parameter behind it. `ephemeral` queues vanish once
// unused for config.ephemeral_expires_ms; they are classic, quorum on a cluster.
[[nodiscard]] Status DeclareQueues(Connection& conn, amqp_channel_t channel,
                                   const AmqpConfig& config, const std::string& group,
                                   const std::string& type, bool ephemeral);

struct QueueCounts {
  int64_t ready = 0;  // waiting (RabbitMQ does not count unacked ones here)
  int64_t consumers = 0;
};

// Passive declare: nullopt if the queue does not exist. The broker closes the
// channel on a missing queue; this reopens it.
[[nodiscard]] Result<std::optional<QueueCounts>> InspectQueue(Connection& conn,
                                                              amqp_channel_t channel,
                                                              const std::string& queue);

}  // namespace fanflow::amqp
