# `make install` (cmake --install): binaries, the systemd unit and the documentation.
install(TARGETS tinybms-gw tinybms-sim RUNTIME DESTINATION bin)
install(FILES ${PROJECT_SOURCE_DIR}/packaging/tinybms-gw.service DESTINATION lib/systemd/system)
install(FILES ${PROJECT_SOURCE_DIR}/packaging/tinybms-gw.default DESTINATION share/tinybms-gw)
install(FILES ${PROJECT_SOURCE_DIR}/README.md DESTINATION share/doc/tinybms-gw)
install(DIRECTORY ${PROJECT_SOURCE_DIR}/docs/ DESTINATION share/doc/tinybms-gw/docs)
# The web page's files (found by the daemon at <prefix>/share/tinybms-gw/web).
install(DIRECTORY ${PROJECT_SOURCE_DIR}/web/ DESTINATION share/tinybms-gw/web)
install(PROGRAMS ${PROJECT_SOURCE_DIR}/scripts/make-cert.sh DESTINATION share/tinybms-gw)
