# The log's systemd journal mode (a process of its own: the mode is decided once).
gw_add_test(test_log SOURCES ${PROJECT_SOURCE_DIR}/tests/unit/test_log.c LIBS gw_port)
