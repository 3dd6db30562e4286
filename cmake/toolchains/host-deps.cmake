# Test dependencies a cross build takes from the host (mingw-w64.cmake, zig-macos.cmake), so that
# it needs no download: GoogleTest from /usr/src/googletest (FetchContent source dir, built with
# the cross compiler), nlohmann-json from /usr/include/nlohmann (via host-deps/, never adding
# /usr/include itself to the include path). Only defaults: a -D on the command line wins.
if(EXISTS /usr/src/googletest/CMakeLists.txt AND NOT DEFINED FETCHCONTENT_SOURCE_DIR_GOOGLETEST)
  set(FETCHCONTENT_SOURCE_DIR_GOOGLETEST /usr/src/googletest CACHE PATH "GoogleTest sources")
endif()
if(EXISTS /usr/include/nlohmann/json.hpp AND NOT DEFINED nlohmann_json_DIR)
  set(nlohmann_json_DIR ${CMAKE_CURRENT_LIST_DIR}/host-deps CACHE PATH "nlohmann-json")
endif()
