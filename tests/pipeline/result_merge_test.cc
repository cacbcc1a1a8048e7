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

TEST(ResultMerge, NumbersAddObjectsMergeByFieldEqualStringsStay) {
  json into;
  ASSERT_TRUE(MergeResult(into, json{{"sum", 3}, {"n", 1.5}, {"label", "x"}, {"ok", true}}).ok());
  ASSERT_TRUE(MergeResult(into, json{{"sum", 4}, {"n", 1}, {"label", "x"}, {"new", {{"k", 2}}}}).ok());
  ASSERT_TRUE(MergeResult(into, nullptr).ok());
  ASSERT_TRUE(MergeResult(into, json{{"ok", true}, {"n", nullptr}}).ok());
  EXPECT_EQ(into, (json{{"sum", 7}, {"n", 2.5}, {"label", "x"}, {"ok", true}, {"new", {{"k", 2}}}}));
  EXPECT_TRUE(into["sum"].is_number_integer());
}

// What used to be dropped silently (issue 11) is an error naming the place.
TEST(ResultMerge, AValueThatCannotBeMergedIsAnErrorNamingItsPath) {
  json into;
  ASSERT_TRUE(MergeResult(into, json{{"label", "x"}, {"n", 1}}).ok());
  Status s = MergeResult(into, json{{"label", "y"}});
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.message(), "result.label: a string (\"y\") cannot be merged into a string (\"x\")");
  json fresh;
  s = MergeResult(fresh, json{{"a", {{"ids", {1, 2}}}}});
  ASSERT_FALSE(s.ok()) << "an array is refused with the first chunk that has it";
  EXPECT_EQ(s.message().rfind("result.a.ids: an array cannot be merged", 0), 0u) << s.message();
  json number = 3;
  s = MergeResult(number, json{{"k", 1}});
  EXPECT_EQ(s.message(), "result: an object ({...}) cannot be merged into a number (3)");
}

TEST(ResultMerge, ConcatTakesArraysOnlyAndNoneTakesAnything) {
  json into;
  EXPECT_TRUE(CombineResult(Combine::kConcat, into, json::array({1})).ok());
  EXPECT_TRUE(into.is_null()) << "concat is built at completion, from the ledger";
  EXPECT_FALSE(CombineResult(Combine::kConcat, into, json{{"k", 1}}).ok());
  EXPECT_FALSE(CombineResult(Combine::kConcat, into, nullptr).ok());
  EXPECT_TRUE(CombineResult(Combine::kNone, into, json{{"k", "anything"}}).ok());
  EXPECT_EQ(ParseCombine("concat"), Combine::kConcat);
  EXPECT_FALSE(ParseCombine("sum").has_value());
}

// A forged chunk result must not wrap the batch sum around to a wrong integer.
TEST(ResultMerge, AnIntegerSumBeyondInt64BecomesAFloatNotAWrappedInteger) {
  json into = INT64_MAX;
  ASSERT_TRUE(MergeResult(into, 1).ok());
  ASSERT_TRUE(into.is_number_float()) << into;
  EXPECT_DOUBLE_EQ(into.get<double>(), 9223372036854775808.0);
  json big = json::parse("18446744073709551615");
  json sum = 1;
  ASSERT_TRUE(MergeResult(sum, big).ok());
  ASSERT_TRUE(sum.is_number_float()) << sum;
  EXPECT_DOUBLE_EQ(sum.get<double>(), 18446744073709551616.0);
  json neg = -5;
  ASSERT_TRUE(MergeResult(neg, json::parse("7")).ok());
  EXPECT_EQ(neg, 2);
  EXPECT_TRUE(neg.is_number_integer());
}

// The crash was a recursion per level: merging walks any depth.
TEST(ResultMerge, MergesObjectsNested100000DeepWithoutRecursion) {
  json into = Deep(100000, 2);
  ASSERT_TRUE(MergeResult(into, Deep(100000, 5)).ok());
  EXPECT_EQ(Leaf(into), 7);
}

}  // namespace
}  // namespace fanflow
