# Cross-compiling with Debian's crossbuild-essential-<arch> and the multiarch -dev packages of the
# target (scripts/install-deps cross ARCH): included by toolchain-<arch>.cmake, which sets
# GW_CROSS_TRIPLET, GW_CROSS_PROCESSOR and GW_CROSS_QEMU. The target's libraries and .pc files are
# in /usr/lib/<triplet>, found by the cross compiler and <triplet>-pkg-config (as debhelper's own
# cross builds do); no sysroot to assemble.
#
# Tests run under qemu-user without binfmt: CTest prefixes every test executable with
# CMAKE_CROSSCOMPILING_EMULATOR. No `-L /usr/<triplet>`: that prefix holds the loader of
# libc6-<arch>-cross (Debian 12: 2.36-8cross1) while the loader then finds the libc.so.6 of the
# multiarch libc6:<arch> (2.36-9+deb12u14, a dependency of the -dev packages) in
# /lib/<triplet>; the mismatched pair crashes at the first pthread_create (SIGSEGV at 0x8).
# Without -L, qemu runs the ELF interpreter /lib/ld-linux-*.so.* of libc6:<arch>, whose libc.so.6
# matches it, as on a Raspberry Pi.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR ${GW_CROSS_PROCESSOR})
set(CMAKE_C_COMPILER ${GW_CROSS_TRIPLET}-gcc)
set(PKG_CONFIG_EXECUTABLE /usr/bin/${GW_CROSS_TRIPLET}-pkg-config CACHE FILEPATH "pkg-config of the target")
set(CMAKE_CROSSCOMPILING_EMULATOR ${GW_CROSS_QEMU})
# Emulated tests are slower (the PBKDF2 of the password tests most: 100000 SHA-256 rounds take
# seconds under qemu): gw_add_test multiplies each test's TIMEOUT by this factor.
set(GW_EMULATOR_TIMEOUT_FACTOR 5)
# 64-bit file offsets on 32-bit targets (the flag dpkg-buildflags adds with future=+lfs, as
# debian/rules asks): readdir() of 32-bit glibc otherwise fails with EOVERFLOW on directories
# whose entries have 64-bit offsets (ext4 hashes seen by a 64-bit kernel through qemu-user).
set(CMAKE_C_FLAGS_INIT "-D_FILE_OFFSET_BITS=64")
