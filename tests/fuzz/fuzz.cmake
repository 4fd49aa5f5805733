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

# gw_add_fuzz(NAME SOURCE file.c LIBS gw_x CORPUS dir [INSTRUMENT gw_x])
# INSTRUMENT: libraries whose sources are compiled into the libFuzzer binary itself, so that the
# fuzzer gets coverage feedback from them (the normal library objects are not instrumented).
function(gw_add_fuzz name)
  cmake_parse_arguments(F "" "SOURCE;CORPUS" "LIBS;INSTRUMENT" ${ARGN})
  file(GLOB corpus_files CONFIGURE_DEPENDS ${F_CORPUS}/*)
  add_executable(${name}_replay ${F_SOURCE})
  target_link_libraries(${name}_replay PRIVATE ${F_LIBS})
  set_target_properties(${name}_replay PROPERTIES RUNTIME_OUTPUT_DIRECTORY
                        ${PROJECT_BINARY_DIR}/tests/fuzz)
  add_test(NAME ${name}_replay COMMAND ${name}_replay ${corpus_files})
  set_tests_properties(${name}_replay PROPERTIES TIMEOUT 120 LABELS unit)
  if(GW_HAVE_LIBFUZZER)
    set(inst_srcs "")
    set(inst_incs "")
    set(inst_links "")
    foreach(lib ${F_INSTRUMENT})
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
    add_executable(${name} ${F_SOURCE} ${inst_srcs})
    target_compile_definitions(${name} PRIVATE GW_FUZZ_LIBFUZZER)
    target_compile_options(${name} PRIVATE -fsanitize=fuzzer)
    target_link_options(${name} PRIVATE -fsanitize=fuzzer)
    target_include_directories(${name} PRIVATE ${inst_incs})
    target_link_libraries(${name} PRIVATE ${other_libs} ${inst_links})
    set_target_properties(${name} PROPERTIES RUNTIME_OUTPUT_DIRECTORY
                          ${PROJECT_BINARY_DIR}/tests/fuzz)
  endif()
endfunction()

gw_add_fuzz(fuzz_tinybms
  SOURCE ${PROJECT_SOURCE_DIR}/tests/fuzz/fuzz_tinybms.c
  LIBS gw_tinybms
  INSTRUMENT gw_tinybms
  CORPUS ${PROJECT_SOURCE_DIR}/tests/fuzz/corpus/tinybms)
