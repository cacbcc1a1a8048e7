// The Mosquitto (MQTT 5) bus: `mqtt://[user:pass@]host[:1883]` and
// `mqtts://[user:pass@]host[:8883]?cacert=PATH`, through paho-mqtt-cpp. A group
// is an MQTT 5 shared subscription ($share/GROUP/fanflow/<short>) held by a
// persistent session per consumer; retries and dead letters travel on topics of
// the group's own (see topics/README-mqtt.md for every topic and property).
//
// URL query options:
//   client_id=NAME       stable instance name of this process's consumer
//                        sessions (default: the host name). A consumer of group G
//                        is the session "fanflow:G:NAME.N", N the lowest slot no
//                        other live process on this host holds, so a restarted
//                        worker resumes the session (and the chunks queued in it)
//                        of the one it replaces. Give each host or pod its own NAME.
//   cacert=PATH          CA bundle for mqtts:// (the system store is not used)
//   cert=PATH, key=PATH  client certificate and key for mqtts://
//   session_expiry=S     how long the broker keeps a stopped consumer's session
//                        and its queued messages (default 86400)
//   elastic_session_expiry=S  the same for members of elastic groups (workers):
//                        a member killed for good leaves the group S seconds
//                        after the broker sees its connection drop (default 2);
//                        keep it below the aggregator's --lease
//   connect_timeout=S    first connect and each admin round trip (default 10)
//   publish_timeout=S    how long Publish keeps retrying before it fails (default 30)
//   window=N             QoS 1 publishes outstanding at once per bus (default 100)
//   receive_maximum=N    MQTT 5 Receive Maximum of every consumer (default 8 per
//                        handler thread); paho acknowledges on receipt, so this
//                        bounds messages on the wire, not the handlers (the pool
//                        of `concurrency` threads does that)
#pragma once

#include <memory>

#include "core/bus.h"
#include "core/bus_url.h"

namespace fanflow::mqtt {

// Connects the bus's publisher (bounded by connect_timeout) and returns the bus;
// kUnavailable when the broker cannot be reached, kInvalidArgument for a bad URL.
[[nodiscard]] Result<std::unique_ptr<EventBus>> NewMqttBus(const BusUrl& url);

}  // namespace fanflow::mqtt
