# net_link against the kernel: a veth pair in a network namespace the test creates (skipped,
# exit 77 with the reason, where namespaces cannot be created).
gw_add_test(test_net_link_veth SOURCES ${PROJECT_SOURCE_DIR}/tests/integration/test_net_link_veth.c
            LIBS gw_net_link gw_event_bus LABELS integration TIMEOUT 180)
set_tests_properties(test_net_link_veth PROPERTIES SKIP_RETURN_CODE 77)
