// What fanflow puts in and reads from AMQP message properties. Internal.
//
// Every publish is persistent (delivery_mode 2), content_type
// application/cloudevents+json, message_id = CloudEvents id, type = CloudEvents
// type, timestamp = publish time (seconds; gives the age of waiting messages).
// Headers:
//   x-fanflow-attempt            delivery attempt, written from 2 on (absent = 1)
//   x-fanflow-reason             on dead letters: why
//   x-fanflow-attempts           on dead letters: attempts made
//   x-fanflow-dead-lettered-at   on dead letters: RFC 3339 time
//   x-fanflow-group, x-fanflow-type   on dead letters: where it came from
// Broker-side dead letters (expired, maxlen) carry RabbitMQ's x-death instead.
#pragma once

#include <amqp.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "core/bus.h"

namespace fanflow::amqp {

inline constexpr char kAttemptHeader[] = "x-fanflow-attempt";
inline constexpr char kReasonHeader[] = "x-fanflow-reason";
inline constexpr char kAttemptsHeader[] = "x-fanflow-attempts";
inline constexpr char kDeadLetteredAtHeader[] = "x-fanflow-dead-lettered-at";
inline constexpr char kGroupHeader[] = "x-fanflow-group";
inline constexpr char kTypeHeader[] = "x-fanflow-type";

// One publish: where to, what, and the fanflow facts that travel with it.
struct Outgoing {
  std::string exchange;
  std::string routing_key;
  Message message;
  int attempt = 1;
  std::optional<DeadLetter> dead;  // set when it goes to a dead-letter queue
};

// `message` to the events exchange, routed by its type.
Outgoing ToEventsExchange(Message message);

// Sends one basic.publish (no wait for the confirm); returns a library status.
int PublishOne(amqp_connection_state_t conn, amqp_channel_t channel, const Outgoing& out);

// The fanflow facts read back from a received message.
struct Incoming {
  std::string message_id;  // "" when the publisher set none
  int attempt = 1;
  std::optional<int64_t> timestamp_s;
  // Dead-letter facts: ours, else from the broker's x-death.
  std::string reason;
  int attempts = 0;
  std::string dead_lettered_at;
};

Incoming ReadIncoming(const amqp_basic_properties_t& props);

// The id a dead letter is listed and replayed by: message_id, else the body's
// CloudEvents id, else a stable hash of the body (same bytes, same id).
std::string DeadLetterId(const Incoming& in, std::string_view body);

std::string ToString(amqp_bytes_t b);

}  // namespace fanflow::amqp
