#!/usr/bin/env bash
# Windows, tested on this Linux machine: cross-compiles the library, its GoogleTest suites (all but
# the RapidCheck stateful one, which has no Windows package, and the fork()-based POSIX suites,
# which test_win32 replaces), the examples and the conformance peer with mingw-w64
# (cmake/toolchains/mingw-w64.cmake, static linking), then runs them under wine from ctest
# (CMAKE_CROSSCOMPILING_EMULATOR): two wine processes share the mapping Local\N and the named
# events Local\N.req / Local\N.rsp.
#
# Installs, when missing (as root on Debian/Ubuntu, non-interactive): g++-mingw-w64-x86-64-posix,
# wine, wine64. Build dir: build-windows/ ($SHMBRIDGE_WINDOWS_BUILD_DIR); a throwaway wine prefix
# lives in it. SHMBRIDGE_WINDOWS=0 skips this script (say so in the log; CI never sets it).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
start=$SECONDS

if [[ "${SHMBRIDGE_WINDOWS:-1}" == "0" ]]; then
  echo "== windows (mingw-w64 + wine): SKIPPED (SHMBRIDGE_WINDOWS=0)"
  exit 0
fi
echo "== windows (mingw-w64 cross build, tests under wine)"

packages=(g++-mingw-w64-x86-64-posix wine wine64)
bash ci/apt-install.sh ci/test-windows.sh "${packages[@]}" ||
  { echo "ci/test-windows.sh: or set SHMBRIDGE_WINDOWS=0 to skip" >&2; exit 1; }
echo "   install check: $((SECONDS - start)) s"

build_dir=${SHMBRIDGE_WINDOWS_BUILD_DIR:-build-windows}
mkdir -p "$build_dir/reports"
export WINEPREFIX="$repo/$build_dir/wineprefix"
export WINEDEBUG=-all
export WINEDLLOVERRIDES="mscoree,mshtml="  # no Mono / Gecko prompts in a fresh prefix
mkdir -p "$WINEPREFIX"
wine_bin=$(command -v wine64 || command -v wine)

# One persistent wineserver for the build (gtest_discover_tests runs the .exe files) and ctest;
# without it every wine process pays ~3 s of start-up. Always stopped on exit.
cleanup() { wineserver -k >/dev/null 2>&1 || true; }
trap cleanup EXIT
wineserver -p
"$wine_bin" wineboot --init >/dev/null 2>&1 || true
echo "   wine prefix ready: $((SECONDS - start)) s"

generator=()
command -v ninja >/dev/null && generator=(-G Ninja)
cmake -S . -B "$build_dir" "${generator[@]}" \
  -DCMAKE_TOOLCHAIN_FILE="$repo/cmake/toolchains/mingw-w64.cmake" \
  -DCMAKE_CROSSCOMPILING_EMULATOR="$wine_bin" \
  -DCMAKE_BUILD_TYPE=Release -DSHMBRIDGE_WERROR=ON -DSHMBRIDGE_TEST_RAPIDCHECK=OFF \
  -DSHMBRIDGE_BUILD_BENCH=OFF >"$build_dir/configure.log" ||
  { cat "$build_dir/configure.log"; exit 1; }
cmake --build "$build_dir" -j "${SHMBRIDGE_JOBS:-2}"
echo "   cross build done: $((SECONDS - start)) s"

# Only the C++ tests (label cpp): the host-side spec checks already ran in the Linux build.
ctest --test-dir "$build_dir" -L cpp -j 2 --timeout 120 --output-on-failure \
  --output-junit "$repo/$build_dir/reports/ctest-windows.xml"

echo "== windows: done in $((SECONDS - start)) s"
