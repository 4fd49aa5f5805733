# test_soak_week (soak/test_soak_week.c): a week of battery life (the simulator's model, a daily
# charge/discharge) through the real battery service, alert manager and history logger on the
# test clock, with a restart halfway; energy, history, alerts and charge state checked at the end.
# Label "slow" (ctest -LE slow skips it); `make soak-week` runs it alone.
if(TARGET gw_sim_model AND TARGET gw_battery AND TARGET gw_alert_manager AND TARGET gw_history_logger)
  gw_add_test(test_soak_week SOURCES ${PROJECT_SOURCE_DIR}/soak/test_soak_week.c
              LIBS gw_battery gw_alert_manager gw_history_logger gw_sim_model PkgConfig::CJSON FAKE_CLOCK
              LABELS "integration;slow" TIMEOUT 900)
endif()
