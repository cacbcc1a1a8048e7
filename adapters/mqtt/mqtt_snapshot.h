// The snapshot round trip: read what the broker holds for a client (retained
// messages under some filters, or a stored session's queue) with a marker as
// the end, since MQTT has no "that is all". Opens a connection of its own.
#pragma once

#include <string>
#include <vector>

#include "adapters/mqtt/mqtt_client.h"

namespace fanflow::mqtt {

// What a snapshot round trip saw: every message that arrived before the marker
// fanflow published to itself after (un)subscribing. Because the broker sends a
// client's messages in order, that is every retained message under the watched
// filters, or everything the stored session had queued.
struct Snapshot {
  bool session_present = false;
  bool complete = false;  // the marker arrived (false: timeout or connection lost)
  std::vector<Incoming> messages;
};

struct SnapshotRequest {
  ConnectSpec spec;
  std::vector<std::string> drop;   // unsubscribed first (stops the session's inflow)
  std::vector<std::string> watch;  // subscribed for the duration
  bool existing_session_only = false;  // no stored session: leave none behind, read nothing
  bool end_session = false;            // drop the session afterwards
};

// An error only when nothing was received; messages received before a failure
// are returned (they are already acknowledged to the broker) with complete=false.
[[nodiscard]] Result<Snapshot> TakeSnapshot(const MqttOptions& options, const SnapshotRequest& request);

}  // namespace fanflow::mqtt
