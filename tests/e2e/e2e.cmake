# End-to-end tests of the real daemon process (tinybms-gw) with independent peers: the simulator
# (tinybms-sim), python-can over a socat pty pair, a real mosquitto and mosquitto_sub.
# Python 3 standard library + Debian's python3-can; run with Debian's /usr/bin/python3.
if(TARGET tinybms-gw AND TARGET tinybms-sim)
  if(GW_SYSTEM_PYTHON)
    set(GW_E2E_PYTHON ${GW_SYSTEM_PYTHON})
  else()
    set(GW_E2E_PYTHON /usr/bin/python3)
  endif()
  # docs_examples: the users' docs against the code (alert codes, JSON examples, no internals)
  # and their sqlite3 one-liners against a simulated run's data directory.
  set(GW_E2E_TESTS daemon can_daemon can_packs_daemon docs_examples web_api web_bms)
  if(GW_MOSQUITTO)
    list(APPEND GW_E2E_TESTS mqtt_daemon)
  else()
    message(WARNING "mosquitto not found: e2e_mqtt_daemon is not registered")
  endif()
  foreach(x ${GW_E2E_TESTS})
    add_test(NAME e2e_${x} COMMAND ${GW_E2E_PYTHON} ${PROJECT_SOURCE_DIR}/tests/e2e/test_${x}.py)
    set_tests_properties(e2e_${x} PROPERTIES LABELS e2e TIMEOUT 300 ENVIRONMENT
      "GW_BUILD_DIR=${PROJECT_BINARY_DIR};GW_SOURCE_DIR=${PROJECT_SOURCE_DIR};TINYBMS_GW=$<TARGET_FILE:tinybms-gw>;TINYBMS_SIM=$<TARGET_FILE:tinybms-sim>;GW_MOSQUITTO=${GW_MOSQUITTO}")
  endforeach()
endif()
