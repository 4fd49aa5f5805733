# MQTT benchmark: gateway cost per sample, loopback latency through mosquitto, sustained rate.
add_executable(bench_mqtt ${PROJECT_SOURCE_DIR}/bench/bench_mqtt.c)
target_link_libraries(bench_mqtt PRIVATE gw_clock gw_mqtt_gateway gw_mqtt_test_support)
set_target_properties(bench_mqtt PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${GW_BENCH_DIR})
add_dependencies(bench_all bench_mqtt)
