# Closed-loop charge-control simulation: battery model (tools/tinybms-sim) + charge control.
if(TARGET gw_sim_model AND TARGET gw_charge)
  gw_add_test(test_charge_closed_loop
              SOURCES ${PROJECT_SOURCE_DIR}/tests/integration/test_charge_closed_loop.c
              LIBS gw_charge gw_sim_model LABELS integration TIMEOUT 300)
endif()
