// The TCP sockets paho opens to a broker, found from outside paho (it does not
// expose them), and the two socket options that keep a broker with Nagle's
// algorithm on from stalling QoS 1 round trips.
//
// Mosquitto's stock configuration leaves Nagle on (set_tcp_nodelay false): it
// holds a small write, a PUBACK say, while an earlier one is unacknowledged,
// and this host's kernel may delay that TCP acknowledgement by up to 40 ms
// when it has nothing to send. A publisher waiting for its last PUBACKs then
// waits those 40 ms: pages of 101 QoS 1 publishes with a window of 19 ran at
// about 1,900 msg/s against a stock Mosquitto, 8,000 with TCP_QUICKACK set
// after each PUBACK (the same with raw paho), and at 9,000 against the same
// broker with set_tcp_nodelay true.
#pragma once

#include <sys/types.h>

#include <string>
#include <utility>
#include <vector>

namespace fanflow::mqtt {

// A socket by descriptor and inode: a descriptor closed and reused is told apart.
using SocketId = std::pair<int, ino_t>;

// Every TCP socket of this process connected to host:port (the addresses the
// name resolves to).
std::vector<SocketId> SocketsTo(const std::string& host, int port);

// The sockets to host:port now that were not among `before`: what a connect
// opened (a superset when other connections opened at the same time).
std::vector<SocketId> SocketsAddedTo(const std::string& host, int port, const std::vector<SocketId>& before);

// Sets TCP_NODELAY on each socket: paho's own small writes (the PUBACKs a
// consumer sends) then go at once as well. A socket no longer open under its
// inode is skipped, here and below.
void SendWithoutDelay(const std::vector<SocketId>& sockets);

// Sends at once the TCP acknowledgement each socket may be holding back
// (TCP_QUICKACK), so the broker sends what Nagle held behind it.
void AcknowledgeNow(const std::vector<SocketId>& sockets);

}  // namespace fanflow::mqtt
