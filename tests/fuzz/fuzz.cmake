# Fuzz targets. Each target is always built as a plain replay driver (its own main(): corpus files
# plus deterministic mutations) registered as a CTest; when the compiler is clang and
# -fsanitize=fuzzer links, a libFuzzer binary <name> is built as well (not run by CTest):
#   build/<dir>/tests/fuzz/fuzz_tinybms tests/fuzz/corpus/tinybms -max_total_time=60
include(CheckCSourceCompiles)

if(CMAKE_C_COMPILER_ID MATCHES "Clang")
  set(CMAKE_REQUIRED_FLAGS "-fsanitize=fuzzer")
  set(CMAKE_REQUIRED_LINK_OPTIONS "-fsanitize=fuzzer")
  check_c_source_compiles(
    "#include <stddef.h>\n#include <stdint.h>\nint LLVMFuzzerTestOneInput(const uint8_t *d, size_t n);\nint LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) { (void)d; (void)n; return 0; }"
    GW_HAVE_LIBFUZZER)
  unset(CMAKE_REQUIRED_FLAGS)
  unset(CMAKE_REQUIRED_LINK_OPTIONS)
else()
  set(GW_HAVE_LIBFUZZER OFF)
endif()

# The libraries are Debian's and not instrumented. GW_FUZZ_CJSON_SOURCE=/path/to/cJSON.c (a
# checkout of the same cJSON release, not part of this repository) compiles cJSON into every
# libFuzzer binary instead, so ASan also checks cJSON's reads of the buffers our code gives it.
set(GW_FUZZ_CJSON_SOURCE "" CACHE FILEPATH "cJSON.c compiled into the libFuzzer targets (optional)")

# `make fuzz` builds this target (every libFuzzer binary) in build/fuzz and runs them
# (scripts/run-fuzz); docs/dev/README.md "Fuzzing" says how to add one.
add_custom_target(fuzz_all)

