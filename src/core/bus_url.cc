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

// One "host[:port]" of the node list; `where` names it in errors.
Result<BusNode> ParseNode(std::string rest, const std::string& where) {
  BusNode n;
  if (auto colon = rest.rfind(':');
      colon != std::string::npos && rest.find(']') == std::string::npos) {
    std::string port = rest.substr(colon + 1);
    rest = rest.substr(0, colon);
    if (port.empty() || port.find_first_not_of("0123456789") != std::string::npos ||
        port.size() > 5 || std::stoi(port) == 0 || std::stoi(port) > 65535)
      return InvalidArgument(where + ": port '" + port + "' is not a number in 1..65535");
    n.port = std::stoi(port);
  }
  n.host = rest;
  return n;
}

}  // namespace

std::string BusUrl::Redacted() const {
  std::string s = scheme + "://";
  if (!user.empty()) s += user + (password.empty() ? "" : ":***") + "@";
  for (size_t i = 0; i < nodes.size(); ++i) {
    s += (i ? "," : "") + nodes[i].host;
    if (nodes[i].port) s += ":" + std::to_string(nodes[i].port);
  }
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
      std::string kv =
          query.substr(start, amp == std::string::npos ? std::string::npos : amp - start);
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
  // Names the host list as written (credentials masked), for errors about it.
  const std::string in_url = "bus URL '" + u.scheme + "://" + (u.user.empty() ? "" : "***@") +
                             rest + (u.path.empty() ? "" : "/" + u.path) + "'";
  if (rest.find(',') == std::string::npos) {
    auto node = ParseNode(rest, "bus URL '" + u.Redacted() + "'");
    if (!node.ok()) return node.status();
    u.nodes.push_back(*node);
  } else {
    if (u.scheme != "amqp" && u.scheme != "amqps")
      return InvalidArgument(in_url +
                             " names several hosts; only amqp:// and amqps:// take a node list");
    size_t start = 0, count = 1;
    for (char c : rest) count += c == ',';
    if (count > kMaxBusUrlNodes)
      return InvalidArgument(in_url + " names " + std::to_string(count) + " nodes; at most " +
                             std::to_string(kMaxBusUrlNodes));
    while (true) {
      const size_t comma = rest.find(',', start);
      const std::string item =
          rest.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
      const std::string where = in_url + ": node " + std::to_string(u.nodes.size() + 1) + " of " +
                                std::to_string(count) + " ('" + item + "')";
      auto node = ParseNode(item, where);
      if (!node.ok()) return node.status();
      if (node->host.empty()) return InvalidArgument(where + " has no host");
      for (const BusNode& seen : u.nodes)
        if (seen.host == node->host && seen.port == node->port)
          return InvalidArgument(where + " is named twice");
      u.nodes.push_back(*node);
      if (comma == std::string::npos) break;
      start = comma + 1;
    }
  }
  u.host = u.nodes.front().host;
  u.port = u.nodes.front().port;
  return u;
}

}  // namespace fanflow
