add_executable(bench_uart ${PROJECT_SOURCE_DIR}/bench/bench_uart.c)
target_link_libraries(bench_uart PRIVATE gw_clock gw_app gw_uart_bms)
set_target_properties(bench_uart PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${GW_BENCH_DIR})
add_dependencies(bench_all bench_uart tinybms-gw)
