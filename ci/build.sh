#!/usr/bin/env bash
# Configure and build the C++ library, tests, examples and peer into build/ (or $SHMBRIDGE_BUILD_DIR).
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir=${SHMBRIDGE_BUILD_DIR:-build}
generator=()
command -v ninja >/dev/null && generator=(-G Ninja)
cmake -S . -B "$build_dir" "${generator[@]}" -DCMAKE_BUILD_TYPE=${CMAKE_BUILD_TYPE:-RelWithDebInfo} \
  -DSHMBRIDGE_WERROR=ON "$@"
cmake --build "$build_dir" -j "${SHMBRIDGE_JOBS:-2}"
