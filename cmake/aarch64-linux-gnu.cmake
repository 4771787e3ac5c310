# Cross-compile for 64-bit Arm Linux with Debian's GNU toolchain, and run the
# resulting binaries (ctest, try_run) under qemu user-mode emulation.
#
#   apt-get install -y g++-aarch64-linux-gnu qemu-user-static
#   cmake -S . -B build-aarch64 -DCMAKE_TOOLCHAIN_FILE=cmake/aarch64-linux-gnu.cmake
#   cmake --build build-aarch64 && ctest --test-dir build-aarch64 --output-on-failure

set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)

set(REBATCH_CROSS_TRIPLE aarch64-linux-gnu)
set(CMAKE_C_COMPILER ${REBATCH_CROSS_TRIPLE}-gcc)
set(CMAKE_CXX_COMPILER ${REBATCH_CROSS_TRIPLE}-g++)

# Debian installs the target's libc, libstdc++ and headers here.
set(REBATCH_CROSS_SYSROOT /usr/${REBATCH_CROSS_TRIPLE})

# ctest runs each test as "<emulator> <args> <test binary>". -L points qemu's
# dynamic loader at the target libraries.
find_program(REBATCH_QEMU_AARCH64 NAMES qemu-aarch64-static qemu-aarch64)
if(REBATCH_QEMU_AARCH64)
  set(CMAKE_CROSSCOMPILING_EMULATOR ${REBATCH_QEMU_AARCH64} -L ${REBATCH_CROSS_SYSROOT})
else()
  set(CMAKE_CROSSCOMPILING_EMULATOR qemu-aarch64-static -L ${REBATCH_CROSS_SYSROOT})
endif()

# Look for libraries and headers in the target tree only; programs (build
# tools) on the host only.
set(CMAKE_FIND_ROOT_PATH ${REBATCH_CROSS_SYSROOT})
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)
