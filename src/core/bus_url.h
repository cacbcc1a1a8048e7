// Parsing of bus URLs: scheme://[user[:password]@]host[:port][/vhost][?k=v&...].
// An AMQP URL may name the nodes of a cluster: amqp://u:p@h1:p1,h2:p2,h3/vhost.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "core/status.h"

namespace fanflow {

// Most nodes one URL may name: a cluster is a handful of nodes, and a list
// from a stranger must not make a client try thousands of addresses.
inline constexpr size_t kMaxBusUrlNodes = 16;

struct BusNode {
  std::string host;
  int port = 0;  // 0: the scheme's default
};

struct BusUrl {
  std::string scheme;  // inproc, amqp, amqps, mqtt, mqtts
  std::string user;
  std::string password;
  std::string host;            // the first node's (nodes.front())
  int port = 0;                // 0: the scheme's default
  std::vector<BusNode> nodes;  // in the URL's order; one for a single host (maybe empty)
  std::string path;            // after the first '/', percent-decoded (AMQP vhost)
  std::map<std::string, std::string> query;

  // The URL with the password replaced by "***", for logs.
  std::string Redacted() const;
};

[[nodiscard]] Result<BusUrl> ParseBusUrl(const std::string& url);

}  // namespace fanflow
