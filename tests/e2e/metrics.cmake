# e2e_metrics_daemon: the daemon's Prometheus text (SIGUSR1 + --metrics-dump) parsed by the
# Prometheus Python client's strict parser (Debian python3-prometheus-client), with the simulator,
# a private mosquitto and the CAN log.
if(TARGET tinybms-gw AND TARGET tinybms-sim AND GW_MOSQUITTO)
  if(GW_SYSTEM_PYTHON)
    set(GW_METRICS_PYTHON ${GW_SYSTEM_PYTHON})
  else()
    set(GW_METRICS_PYTHON /usr/bin/python3)
  endif()
  add_test(NAME e2e_metrics_daemon COMMAND ${GW_METRICS_PYTHON} ${PROJECT_SOURCE_DIR}/tests/e2e/test_metrics_daemon.py)
  set_tests_properties(e2e_metrics_daemon PROPERTIES LABELS e2e TIMEOUT 300 ENVIRONMENT
    "GW_BUILD_DIR=${PROJECT_BINARY_DIR};GW_SOURCE_DIR=${PROJECT_SOURCE_DIR};TINYBMS_GW=$<TARGET_FILE:tinybms-gw>;TINYBMS_SIM=$<TARGET_FILE:tinybms-sim>;GW_MOSQUITTO=${GW_MOSQUITTO}")
endif()
