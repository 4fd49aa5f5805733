# CAN publisher over slcan against python-can (independent peer) on a socat pty pair.
if(GW_SYSTEM_PYTHON)
  set(GW_CAN_PEER_PYTHON ${GW_SYSTEM_PYTHON})
else()
  set(GW_CAN_PEER_PYTHON /usr/bin/python3)
endif()
gw_add_test(test_can_slcan
  SOURCES ${PROJECT_SOURCE_DIR}/tests/integration/test_can_slcan.c
  LIBS gw_can_publisher PkgConfig::CJSON
  LABELS integration TIMEOUT 300
  ARGS ${GW_CAN_PEER_PYTHON} ${PROJECT_SOURCE_DIR}/tests/integration/can_peer.py)
