#include "pipeline/result_merge.h"

#include <gtest/gtest.h>

namespace fanflow {
namespace {

using nlohmann::json;

// {"a": {"a": ... {"a": leaf}}}, built without recursion.
json Deep(int depth, json leaf) {
  json j = std::move(leaf);
  for (int i = 0; i < depth; ++i) j = json{{"a", std::move(j)}};
  return j;
}

const json& Leaf(const json& j) {
  const json* p = &j;
  while (p->is_object()) p = &(*p)["a"];
  return *p;
}

TEST(ResultMerge, NumbersAddObjectsMergeByFieldOthersKeepTheFirst) {
  json into;
  MergeResult(into, json{{"sum", 3}, {"n", 1.5}, {"label", "x"}});
  MergeResult(into, json{{"sum", 4}, {"n", 1}, {"label", "y"}, {"new", {{"k", 2}}}});
  MergeResult(into, nullptr);
  EXPECT_EQ(into, (json{{"sum", 7}, {"n", 2.5}, {"label", "x"}, {"new", {{"k", 2}}}}));
  EXPECT_TRUE(into["sum"].is_number_integer());
}

// A forged chunk result must not wrap the batch sum around to a wrong integer.
TEST(ResultMerge, AnIntegerSumBeyondInt64BecomesAFloatNotAWrappedInteger) {
  json into = INT64_MAX;
  MergeResult(into, 1);
  ASSERT_TRUE(into.is_number_float()) << into;
  EXPECT_DOUBLE_EQ(into.get<double>(), 9223372036854775808.0);
  json big = json::parse("18446744073709551615");
  json sum = 1;
  MergeResult(sum, big);
  ASSERT_TRUE(sum.is_number_float()) << sum;
  EXPECT_DOUBLE_EQ(sum.get<double>(), 18446744073709551616.0);
  json neg = -5;
  MergeResult(neg, json::parse("7"));
  EXPECT_EQ(neg, 2);
  EXPECT_TRUE(neg.is_number_integer());
}

// The crash was a recursion per level: merging walks any depth.
TEST(ResultMerge, MergesObjectsNested100000DeepWithoutRecursion) {
  json into = Deep(100000, 2);
  MergeResult(into, Deep(100000, 5));
  EXPECT_EQ(Leaf(into), 7);
}

}  // namespace
}  // namespace fanflow
