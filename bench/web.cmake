# bench_web: wrk against /api/data and /api/status, 100 WebSocket clients on /ws/live (update ->
# delivered latency), the daemon's CPU and RSS meanwhile (every service on, loopback).
add_executable(bench_web ${PROJECT_SOURCE_DIR}/bench/bench_web.c)
set_target_properties(bench_web PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${GW_BENCH_DIR})
add_dependencies(bench_all bench_web tinybms-gw tinybms-sim)
