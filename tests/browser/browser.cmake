# The web UI in headless Chromium (Debian's chromium driven by playwright-core from npm, pinned by
# tests/browser/package-lock.json) against the real daemon and simulator. run.sh installs the npm
# packages into the build directory and skips (77) with the reason when chromium is absent.
# Screenshots of every page: ${PROJECT_BINARY_DIR}/screenshots/.
if(TARGET tinybms-gw AND TARGET tinybms-sim)
  add_test(NAME browser_ui COMMAND sh ${PROJECT_SOURCE_DIR}/tests/browser/run.sh)
  set_tests_properties(browser_ui PROPERTIES LABELS "browser;e2e" TIMEOUT 600 SKIP_RETURN_CODE 77
    RESOURCE_LOCK browser_ui ENVIRONMENT
    "GW_BUILD_DIR=${PROJECT_BINARY_DIR};GW_SOURCE_DIR=${PROJECT_SOURCE_DIR};TINYBMS_GW=$<TARGET_FILE:tinybms-gw>;TINYBMS_SIM=$<TARGET_FILE:tinybms-sim>")
endif()
