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
# shellcheck source=ci/lib.sh
source ci/lib.sh
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

# The Python helper's Windows branch (python/shmbridge/_native.cpp: named events opened once per
# handle, Interlocked atomics), compiled with mingw-w64 -Wall -Wextra -Werror against CPython's
# own Windows headers (Include/ and PC/pyconfig.h from Debian's source package of the system
# python3's version, fetched with apt-get source into $build_dir/cpython) and nanobind (tools
# venv). Compile only: no Windows CPython to link against or run here.
echo "== windows: python/shmbridge/_native.cpp, Windows branch (mingw-w64 compile check)"
ci_tools "nanobind>=2" || { echo "windows: could not install nanobind into the tools venv" >&2; exit 1; }
ver=$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')
cpython=$build_dir/cpython
if [[ ! -f $cpython/PC/pyconfig.h ]]; then
  apt=$repo/$build_dir/apt
  rm -rf "$apt" "$cpython" && mkdir -p "$apt/lists/partial" "$apt/parts" "$apt/src" "$cpython"
  # The system's own apt sources, as deb-src, in a private apt state (the system's is untouched).
  for f in /etc/apt/sources.list.d/*.sources; do
    [[ -f $f ]] && sed 's/^Types: deb$/Types: deb-src/' "$f" >"$apt/parts/$(basename "$f")"
  done
  sed -n 's/^deb /deb-src /p' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null \
    >"$apt/parts/system.list" || true
  aopts=(-o "Dir::Etc::SourceList=/dev/null" -o "Dir::Etc::SourceParts=$apt/parts"
         -o "Dir::State::Lists=$apt/lists" -o "Dir::Cache=$apt/cache")
  # Only the upstream tarball is used (a security mirror may lack the newest .dsc: not fatal).
  apt-get "${aopts[@]}" update -qq >"$apt/log" 2>&1 &&
    (cd "$apt/src" && apt-get "${aopts[@]}" source --download-only "python$ver" >>"$apt/log" 2>&1) || true
  orig=$(ls "$apt"/src/python"$ver"_*.orig.tar.* 2>/dev/null | head -1)
  [[ -z $orig ]] || tar -xf "$orig" -C "$cpython" --strip-components=1 --wildcards '*/Include' '*/PC/pyconfig.h'
  rm -rf "$apt/src"
fi
if [[ -f $cpython/PC/pyconfig.h ]]; then
  nb=$("$TOOLS_BIN/python" -m nanobind --include_dir)
  x86_64-w64-mingw32-g++-posix -std=c++17 -Wall -Wextra -Werror -c -o "$build_dir/_native.obj" \
    -I "$nb" -I "$nb/../ext/robin_map/include" -I "$cpython/Include" -I "$cpython/PC" -I cpp/include \
    python/shmbridge/_native.cpp || { echo "windows: _native.cpp does not compile for Windows" >&2; exit 1; }
  imports=$(x86_64-w64-mingw32-nm "$build_dir/_native.obj" | grep -oE '__imp_(CreateEventW|WaitForSingleObject|SetEvent)' | sort -u | tr '\n' ' ')
  echo "   _native.cpp compiles for Windows (CPython $ver headers; imports ${imports% })"
else
  echo "   _native.cpp for Windows: NOT RUN (no CPython $ver source package from apt; see $build_dir/apt/log)"
fi

echo "== windows: done in $((SECONDS - start)) s"
