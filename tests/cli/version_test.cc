// `fanflow --version`: what a build has, checked against what the binary does.
#include <gtest/gtest.h>

#include "tests/support/subprocess.h"

namespace fanflow {
namespace {

using testing::FanflowBinary;
using testing::RunProcess;

TEST(VersionTest, NamesTheVersionAndExactlyTheAdaptersTheBinaryCanOpen) {
  auto r = RunProcess({FanflowBinary(), "--version"}, std::chrono::seconds(10));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ASSERT_EQ(r.out.rfind("fanflow " FANFLOW_EXPECTED_VERSION "\nadapters: inproc yes, ", 0), 0)
      << r.out;
  for (const std::string scheme : {"amqp", "mqtt"}) {
    // Nothing listens on port 1: a built adapter fails to connect, a missing one
    // is refused by name.
    auto open = RunProcess({FanflowBinary(), "topology", "--bus", scheme + "://127.0.0.1:1"},
                           std::chrono::seconds(60));
    EXPECT_NE(open.exit_code, 0) << open.err;
    const bool built = open.err.find("unsupported bus URL scheme") == std::string::npos;
    EXPECT_NE(r.out.find(scheme + (built ? " yes" : " no")), std::string::npos)
        << r.out << "\nbut " << scheme << ":// gives: " << open.err;
  }
}

}  // namespace
}  // namespace fanflow
