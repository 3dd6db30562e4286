# cmake -DSOURCE_DIR=... -DCMAKE_VERSION_FOUND=X.Y.Z -P check_version.cmake
# Fails unless pyproject.toml and python/shmbridge/__init__.py carry the CMake project version.
file(STRINGS ${SOURCE_DIR}/pyproject.toml py_line REGEX "^version *= *\"[^\"]+\"")
string(REGEX REPLACE "^version *= *\"([^\"]+)\".*" "\\1" py_version "${py_line}")
file(STRINGS ${SOURCE_DIR}/python/shmbridge/__init__.py init_line REGEX "^__version__ *= *\"[^\"]+\"")
string(REGEX REPLACE "^__version__ *= *\"([^\"]+)\".*" "\\1" init_version "${init_line}")
message(STATUS "CMakeLists.txt project(VERSION): ${CMAKE_VERSION_FOUND}")
message(STATUS "pyproject.toml version:          ${py_version}")
message(STATUS "shmbridge.__version__:           ${init_version}")
if(NOT py_version STREQUAL CMAKE_VERSION_FOUND OR NOT init_version STREQUAL CMAKE_VERSION_FOUND)
  message(FATAL_ERROR "one version number for both languages: CMakeLists.txt says "
                      "${CMAKE_VERSION_FOUND}, pyproject.toml says '${py_version}', "
                      "python/shmbridge/__init__.py says '${init_version}'; make them equal")
endif()
