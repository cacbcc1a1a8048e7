// Which consumer session this process takes for a group: the lowest slot N of
// "fanflow:<group>:<instance>.N" that no other live process on this host holds,
// claimed with an flock(2) on a file under $TMPDIR/fanflow-mqtt-slots. The kernel
// frees the lock when the process dies, so a restarted worker takes the slot -
// and the persistent session with the messages queued for it - of the one that
// stopped. Move-only; the slot is held until destruction.
#pragma once

#include <string>

#include "core/status.h"

namespace fanflow::mqtt {

class InstanceSlot {
 public:
  // `scope` names the broker, group and instance; slots are counted within it.
  [[nodiscard]] static Result<InstanceSlot> Claim(const std::string& scope);
  InstanceSlot(InstanceSlot&& other) noexcept;
  InstanceSlot& operator=(InstanceSlot&&) = delete;
  ~InstanceSlot();
  int slot() const { return slot_; }

 private:
  InstanceSlot(int slot, int fd, std::string path) : slot_(slot), fd_(fd), path_(std::move(path)) {}
  int slot_;
  int fd_;
  std::string path_;
};

}  // namespace fanflow::mqtt
