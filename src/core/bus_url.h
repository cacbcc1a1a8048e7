// Parsing of bus URLs: scheme://[user[:password]@]host[:port][/vhost][?k=v&...].
#pragma once

#include <map>
#include <string>

#include "core/status.h"

namespace fanflow {

struct BusUrl {
  std::string scheme;  // inproc, amqp, amqps, mqtt, mqtts
  std::string user;
  std::string password;
  std::string host;
  int port = 0;       // 0: the scheme's default
  std::string path;   // after the first '/', percent-decoded (AMQP vhost)
  std::map<std::string, std::string> query;

  // The URL with the password replaced by "***", for logs.
  std::string Redacted() const;
};

[[nodiscard]] Result<BusUrl> ParseBusUrl(const std::string& url);

}  // namespace fanflow
