#include "pipeline/metrics.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "pipeline/metrics_server.h"
#include "tests/pipeline/metrics_scrape.h"
#include "tests/support/subprocess.h"

namespace fanflow {
namespace {

void Fill(Metrics& m) {
  m.SetGaugeFamily("fanflow_queue_depth_messages", "Messages waiting",
                   {{{{"queue", "fanflow.workers.process_chunk"}, {"group", "workers"}}, 1200},
                    {{{"queue", "a \"quoted\\ name\n"}, {"group", "g"}}, 0.25}});
  m.AddToCounter("fanflow_events_seen_total", "Events seen", {{"type", "fanflow.chunk_done.v1"}},
                 3);
  m.DefineHistogram("fanflow_chunk_processing_seconds", "Chunk time", {0.01, 0.1, 1});
  for (double v : {0.005, 0.05, 0.05, 2.0}) m.Observe("fanflow_chunk_processing_seconds", v);
}

std::string Sample() {
  Metrics m;
  Fill(m);
  return m.Render();
}

TEST(MetricsTest, RendersThePrometheusTextFormat) {
  const std::string text = Sample();
  EXPECT_NE(text.find("# HELP fanflow_queue_depth_messages Messages waiting\n"
                      "# TYPE fanflow_queue_depth_messages gauge\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("fanflow_queue_depth_messages{queue=\"fanflow.workers.process_chunk\",group="
                      "\"workers\"} 1200\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("{queue=\"a \\\"quoted\\\\ name\\n\",group=\"g\"} 0.25"), std::string::npos)
      << text;
  EXPECT_NE(text.find("# TYPE fanflow_events_seen_total counter\n"), std::string::npos);
  EXPECT_NE(text.find("fanflow_chunk_processing_seconds_bucket{le=\"0.01\"} 1\n"
                      "fanflow_chunk_processing_seconds_bucket{le=\"0.1\"} 3\n"
                      "fanflow_chunk_processing_seconds_bucket{le=\"1\"} 3\n"
                      "fanflow_chunk_processing_seconds_bucket{le=\"+Inf\"} 4\n"
                      "fanflow_chunk_processing_seconds_sum 2.105\n"
                      "fanflow_chunk_processing_seconds_count 4\n"),
            std::string::npos)
      << text;
}

TEST(MetricsTest, PromtoolAcceptsTheRenderedMetrics) { testing::ExpectPromtoolAccepts(Sample()); }

TEST(MetricsServerTest, ServesMetricsOverHttpAndNothingElse) {
  Metrics m;
  Fill(m);
  auto server = MetricsServer::Start("127.0.0.1", 0, [&m] { return m.Render(); });
  ASSERT_TRUE(server.ok()) << server.status().ToString();
  const int port = server.value()->port();
  ASSERT_GT(port, 0);
  const std::string ok = testing::HttpGet(port, "/metrics");
  EXPECT_EQ(ok.rfind("HTTP/1.1 200 OK\r\n", 0), 0u) << ok;
  EXPECT_NE(ok.find("Content-Type: text/plain; version=0.0.4"), std::string::npos);
  EXPECT_NE(ok.find("fanflow_queue_depth_messages{"), std::string::npos);
  EXPECT_EQ(testing::HttpGet(port, "/").rfind("HTTP/1.1 404", 0), 0u);
  // A client that connects and says nothing holds the server at most a few
  // seconds; the next scrape is answered after it.
  int idle = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
  ASSERT_EQ(connect(idle, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  EXPECT_EQ(testing::HttpGet(port, "/metrics").rfind("HTTP/1.1 200", 0), 0u);
  close(idle);
  EXPECT_FALSE(MetricsServer::Start("127.0.0.1", port, [] { return std::string(); }).ok())
      << "the port is taken";
  EXPECT_FALSE(MetricsServer::Start("not-an-ip", 0, [] { return std::string(); }).ok());
}

}  // namespace
}  // namespace fanflow
