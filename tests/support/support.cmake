# Test support: the test clock, linked instead of the OS clock by gw_add_test(... FAKE_CLOCK).
# An object library, like gw_clock: a test linking both fails with duplicate symbols.
add_library(gw_fake_clock OBJECT ${PROJECT_SOURCE_DIR}/tests/support/fake_clock.c)
target_include_directories(gw_fake_clock PUBLIC ${PROJECT_SOURCE_DIR}/tests/support)
target_link_libraries(gw_fake_clock PUBLIC gw_port Threads::Threads)

gw_add_test(test_fake_clock SOURCES ${PROJECT_SOURCE_DIR}/tests/unit/test_fake_clock.c FAKE_CLOCK)
