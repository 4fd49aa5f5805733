# Initial cache of `make valgrind` (cmake -C cmake/valgrind.cmake, build/valgrind): a plain Debug
# build (no sanitizer: Valgrind and ASan do not mix) whose test executables CTest runs under
# Valgrind memcheck. gw_add_test (and every add_test naming a target) prefixes the command with
# CMAKE_CROSSCOMPILING_EMULATOR, as for the qemu runs of `make test-cross`; the timeouts are
# multiplied by GW_EMULATOR_TIMEOUT_FACTOR. Any invalid access or definite/indirect leak makes
# the test exit 99 (tests/security/run-valgrind prints the summary).
set(CMAKE_BUILD_TYPE Debug CACHE STRING "")
set(GW_SANITIZE OFF CACHE BOOL "")
set(GW_VALGRIND_OPTIONS
    --tool=memcheck --error-exitcode=99 --leak-check=full --show-leak-kinds=definite,indirect
    --errors-for-leak-kinds=definite,indirect --track-fds=no --num-callers=30 --fair-sched=yes
    --child-silent-after-fork=yes --trace-children=no
    --suppressions=${CMAKE_CURRENT_LIST_DIR}/valgrind.supp
    CACHE STRING "memcheck options of make valgrind")
set(CMAKE_CROSSCOMPILING_EMULATOR /usr/bin/valgrind ${GW_VALGRIND_OPTIONS} CACHE STRING "")
set(GW_EMULATOR_TIMEOUT_FACTOR 10 CACHE STRING "")
