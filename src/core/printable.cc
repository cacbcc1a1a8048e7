#include "core/printable.h"

#include <algorithm>
#include <cstdint>
#include <cstdio>

namespace fanflow {
namespace {

// Decodes the UTF-8 sequence at s[i]; returns its length and sets `cp`, or 0
// for an invalid sequence (overlong, surrogate, beyond U+10FFFF, truncated).
size_t DecodeUtf8(std::string_view s, size_t i, uint32_t& cp) {
  const auto b = [&](size_t k) { return static_cast<unsigned char>(s[i + k]); };
  const unsigned char c = b(0);
  size_t n;
  uint32_t min;
  if (c < 0x80) {
    cp = c;
    return 1;
  } else if ((c & 0xE0) == 0xC0) {
    n = 2, cp = c & 0x1F, min = 0x80;
  } else if ((c & 0xF0) == 0xE0) {
    n = 3, cp = c & 0x0F, min = 0x800;
  } else if ((c & 0xF8) == 0xF0) {
    n = 4, cp = c & 0x07, min = 0x10000;
  } else {
    return 0;
  }
  if (i + n > s.size()) return 0;
  for (size_t k = 1; k < n; ++k) {
    if ((b(k) & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (b(k) & 0x3F);
  }
  if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
  return n;
}

bool IsControl(uint32_t cp) { return cp < 0x20 || (cp >= 0x7F && cp <= 0x9F); }

bool IsNonCharacter(uint32_t cp) {
  return (cp >= 0xFDD0 && cp <= 0xFDEF) || (cp & 0xFFFE) == 0xFFFE;
}

enum class Flaw { kNone, kInvalidUtf8, kControl };

Flaw FindFlaw(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    uint32_t cp = 0;
    const size_t n = DecodeUtf8(s, i, cp);
    if (n == 0) return Flaw::kInvalidUtf8;
    if (IsControl(cp) || IsNonCharacter(cp)) return Flaw::kControl;
    i += n;
  }
  return Flaw::kNone;
}

}  // namespace

bool IsCleanText(std::string_view s) { return FindFlaw(s) == Flaw::kNone; }

Status CheckName(std::string_view value, std::string_view field, size_t max_length) {
  const std::string f(field);
  if (value.empty()) return InvalidArgument(f + ": must be a non-empty string");
  switch (FindFlaw(value)) {
    case Flaw::kInvalidUtf8:
      return InvalidArgument(f + ": must be valid UTF-8");
    case Flaw::kControl:
      return InvalidArgument(f + ": must not contain control characters");
    case Flaw::kNone:
      break;
  }
  if (CodePoints(value) > max_length)
    return InvalidArgument(f + ": must be at most " + std::to_string(max_length) + " characters");
  return Status::Ok();
}

size_t CodePoints(std::string_view s) {
  size_t n = 0;
  for (char c : s) n += (static_cast<unsigned char>(c) & 0xC0) != 0x80;
  return n;
}

Status CheckGroupName(std::string_view group) {
  if (group.empty()) return InvalidArgument("group: a consumer group name is required");
  bool ok = group.size() <= kMaxGroupLength;
  for (char c : group)
    ok = ok && ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                c == '.' || c == '_' || c == '-');
  if (ok) return Status::Ok();
  return InvalidArgument("group '" + EscapeForLog(group, kMaxGroupLength) + "': must be 1.." +
                         std::to_string(kMaxGroupLength) + " characters of A-Z a-z 0-9 . _ -");
}

std::string EscapeForLog(std::string_view s, size_t max_bytes) {
  std::string out;
  out.reserve(std::min(s.size(), max_bytes) + 8);
  char buf[8];
  size_t i = 0;
  for (; i < s.size() && i < max_bytes;) {
    uint32_t cp = 0;
    const size_t n = DecodeUtf8(s, i, cp);
    if (n == 0 || IsControl(cp) || IsNonCharacter(cp)) {
      const unsigned char c = static_cast<unsigned char>(s[i]);
      switch (c) {
        case '\n':
          out += "\\n";
          break;
        case '\r':
          out += "\\r";
          break;
        case '\t':
          out += "\\t";
          break;
        default:  // a single byte as \xNN, a multi-byte character as \uNNNN
          if (n <= 1)
            std::snprintf(buf, sizeof buf, "\\x%02X", c);
          else
            std::snprintf(buf, sizeof buf, "\\u%04X", static_cast<unsigned>(cp));
          out += buf;
      }
      i += n == 0 ? 1 : n;
      continue;
    }
    if (cp == '\\') out += '\\';
    out.append(s.substr(i, n));
    i += n;
  }
  if (i < s.size()) out += "...";
  return out;
}

std::string Base64(std::string_view bytes) {
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  for (size_t i = 0; i < bytes.size(); i += 3) {
    uint32_t v = static_cast<unsigned char>(bytes[i]) << 16;
    if (i + 1 < bytes.size()) v |= static_cast<unsigned char>(bytes[i + 1]) << 8;
    if (i + 2 < bytes.size()) v |= static_cast<unsigned char>(bytes[i + 2]);
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += i + 1 < bytes.size() ? kAlphabet[(v >> 6) & 63] : '=';
    out += i + 2 < bytes.size() ? kAlphabet[v & 63] : '=';
  }
  return out;
}

}  // namespace fanflow
