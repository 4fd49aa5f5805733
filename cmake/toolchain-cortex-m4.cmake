# Bare-metal Cortex-M4F (Debian's gcc-arm-none-eabi + libnewlib-arm-none-eabi:
# scripts/install-deps mcu), used by `make size` (packaging/mcu/) to measure the portable core as a
# firmware would carry it. No OS: newlib-nano with the nosys stubs, no sysroot.
#   cmake -S packaging/mcu -B build/size -DCMAKE_TOOLCHAIN_FILE=cmake/toolchain-cortex-m4.cmake
set(CMAKE_SYSTEM_NAME Generic)
set(CMAKE_SYSTEM_PROCESSOR arm)
set(CMAKE_C_COMPILER arm-none-eabi-gcc)
# The compiler cannot link a program without a linker script and startup code: CMake's test
# program is built as a static library instead.
set(CMAKE_TRY_COMPILE_TARGET_TYPE STATIC_LIBRARY)
set(GW_MCU_FLAGS "-mcpu=cortex-m4 -mthumb -mfloat-abi=hard -mfpu=fpv4-sp-d16")
set(CMAKE_C_FLAGS_INIT "${GW_MCU_FLAGS} -Os -ffunction-sections -fdata-sections")
set(CMAKE_EXE_LINKER_FLAGS_INIT
    "${GW_MCU_FLAGS} -Wl,--gc-sections --specs=nano.specs --specs=nosys.specs")
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
