// Maps a bus URL to its adapter. A new adapter is one folder plus one branch here.
#include "adapters/inproc/inproc_bus.h"
#include "core/bus.h"
#include "core/bus_url.h"
#ifdef FANFLOW_WITH_AMQP
#include "adapters/amqp/amqp_bus.h"
#endif
#ifdef FANFLOW_WITH_MQTT
#include "adapters/mqtt/mqtt_bus.h"
#endif

namespace fanflow {

Result<std::unique_ptr<EventBus>> OpenBus(const std::string& url) {
  auto parsed = ParseBusUrl(url);
  if (!parsed.ok()) return parsed.status();
  const std::string& scheme = parsed->scheme;
  if (scheme == "inproc") return inproc::NewInprocBus(*parsed);
#ifdef FANFLOW_WITH_AMQP
  if (scheme == "amqp" || scheme == "amqps") return amqp::NewAmqpBus(*parsed);
#endif
#ifdef FANFLOW_WITH_MQTT
  if (scheme == "mqtt" || scheme == "mqtts") return mqtt::NewMqttBus(*parsed);
#endif
  return InvalidArgument("unsupported bus URL scheme '" + scheme +
                         "' (this build supports: inproc://"
#ifdef FANFLOW_WITH_AMQP
                         ", amqp://, amqps://"
#endif
#ifdef FANFLOW_WITH_MQTT
                         ", mqtt://, mqtts://"
#endif
                         ")");
}

}  // namespace fanflow
