// The CloudEvents 1.0 envelope fanflow puts on every bus, and its JSON codec.
// Structured mode only: one JSON document per message, `data` inline.
#pragma once

#include <nlohmann/json.hpp>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/status.h"

namespace fanflow {

// CloudEvents `type` values; the suffix after "fanflow." and before ".v1" is the
// short name used in routing keys and topics (see core/routes.h).
inline constexpr char kStartFanout[] = "fanflow.start_fanout.v1";
inline constexpr char kProcessChunk[] = "fanflow.process_chunk.v1";
inline constexpr char kChunkDone[] = "fanflow.chunk_done.v1";
inline constexpr char kBatchSealed[] = "fanflow.batch_sealed.v1";
// The aggregator admits a start_fanout and hands the ventilator one bounded step
// of it at a time; the ventilator reports each step back (the last one as
// batch_sealed). See topics/README.md, "Flow".
inline constexpr char kFanoutStep[] = "fanflow.fanout_step.v1";
inline constexpr char kFanoutProgress[] = "fanflow.fanout_progress.v1";
// A request to stop a batch: the aggregator decides it `cancelled` (see
// pipeline/cancel.h).
inline constexpr char kCancelBatch[] = "fanflow.cancel_batch.v1";
inline constexpr char kBatchComplete[] = "fanflow.batch_complete.v1";
inline constexpr char kAlarm[] = "fanflow.alarm.v1";

// Every type fanflow knows, in pipeline order.
const std::vector<std::string>& KnownEventTypes();

struct Event {
  std::string id;
  std::string source;
  std::string type;
  std::string time;            // RFC 3339, UTC
  std::string subject;         // the batch id
  std::string correlation_id;  // CloudEvents extension `correlationid`
  nlohmann::json data = nlohmann::json::object();
};

// Builds an event stamped with the current time.
Event MakeEvent(std::string type, std::string id, std::string batch_id,
                std::string correlation_id, nlohmann::json data);

std::string EncodeEvent(const Event& event);
// EncodeEvent with one more member of `data`, `key`, whose value is already
// JSON text (valid, within the decoder's limits): a chunk's items.
std::string EncodeEventWithRawMember(const Event& event, std::string_view key, std::string_view raw_json);

// A process_chunk's id, "<batch>/chunk/<index>" (topics/README.md).
std::string ChunkEventId(const std::string& batch_id, int64_t chunk_index);
// The batch id and chunk index of such an id; nullopt for any other id.
std::optional<std::pair<std::string, int64_t>> ParseChunkEventId(const std::string& id);

// Parses and validates the envelope and the `data` of known types. The error
// names the offending field, e.g. "data.chunk_size: must be an integer >= 1".
// With `items_json`, an array at data.items (a process_chunk's items) is not
// built into `data`: it is checked within the decoder's limits, its JSON text
// goes to `*items_json`, and it is left out of `data` (`*items_json` stays
// empty when there is no such array). Everything else is decoded, accepted
// and refused exactly as without it.
Result<Event> DecodeEvent(std::string_view body, std::string* items_json = nullptr);

// Validates `data` against the contract of `type` (topics/<short>.schema.json).
Status ValidateEventData(const std::string& type, const nlohmann::json& data);

// Current UTC time as RFC 3339 with milliseconds.
std::string NowRfc3339();

}  // namespace fanflow
