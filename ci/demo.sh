#!/usr/bin/env bash
# The original demo, end to end: the C++ requester creates SimpleShm and sends (512, 512) float32
# arrays; the Python responder adds 1.0 in place; C++ verifies every element of every reply.
# Usage: ci/demo.sh [ROUNDS]   (default 1000)
#
# Needs only a C++17 compiler, CMake >= 3.16 and Python >= 3.9 with venv; installs nothing into
# the system and needs no root. Builds the library and the example only (no tests, bench, fuzz)
# into build-demo/ ($SHMBRIDGE_DEMO_BUILD_DIR) and the Python package into the venv
# build-demo/venv (from PyPI: numpy, rich, and nanobind + scikit-build-core to build it).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=ci/lib.sh
source ci/lib.sh
rounds=${1:-1000}
build_dir=${SHMBRIDGE_DEMO_BUILD_DIR:-build-demo}
name=${SHMBRIDGE_DEMO_NAME:-SimpleShm}
t0=$SECONDS

ci_check_cxx demo && ci_check_python demo || exit 1

echo "== demo: C++ library and example ($build_dir)"
mkdir -p "$build_dir"
generator=()
command -v ninja >/dev/null && generator=(-G Ninja)
cmake -S . -B "$build_dir" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release -DSHMBRIDGE_BUILD_TESTS=OFF \
  -DSHMBRIDGE_BUILD_EXAMPLES=ON -DSHMBRIDGE_BUILD_BENCH=OFF -DSHMBRIDGE_INSTALL=OFF \
  -DSHMBRIDGE_WERROR=OFF >"$build_dir/configure.log" 2>&1 || { cat "$build_dir/configure.log" >&2; exit 1; }
cmake --build "$build_dir" --config Release -j "${SHMBRIDGE_JOBS:-2}" --target shared_memory_example
example=$(find "$build_dir/cpp/examples" -maxdepth 2 -type f \
  \( -name shared_memory_example -o -name shared_memory_example.exe \) | head -1)
[[ -n $example ]] || { echo "demo: shared_memory_example was not built" >&2; exit 1; }

python=${SHMBRIDGE_PYTHON:-}
if [[ -z $python ]]; then
  echo "== demo: Python package (venv $build_dir/venv)"
  ci_venv "$build_dir/venv"
  python=$VENV_PY
  # Reinstalled when the package sources changed since the last install.
  stamp=$build_dir/venv/.demo-installed
  if [[ ! -f $stamp ]] || ! "$python" -c 'import shmbridge._native' 2>/dev/null ||
     [[ -n $(find python pyproject.toml -newer "$stamp" -print -quit) ]]; then
    ci_python_headers demo "$build_dir/python-headers"
    "$python" -m pip install -q --disable-pip-version-check . && touch "$stamp"
  fi
fi
echo "== demo: $rounds rounds through $name (built in $((SECONDS - t0)) s)"

# C++ creates the segment and publishes the first request; main.py retries attaching until it exists.
"$example" --name "$name" --rounds "$rounds" --quiet &
requester=$!
trap 'kill $requester ${responder:-} 2>/dev/null || true' EXIT
"$python" python/examples/main.py --name "$name" --quiet &
responder=$!

status=0
wait $requester || status=$?
wait $responder || status=$((status ? status : $?))
trap - EXIT
echo "demo: $([[ $status -eq 0 ]] && echo PASSED || echo "FAILED (exit $status)") in $((SECONDS - t0)) s"
exit $status
