# bench_monitoring: CPU of one metrics collection per second of gateway time, scrape costs.
add_executable(bench_monitoring ${PROJECT_SOURCE_DIR}/bench/bench_monitoring.c)
target_link_libraries(bench_monitoring PRIVATE gw_clock gw_monitoring Threads::Threads)
target_include_directories(bench_monitoring PRIVATE ${PROJECT_SOURCE_DIR}/src/services/monitoring)
set_target_properties(bench_monitoring PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${GW_BENCH_DIR})
add_dependencies(bench_all bench_monitoring)
