#include "pipeline/source.h"

#include <filesystem>
#include <fstream>
#include <iostream>

namespace fanflow {
namespace {

Result<int64_t> ParseCount(const std::string& text, const std::string& what) {
  if (text.empty() || text.size() > 18 || text.find_first_not_of("0123456789") != std::string::npos)
    return InvalidArgument(what + " must be a whole number, got '" + text + "'");
  return static_cast<int64_t>(std::stoll(text));
}

class RangeSource final : public Source {
 public:
  RangeSource(int64_t n, uint64_t seed) : n_(n), seed_(seed) {}

  Result<Page> ReadPage(const Cursor& from, int64_t chunk_size, int64_t max_chunks) override {
    Page page;
    page.next = from;
    while (page.next.next_item < n_ && static_cast<int64_t>(page.chunks.size()) < max_chunks) {
      Chunk c;
      c.index = page.next.next_chunk++;
      c.first_item = page.next.next_item;
      c.item_count = std::min(chunk_size, n_ - c.first_item);
      c.items = nlohmann::json::array();
      for (int64_t i = c.first_item; i < c.first_item + c.item_count; ++i)
        c.items.push_back({{"id", i}, {"value", RangeItemValue(seed_, i)}});
      page.next.next_item += c.item_count;
      page.chunks.push_back(std::move(c));
    }
    page.last = page.next.next_item >= n_;
    return page;
  }
  bool resumable() const override { return true; }

 private:
  const int64_t n_;
  const uint64_t seed_;
};

// JSONL from a file (resumable at a byte offset) or from stdin (a stream).
class JsonlSource final : public Source {
 public:
  JsonlSource(std::string path, int64_t claim_check_bytes)
      : path_(std::move(path)), claim_check_bytes_(claim_check_bytes) {}

  Result<Page> ReadPage(const Cursor& from, int64_t chunk_size, int64_t max_chunks) override {
    std::istream* in = &std::cin;
    std::ifstream file;
    if (!path_.empty()) {
      file.open(path_, std::ios::binary);
      if (!file) return NotFound("source jsonl:" + path_ + ": cannot open the file");
      file.seekg(from.offset);
      in = &file;
    } else if (from.offset != stdin_offset_) {
      return InvalidArgument("source -: stdin cannot be re-read from byte " + std::to_string(from.offset));
    }
    Page page;
    page.next = from;
    std::string line;
    while (static_cast<int64_t>(page.chunks.size()) < max_chunks) {
      Chunk c;
      c.index = page.next.next_chunk;
      c.first_item = page.next.next_item;
      c.items = nlohmann::json::array();
      const int64_t chunk_start = page.next.offset;
      while (c.item_count < chunk_size && std::getline(*in, line)) {
        const int64_t line_start = page.next.offset;
        page.next.offset += static_cast<int64_t>(line.size()) + (in->eof() ? 0 : 1);
        if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
        auto item = nlohmann::json::parse(line, nullptr, false);
        if (item.is_discarded() || !item.is_object())
          return InvalidArgument("source " + Spec() + ": item " + std::to_string(page.next.next_item) +
                                 " (byte " + std::to_string(line_start) + ") is not a JSON object");
        c.items.push_back(std::move(item));
        ++c.item_count;
        ++page.next.next_item;
      }
      if (c.item_count == 0) {
        page.last = true;
        break;
      }
      const int64_t bytes = page.next.offset - chunk_start;
      if (claim_check_bytes_ > 0 && bytes > claim_check_bytes_ && !path_.empty()) {
        c.ref = ClaimCheck{std::filesystem::absolute(path_).string(), chunk_start, bytes};
        c.items = nullptr;
      }
      ++page.next.next_chunk;
      page.chunks.push_back(std::move(c));
    }
    if (!page.last) page.last = in->eof() || in->peek() == std::char_traits<char>::eof();
    if (path_.empty()) stdin_offset_ = page.next.offset;
    return page;
  }
  bool resumable() const override { return !path_.empty(); }

 private:
  std::string Spec() const { return path_.empty() ? "-" : "jsonl:" + path_; }
  const std::string path_;  // empty: stdin
  const int64_t claim_check_bytes_;
  int64_t stdin_offset_ = 0;
};

struct RangeSpec {
  int64_t items = 0;
  uint64_t seed = 0;
};

// `range:N[:SEED]`; `spec` starts with "range:".
Result<RangeSpec> ParseRange(const std::string& spec) {
  std::string rest = spec.substr(6);
  auto colon = rest.find(':');
  auto n = ParseCount(rest.substr(0, colon), "source " + spec + ": N");
  if (!n.ok()) return n.status();
  RangeSpec range{n.value(), 0};
  if (colon != std::string::npos) {
    auto s = ParseCount(rest.substr(colon + 1), "source " + spec + ": SEED");
    if (!s.ok()) return s.status();
    range.seed = static_cast<uint64_t>(s.value());
  }
  return range;
}

}  // namespace

std::optional<int64_t> KnownItemCount(const std::string& spec) {
  if (spec.rfind("range:", 0) != 0) return std::nullopt;
  auto range = ParseRange(spec);
  if (!range.ok()) return std::nullopt;
  return range->items;
}

int64_t RangeItemValue(uint64_t seed, int64_t i) {
  // splitmix64: a well-mixed, portable hash of (seed, i).
  uint64_t z = seed * 0x9E3779B97F4A7C15ull + static_cast<uint64_t>(i) + 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  return static_cast<int64_t>(z % 1001);
}

Result<std::unique_ptr<Source>> OpenSource(const std::string& spec, int64_t claim_check_bytes) {
  if (spec == "-") return std::unique_ptr<Source>(new JsonlSource("", claim_check_bytes));
  if (spec.rfind("jsonl:", 0) == 0) {
    std::string path = spec.substr(6);
    if (path.empty()) return InvalidArgument("source 'jsonl:' needs a path, e.g. jsonl:items.jsonl");
    std::error_code ec;
    if (!std::filesystem::is_regular_file(path, ec))
      return NotFound("source " + spec + ": no such file");
    return std::unique_ptr<Source>(new JsonlSource(path, claim_check_bytes));
  }
  if (spec.rfind("range:", 0) == 0) {
    auto range = ParseRange(spec);
    if (!range.ok()) return range.status();
    return std::unique_ptr<Source>(new RangeSource(range->items, range->seed));
  }
  return InvalidArgument("unknown source '" + spec +
                         "' (expected range:N[:SEED], jsonl:PATH, or - for JSONL on stdin)");
}

Result<nlohmann::json> LoadClaimCheck(const ClaimCheck& ref) {
  std::ifstream file(ref.path, std::ios::binary);
  if (!file) return NotFound("claim check " + ref.path + ": cannot open the file");
  std::string bytes(static_cast<size_t>(ref.length), '\0');
  file.seekg(ref.offset);
  if (!file.read(bytes.data(), ref.length))
    return NotFound("claim check " + ref.path + ": file shorter than offset+length");
  nlohmann::json items = nlohmann::json::array();
  size_t start = 0;
  while (start < bytes.size()) {
    size_t end = bytes.find('\n', start);
    if (end == std::string::npos) end = bytes.size();
    std::string_view line(bytes.data() + start, end - start);
    if (line.find_first_not_of(" \t\r") != std::string_view::npos) {
      auto item = nlohmann::json::parse(line, nullptr, false);
      if (item.is_discarded()) return InvalidArgument("claim check " + ref.path + ": malformed JSON line");
      items.push_back(std::move(item));
    }
    start = end + 1;
  }
  return items;
}

}  // namespace fanflow
