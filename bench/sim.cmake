# Benchmark of the simulator core (tools/tinybms-sim): responder and battery-model throughput.
add_executable(bench_sim ${PROJECT_SOURCE_DIR}/bench/bench_sim.c)
target_link_libraries(bench_sim PRIVATE gw_sim_core)
set_target_properties(bench_sim PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${GW_BENCH_DIR})
add_dependencies(bench_all bench_sim)
