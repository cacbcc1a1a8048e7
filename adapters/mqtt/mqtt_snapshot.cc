#include "adapters/mqtt/mqtt_snapshot.h"

#include <spdlog/spdlog.h>

#include <condition_variable>
#include <mutex>

namespace fanflow::mqtt {

Result<Snapshot> TakeSnapshot(const MqttOptions& options, const SnapshotRequest& request) {
  const std::string marker_topic = "fanflow/marker/" + UniqueClientId("m");
  std::mutex mu;
  std::condition_variable cv;
  Snapshot snap;  // messages guarded by mu
  bool marked = false;
  auto conn = Connection::Create(options, request.spec, [&](Incoming in) {
    std::lock_guard<std::mutex> lock(mu);
    if (in.topic == marker_topic)
      marked = true;
    else
      snap.messages.push_back(std::move(in));
    cv.notify_all();
  });
  if (!conn.ok()) return conn.status();
  auto present = (*conn)->Connect();
  if (!present.ok()) return present.status();
  snap.session_present = *present;
  if (request.existing_session_only && !snap.session_present) {
    (*conn)->Disconnect(true);
    snap.complete = true;
    return snap;
  }
  std::vector<std::string> watch = request.watch;
  watch.push_back(marker_topic);
  Status s = (*conn)->Unsubscribe(request.drop);
  if (s.ok()) s = (*conn)->Subscribe(watch, false);
  if (s.ok()) s = (*conn)->PublishAndWait({marker_topic, "", {}, false, false});
  if (s.ok()) {
    std::unique_lock<std::mutex> lock(mu);
    cv.wait_for(lock, options.connect_timeout, [&] { return marked; });
  }
  if (s.ok() && !request.end_session && !request.spec.clean_start) s = (*conn)->Unsubscribe({marker_topic});
  (*conn)->Disconnect(request.end_session);
  conn->reset();  // no callback touches the locals below any more
  std::lock_guard<std::mutex> lock(mu);
  snap.complete = s.ok() && marked;
  if (!s.ok() && snap.messages.empty()) return s;
  if (!snap.complete)
    spdlog::warn("mqtt {}: snapshot incomplete ({})", request.spec.client_id,
                 s.ok() ? "marker not seen in time" : s.ToString());
  return snap;
}

}  // namespace fanflow::mqtt
