# MQTT integration tests against a real mosquitto (started by the tests themselves).
add_library(gw_mqtt_test_support STATIC
            ${PROJECT_SOURCE_DIR}/tests/integration/mqtt_support/mqtt_broker.c)
target_include_directories(gw_mqtt_test_support PUBLIC ${PROJECT_SOURCE_DIR}/tests/integration/mqtt_support)
target_link_libraries(gw_mqtt_test_support PUBLIC gw_mqtt_client PkgConfig::MOSQUITTO Threads::Threads)

if(GW_MOSQUITTO)
  gw_add_test(test_mqtt_client_broker
              SOURCES ${PROJECT_SOURCE_DIR}/tests/integration/test_mqtt_client_broker.c
              LIBS gw_mqtt_client gw_mqtt_test_support
              ARGS ${GW_MOSQUITTO} LABELS integration TIMEOUT 300)
  gw_add_test(test_mqtt_gateway_broker
              SOURCES ${PROJECT_SOURCE_DIR}/tests/integration/test_mqtt_gateway_broker.c
              LIBS gw_mqtt_gateway gw_battery gw_mqtt_test_support
              ARGS ${GW_MOSQUITTO} LABELS integration TIMEOUT 300)
else()
  message(WARNING "mosquitto not found: MQTT integration tests are not registered")
endif()
