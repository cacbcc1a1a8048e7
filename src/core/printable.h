// Text from strangers: checking the names a client chooses (ids, subjects,
// group names) and showing any bytes safely in logs and tools. A name that
// passes CheckName can go into an MQTT topic level or property, a log line or a
// terminal without changing its meaning; EscapeForLog makes any bytes so.
// Stateless functions, thread-safe.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include "core/status.h"

namespace fanflow {

// In characters (code points), as JSON Schema's maxLength counts.
inline constexpr size_t kMaxSubjectLength = 200;  // leaves room for "<batch>/chunk/<index>"
inline constexpr size_t kMaxIdLength = 256;       // id, correlationid, source, type
inline constexpr size_t kMaxGroupLength = 64;     // ASCII only

// True when `s` is valid UTF-8 without control characters (U+0000-U+001F,
// U+007F-U+009F) or non-characters (U+FDD0-U+FDEF, U+xFFFE/F): what an MQTT 5
// broker accepts in a topic or property (Mosquitto drops the connection otherwise).
bool IsCleanText(std::string_view s);

// OK when `value` is a non-empty clean string of at most `max_length`
// characters; else the reason names `field`: "subject: must be a non-empty
// string", "subject: must be valid UTF-8", "subject: must not contain control
// characters", "subject: must be at most 200 characters".
[[nodiscard]] Status CheckName(std::string_view value, std::string_view field, size_t max_length);

// The number of characters of valid UTF-8 `s`.
size_t CodePoints(std::string_view s);

// A consumer group name becomes a queue name and an MQTT topic level:
// 1..64 characters of A-Z a-z 0-9 . _ -.
[[nodiscard]] Status CheckGroupName(std::string_view group);

// `s` as printable ASCII for one log line or table cell: backslash, control
// characters and invalid UTF-8 bytes become \\, \n, \t, \xNN escapes (valid
// non-ASCII UTF-8 is kept); past `max_bytes` of input it is cut with "...".
std::string EscapeForLog(std::string_view s, size_t max_bytes = 512);

std::string Base64(std::string_view bytes);

}  // namespace fanflow
