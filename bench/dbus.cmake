# bench_dbus: CPU per update of the D-Bus battery service (1 and 4 batteries), signals and bytes
# on a private dbus-daemon, against a baseline where every value changes.
add_executable(bench_dbus ${PROJECT_SOURCE_DIR}/bench/bench_dbus.c)
target_include_directories(bench_dbus PRIVATE ${PROJECT_SOURCE_DIR}/bench)
target_link_libraries(bench_dbus PRIVATE gw_clock gw_dbus_battery PkgConfig::DBUS Threads::Threads)
set_target_properties(bench_dbus PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${GW_BENCH_DIR})
add_dependencies(bench_all bench_dbus)
