#include "adapters/mqtt/mqtt_parked.h"

#include <spdlog/spdlog.h>

#include "adapters/mqtt/mqtt_dead_letters.h"

namespace fanflow::mqtt {

Status DeclareParked(const MqttOptions& options, const std::string& group, const std::string& type) {
  // No automatic reconnect: taken over by a consumer retiring it, it must stay away.
  auto conn = Connection::Create(
      options, {ParkedClientId(group, type), false, options.session_expiry_s, 0, false}, nullptr);
  if (!conn.ok()) return conn.status();
  if (auto present = (*conn)->Connect(); !present.ok()) return present.status();
  return (*conn)->Subscribe({SharedMain(group, type), SharedRetry(group, type)}, false);
}

Result<Snapshot> DrainParked(const MqttOptions& options, const std::string& group, const std::string& type,
                             bool retire) {
  SnapshotRequest req;
  req.spec = {ParkedClientId(group, type), false, options.session_expiry_s, 0};
  if (retire) req.drop = {SharedMain(group, type), SharedRetry(group, type)};
  req.existing_session_only = true;
  req.end_session = retire;
  return TakeSnapshot(options, req);
}

void RestoreParked(const MqttOptions& options) {
  auto view = ReadBrokerView(options, "", false);
  if (!view.ok()) {
    spdlog::warn("mqtt: parked sessions not restored: {}", view.status().ToString());
    return;
  }
  for (const auto& [group, type] : view->registered)
    if (Status s = DeclareParked(options, group, type); !s.ok())
      spdlog::warn("mqtt: parked session of '{}' for {} not restored: {}", group, type, s.ToString());
}

OutMessage RegistryEntry(const std::string& group, const std::string& type, bool parked) {
  return {RegistryTopic(group, type), type, {{kPropParked, parked ? "1" : "0"}}, true, false};
}

}  // namespace fanflow::mqtt
