# uart_bms against the real simulator on a pty.
gw_add_test(test_uart_sim SOURCES ${PROJECT_SOURCE_DIR}/tests/integration/test_uart_sim.c
            LIBS gw_app gw_uart_bms PkgConfig::CJSON LABELS integration TIMEOUT 300)
set_tests_properties(test_uart_sim PROPERTIES ENVIRONMENT
  "TINYBMS_SIM=$<TARGET_FILE:tinybms-sim>;GW_BUILD_DIR=${PROJECT_BINARY_DIR}")
