# End-to-end test of the Venus OS D-Bus battery service: the daemon on the simulator, a private
# dbus-daemon, Python dbus (Debian dbus-daemon, dbus-bin, python3-dbus, python3-gi,
# libglib2.0-bin). Registered only when dbus-daemon is installed.
if(TARGET tinybms-gw AND TARGET tinybms-sim)
  find_program(GW_DBUS_DAEMON dbus-daemon)
  if(GW_DBUS_DAEMON)
    if(GW_SYSTEM_PYTHON)
      set(GW_DBUS_E2E_PYTHON ${GW_SYSTEM_PYTHON})
    else()
      set(GW_DBUS_E2E_PYTHON /usr/bin/python3)
    endif()
    # daemon: the battery service itself; venus: --probe and packaging/venus (install, run script);
    # systemcalc: Victron's own selection of battery and BMS; runs when VICTRON_SYSTEMCALC names a
    # dbus-systemcalc-py checkout (with ext/velib_python), else it reports a skip.
    foreach(x daemon venus systemcalc)
      add_test(NAME e2e_dbus_${x} COMMAND ${GW_DBUS_E2E_PYTHON} ${PROJECT_SOURCE_DIR}/tests/e2e/test_dbus_${x}.py)
      set_tests_properties(e2e_dbus_${x} PROPERTIES LABELS e2e TIMEOUT 300 ENVIRONMENT
        "GW_BUILD_DIR=${PROJECT_BINARY_DIR};GW_SOURCE_DIR=${PROJECT_SOURCE_DIR};TINYBMS_GW=$<TARGET_FILE:tinybms-gw>;TINYBMS_SIM=$<TARGET_FILE:tinybms-sim>")
    endforeach()
  else()
    message(WARNING "dbus-daemon not found (scripts/install-deps test): e2e_dbus_daemon is not registered")
  endif()
endif()
