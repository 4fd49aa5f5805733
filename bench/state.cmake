# bench_state: history insert cost, a 7-day database at 1 s, alert evaluation per sample.
add_executable(bench_state ${PROJECT_SOURCE_DIR}/bench/bench_state.c)
target_link_libraries(bench_state PRIVATE gw_clock gw_history_logger gw_alert_rules PkgConfig::SQLITE3)
set_target_properties(bench_state PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${GW_BENCH_DIR})
add_dependencies(bench_all bench_state)
