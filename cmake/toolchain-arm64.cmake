# Debian arm64 (Raspberry Pi OS 64-bit): cmake/debian-cross.cmake.
#   cmake -S . -B build/cross-arm64 -DCMAKE_TOOLCHAIN_FILE=cmake/toolchain-arm64.cmake
set(GW_CROSS_TRIPLET aarch64-linux-gnu)
set(GW_CROSS_PROCESSOR aarch64)
set(GW_CROSS_QEMU qemu-aarch64)
include(${CMAKE_CURRENT_LIST_DIR}/debian-cross.cmake)
