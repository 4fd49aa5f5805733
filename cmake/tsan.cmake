# Initial cache of `make tsan` (cmake -C cmake/tsan.cmake, build/tsan): everything built with
# ThreadSanitizer (gcc -fsanitize=thread), the tests and the daemon run as they are
# (tests/security/run-tsan: TSAN_OPTIONS with cmake/tsan.supp, a summary of the reports).
set(CMAKE_BUILD_TYPE Debug CACHE STRING "")
set(GW_SANITIZE OFF CACHE BOOL "")
set(CMAKE_C_FLAGS "-fsanitize=thread -fno-omit-frame-pointer -O1" CACHE STRING "")
set(CMAKE_EXE_LINKER_FLAGS "-fsanitize=thread" CACHE STRING "")
set(CMAKE_SHARED_LINKER_FLAGS "-fsanitize=thread" CACHE STRING "")
# Under TSan a test runs several times slower (and the shared machine may be loaded).
set(CMAKE_CROSSCOMPILING_EMULATOR "" CACHE STRING "")
