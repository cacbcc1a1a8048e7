// Item sources the ventilator walks page by page: `range:N[:SEED]`,
// `jsonl:PATH` and `-` (JSONL on stdin). Only one page is in memory at a time,
// whatever the size of the source. Files are read only where a SourcePolicy
// allows.
#pragma once

#include <cstdint>
#include <filesystem>
#include <istream>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "core/status.h"

namespace fanflow {

// The most a claim check may ask a worker to read (and to hold in memory).
inline constexpr int64_t kMaxClaimCheckBytes = int64_t{64} << 20;

// What events may make a process read: files (jsonl: sources, claim checks)
// only under the operator's directories, and stdin only in the process started
// to read it. The default policy allows neither. A path is resolved (relative
// parts, `..`, symlinks) before it is checked, and the file actually opened is
// checked again, so a link swapped in meanwhile cannot lead out. A path outside
// the roots gets one error whether it exists or not. Immutable after
// construction; share it between threads freely.
class SourcePolicy {
 public:
  SourcePolicy() = default;
  // Resolves each directory once; one that is missing or not a directory is an
  // error naming --data-dir.
  [[nodiscard]] static Result<SourcePolicy> Make(const std::vector<std::string>& dirs,
                                                 bool allow_stdin);

  bool allows_stdin() const { return allow_stdin_; }
  const std::vector<std::filesystem::path>& roots() const { return roots_; }
  // True when `resolved` (already canonical) is a root or lies inside one,
  // compared component by component: /data2 is not inside /data.
  bool Contains(const std::filesystem::path& resolved) const;

 private:
  std::vector<std::filesystem::path> roots_;  // canonical
  bool allow_stdin_ = false;
};

// Where a walk stands: bytes read (files), chunks and items emitted so far.
struct Cursor {
  int64_t offset = 0;
  int64_t next_chunk = 0;
  int64_t next_item = 0;
};

// A claim check: the chunk's items are the JSONL lines of this file range.
struct ClaimCheck {
  std::string path;
  int64_t offset = 0;
  int64_t length = 0;
};

struct Chunk {
  int64_t index = 0;
  int64_t first_item = 0;
  int64_t item_count = 0;
  // The items as the text of a JSON array, unless `ref` is set: the ventilator
  // puts it into the chunk event as it is (building and dumping a DOM of every
  // item was most of the ventilator's CPU).
  std::string items_json;
  std::optional<ClaimCheck> ref;  // set when the items are too large to travel
};

struct Page {
  std::vector<Chunk> chunks;
  Cursor next;
  bool last = false;  // the source is exhausted: the batch can be sealed
};

class Source {
 public:
  virtual ~Source() = default;
  // Reads up to `max_chunks` chunks of `chunk_size` items, starting at `from`.
  [[nodiscard]] virtual Result<Page> ReadPage(const Cursor& from, int64_t chunk_size,
                                              int64_t max_chunks) = 0;
  // True when any cursor can be resumed later, by any process (files and
  // generators); false for streams such as stdin.
  virtual bool resumable() const = 0;
};

// `claim_check_bytes` > 0: JSONL chunks larger than this travel as a ClaimCheck
// (the resolved path). Errors about the spec start with "data.source:".
[[nodiscard]] Result<std::unique_ptr<Source>> OpenSource(const std::string& spec,
                                                         int64_t claim_check_bytes,
                                                         const SourcePolicy& policy);

// Checks a spec's form without opening anything: range:N[:SEED], jsonl:PATH, -.
[[nodiscard]] Status CheckSourceSpec(const std::string& spec);

// How many items `spec` has, where that is known without reading it (range:N).
std::optional<int64_t> KnownItemCount(const std::string& spec);

// The value of item `i` of `range:N:SEED`: 0..1000, the same on every machine.
int64_t RangeItemValue(uint64_t seed, int64_t i);

// Reads the items a claim check points at: at most kMaxClaimCheckBytes, inside
// the file, under the policy's roots. Errors name data.ref.path / .offset / .length.
[[nodiscard]] Result<nlohmann::json> LoadClaimCheck(const ClaimCheck& ref,
                                                    const SourcePolicy& policy);

}  // namespace fanflow
