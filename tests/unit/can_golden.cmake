# Golden output of one whole CAN cycle (encoder + candump formatter): tests/unit/test_can_golden.c
# against tests/unit/test_can_golden.log. Here rather than in a module list because it spans two
# modules (core/victron, port/can).
gw_add_test(test_can_golden SOURCES ${PROJECT_SOURCE_DIR}/tests/unit/test_can_golden.c
            LIBS gw_victron gw_can_transport)
