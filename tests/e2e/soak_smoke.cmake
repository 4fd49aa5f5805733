# e2e_soak_smoke: `make soak` for 20 s with 10 WebSocket clients and 20 REST requests/s on the
# test build (sanitizers): every peer answers (CAN, MQTT, D-Bus, web) and the daemon exits 0. No
# figure is asserted (timing belongs to `make soak`, soak/soak.py).
if(TARGET tinybms-gw AND TARGET tinybms-sim AND GW_MOSQUITTO)
  add_test(NAME e2e_soak_smoke COMMAND /usr/bin/python3 ${PROJECT_SOURCE_DIR}/soak/soak.py)
  set_tests_properties(e2e_soak_smoke PROPERTIES LABELS e2e TIMEOUT 300 ENVIRONMENT
    "SOAK_SMOKE=1;SOAK_SECONDS=20;SOAK_WS_CLIENTS=10;SOAK_REST_RATE=20;GW_BUILD_DIR=${PROJECT_BINARY_DIR};GW_SOURCE_DIR=${PROJECT_SOURCE_DIR};TINYBMS_GW=$<TARGET_FILE:tinybms-gw>;TINYBMS_SIM=$<TARGET_FILE:tinybms-sim>;GW_MOSQUITTO=${GW_MOSQUITTO}")
endif()
