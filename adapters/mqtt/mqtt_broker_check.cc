#include "adapters/mqtt/mqtt_broker_check.h"

#include <spdlog/spdlog.h>

#include "adapters/mqtt/mqtt_dead_letters.h"

namespace fanflow::mqtt {

Result<BrokerLimits> CheckBrokerLimits(const MqttOptions& options, const Publisher& publisher) {
  BrokerLimits limits;
  limits.receive_maximum = publisher.server_receive_maximum();
  auto view = ReadBrokerView(options, "", false);
  if (!view.ok()) return view.status();
  limits.dropped = view->dropped;
  return limits;
}

void LogBrokerHints(const MqttOptions& options, const BrokerLimits& limits) {
  if (limits.receive_maximum < options.window)
    spdlog::info(
        "mqtt: {} takes {} unacknowledged publishes per client (its Receive Maximum; Mosquitto: "
        "max_inflight_messages, 20 by default), so fanflow publishes {} at a time, not {}; "
        "max_inflight_messages 1000 gave 1.6x the chunks/s (topics/README-mqtt.md)",
        options.described, limits.receive_maximum, limits.receive_maximum, options.window);
  if (limits.dropped && *limits.dropped > 0)
    spdlog::warn(
        "mqtt: {} has dropped {} QoS 1 message(s) since it started ($SYS/broker/publish/messages/"
        "dropped): a session's queue was full (Mosquitto: max_queued_messages, 1000 per client by "
        "default, and max_queued_bytes); events for a group whose consumers were all down are lost "
        "that way: set max_queued_messages 0 (topics/README-mqtt.md)",
        options.described, *limits.dropped);
}

}  // namespace fanflow::mqtt
