# Fault-injection tests (issue 18, docs/reliability.md "Faults"): the real daemon and the
# simulator (tools/tinybms-sim line faults), python-can over a socat pty pair, a private
# mosquitto; kill -9 at random instants, a full disk and a read-only data directory.
# GW_FAULT_TRIALS=100 runs the kill -9 loops at full length (make test runs 20).
if(TARGET tinybms-gw AND TARGET tinybms-sim)
  if(GW_SYSTEM_PYTHON)
    set(GW_FAULTS_PYTHON ${GW_SYSTEM_PYTHON})
  else()
    set(GW_FAULTS_PYTHON /usr/bin/python3)
  endif()
  set(GW_FAULT_TESTS uart_faults)
  foreach(x ${GW_FAULT_TESTS})
    add_test(NAME faults_${x} COMMAND ${GW_FAULTS_PYTHON} ${PROJECT_SOURCE_DIR}/tests/faults/test_${x}.py)
    set_tests_properties(faults_${x} PROPERTIES LABELS "e2e;faults" TIMEOUT 300 ENVIRONMENT
      "GW_BUILD_DIR=${PROJECT_BINARY_DIR};GW_SOURCE_DIR=${PROJECT_SOURCE_DIR};TINYBMS_GW=$<TARGET_FILE:tinybms-gw>;TINYBMS_SIM=$<TARGET_FILE:tinybms-sim>;GW_MOSQUITTO=${GW_MOSQUITTO}")
  endforeach()
endif()
