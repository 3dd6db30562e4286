# shellcheck shell=bash
# Helpers sourced by the ci/ scripts: prerequisites and Python environments.
#
# PEP 668 (Debian 12, Ubuntu >= 23.04): the system interpreter is externally managed, so nothing
# here ever pip-installs into it. Every Python tool runs from a venv that these helpers create
# once and reuse: <build>/venv (the project: shmbridge + numpy + the test and conformance extras)
# and <build>/tools (tox, build, yamllint, actionlint, zig). `python3` is used only to create them
# and for standard-library scripts.

# One line per missing prerequisite, with how to get it on each OS.
ci_missing() {  # WHO WHAT DEBIAN MACOS WINDOWS
  echo "$1: missing $2. Install it: Debian/Ubuntu: $3 | macOS: $4 | Windows: $5" >&2
}

# Python >= 3.9 with venv (ensurepip: Debian/Ubuntu ship it in python3-venv).
ci_check_python() {  # WHO
  local who=$1 version
  if ! command -v python3 >/dev/null; then
    ci_missing "$who" "Python >= 3.9 (no python3 on PATH)" "sudo apt install python3 python3-venv" \
      "brew install python" "winget install Python.Python.3.12"
    return 1
  fi
  version=$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')
  if ! python3 -c 'import sys; sys.exit(sys.version_info < (3, 9))'; then
    ci_missing "$who" "Python >= 3.9 (python3 is $version)" "sudo apt install python3" \
      "brew install python" "winget install Python.Python.3.12"
    return 1
  fi
  if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
    ci_missing "$who" "Python's venv module with ensurepip (python3 -m venv fails)" \
      "sudo apt install python3-venv" "included in Homebrew's python" "included in python.org's installer"
    return 1
  fi
}

# CMake >= 3.16 and a C++17 compiler (the one CMake would pick: $CXX, else c++/g++/clang++).
ci_check_cxx() {  # WHO
  local who=$1 version cxx probe
  if ! command -v cmake >/dev/null; then
    ci_missing "$who" "CMake >= 3.16 (no cmake on PATH)" "sudo apt install cmake" "brew install cmake" \
      "winget install Kitware.CMake"
    return 1
  fi
  version=$(cmake --version | sed -n 's/^cmake version \([0-9][0-9.]*\).*/\1/p')
  if [[ $(printf '%s\n' 3.16 "$version" | sort -V | head -1) != 3.16 ]]; then
    ci_missing "$who" "CMake >= 3.16 (cmake is $version)" "sudo apt install cmake" "brew install cmake" \
      "winget install Kitware.CMake"
    return 1
  fi
  case $(uname -s) in MINGW* | MSYS* | CYGWIN*) return 0 ;; esac  # Windows: CMake finds MSVC
  cxx=${CXX:-$(command -v c++ || command -v g++ || command -v clang++ || true)}
  if [[ -z $cxx ]]; then
    ci_missing "$who" "a C++17 compiler (no c++, g++ or clang++ on PATH)" "sudo apt install g++" \
      "xcode-select --install" "Visual Studio Build Tools, workload 'Desktop development with C++'"
    return 1
  fi
  probe=$(mktemp -d)
  printf '#include <optional>\nint main() { std::optional<int> x{0}; return *x; }\n' >"$probe/p.cpp"
  if ! "$cxx" -std=c++17 "$probe/p.cpp" -o "$probe/p" >/dev/null 2>&1; then
    rm -rf "$probe"
    ci_missing "$who" "a C++17 compiler ($cxx cannot compile C++17)" "sudo apt install g++" \
      "xcode-select --install" "Visual Studio Build Tools, workload 'Desktop development with C++'"
    return 1
  fi
  rm -rf "$probe"
}

