# `make bundle` (cmake --build DIR --target bundle): an update bundle of this tree's programs,
# build/bundle/tinybms-gw-<version>-<arch>.tar (unsigned: scripts/sign-update.sh signs it).
if(CMAKE_SYSTEM_PROCESSOR MATCHES "^(x86_64|AMD64|amd64)$")
  set(GW_BUNDLE_ARCH x86_64)
elseif(CMAKE_SYSTEM_PROCESSOR MATCHES "^(aarch64|arm64)$")
  set(GW_BUNDLE_ARCH aarch64)
elseif(CMAKE_SYSTEM_PROCESSOR MATCHES "^arm")
  set(GW_BUNDLE_ARCH armhf)
else()
  set(GW_BUNDLE_ARCH ${CMAKE_SYSTEM_PROCESSOR})
endif()
set(GW_BUNDLE_DIR ${PROJECT_SOURCE_DIR}/build/bundle CACHE PATH "Where `make bundle` writes the bundle")
set(GW_BUNDLE_UI_DIR "" CACHE PATH "Web UI files to put into the bundle (share/ui/), empty = none")
if(TARGET tinybms-gw AND TARGET tinybms-sim)
  add_custom_target(bundle
    COMMAND ${PROJECT_SOURCE_DIR}/packaging/make-bundle.sh
            ${GW_BUNDLE_DIR}/tinybms-gw-${PROJECT_VERSION}-${GW_BUNDLE_ARCH}.tar ${PROJECT_VERSION}
            ${GW_BUNDLE_ARCH} ${GW_UPDATE_PLATFORM} $<TARGET_FILE:tinybms-gw> $<TARGET_FILE:tinybms-sim>
            ${GW_BUNDLE_UI_DIR}
    DEPENDS tinybms-gw tinybms-sim
    COMMENT "Update bundle of tinybms-gw ${PROJECT_VERSION} for ${GW_BUNDLE_ARCH}"
    VERBATIM)
endif()
