#include "core/bus_url.h"

#include <cctype>

namespace fanflow {
namespace {

std::string PercentDecode(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size() && std::isxdigit(static_cast<unsigned char>(s[i + 1])) &&
        std::isxdigit(static_cast<unsigned char>(s[i + 2]))) {
      out += static_cast<char>(std::stoi(s.substr(i + 1, 2), nullptr, 16));
      i += 2;
    } else {
      out += s[i];
    }
  }
  return out;
}

// For an error about a URL that could not be parsed: whatever precedes an '@'
// may be a user and password.
std::string WithoutCredentials(const std::string& url) {
  const auto at = url.rfind('@');
  return at == std::string::npos ? url : "***" + url.substr(at);
}

}  // namespace

std::string BusUrl::Redacted() const {
  std::string s = scheme + "://";
  if (!user.empty()) s += user + (password.empty() ? "" : ":***") + "@";
  s += host;
  if (port) s += ":" + std::to_string(port);
  if (!path.empty()) s += "/" + path;
  return s;
}

Result<BusUrl> ParseBusUrl(const std::string& url) {
  BusUrl u;
  auto sep = url.find("://");
  if (sep == std::string::npos || sep == 0)
    return InvalidArgument("bus URL '" + WithoutCredentials(url) +
                           "' has no scheme (expected e.g. inproc://, amqp://host, mqtt://host)");
  u.scheme = url.substr(0, sep);
  std::string rest = url.substr(sep + 3);
  if (auto q = rest.find('?'); q != std::string::npos) {
    std::string query = rest.substr(q + 1);
    rest = rest.substr(0, q);
    size_t start = 0;
    while (start <= query.size()) {
      size_t amp = query.find('&', start);
      std::string kv = query.substr(start, amp == std::string::npos ? std::string::npos : amp - start);
      if (!kv.empty()) {
        auto eq = kv.find('=');
        u.query[PercentDecode(kv.substr(0, eq))] =
            eq == std::string::npos ? "" : PercentDecode(kv.substr(eq + 1));
      }
      if (amp == std::string::npos) break;
      start = amp + 1;
    }
  }
  if (auto slash = rest.find('/'); slash != std::string::npos) {
    u.path = PercentDecode(rest.substr(slash + 1));
    rest = rest.substr(0, slash);
  }
  if (auto at = rest.rfind('@'); at != std::string::npos) {
    std::string cred = rest.substr(0, at);
    rest = rest.substr(at + 1);
    auto colon = cred.find(':');
    u.user = PercentDecode(cred.substr(0, colon));
    if (colon != std::string::npos) u.password = PercentDecode(cred.substr(colon + 1));
  }
  if (auto colon = rest.rfind(':'); colon != std::string::npos && rest.find(']') == std::string::npos) {
    std::string port = rest.substr(colon + 1);
    rest = rest.substr(0, colon);
    if (port.empty() || port.find_first_not_of("0123456789") != std::string::npos || port.size() > 5 ||
        std::stoi(port) == 0 || std::stoi(port) > 65535)
      return InvalidArgument("bus URL '" + u.Redacted() + "': port '" + port + "' is not a number in 1..65535");
    u.port = std::stoi(port);
  }
  u.host = rest;
  return u;
}

}  // namespace fanflow
