# Debian armhf (ARMv7 hard-float: Raspberry Pi OS 32-bit, Venus OS): cmake/debian-cross.cmake.
#   cmake -S . -B build/cross-armhf -DCMAKE_TOOLCHAIN_FILE=cmake/toolchain-armhf.cmake
set(GW_CROSS_TRIPLET arm-linux-gnueabihf)
set(GW_CROSS_PROCESSOR arm)
set(GW_CROSS_QEMU qemu-arm)
include(${CMAKE_CURRENT_LIST_DIR}/debian-cross.cmake)
