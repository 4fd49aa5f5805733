# End-to-end tests of signed updates (tests/e2e/test_ota_update.py): the real daemon, the key,
# bundle and signing scripts, the launcher's trial and rollback.
if(TARGET tinybms-gw AND TARGET tinybms-sim)
  if(GW_SYSTEM_PYTHON)
    set(GW_OTA_PYTHON ${GW_SYSTEM_PYTHON})
  else()
    set(GW_OTA_PYTHON /usr/bin/python3)
  endif()
  add_test(NAME e2e_ota_update COMMAND ${GW_OTA_PYTHON} ${PROJECT_SOURCE_DIR}/tests/e2e/test_ota_update.py)
  set_tests_properties(e2e_ota_update PROPERTIES LABELS e2e TIMEOUT 600 ENVIRONMENT
    "GW_BUILD_DIR=${PROJECT_BINARY_DIR};GW_SOURCE_DIR=${PROJECT_SOURCE_DIR};TINYBMS_GW=$<TARGET_FILE:tinybms-gw>;TINYBMS_SIM=$<TARGET_FILE:tinybms-sim>")
endif()
