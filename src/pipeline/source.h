// Item sources the ventilator walks page by page: `range:N[:SEED]`,
// `jsonl:PATH` and `-` (JSONL on stdin). Only one page is in memory at a time,
// whatever the size of the source.
#pragma once

#include <nlohmann/json.hpp>
#include <cstdint>
#include <istream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/status.h"

namespace fanflow {

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
  nlohmann::json items;            // an array, unless `ref` is set
  std::optional<ClaimCheck> ref;   // set when the items are too large to travel
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

// `claim_check_bytes` > 0: JSONL chunks larger than this travel as a ClaimCheck.
[[nodiscard]] Result<std::unique_ptr<Source>> OpenSource(const std::string& spec,
                                                         int64_t claim_check_bytes);

// How many items `spec` has, where that is known without reading it (range:N).
std::optional<int64_t> KnownItemCount(const std::string& spec);

// The value of item `i` of `range:N:SEED`: 0..1000, the same on every machine.
int64_t RangeItemValue(uint64_t seed, int64_t i);

// Reads the items a claim check points at.
[[nodiscard]] Result<nlohmann::json> LoadClaimCheck(const ClaimCheck& ref);

}  // namespace fanflow
