# The manual pages (packaging/man) against the programs' --help: packaging/man-check.sh.
string(REPLACE ";" " " GW_MAN_RUN "${CMAKE_CROSSCOMPILING_EMULATOR}")
add_test(NAME test_man_pages
         COMMAND sh ${PROJECT_SOURCE_DIR}/packaging/man-check.sh $<TARGET_FILE:tinybms-gw>
                 $<TARGET_FILE:tinybms-sim> ${PROJECT_SOURCE_DIR}/packaging/man)
set_tests_properties(test_man_pages PROPERTIES LABELS unit TIMEOUT 60 ENVIRONMENT "GW_RUN=${GW_MAN_RUN}")
