#include "adapters/mqtt/mqtt_dead_letters.h"

#include <algorithm>
#include <charconv>

namespace fanflow::mqtt {
namespace {

OutMessage Clear(const std::string& topic) { return {topic, "", {}, true, false}; }

}  // namespace

Result<BrokerView> ReadBrokerView(const MqttOptions& options, const std::string& group, bool dead_letters) {
  SnapshotRequest req;
  req.spec = {UniqueClientId("admin"), true, 0, 0};
  req.watch = {RegistryFilter(group), kSysDropped, kSysStored};
  if (dead_letters) req.watch.push_back(DeadLetterFilter(group));
  auto snap = TakeSnapshot(options, req);
  if (!snap.ok()) return snap.status();
  if (!snap->complete) return Timeout("mqtt: reading dead letters from " + options.described + " did not finish");
  BrokerView view;
  const std::string registry_prefix = "fanflow/groups/";
  auto count = [](const Incoming& in) -> std::optional<int64_t> {
    int64_t n = 0;
    if (std::from_chars(in.payload.data(), in.payload.data() + in.payload.size(), n).ec != std::errc())
      return std::nullopt;
    return n;
  };
  for (const Incoming& in : snap->messages) {
    if (in.topic == kSysDropped) {
      view.dropped = count(in);
    } else if (in.topic == kSysStored) {
      view.stored = count(in);
    } else if (in.topic.rfind(registry_prefix, 0) == 0) {
      auto slash = in.topic.find('/', registry_prefix.size());
      if (slash == std::string::npos || in.payload.empty()) continue;
      std::pair<std::string, std::string> key{
          in.topic.substr(registry_prefix.size(), slash - registry_prefix.size()), in.payload};
      const std::string* parked = in.Prop(kPropParked);
      if (parked && *parked == "1") view.parked.insert(key);
      view.registered.insert(std::move(key));
    } else if (auto d = FromRetained(in)) {
      view.dead_letters.push_back(std::move(*d));
    }
  }
  std::stable_sort(view.dead_letters.begin(), view.dead_letters.end(),
                   [](const auto& a, const auto& b) { return a.letter.time < b.letter.time; });
  return view;
}

Result<int> ReplayDeadLetters(const MqttOptions& options, Publisher& publisher, const std::string& group,
                              const std::string& id) {
  auto view = ReadBrokerView(options, group);
  if (!view.ok()) return view.status();
  std::vector<OutMessage> again, clear;
  for (const auto& d : view->dead_letters) {
    if (!id.empty() && d.letter.id != id) continue;
    Envelope e;
    e.message = {d.letter.type, d.letter.id, d.letter.body};
    again.push_back(ToRetry(d.letter.group, e));
    clear.push_back(Clear(d.topic));
  }
  // Republished before cleared: a failure in between leaves a duplicate, not a loss.
  if (auto s = publisher.Publish(again); !s.ok()) return s;
  if (auto s = publisher.Publish(clear); !s.ok()) return s;
  return static_cast<int>(again.size());
}

Result<int> PurgeDeadLetters(const MqttOptions& options, Publisher& publisher, const std::string& group) {
  auto view = ReadBrokerView(options, group);
  if (!view.ok()) return view.status();
  std::vector<OutMessage> clear;
  for (const auto& d : view->dead_letters) clear.push_back(Clear(d.topic));
  if (auto s = publisher.Publish(clear); !s.ok()) return s;
  return static_cast<int>(clear.size());
}

}  // namespace fanflow::mqtt
