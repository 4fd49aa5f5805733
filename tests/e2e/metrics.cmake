# e2e_metrics_daemon: the daemon's Prometheus text (SIGUSR2 + --metrics-dump) parsed by the
# Prometheus Python client's strict parser (Debian python3-prometheus-client), with the simulator,
# a private mosquitto and the CAN log.
if(TARGET tinybms-gw AND TARGET tinybms-sim AND GW_MOSQUITTO)
  if(GW_SYSTEM_PYTHON)
    set(GW_METRICS_PYTHON ${GW_SYSTEM_PYTHON})
  else()
    set(GW_METRICS_PYTHON /usr/bin/python3)
  endif()
  # e2e_netlink_daemon: the daemon in a network namespace of its own with a veth pair (skipped,
  # with the reason, where namespaces cannot be made)
  foreach(x metrics_daemon netlink_daemon)
    add_test(NAME e2e_${x} COMMAND ${GW_METRICS_PYTHON} ${PROJECT_SOURCE_DIR}/tests/e2e/test_${x}.py)
    set_tests_properties(e2e_${x} PROPERTIES LABELS e2e TIMEOUT 300 ENVIRONMENT
      "GW_BUILD_DIR=${PROJECT_BINARY_DIR};GW_SOURCE_DIR=${PROJECT_SOURCE_DIR};TINYBMS_GW=$<TARGET_FILE:tinybms-gw>;TINYBMS_SIM=$<TARGET_FILE:tinybms-sim>;GW_MOSQUITTO=${GW_MOSQUITTO}")
  endforeach()
endif()
