// Scraping and checking Prometheus metrics from tests.
#pragma once

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <string>

#include "tests/support/require_env.h"
#include "tests/support/subprocess.h"

namespace fanflow::testing {

// GET `path` from 127.0.0.1:port; the whole response, or "" on failure.
inline std::string HttpGet(int port, const std::string& path) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  timeval tv{10, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
  std::string out;
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) {
    const std::string req = "GET " + path + " HTTP/1.0\r\nHost: localhost\r\n\r\n";
    if (send(fd, req.data(), req.size(), 0) == static_cast<ssize_t>(req.size())) {
      char buf[4096];
      ssize_t n;
      while ((n = recv(fd, buf, sizeof buf, 0)) > 0) out.append(buf, static_cast<size_t>(n));
    }
  }
  close(fd);
  return out;
}

inline std::string Body(const std::string& response) {
  auto at = response.find("\r\n\r\n");
  return at == std::string::npos ? "" : response.substr(at + 4);
}

// `promtool check metrics` (Debian package prometheus) must accept `text`:
// syntax and the naming lint. Without promtool the check is skipped, except
// under CI=true.
inline void ExpectPromtoolAccepts(const std::string& text) {
  FANFLOW_REQUIRE_OR_SKIP(std::system("command -v promtool >/dev/null 2>&1") == 0,
                          "promtool is missing: apt-get install prometheus");
  auto r = RunProcess({"promtool", "check", "metrics"}, std::chrono::seconds(30), text);
  EXPECT_EQ(r.exit_code, 0) << "promtool said:\n" << r.out << r.err << "\non:\n" << text;
}

}  // namespace fanflow::testing
