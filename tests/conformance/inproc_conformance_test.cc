#include "tests/conformance/bus_conformance.h"

INSTANTIATE_TEST_SUITE_P(Inproc, BusConformance, ::testing::Values("inproc://"));
