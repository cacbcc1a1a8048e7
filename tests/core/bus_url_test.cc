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

}  // namespace
}  // namespace fanflow
