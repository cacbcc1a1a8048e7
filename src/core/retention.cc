#include "core/retention.h"

namespace fanflow {
namespace {

std::string Describe(std::chrono::milliseconds ms) {
  const auto n = ms.count();
  if (n % 1000 == 0) return std::to_string(n / 1000) + " s";
  return std::to_string(n) + " ms";
}

}  // namespace

Status ValidateRetention(std::optional<std::chrono::milliseconds> source,
                         std::optional<std::chrono::milliseconds> dead_letters,
                         const std::string& where) {
  if (!dead_letters) return Status::Ok();  // dead letters kept until handled
  if (dead_letters->count() <= 0)
    return InvalidArgument(where + ": dead-letter retention must be > 0");
  if (!source)
    return InvalidArgument(where + ": dead-letter retention " + Describe(*dead_letters) +
                           " is not longer than the source queue's, which keeps messages until "
                           "they are consumed; set a source retention below it, or drop the "
                           "dead-letter retention");
  if (*dead_letters <= *source)
    return InvalidArgument(where + ": dead-letter retention " + Describe(*dead_letters) +
                           " is not longer than the source queue's retention " + Describe(*source) +
                           "; a message keeps its age when it is dead-lettered, so it would expire "
                           "from the dead-letter queue on arrival and be lost silently");
  return Status::Ok();
}

}  // namespace fanflow
