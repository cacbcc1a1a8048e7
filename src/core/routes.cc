#include "core/routes.h"

#include "core/event.h"

namespace fanflow::routes {

std::string ShortName(const std::string& type) {
  std::string s = type;
  if (s.rfind("fanflow.", 0) == 0) s = s.substr(8);
  if (auto dot = s.rfind(".v"); dot != std::string::npos) s = s.substr(0, dot);
  return s;
}

std::vector<std::string> DefaultGroups(const std::string& type) {
  if (type == kFanoutStep) return {kVentilatorGroup};
  if (type == kProcessChunk) return {kWorkerGroup};
  if (type == kStartFanout || type == kChunkDone || type == kFanoutProgress || type == kBatchSealed ||
      type == kCancelBatch)
    return {kAggregatorGroup};
  return {};
}

std::string AmqpRoutingKey(const std::string& type) { return ShortName(type); }

std::string AmqpQueue(const std::string& group, const std::string& type) {
  return std::string("fanflow.") + group + "." + ShortName(type);
}

std::string AmqpDeadLetterQueue(const std::string& group, const std::string& type) {
  return AmqpQueue(group, type) + ".dlq";
}

std::string MqttTopic(const std::string& type) { return "fanflow/" + ShortName(type); }

std::string MqttSharedSubscription(const std::string& group, const std::string& type) {
  return "$share/" + group + "/" + MqttTopic(type);
}

std::string MqttDeadLetterTopic(const std::string& group, const std::string& type) {
  return "fanflow/dlq/" + group + "/" + ShortName(type);
}

}  // namespace fanflow::routes
