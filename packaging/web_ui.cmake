# The web page as served: build/<dir>/web, a copy of web/ with a gzip -9n twin (FILE.gz) beside
# every .js, .css, .html and .svg (scripts/build-ui.sh). Built with everything (the browser tests
# serve it) and again by `make install`, which installs it (packaging/install.cmake).
file(GLOB_RECURSE GW_WEB_SOURCES CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/web/*)
set(GW_WEB_BUILD_DIR ${PROJECT_BINARY_DIR}/web)
add_custom_command(OUTPUT ${PROJECT_BINARY_DIR}/web.stamp
  COMMAND sh ${PROJECT_SOURCE_DIR}/scripts/build-ui.sh ${PROJECT_SOURCE_DIR}/web ${GW_WEB_BUILD_DIR}
  COMMAND ${CMAKE_COMMAND} -E touch ${PROJECT_BINARY_DIR}/web.stamp
  DEPENDS ${GW_WEB_SOURCES} ${PROJECT_SOURCE_DIR}/scripts/build-ui.sh
  COMMENT "Web page with its precompressed .gz twins")
add_custom_target(web_ui ALL DEPENDS ${PROJECT_BINARY_DIR}/web.stamp)
