#include "core/retention.h"

#include <gtest/gtest.h>

namespace fanflow {
namespace {

using std::chrono::milliseconds;

TEST(RetentionTest, ADeadLetterQueueMustKeepMessagesLongerThanItsSource) {
  EXPECT_TRUE(ValidateRetention(milliseconds(60000), milliseconds(120000), "q").ok());
  EXPECT_TRUE(ValidateRetention(std::nullopt, std::nullopt, "q").ok());
  EXPECT_TRUE(ValidateRetention(milliseconds(60000), std::nullopt, "q").ok())
      << "dead letters kept forever";

  Status equal = ValidateRetention(milliseconds(60000), milliseconds(60000), "group workers");
  EXPECT_EQ(equal.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(equal.message().find("group workers"), std::string::npos) << equal.message();
  EXPECT_NE(equal.message().find("not longer than the source queue's retention 60 s"),
            std::string::npos)
      << equal.message();
  EXPECT_NE(equal.message().find("lost silently"), std::string::npos) << equal.message();

  Status shorter = ValidateRetention(milliseconds(60000), milliseconds(1500), "q");
  EXPECT_NE(shorter.message().find("1500 ms"), std::string::npos) << shorter.message();
  Status source_forever = ValidateRetention(std::nullopt, milliseconds(60000), "q");
  EXPECT_FALSE(source_forever.ok());
  EXPECT_NE(source_forever.message().find("until they are consumed"), std::string::npos);
}

}  // namespace
}  // namespace fanflow
