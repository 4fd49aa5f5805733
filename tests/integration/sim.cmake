# Integration test of the tinybms-sim binary on a pseudo-terminal (tools/tinybms-sim).
gw_add_test(test_sim_pty SOURCES ${PROJECT_SOURCE_DIR}/tests/integration/test_sim_pty.c
            LIBS PkgConfig::CJSON ARGS $<TARGET_FILE:tinybms-sim> LABELS integration TIMEOUT 300)
add_dependencies(test_sim_pty tinybms-sim)
