# Update bundles: verify + stage time of a 3.5 MiB bundle vs hash + copy, the signature check.
add_executable(bench_ota ${PROJECT_SOURCE_DIR}/bench/bench_ota.c)
target_include_directories(bench_ota PRIVATE ${PROJECT_SOURCE_DIR}/src/services/ota_update)
target_link_libraries(bench_ota PRIVATE gw_clock gw_ota_update PkgConfig::LIBARCHIVE PkgConfig::OPENSSL)
set_target_properties(bench_ota PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${GW_BENCH_DIR})
add_dependencies(bench_all bench_ota)
