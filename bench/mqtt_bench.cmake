# Included by bench/CMakeLists.txt when FANFLOW_WITH_MQTT is on: the MQTT
# pipeline bench, raw paho-mqtt-cpp and fanflow's adapter in one run.
find_package(PahoMqttCpp REQUIRED)
add_executable(mqtt_pipeline_bench mqtt_pipeline_bench.cc)
target_link_libraries(mqtt_pipeline_bench PRIVATE fanflow::bus fanflow_bench_pipeline PahoMqttCpp::paho-mqttpp3
  benchmark::benchmark)
