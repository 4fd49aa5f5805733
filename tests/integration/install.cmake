# `make install` staged into a temporary DESTDIR: only runtime files, a sandboxed unit, its user.
add_test(NAME test_install COMMAND sh ${PROJECT_SOURCE_DIR}/tests/integration/test_install.sh
         ${PROJECT_BINARY_DIR})
set_tests_properties(test_install PROPERTIES LABELS integration TIMEOUT 120)