# ci_venv DIR [PIP-ARGS...]: makes DIR a venv of the current python3 (re-created when python3
# changed) and pip-installs PIP-ARGS unless exactly these were installed into it before. Sets
# VENV_PY to its interpreter.
ci_venv() {
  local dir=$1 want have stamp
  shift
  VENV_PY=$dir/bin/python
  [[ -x $VENV_PY ]] || [[ ! -x $dir/Scripts/python.exe ]] || VENV_PY=$dir/Scripts/python.exe
  want=$(python3 -c 'import sys; print(sys.version)')
  have=$("$VENV_PY" -c 'import sys; print(sys.version)' 2>/dev/null || true)
  if [[ $have != "$want" ]]; then
    rm -rf "$dir"
    python3 -m venv "$dir" || { echo "could not create the venv $dir (python3 -m venv)" >&2; return 1; }
    VENV_PY=$dir/bin/python
    [[ -x $VENV_PY ]] || VENV_PY=$dir/Scripts/python.exe
  fi
  (($#)) || return 0
  stamp="$dir/.ci-installed-$(printf '%s\n' "$@" | cksum | cut -d' ' -f1)"
  [[ -f $stamp ]] && return 0
  "$VENV_PY" -m pip install -q --disable-pip-version-check "$@" && touch "$stamp"
}

# The tools venv (<build>/tools): ci_tools PIP-ARGS... installs what is missing; sets TOOLS_BIN.
ci_tools() {
  ci_venv "${CI_TOOLS_VENV:-$(pwd)/${SHMBRIDGE_BUILD_DIR:-build}/tools}" "$@" || return 1
  TOOLS_BIN=$(dirname "$VENV_PY")
}

# Building the native helper needs Python's C headers. Debian/Ubuntu split them into
# libpythonX.Y-dev; where they are missing, `apt-get download` (no root needed) fetches that one
# package into DIR and the build is pointed at it (scikit-build-core reads SKBUILD_CMAKE_DEFINE,
# CMake reads CXXFLAGS), so the demo works for a user who cannot install packages.
ci_python_headers() {  # WHO DIR
  local who=$1 dir=$2 inc ver deb
  inc=$(python3 -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
  [[ -f $inc/Python.h ]] && return 0
  ver=$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')
  if [[ ! -f $dir/usr/include/python$ver/Python.h ]]; then
    if ! command -v apt-get >/dev/null || ! command -v dpkg-deb >/dev/null; then
      ci_missing "$who" "Python's C headers ($inc/Python.h)" "sudo apt install python3-dev" \
        "included in Homebrew's python" "included in python.org's installer"
      return 1
    fi
    echo "$who: no $inc/Python.h (python3-dev is not installed): fetching libpython$ver-dev into $dir"
    rm -rf "$dir" && mkdir -p "$dir"
    (cd "$dir" && apt-get download -q "libpython$ver-dev" >/dev/null) &&
      deb=$(ls "$dir"/libpython"$ver"-dev_*.deb) && dpkg-deb -x "$deb" "$dir" ||
      { ci_missing "$who" "Python's C headers ($inc/Python.h; apt-get download libpython$ver-dev failed)" \
          "sudo apt install python3-dev" "included in Homebrew's python" \
          "included in python.org's installer"; return 1; }
  fi
  dir=$(cd "$dir" && pwd)
  export SKBUILD_CMAKE_DEFINE="Python_INCLUDE_DIR=$dir/usr/include/python$ver"
  export CXXFLAGS="${CXXFLAGS:+$CXXFLAGS }-isystem $dir/usr/include"  # the multiarch pyconfig.h
}

# The fresh-machine guard of ci/test.sh. A fresh Debian/Ubuntu system python3 has none of the
# project's Python dependencies and refuses installs by pip (PEP 668); this machine's python3 may
# have them. So that a step that runs project code with the system python3 fails here as it would
# there, DIR/bin (put first on PATH) holds python3/python/pip shims that run the system
# interpreter with these modules hidden (importing one raises ModuleNotFoundError naming the
# step's mistake) and with PIP_REQUIRE_VIRTUALENV=1. Venv interpreters, called by path, are not
# affected.
ci_guard_system_python() {  # DIR
  local dir=$1 real mod ver
  real=$(python3 -c 'import sys; print(sys.executable)')
  ver=$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')
  rm -rf "$dir" && mkdir -p "$dir/bin"
  dir=$(cd "$dir" && pwd)
  for mod in numpy rich pytest hypothesis tox build yamllint nanobind scikit_build_core shmbridge \
             matplotlib zmq; do
    mkdir -p "$dir/site/$mod"
    cat >"$dir/site/$mod/__init__.py" <<PY
import sys
raise ModuleNotFoundError(
    "ci/test.sh guard: '$mod' imported by the system interpreter " + sys.executable + ". A fresh "
    "machine's system python3 has no '$mod' and refuses installs by pip (PEP 668): run this step "
    "with a venv's python (build/venv or build/tools, see ci/lib.sh).", name="$mod")
PY
  done
  for exe in python3 python "python$ver"; do
    printf '#!/bin/sh\n# ci/test.sh guard (ci/lib.sh ci_guard_system_python)\nPYTHONPATH="%s/site${PYTHONPATH:+:$PYTHONPATH}" PIP_REQUIRE_VIRTUALENV=1 exec "%s" "$@"\n' \
      "$dir" "$real" >"$dir/bin/$exe"
  done
  for exe in pip pip3 "pip$ver"; do
    printf '#!/bin/sh\nexec "%s/bin/python3" -m pip "$@"\n' "$dir" >"$dir/bin/$exe"
  done
  chmod +x "$dir"/bin/*
  export PATH="$dir/bin:$PATH"
}

# The project venv <build>/venv: shmbridge with its test, conformance and relay extras (numpy, rich, pyzmq,
# pytest, hypothesis). Reused as it is unless --reinstall; exports SHMBRIDGE_PYTHON (ctest's
# conformance interpreter, the fuzz differential, the sanitizers' conformance run, bench).
ci_project_venv() {  # WHO [--reinstall]
  local who=$1 mode=${2:-} dir=${SHMBRIDGE_BUILD_DIR:-build}
  if [[ $mode != --reinstall && -n ${SHMBRIDGE_PYTHON:-} ]] &&
     "$SHMBRIDGE_PYTHON" -c 'import shmbridge._native, numpy' 2>/dev/null; then
    return 0
  fi
  ci_venv "$(pwd)/$dir/venv" || return 1
  # zmq: the relay extra, for ctest's conformance_relay (the kit through a relay pair, issue 15)
  if [[ $mode == --reinstall ]] || ! "$VENV_PY" -c 'import shmbridge._native, zmq' 2>/dev/null; then
    ci_python_headers "$who" "$dir/python-headers" || return 1
    "$VENV_PY" -m pip install -q --disable-pip-version-check ".[conformance,relay,test]" || return 1
  fi
  export SHMBRIDGE_PYTHON=$VENV_PY
}

# The demos' common part (ci/demo.sh, ci/demo-camera.sh): configures BUILD_DIR for the library
# and the examples only (no tests, bench, fuzz), builds TARGETs, and installs the Python package
# into the venv BUILD_DIR/venv (from PyPI: numpy, rich, and nanobind + scikit-build-core to
# build it), reinstalled when the package sources changed since the last install. Sets
# DEMO_PYTHON ($SHMBRIDGE_PYTHON if set: then nothing is installed) and DEMO_EXAMPLES (the
# directory of the built examples).
ci_demo_build() {  # WHO BUILD_DIR TARGET...
  local who=$1 build_dir=$2 generator=() stamp exe
  shift 2
  echo "== $who: C++ library and examples ($build_dir)"
  mkdir -p "$build_dir"
  command -v ninja >/dev/null && generator=(-G Ninja)
  cmake -S . -B "$build_dir" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release -DSHMBRIDGE_BUILD_TESTS=OFF \
    -DSHMBRIDGE_BUILD_EXAMPLES=ON -DSHMBRIDGE_BUILD_BENCH=OFF -DSHMBRIDGE_INSTALL=OFF \
    -DSHMBRIDGE_WERROR=OFF >"$build_dir/configure.log" 2>&1 || { cat "$build_dir/configure.log" >&2; return 1; }
  cmake --build "$build_dir" --config Release -j "${SHMBRIDGE_JOBS:-2}" --target "$@" || return 1
  exe=$(find "$build_dir/cpp/examples" -maxdepth 2 -type f \( -name "$1" -o -name "$1.exe" \) | head -1)
  [[ -n $exe ]] || { echo "$who: $1 was not built" >&2; return 1; }
  DEMO_EXAMPLES=$(dirname "$exe")

  DEMO_PYTHON=${SHMBRIDGE_PYTHON:-}
  [[ -z $DEMO_PYTHON ]] || return 0
  echo "== $who: Python package (venv $build_dir/venv)"
  ci_venv "$build_dir/venv" || return 1
  DEMO_PYTHON=$VENV_PY
  stamp=$build_dir/venv/.demo-installed
  if [[ ! -f $stamp ]] || ! "$DEMO_PYTHON" -c 'import shmbridge._native' 2>/dev/null ||
     [[ -n $(find python pyproject.toml -newer "$stamp" -print -quit) ]]; then
    ci_python_headers "$who" "$build_dir/python-headers" || return 1
    "$DEMO_PYTHON" -m pip install -q --disable-pip-version-check . && touch "$stamp"
  fi
}

# The path of the built example NAME (NAME.exe on Windows), after ci_demo_build.
ci_demo_exe() {  # NAME
  if [[ -f $DEMO_EXAMPLES/$1 ]]; then echo "$DEMO_EXAMPLES/$1"; else echo "$DEMO_EXAMPLES/$1.exe"; fi
}
