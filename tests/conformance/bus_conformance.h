// The port's promises, as one suite every adapter runs unchanged. An adapter's
// test file instantiates it with a bus URL:
//   INSTANTIATE_TEST_SUITE_P(Inproc, BusConformance, ::testing::Values("inproc://"));
// Each test uses event types and groups of its own, so runs against a shared
// broker never see each other's messages.
#pragma once

#include <gtest/gtest.h>

#include <string>

class BusConformance : public ::testing::TestWithParam<std::string> {};
