# State services together (alert_manager + history_logger on one event bus).
gw_add_test(test_state_services SOURCES ${PROJECT_SOURCE_DIR}/tests/integration/test_state_services.c
            LIBS gw_alert_manager gw_history_logger PkgConfig::CJSON LABELS integration TIMEOUT 300)
