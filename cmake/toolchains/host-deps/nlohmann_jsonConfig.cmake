# nlohmann-json for a cross build (mingw-w64.cmake, zig-macos.cmake), from the host's header-only package (/usr/include/nlohmann).
# /usr/include itself must never reach a cross compiler's include path (it holds the host's libc
# headers), so the target's include directory is a directory in the build tree that holds only a
# link to /usr/include/nlohmann.
if(NOT TARGET nlohmann_json::nlohmann_json)
  set(_sb_shim ${CMAKE_BINARY_DIR}/_host_deps/nlohmann_json/include)
  if(NOT EXISTS ${_sb_shim}/nlohmann/json.hpp)
    file(MAKE_DIRECTORY ${_sb_shim})
    file(CREATE_LINK /usr/include/nlohmann ${_sb_shim}/nlohmann SYMBOLIC)
  endif()
  add_library(nlohmann_json::nlohmann_json INTERFACE IMPORTED)
  set_target_properties(nlohmann_json::nlohmann_json PROPERTIES
                        INTERFACE_INCLUDE_DIRECTORIES ${_sb_shim})
  unset(_sb_shim)
endif()
set(nlohmann_json_FOUND TRUE)
