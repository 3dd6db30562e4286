# Cross-compiling shmbridge for 64-bit Windows with mingw-w64 (Debian: g++-mingw-w64-x86-64-posix)
# and running the results under wine (Debian: wine, wine64). Used by ci/test-windows.sh:
#
#   cmake -S . -B build-windows -DCMAKE_TOOLCHAIN_FILE=cmake/toolchains/mingw-w64.cmake
#
# - The POSIX threading flavour of mingw-w64 (x86_64-w64-mingw32-g++-posix) is required: the
#   win32 flavour has no std::thread with GCC < 13.
# - Everything is linked statically (-static): the .exe files need no mingw DLL next to them,
#   which is what lets wine (and a plain Windows box) run them from the build tree.
# - ctest runs the .exe files through CMAKE_CROSSCOMPILING_EMULATOR (wine), also for
#   gtest_discover_tests. Start `wineserver -p` first, or each process pays ~3 s of wine start-up.
# - Test dependencies that are header-only or source-only on the host are used from the host:
#   GoogleTest from /usr/src/googletest (FetchContent source dir, built with this compiler),
#   nlohmann-json from /usr/include/nlohmann (via host-deps/, never adding /usr/include
#   itself to the include path). RapidCheck has no Windows package: set SHMBRIDGE_TEST_RAPIDCHECK
#   OFF (ci/test-windows.sh does).

set(CMAKE_SYSTEM_NAME Windows)
set(CMAKE_SYSTEM_PROCESSOR x86_64)

set(SHMBRIDGE_MINGW_TRIPLE x86_64-w64-mingw32)
find_program(SHMBRIDGE_MINGW_CXX NAMES ${SHMBRIDGE_MINGW_TRIPLE}-g++-posix ${SHMBRIDGE_MINGW_TRIPLE}-g++
             REQUIRED)
find_program(SHMBRIDGE_MINGW_CC NAMES ${SHMBRIDGE_MINGW_TRIPLE}-gcc-posix ${SHMBRIDGE_MINGW_TRIPLE}-gcc)
set(CMAKE_CXX_COMPILER ${SHMBRIDGE_MINGW_CXX})
if(SHMBRIDGE_MINGW_CC)
  set(CMAKE_C_COMPILER ${SHMBRIDGE_MINGW_CC})
endif()
find_program(CMAKE_RC_COMPILER NAMES ${SHMBRIDGE_MINGW_TRIPLE}-windres)

set(CMAKE_FIND_ROOT_PATH /usr/${SHMBRIDGE_MINGW_TRIPLE})
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)

set(CMAKE_EXE_LINKER_FLAGS_INIT "-static")
set(CMAKE_SHARED_LINKER_FLAGS_INIT "-static")

if(NOT CMAKE_CROSSCOMPILING_EMULATOR)
  find_program(SHMBRIDGE_WINE NAMES wine64 wine)
  if(SHMBRIDGE_WINE)
    set(CMAKE_CROSSCOMPILING_EMULATOR ${SHMBRIDGE_WINE})
  endif()
endif()

# Host-provided test dependencies (see above).
include(${CMAKE_CURRENT_LIST_DIR}/host-deps.cmake)
