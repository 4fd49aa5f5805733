# Security tests of the real daemon (tests/security/test_security.py, docs/reliability.md
# "Security"): brute force, CSRF, traversal, oversized and malformed requests, body framing,
# WebSocket Origin, update attacks, and the secrets scanned in every output (web, log, MQTT
# through a mosquitto that requires a login, D-Bus on a private dbus-daemon, CAN).
# CTest labels: e2e and security (`ctest -L security`).
if(TARGET tinybms-gw AND TARGET tinybms-sim)
  find_program(GW_SEC_DBUS_DAEMON dbus-daemon)
  find_program(GW_SEC_MOSQUITTO_PASSWD mosquitto_passwd)
  if(GW_MOSQUITTO AND GW_SEC_DBUS_DAEMON AND GW_SEC_MOSQUITTO_PASSWD)
    if(GW_SYSTEM_PYTHON)
      set(GW_SEC_PYTHON ${GW_SYSTEM_PYTHON})
    else()
      set(GW_SEC_PYTHON /usr/bin/python3)
    endif()
    add_test(NAME security_web_and_secrets COMMAND ${GW_SEC_PYTHON} ${PROJECT_SOURCE_DIR}/tests/security/test_security.py)
    set_tests_properties(security_web_and_secrets PROPERTIES LABELS "e2e;security" TIMEOUT 300 ENVIRONMENT
      "GW_BUILD_DIR=${PROJECT_BINARY_DIR};GW_SOURCE_DIR=${PROJECT_SOURCE_DIR};TINYBMS_GW=$<TARGET_FILE:tinybms-gw>;TINYBMS_SIM=$<TARGET_FILE:tinybms-sim>;GW_MOSQUITTO=${GW_MOSQUITTO}")
  else()
    message(WARNING "mosquitto, mosquitto_passwd or dbus-daemon missing (scripts/install-deps test): security_web_and_secrets is not registered")
  endif()
endif()
