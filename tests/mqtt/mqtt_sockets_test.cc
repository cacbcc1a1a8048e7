// The MQTT adapter's view of paho's sockets (adapters/mqtt/mqtt_sockets.h):
// which ones it finds, what it sets on them, and that it leaves a reused
// descriptor alone. Plain loopback sockets here; the broker test is in
// mqtt_bus_test.cc.
#include "adapters/mqtt/mqtt_sockets.h"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>

namespace fanflow::mqtt {
namespace {

// A listening socket on an ephemeral loopback port; closed on destruction.
struct Listener {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  int port = 0;
  Listener() {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    EXPECT_EQ(listen(fd, 8), 0);
    socklen_t len = sizeof a;
    getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
    port = ntohs(a.sin_port);
  }
  ~Listener() { close(fd); }
  // A new client socket connected to this listener (the kernel completes the
  // handshake before accept).
  int Connect() const {
    int c = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(static_cast<uint16_t>(port));
    EXPECT_EQ(connect(c, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    return c;
  }
};

bool NoDelay(int fd) {
  int on = 0;
  socklen_t len = sizeof on;
  EXPECT_EQ(getsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, &len), 0);
  return on != 0;
}

std::vector<int> Descriptors(const std::vector<SocketId>& sockets) {
  std::vector<int> fds;
  for (const auto& s : sockets) fds.push_back(s.first);
  std::sort(fds.begin(), fds.end());
  return fds;
}

TEST(MqttSockets, SocketsToFindsThisProcesssConnectionsToThatAddressOnly) {
  Listener broker, other;
  const int a = broker.Connect(), b = broker.Connect(), elsewhere = other.Connect();
  std::vector<int> want = {a, b};
  std::sort(want.begin(), want.end());
  EXPECT_EQ(Descriptors(SocketsTo("127.0.0.1", broker.port)), want);
  EXPECT_EQ(Descriptors(SocketsTo("127.0.0.1", other.port)), std::vector<int>{elsewhere});
  EXPECT_TRUE(SocketsTo("127.0.0.1", 1).empty());
  EXPECT_TRUE(SocketsTo("no such host.invalid", broker.port).empty());
  const auto before = SocketsTo("127.0.0.1", broker.port);
  const int c = broker.Connect();
  EXPECT_EQ(Descriptors(SocketsAddedTo("127.0.0.1", broker.port, before)), std::vector<int>{c});
  for (int fd : {a, b, c, elsewhere}) close(fd);
}

TEST(MqttSockets, SendWithoutDelaySetsNoDelayOnTheSocketsGivenOnly) {
  Listener broker, other;
  const int a = broker.Connect(), elsewhere = other.Connect();
  ASSERT_FALSE(NoDelay(a));
  SendWithoutDelay(SocketsTo("127.0.0.1", broker.port));
  EXPECT_TRUE(NoDelay(a));
  EXPECT_FALSE(NoDelay(elsewhere));
  AcknowledgeNow(SocketsTo("127.0.0.1", broker.port));  // any time, even with nothing to acknowledge
  EXPECT_TRUE(NoDelay(a));
  close(a);
  close(elsewhere);
}

// paho closes a socket on a reconnect and the number comes back for another
// one: an option meant for the old socket must not land on the new one.
TEST(MqttSockets, ADescriptorClosedAndReusedIsLeftAlone) {
  Listener broker, other;
  const int old_fd = broker.Connect();
  const std::vector<SocketId> found = SocketsTo("127.0.0.1", broker.port);
  ASSERT_EQ(Descriptors(found), std::vector<int>{old_fd});
  close(old_fd);
  const int reused = other.Connect();  // the lowest free number: the one just closed
  ASSERT_EQ(reused, old_fd);
  SendWithoutDelay(found);
  EXPECT_FALSE(NoDelay(reused));
  close(reused);
}

}  // namespace
}  // namespace fanflow::mqtt
