# `make install` (cmake --install): the programs, the systemd unit with its system user, the
# default options file and the documentation. Nothing of the test suite.
# GW_SYSTEMD_UNIT_DIR: the Debian package (debian/rules) sets /lib/systemd/system, where
# Debian 12's debhelper and lintian expect units; relative paths are under the prefix.
set(GW_SYSTEMD_UNIT_DIR lib/systemd/system CACHE STRING "where `make install` puts the systemd unit")
install(TARGETS tinybms-gw tinybms-sim RUNTIME DESTINATION bin)
configure_file(${PROJECT_SOURCE_DIR}/packaging/tinybms-gw.service
               ${PROJECT_BINARY_DIR}/packaging/tinybms-gw.service @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/packaging/tinybms-gw.service DESTINATION ${GW_SYSTEMD_UNIT_DIR})
install(FILES ${PROJECT_SOURCE_DIR}/packaging/man/tinybms-gw.8 DESTINATION share/man/man8)
install(FILES ${PROJECT_SOURCE_DIR}/packaging/man/tinybms-sim.1 DESTINATION share/man/man1)
install(FILES ${PROJECT_SOURCE_DIR}/packaging/tinybms-gw.sysusers DESTINATION lib/sysusers.d
        RENAME tinybms-gw.conf)
install(FILES ${PROJECT_SOURCE_DIR}/packaging/tinybms-gw.default DESTINATION share/tinybms-gw)
# The system bus reads its policies from /etc/dbus-1/system.d (local) and /usr/share/dbus-1/system.d
# (packages: the .deb sets this), never from under /usr/local.
set(GW_DBUS_POLICY_DIR /etc/dbus-1/system.d CACHE STRING "where `make install` puts the D-Bus policy")
install(FILES ${PROJECT_SOURCE_DIR}/packaging/dbus/tinybms-gw.conf DESTINATION ${GW_DBUS_POLICY_DIR})
install(FILES ${PROJECT_SOURCE_DIR}/README.md DESTINATION share/doc/tinybms-gw)
install(DIRECTORY ${PROJECT_SOURCE_DIR}/docs/ DESTINATION share/doc/tinybms-gw/docs)
# The web page's files (found by the daemon at <prefix>/share/tinybms-gw/web), each .js, .css,
# .html and .svg with its gzip twin (packaging/web_ui.cmake). Made here too, so that an install
# of a build that only built the programs (make build, debian/rules) has them.
install(CODE "execute_process(COMMAND sh ${PROJECT_SOURCE_DIR}/scripts/build-ui.sh ${PROJECT_SOURCE_DIR}/web
                              ${PROJECT_BINARY_DIR}/web COMMAND_ERROR_IS_FATAL ANY)")
install(DIRECTORY ${PROJECT_BINARY_DIR}/web/ DESTINATION share/tinybms-gw/web)
install(PROGRAMS ${PROJECT_SOURCE_DIR}/scripts/make-cert.sh DESTINATION share/tinybms-gw)
# On the running system (not into a staging DESTDIR): create the user, tell systemd.
install(CODE [[
  if("$ENV{DESTDIR}" STREQUAL "")
    find_program(SYSUSERS systemd-sysusers)
    if(SYSUSERS)
      execute_process(COMMAND ${SYSUSERS} ${CMAKE_INSTALL_PREFIX}/lib/sysusers.d/tinybms-gw.conf)
    endif()
    find_program(SYSTEMCTL systemctl)
    if(SYSTEMCTL)
      execute_process(COMMAND ${SYSTEMCTL} daemon-reload ERROR_QUIET)
    endif()
  endif()
]])
