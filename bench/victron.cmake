# Victron encoder + charge control benchmark: ns per full frame set and per control step.
add_executable(bench_victron ${PROJECT_SOURCE_DIR}/bench/bench_victron.c)
target_link_libraries(bench_victron PRIVATE gw_victron gw_charge)
set_target_properties(bench_victron PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${GW_BENCH_DIR})
add_dependencies(bench_all bench_victron)
