# bench_idle: wake-ups per second of the idle daemon (--simulate, CAN log, MQTT), per thread.
add_executable(bench_idle ${PROJECT_SOURCE_DIR}/bench/bench_idle.c)
set_target_properties(bench_idle PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${GW_BENCH_DIR})
add_dependencies(bench_all bench_idle tinybms-gw tinybms-sim)
