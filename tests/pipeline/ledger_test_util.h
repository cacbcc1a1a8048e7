// Batches written straight into a ledger, as the aggregator admits them.
#pragma once

#include <gtest/gtest.h>

#include <string>

#include "pipeline/ledger.h"

namespace fanflow::testing {

// Admits `batch_id` (a range source in chunks of 10 items); with `sealed_chunks`
// >= 0 also records the ventilator's report that it published that many.
inline void AdmitBatch(Ledger& ledger, const std::string& batch_id, const std::string& correlation_id,
                       int64_t sealed_chunks = -1) {
  BatchRecord b;
  b.batch_id = batch_id;
  b.correlation_id = correlation_id;
  b.request = {{"source", "range:1000"}, {"chunk_size", 10}};
  b.chunk_size = 10;
  b.step.max_chunks = 1000;
  ASSERT_TRUE(ledger.Admit(b).ok());
  if (sealed_chunks >= 0)
    ASSERT_TRUE(ledger.RecordProgress(batch_id, nlohmann::json::object(), sealed_chunks, sealed_chunks * 10,
                                      /*sealed=*/true)
                    .ok());
}

// The outcome of chunk `index` of batch "b1" (correlation "c1", 10 items):
// succeeded with `result`, or failed with the error "boom".
inline ChunkOutcome Outcome(int64_t index, nlohmann::json result, bool ok = true) {
  ChunkOutcome c;
  c.batch_id = "b1";
  c.correlation_id = "c1";
  c.chunk_index = index;
  c.succeeded = ok;
  c.items = 10;
  c.result = std::move(result);
  if (!ok) c.error = "boom";
  return c;
}

}  // namespace fanflow::testing
