# Closed-loop charge-control simulation: battery model (tools/tinybms-sim) + charge control.
# The short scenarios (days each) in one test; the 30-day harsh run on its own (slow under the
# sanitizers: its own timeout and the "slow" label, ctest -LE slow skips it).
if(TARGET gw_sim_model AND TARGET gw_charge AND TARGET gw_battery_core)
  gw_add_test(test_charge_closed_loop
              SOURCES ${PROJECT_SOURCE_DIR}/tests/integration/test_charge_closed_loop.c
              LIBS gw_charge gw_battery_core gw_sim_model LABELS integration TIMEOUT 600)
  add_test(NAME test_charge_closed_loop_30d COMMAND test_charge_closed_loop harsh30)
  set_tests_properties(test_charge_closed_loop_30d PROPERTIES TIMEOUT 1800 LABELS "integration;slow")
  # Fix 4 (top-time cap): an imbalanced pack with the TinyBMS's 60 mA balancer for 30 days.
  add_test(NAME test_charge_closed_loop_balance30 COMMAND test_charge_closed_loop balance30)
  set_tests_properties(test_charge_closed_loop_balance30 PROPERTIES TIMEOUT 1800 LABELS "integration;slow")
endif()
