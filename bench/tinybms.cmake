# TinyBMS codec benchmark: streaming decoder MB/s (vs a CRC-only baseline) and ns per decode_live.
add_executable(bench_tinybms ${PROJECT_SOURCE_DIR}/bench/bench_tinybms.c)
target_link_libraries(bench_tinybms PRIVATE gw_tinybms)
set_target_properties(bench_tinybms PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${GW_BENCH_DIR})
add_dependencies(bench_all bench_tinybms)