# gw_add_fuzz(NAME SOURCE file.c... LIBS gw_x CORPUS dir [DICT file] [INSTRUMENT gw_x] [OWN_MAIN]
#             [MUTATIONS n])
# CORPUS: the seed corpus kept in the repository (tests/fuzz/corpus/<target>/); DICT: a libFuzzer
# dictionary (tests/fuzz/dict/); both are listed in <build>/tests/fuzz/targets.txt for the runner.
# INSTRUMENT: libraries whose sources are compiled into the libFuzzer binary itself, so that the
# fuzzer gets coverage feedback from them (the normal library objects are not instrumented).
# OWN_MAIN: the source has its replay main (fuzz_tinybms.c); otherwise fuzz_replay.c is the main
# of the replay driver: every corpus file, then MUTATIONS (default 64) variants of each.
function(gw_add_fuzz name)
  cmake_parse_arguments(F "OWN_MAIN" "CORPUS;DICT;MUTATIONS" "SOURCE;LIBS;INSTRUMENT" ${ARGN})
  if(NOT F_DICT)
    set(F_DICT "-")
  endif()
  set_property(GLOBAL APPEND PROPERTY GW_FUZZ_TARGETS "${name} ${F_CORPUS} ${F_DICT}")
  file(GLOB corpus_files CONFIGURE_DEPENDS ${F_CORPUS}/*)
  set(support ${PROJECT_SOURCE_DIR}/tests/fuzz/fuzz_support.c)
  set(replay_srcs ${F_SOURCE} ${support})
  set(replay_args "")
  if(NOT F_OWN_MAIN)
    list(APPEND replay_srcs ${PROJECT_SOURCE_DIR}/tests/fuzz/fuzz_replay.c)
    if(F_MUTATIONS)
      set(replay_args --mutations=${F_MUTATIONS})
    endif()
  endif()
  add_executable(${name}_replay ${replay_srcs})
  target_include_directories(${name}_replay PRIVATE ${PROJECT_SOURCE_DIR}/tests/fuzz ${PROJECT_SOURCE_DIR}/tests ${PROJECT_SOURCE_DIR}/src/port)
  target_compile_definitions(${name}_replay PRIVATE GW_FUZZ_UI_DIR="${PROJECT_SOURCE_DIR}/web")
  target_link_libraries(${name}_replay PRIVATE ${F_LIBS})
  set_target_properties(${name}_replay PROPERTIES RUNTIME_OUTPUT_DIRECTORY
                        ${PROJECT_BINARY_DIR}/tests/fuzz)
  add_test(NAME ${name}_replay COMMAND ${name}_replay ${replay_args} ${corpus_files})
  # Under an emulator (qemu for test-cross, Valgrind for make valgrind) as gw_add_test does.
  set(replay_timeout 120)
  if(CMAKE_CROSSCOMPILING_EMULATOR AND GW_EMULATOR_TIMEOUT_FACTOR)
    math(EXPR replay_timeout "${replay_timeout} * ${GW_EMULATOR_TIMEOUT_FACTOR}")
  endif()
  set_tests_properties(${name}_replay PROPERTIES TIMEOUT ${replay_timeout} LABELS unit)
  if(GW_HAVE_LIBFUZZER)
    set(inst_srcs "")
    set(inst_incs "")
    set(inst_links "")
    set(inst_defs "")
    foreach(lib ${F_INSTRUMENT})
      get_target_property(lib_defs ${lib} COMPILE_DEFINITIONS)
      if(lib_defs)
        list(APPEND inst_defs ${lib_defs})
      endif()
      get_target_property(lib_srcs ${lib} SOURCES)
      get_target_property(lib_dir ${lib} SOURCE_DIR)
      foreach(src ${lib_srcs})
        if(IS_ABSOLUTE ${src})
          list(APPEND inst_srcs ${src})
        else()
          list(APPEND inst_srcs ${lib_dir}/${src})
        endif()
      endforeach()
      get_target_property(lib_incs ${lib} INCLUDE_DIRECTORIES)
      if(lib_incs)
        list(APPEND inst_incs ${lib_incs})
      endif()
      get_target_property(lib_links ${lib} LINK_LIBRARIES)
      if(lib_links)
        list(APPEND inst_links ${lib_links})
      endif()
    endforeach()
    set(other_libs ${F_LIBS})
    if(F_INSTRUMENT)
      list(REMOVE_ITEM other_libs ${F_INSTRUMENT})
    endif()
    set(cjson_src "")
    if(GW_FUZZ_CJSON_SOURCE)
      set(cjson_src ${GW_FUZZ_CJSON_SOURCE})
      set_source_files_properties(${GW_FUZZ_CJSON_SOURCE} PROPERTIES COMPILE_OPTIONS "-Wno-error")
    endif()
    add_executable(${name} ${F_SOURCE} ${support} ${inst_srcs} ${cjson_src})
    add_dependencies(fuzz_all ${name})
    target_compile_definitions(${name} PRIVATE GW_FUZZ_LIBFUZZER GW_FUZZ_UI_DIR="${PROJECT_SOURCE_DIR}/web" ${inst_defs})
    target_compile_options(${name} PRIVATE -fsanitize=fuzzer)
    target_link_options(${name} PRIVATE -fsanitize=fuzzer)
    target_include_directories(${name} PRIVATE ${PROJECT_SOURCE_DIR}/tests/fuzz ${PROJECT_SOURCE_DIR}/tests ${PROJECT_SOURCE_DIR}/src/port ${inst_incs})
    target_link_libraries(${name} PRIVATE ${other_libs} ${inst_links})
    set_target_properties(${name} PROPERTIES RUNTIME_OUTPUT_DIRECTORY
                          ${PROJECT_BINARY_DIR}/tests/fuzz)
  endif()
endfunction()

gw_add_fuzz(fuzz_tinybms
  SOURCE ${PROJECT_SOURCE_DIR}/tests/fuzz/fuzz_tinybms.c
  LIBS gw_tinybms
  INSTRUMENT gw_tinybms
  OWN_MAIN
  CORPUS ${PROJECT_SOURCE_DIR}/tests/fuzz/corpus/tinybms)

gw_add_fuzz(fuzz_slcan
  SOURCE ${PROJECT_SOURCE_DIR}/tests/fuzz/fuzz_slcan.c
  LIBS gw_can_transport gw_clock
  INSTRUMENT gw_can_transport
  MUTATIONS 256
  CORPUS ${PROJECT_SOURCE_DIR}/tests/fuzz/corpus/slcan
  DICT ${PROJECT_SOURCE_DIR}/tests/fuzz/dict/slcan.dict)

gw_add_fuzz(fuzz_config
  SOURCE ${PROJECT_SOURCE_DIR}/tests/fuzz/fuzz_config.c
  LIBS gw_config_manager gw_clock
  INSTRUMENT gw_config_manager
  MUTATIONS 4
  CORPUS ${PROJECT_SOURCE_DIR}/tests/fuzz/corpus/config
  DICT ${PROJECT_SOURCE_DIR}/tests/fuzz/dict/config.dict)

gw_add_fuzz(fuzz_energy
  SOURCE ${PROJECT_SOURCE_DIR}/tests/fuzz/fuzz_energy.c
  LIBS gw_battery gw_clock
  INSTRUMENT gw_battery gw_battery_core gw_charge
  MUTATIONS 256
  CORPUS ${PROJECT_SOURCE_DIR}/tests/fuzz/corpus/energy
  DICT ${PROJECT_SOURCE_DIR}/tests/fuzz/dict/energy.dict)

gw_add_fuzz(fuzz_mqtt_cmd
  SOURCE ${PROJECT_SOURCE_DIR}/tests/fuzz/fuzz_mqtt_cmd.c
  LIBS gw_mqtt_gateway gw_battery gw_alert_manager gw_clock
  INSTRUMENT gw_mqtt_gateway
  MUTATIONS 128
  CORPUS ${PROJECT_SOURCE_DIR}/tests/fuzz/corpus/mqtt_cmd
  DICT ${PROJECT_SOURCE_DIR}/tests/fuzz/dict/mqtt_cmd.dict)

gw_add_fuzz(fuzz_ota_manifest
  SOURCE ${PROJECT_SOURCE_DIR}/tests/fuzz/fuzz_ota_manifest.c
  LIBS gw_ota_update gw_clock
  INSTRUMENT gw_ota_update
  MUTATIONS 96
  CORPUS ${PROJECT_SOURCE_DIR}/tests/fuzz/corpus/ota_manifest
  DICT ${PROJECT_SOURCE_DIR}/tests/fuzz/dict/ota_manifest.dict)

gw_add_fuzz(fuzz_ota_bundle
  SOURCE ${PROJECT_SOURCE_DIR}/tests/fuzz/fuzz_ota_bundle.c
  LIBS gw_ota_update gw_clock
  INSTRUMENT gw_ota_update
  MUTATIONS 48
  CORPUS ${PROJECT_SOURCE_DIR}/tests/fuzz/corpus/ota_bundle
  DICT ${PROJECT_SOURCE_DIR}/tests/fuzz/dict/ota_bundle.dict)

gw_add_fuzz(fuzz_dbus
  SOURCE ${PROJECT_SOURCE_DIR}/tests/fuzz/fuzz_dbus.c
  LIBS gw_dbus_battery gw_battery_core gw_clock
  INSTRUMENT gw_dbus_battery gw_dbus_model
  MUTATIONS 24
  CORPUS ${PROJECT_SOURCE_DIR}/tests/fuzz/corpus/dbus
  DICT ${PROJECT_SOURCE_DIR}/tests/fuzz/dict/dbus.dict)

gw_add_fuzz(fuzz_http
  SOURCE ${PROJECT_SOURCE_DIR}/tests/fuzz/fuzz_http.c ${PROJECT_SOURCE_DIR}/tests/fuzz/fuzz_web.c
  LIBS gw_web_server gw_battery gw_alert_manager gw_history_logger gw_clock
  INSTRUMENT gw_web_server gw_web_pure
  MUTATIONS 64
  CORPUS ${PROJECT_SOURCE_DIR}/tests/fuzz/corpus/http
  DICT ${PROJECT_SOURCE_DIR}/tests/fuzz/dict/http.dict)

gw_add_fuzz(fuzz_rest
  SOURCE ${PROJECT_SOURCE_DIR}/tests/fuzz/fuzz_rest.c ${PROJECT_SOURCE_DIR}/tests/fuzz/fuzz_web.c
  LIBS gw_web_server gw_battery gw_alert_manager gw_history_logger gw_clock
  INSTRUMENT gw_web_server gw_config_manager
  MUTATIONS 8
  CORPUS ${PROJECT_SOURCE_DIR}/tests/fuzz/corpus/rest
  DICT ${PROJECT_SOURCE_DIR}/tests/fuzz/dict/config.dict)

gw_add_fuzz(fuzz_multipart
  SOURCE ${PROJECT_SOURCE_DIR}/tests/fuzz/fuzz_multipart.c
  LIBS gw_web_pure gw_clock
  INSTRUMENT gw_web_pure
  MUTATIONS 256
  CORPUS ${PROJECT_SOURCE_DIR}/tests/fuzz/corpus/multipart
  DICT ${PROJECT_SOURCE_DIR}/tests/fuzz/dict/multipart.dict)

# One line per target for scripts/run-fuzz: "name corpus-dir dictionary-or-dash".
get_property(gw_fuzz_lines GLOBAL PROPERTY GW_FUZZ_TARGETS)
string(REPLACE ";" "\n" gw_fuzz_lines "${gw_fuzz_lines}")
file(GENERATE OUTPUT ${PROJECT_BINARY_DIR}/tests/fuzz/targets.txt CONTENT "${gw_fuzz_lines}\n")
