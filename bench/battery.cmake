# bench_battery: battery engine step for 1, 4 and 16 packs.
add_executable(bench_battery ${PROJECT_SOURCE_DIR}/bench/bench_battery.c)
target_link_libraries(bench_battery PRIVATE gw_battery_core)
set_target_properties(bench_battery PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${GW_BENCH_DIR})
add_dependencies(bench_all bench_battery)
