// What fanflow keeps retained on the broker, so any process (a fresh CLI, too)
// can read it: one retained message per dead letter under
// fanflow/dlq/<group>/<short>/<id>, the (group, type) registry under
// fanflow/groups/<group>/<short>, and Mosquitto's own $SYS counters. Listing is
// a snapshot round trip (subscribe, collect until a marker); purge clears the
// retained messages; replay first republishes to the group's retry topic with
// the attempt count reset, then clears. Stateless functions.
#pragma once

#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "adapters/mqtt/mqtt_client.h"
#include "adapters/mqtt/mqtt_snapshot.h"
#include "adapters/mqtt/mqtt_envelope.h"

namespace fanflow::mqtt {

struct BrokerView {
  std::vector<StoredDeadLetter> dead_letters;              // oldest first
  std::set<std::pair<std::string, std::string>> registered;  // (group, type)
  std::set<std::pair<std::string, std::string>> parked;      // of those, held by a parked session
  std::optional<int64_t> dropped;  // $SYS/broker/publish/messages/dropped
  std::optional<int64_t> stored;   // $SYS/broker/store/messages/count
};

// `group` "" = every group; `dead_letters` false reads the registry only.
[[nodiscard]] Result<BrokerView> ReadBrokerView(const MqttOptions& options, const std::string& group,
                                                bool dead_letters = true);

// Sends the dead letters of `group` ("" = all) with `id` ("" = all) back to
// their group's retry topic; returns how many.
[[nodiscard]] Result<int> ReplayDeadLetters(const MqttOptions& options, Publisher& publisher,
                                            const std::string& group, const std::string& id);
[[nodiscard]] Result<int> PurgeDeadLetters(const MqttOptions& options, Publisher& publisher,
                                           const std::string& group);

}  // namespace fanflow::mqtt
