# bench_can: sample -> 0x356 latency on an slcan pty, several packs through the battery engine to
# 0x351/0x356, and slcan frames/s.
add_executable(bench_can ${PROJECT_SOURCE_DIR}/bench/bench_can.c)
target_link_libraries(bench_can PRIVATE gw_clock gw_can_publisher gw_can_transport gw_battery_core util Threads::Threads)
set_target_properties(bench_can PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${GW_BENCH_DIR})
add_dependencies(bench_all bench_can)
