# The version of the host's nlohmann-json header (NLOHMANN_JSON_VERSION_*, in detail/abi_macros.hpp
# since 3.11, in json.hpp before).
set(_sb_f /usr/include/nlohmann/detail/abi_macros.hpp)
if(NOT EXISTS ${_sb_f})
  set(_sb_f /usr/include/nlohmann/json.hpp)
endif()
file(STRINGS ${_sb_f} _sb_v REGEX "#define NLOHMANN_JSON_VERSION_(MAJOR|MINOR|PATCH) ")
unset(_sb_f)
string(REGEX REPLACE ".*MAJOR ([0-9]+).*MINOR ([0-9]+).*PATCH ([0-9]+).*" "\\1.\\2.\\3" PACKAGE_VERSION "${_sb_v}")
unset(_sb_v)
if(PACKAGE_FIND_VERSION VERSION_GREATER PACKAGE_VERSION OR
   (PACKAGE_FIND_VERSION_MAJOR AND NOT PACKAGE_FIND_VERSION_MAJOR EQUAL 3))
  set(PACKAGE_VERSION_COMPATIBLE FALSE)
else()
  set(PACKAGE_VERSION_COMPATIBLE TRUE)
  if(PACKAGE_FIND_VERSION VERSION_EQUAL PACKAGE_VERSION)
    set(PACKAGE_VERSION_EXACT TRUE)
  endif()
endif()
