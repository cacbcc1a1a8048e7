#include "core/bus_url.h"

#include <gtest/gtest.h>

namespace fanflow {
namespace {

TEST(BusUrl, ParsesAmqpUrlWithCredentialsPortAndVhost) {
  auto u = ParseBusUrl("amqp://guest:s%40cret@127.0.0.1:5673/%2F?heartbeat=10");
  ASSERT_TRUE(u.ok()) << u.status().ToString();
  EXPECT_EQ(u->scheme, "amqp");
  EXPECT_EQ(u->user, "guest");
  EXPECT_EQ(u->password, "s@cret");
  EXPECT_EQ(u->host, "127.0.0.1");
  EXPECT_EQ(u->port, 5673);
  EXPECT_EQ(u->path, "/");
  EXPECT_EQ(u->query.at("heartbeat"), "10");
}

TEST(BusUrl, RedactedFormNeverShowsThePassword) {
  auto u = ParseBusUrl("amqp://guest:hunter2@localhost:5672/vh");
  ASSERT_TRUE(u.ok());
  EXPECT_EQ(u->Redacted().find("hunter2"), std::string::npos);
  EXPECT_EQ(u->Redacted(), "amqp://guest:***@localhost:5672/vh");
}

TEST(BusUrl, AnErrorAboutASchemelessUrlNeverShowsThePassword) {
  auto u = ParseBusUrl("guest:hunter2@localhost:5672");
  ASSERT_FALSE(u.ok());
  EXPECT_EQ(u.status().message().find("hunter2"), std::string::npos) << u.status().message();
  EXPECT_EQ(u.status().message().find("guest"), std::string::npos) << u.status().message();
  EXPECT_NE(u.status().message().find("no scheme"), std::string::npos);
}

TEST(BusUrl, InprocNeedsNoHost) {
  auto u = ParseBusUrl("inproc://");
  ASSERT_TRUE(u.ok());
  EXPECT_EQ(u->scheme, "inproc");
  EXPECT_EQ(u->host, "");
}

TEST(BusUrl, RejectsAMissingSchemeOrABadPort) {
  auto no_scheme = ParseBusUrl("localhost:5672");
  EXPECT_FALSE(no_scheme.ok());
  EXPECT_NE(no_scheme.status().message().find("no scheme"), std::string::npos);
  auto bad_port = ParseBusUrl("mqtt://localhost:99999");
  EXPECT_FALSE(bad_port.ok());
  EXPECT_NE(bad_port.status().message().find("port"), std::string::npos);
}

TEST(BusUrl, AnAmqpUrlNamesTheNodesOfACluster) {
  auto u = ParseBusUrl("amqp://u:secret@10.0.0.1:5681,10.0.0.2,node-3:5683/vh");
  ASSERT_TRUE(u.ok()) << u.status().ToString();
  ASSERT_EQ(u->nodes.size(), 3u);
  EXPECT_EQ(u->nodes[0].host, "10.0.0.1");
  EXPECT_EQ(u->nodes[0].port, 5681);
  EXPECT_EQ(u->nodes[1].host, "10.0.0.2");
  EXPECT_EQ(u->nodes[1].port, 0);
  EXPECT_EQ(u->nodes[2].host, "node-3");
  EXPECT_EQ(u->host, "10.0.0.1");
  EXPECT_EQ(u->path, "vh");
  EXPECT_EQ(u->Redacted(), "amqp://u:***@10.0.0.1:5681,10.0.0.2,node-3:5683/vh");
  auto tls = ParseBusUrl("amqps://h1:5671,h2:5671/");
  ASSERT_TRUE(tls.ok()) << tls.status().ToString();
  EXPECT_EQ(tls->nodes.size(), 2u);
}

// Each bad list gives an error naming the node; none shows the password.
TEST(BusUrl, ABadNodeListIsRefusedNamingTheNode) {
  const std::pair<const char*, const char*> cases[] = {
      {"amqp://u:hunter2@h1:5672,,h3/", "node 2 of 3 ('') has no host"},
      {"amqp://u:hunter2@h1:5672,/", "node 2 of 2 ('') has no host"},
      {"amqp://u:hunter2@,h2/", "node 1 of 2 ('') has no host"},
      {"amqp://u:hunter2@h1,:5673/", "node 2 of 2 (':5673') has no host"},
      {"amqp://u:hunter2@h1,h2:0/", "node 2 of 2 ('h2:0'): port '0'"},
      {"amqp://u:hunter2@h1,h2:x/", "node 2 of 2 ('h2:x'): port 'x'"},
      {"amqp://u:hunter2@h1,h2:99999/", "port '99999' is not a number"},
      {"amqp://u:hunter2@h1:5672,h1:5672/", "node 2 of 2 ('h1:5672') is named twice"},
      {"mqtt://u:hunter2@h1,h2/", "only amqp:// and amqps:// take a node list"},
  };
  for (const auto& [url, want] : cases) {
    auto u = ParseBusUrl(url);
    ASSERT_FALSE(u.ok()) << url;
    EXPECT_NE(u.status().message().find(want), std::string::npos)
        << url << ": " << u.status().message();
    EXPECT_EQ(u.status().message().find("hunter2"), std::string::npos) << u.status().message();
  }
  std::string many = "amqp://";
  for (int i = 0; i < 17; ++i) many += (i ? ",h" : "h") + std::to_string(i);
  auto u = ParseBusUrl(many + "/");
  ASSERT_FALSE(u.ok());
  EXPECT_NE(u.status().message().find("names 17 nodes; at most 16"), std::string::npos)
      << u.status().message();
}

}  // namespace
}  // namespace fanflow
