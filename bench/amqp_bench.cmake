# Included by bench/CMakeLists.txt when FANFLOW_WITH_AMQP is on: the AMQP
# pipeline bench, raw rabbitmq-c and fanflow's adapter in one run.
find_package(rabbitmq-c 0.11 CONFIG REQUIRED)
add_executable(amqp_pipeline_bench amqp_pipeline_bench.cc)
target_link_libraries(amqp_pipeline_bench PRIVATE fanflow::bus fanflow_bench_pipeline rabbitmq::rabbitmq
  benchmark::benchmark)
