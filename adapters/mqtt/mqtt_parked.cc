#include "adapters/mqtt/mqtt_parked.h"

namespace fanflow::mqtt {

Status DeclareParked(const MqttOptions& options, const std::string& group, const std::string& type) {
  auto conn = Connection::Create(options, {ParkedClientId(group, type), false, options.session_expiry_s, 0},
                                 nullptr);
  if (!conn.ok()) return conn.status();
  if (auto s = (*conn)->Connect(); !s.ok()) return s.status();
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

OutMessage RegistryEntry(const std::string& group, const std::string& type, bool parked) {
  return {RegistryTopic(group, type), type, {{kPropParked, parked ? "1" : "0"}}, true, false};
}

}  // namespace fanflow::mqtt
