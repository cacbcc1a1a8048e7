#include "adapters/mqtt/mqtt_slot.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <cstring>

namespace fanflow::mqtt {
namespace {

constexpr int kMaxSlots = 1024;

std::string SlotDir() {
  const char* tmp = std::getenv("TMPDIR");
  return std::string(tmp && *tmp ? tmp : "/tmp") + "/fanflow-mqtt-slots";
}

std::string FileSafe(const std::string& s) {
  std::string out;
  for (char c : s) out += (std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-') ? c : '_';
  return out;
}

}  // namespace

Result<InstanceSlot> InstanceSlot::Claim(const std::string& scope) {
  const std::string dir = SlotDir();
  if (mkdir(dir.c_str(), 0777) != 0 && errno != EEXIST)
    return Internal("cannot create " + dir + ": " + std::strerror(errno));
  const std::string stem = dir + "/" + FileSafe(scope) + ".";
  for (int slot = 0; slot < kMaxSlots; ++slot) {
    std::string path = stem + std::to_string(slot) + ".lock";
    int fd = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0666);
    if (fd < 0) return Internal("cannot open " + path + ": " + std::strerror(errno));
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
      close(fd);
      continue;
    }
    // The holder before us may have unlinked the file after we opened it: only
    // a lock on the file still at `path` counts.
    struct stat held {}, now {};
    if (fstat(fd, &held) == 0 && stat(path.c_str(), &now) == 0 && held.st_ino == now.st_ino &&
        held.st_dev == now.st_dev)
      return InstanceSlot(slot, fd, std::move(path));
    close(fd);
    --slot;  // try the same slot again with the new file
  }
  return Internal("no free consumer slot under " + stem + "* (" + std::to_string(kMaxSlots) + " held)");
}

InstanceSlot::InstanceSlot(InstanceSlot&& other) noexcept
    : slot_(other.slot_), fd_(other.fd_), path_(std::move(other.path_)) {
  other.fd_ = -1;
}

InstanceSlot::~InstanceSlot() {
  if (fd_ < 0) return;
  unlink(path_.c_str());  // while still locked, so no one locks a dead file
  close(fd_);
}

}  // namespace fanflow::mqtt
