// What fanflow can learn about a broker's settings when it connects. Mosquitto
// publishes none of them in $SYS; what shows is max_inflight_messages, as the
// Receive Maximum of the CONNACK, and the drops max_queued_messages caused, in
// $SYS/broker/publish/messages/dropped. max_queued_messages itself cannot be
// read: measuring it means overflowing a queue, i.e. a drop (and a
// messages_dropped alarm). Stateless.
#pragma once

#include <cstdint>
#include <optional>

#include "adapters/mqtt/mqtt_client.h"
#include "adapters/mqtt/mqtt_options.h"

namespace fanflow::mqtt {

struct BrokerLimits {
  int receive_maximum = 65535;    // from the publisher's CONNACK
  std::optional<int64_t> dropped;  // since the broker started; nullopt: no $SYS
};

[[nodiscard]] Result<BrokerLimits> CheckBrokerLimits(const MqttOptions& options, const Publisher& publisher);

// Logs one line per finding: a limit that costs throughput (info), drops
// already seen (warn), each naming the Mosquitto setting and why.
void LogBrokerHints(const MqttOptions& options, const BrokerLimits& limits);

}  // namespace fanflow::mqtt
