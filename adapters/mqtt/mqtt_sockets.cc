#include "adapters/mqtt/mqtt_sockets.h"

#include <dirent.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>

namespace fanflow::mqtt {
namespace {

bool SamePeer(const sockaddr_storage& peer, const addrinfo& a) {
  if (peer.ss_family != a.ai_family) return false;
  if (peer.ss_family == AF_INET) {
    const auto& p = reinterpret_cast<const sockaddr_in&>(peer);
    const auto& q = *reinterpret_cast<const sockaddr_in*>(a.ai_addr);
    return p.sin_port == q.sin_port && p.sin_addr.s_addr == q.sin_addr.s_addr;
  }
  if (peer.ss_family == AF_INET6) {
    const auto& p = reinterpret_cast<const sockaddr_in6&>(peer);
    const auto& q = *reinterpret_cast<const sockaddr_in6*>(a.ai_addr);
    return p.sin6_port == q.sin6_port && std::memcmp(&p.sin6_addr, &q.sin6_addr, sizeof p.sin6_addr) == 0;
  }
  return false;
}

bool IsTcpStream(int fd) {
  int type = 0;
  socklen_t len = sizeof type;
  return getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) == 0 && type == SOCK_STREAM;
}

void SetOnEach(const std::vector<SocketId>& sockets, int option) {
  for (const auto& [fd, inode] : sockets) {
    struct stat st {};
    if (fstat(fd, &st) != 0 || st.st_ino != inode) continue;
    const int one = 1;
    setsockopt(fd, IPPROTO_TCP, option, &one, sizeof one);
  }
}

}  // namespace

std::vector<SocketId> SocketsTo(const std::string& host, int port) {
  std::vector<SocketId> found;
  addrinfo hints{}, *broker = nullptr;
  hints.ai_socktype = SOCK_STREAM;
  if (getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &broker) != 0) return found;
  if (DIR* dir = opendir("/proc/self/fd")) {
    while (const dirent* entry = readdir(dir)) {
      char* end = nullptr;
      const long fd = std::strtol(entry->d_name, &end, 10);
      if (end == entry->d_name || *end != '\0' || fd == dirfd(dir)) continue;
      sockaddr_storage peer{};
      socklen_t len = sizeof peer;
      if (getpeername(static_cast<int>(fd), reinterpret_cast<sockaddr*>(&peer), &len) != 0) continue;
      bool ours = false;
      for (const addrinfo* a = broker; a && !ours; a = a->ai_next) ours = SamePeer(peer, *a);
      struct stat st {};
      if (!ours || !IsTcpStream(static_cast<int>(fd)) || fstat(static_cast<int>(fd), &st) != 0) continue;
      found.emplace_back(static_cast<int>(fd), st.st_ino);
    }
    closedir(dir);
  }
  freeaddrinfo(broker);
  return found;
}

std::vector<SocketId> SocketsAddedTo(const std::string& host, int port, const std::vector<SocketId>& before) {
  std::vector<SocketId> added = SocketsTo(host, port);
  std::erase_if(added, [&](const SocketId& s) { return std::find(before.begin(), before.end(), s) != before.end(); });
  return added;
}

void SendWithoutDelay(const std::vector<SocketId>& sockets) { SetOnEach(sockets, TCP_NODELAY); }

void AcknowledgeNow(const std::vector<SocketId>& sockets) { SetOnEach(sockets, TCP_QUICKACK); }

}  // namespace fanflow::mqtt
