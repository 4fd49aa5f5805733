# Fault-injection tests (issue 18, docs/reliability.md "Faults"): the real daemon and the
# simulator (tools/tinybms-sim line faults), python-can over a socat pty pair, kill -9 at random
# instants, a file size limit, a full disk and a read-only data directory, SIGTERM under load.
# GW_FAULT_TRIALS=100 runs the kill -9 loop at full length (make test runs 20); GW_FAULT_SEED
# replays one (the seed is printed).
if(TARGET tinybms-gw AND TARGET tinybms-sim)
  if(GW_SYSTEM_PYTHON)
    set(GW_FAULTS_PYTHON ${GW_SYSTEM_PYTHON})
  else()
    set(GW_FAULTS_PYTHON /usr/bin/python3)
  endif()
  set(GW_FAULTS_ENV
    "GW_BUILD_DIR=${PROJECT_BINARY_DIR};GW_SOURCE_DIR=${PROJECT_SOURCE_DIR};TINYBMS_GW=$<TARGET_FILE:tinybms-gw>;TINYBMS_SIM=$<TARGET_FILE:tinybms-sim>;GW_MOSQUITTO=${GW_MOSQUITTO}")
  # name | file | unittest selection (space separated, empty = all) | labels (comma separated;
  # slow: over ~60 s on the 2-core test machine)
  set(GW_FAULT_TESTS
    "uart|uart_faults||e2e,faults,slow"
    "kill9|storage_faults|StorageFaults.test_kill9_during_saves|e2e,faults,slow"
    "packs|packs_faults||e2e,faults"
    "outputs|outputs_faults||e2e,faults"
    "dbus|dbus_faults||e2e,faults"
    "storage|storage_faults|StorageFaults.test_file_size_limit StorageFaults.test_disk_full_and_read_only StorageFaults.test_sigterm_under_load|e2e,faults")
  foreach(entry ${GW_FAULT_TESTS})
    string(REPLACE "|" ";" parts "${entry}")
    list(GET parts 0 name)
    list(GET parts 1 file)
    list(GET parts 2 selection)
    list(GET parts 3 labels)
    separate_arguments(selection)
    string(REPLACE "," ";" labels "${labels}")
    add_test(NAME faults_${name}
             COMMAND ${GW_FAULTS_PYTHON} ${PROJECT_SOURCE_DIR}/tests/faults/test_${file}.py ${selection})
    set_tests_properties(faults_${name} PROPERTIES LABELS "${labels}" TIMEOUT 600 ENVIRONMENT "${GW_FAULTS_ENV}")
  endforeach()
endif()
