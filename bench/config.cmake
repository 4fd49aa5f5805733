# Configuration: parse+validate, serialise, save (fsync'ed), PBKDF2.
add_executable(bench_config ${PROJECT_SOURCE_DIR}/bench/bench_config.c)
target_link_libraries(bench_config PRIVATE gw_clock gw_config_manager)
set_target_properties(bench_config PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${GW_BENCH_DIR})
add_dependencies(bench_all bench_config)
