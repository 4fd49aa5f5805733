# Contract suites: one per interface, run over every implementation of it (as Zephyr's CAN API
# suite runs over every driver). A case an implementation cannot be put through is skipped with
# the reason printed. The fakes here honour the contracts and may be linked by other tests.
gw_add_test(test_contract_can
  SOURCES ${PROJECT_SOURCE_DIR}/tests/contract/test_contract_can.c
          ${PROJECT_SOURCE_DIR}/tests/contract/fake_can.c
  LIBS gw_can_transport util)
gw_add_test(test_contract_serial
  SOURCES ${PROJECT_SOURCE_DIR}/tests/contract/test_contract_serial.c
          ${PROJECT_SOURCE_DIR}/tests/contract/fake_serial.c
  LIBS gw_serial gw_port util)
