// The parked session of a declared (group, type): "fanflow:<group>:<short>:declared",
// a persistent session subscribed to the group's two shared subscriptions, so
// events published before any consumer runs are queued by the broker. Mosquitto
// gives an offline member of a shared subscription its share too, so a running
// consumer retires the parked session (drains it into its own queue and drops
// it) when it starts and every few seconds after. Stateless functions; each
// opens a short connection of its own.
#pragma once

#include <string>
#include <vector>

#include "adapters/mqtt/mqtt_client.h"
#include "adapters/mqtt/mqtt_snapshot.h"
#include "adapters/mqtt/mqtt_options.h"

namespace fanflow::mqtt {

[[nodiscard]] Status DeclareParked(const MqttOptions& options, const std::string& group,
                                   const std::string& type);

// Takes everything queued in the parked session (session_present false, and no
// session left behind, when there is none). `retire` also unsubscribes and drops
// the session; otherwise the caller must give the messages back (ToRetry) so
// they stay queued.
[[nodiscard]] Result<Snapshot> DrainParked(const MqttOptions& options, const std::string& group,
                                           const std::string& type, bool retire);

// Mosquitto 2.0 restores sessions from its persistence file but not their
// shared subscriptions, and drops (PUBACK 0x10, which paho does not pass on)
// what is published before a group's consumers are subscribed again. So every
// live bus, when its broker is back and before it publishes again, declares the
// parked session of every (group, type) the registry lists: the group has a
// subscriber from then on, and its consumers take the parked messages over
// (kRetireEvery). Not at bus open, where it would race the consumers that
// retire those sessions as they start.
// Idempotent; problems are logged, not returned (nothing depends on it here).
void RestoreParked(const MqttOptions& options);

// The retained registry entry of (group, type); `parked`: a parked session holds it.
OutMessage RegistryEntry(const std::string& group, const std::string& type, bool parked);

}  // namespace fanflow::mqtt
