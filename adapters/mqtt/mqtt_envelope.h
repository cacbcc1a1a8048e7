// How a fanflow message travels over MQTT 5: the body is the payload, the
// delivery facts (attempt, earliest redelivery, dead-letter reason) are user
// properties, so any MQTT client can read and write them. Pure functions.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "adapters/mqtt/mqtt_client.h"
#include "core/bus.h"

namespace fanflow::mqtt {

// A message plus the facts that travel with it between deliveries.
struct Envelope {
  Message message;
  int attempt = 1;
  int64_t not_before_ms = 0;  // 0: deliver at once
  int64_t since_ms = 0;       // when it was (re)published, for the age statistics
  bool redelivered = false;
};

// Reads a message received on a topic of `type`. The id comes from the
// fanflow-id property, else from the CloudEvent's "id" (foreign publishers).
Envelope FromIncoming(const Incoming& in, const std::string& type);

// A first publish of `m` on routes::MqttTopic.
OutMessage ToMain(const Message& m);
// `e` again, for `group` only, on its retry topic (attempt, delay and age as in
// `e`: a message handed back keeps its age).
OutMessage ToRetry(const std::string& group, const Envelope& e);
// A retained dead letter of `group` with the reason, attempts and time.
OutMessage ToDeadLetter(const std::string& group, const Envelope& e, const std::string& reason);

// A dead letter read back from its retained message (nullopt: a cleared one).
struct StoredDeadLetter {
  DeadLetter letter;
  std::string topic;  // where it is retained; an empty retained payload clears it
};
std::optional<StoredDeadLetter> FromRetained(const Incoming& in);

}  // namespace fanflow::mqtt
