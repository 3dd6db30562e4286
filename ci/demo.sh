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

ci_demo_build demo "$build_dir" shared_memory_example || exit 1
example=$(ci_demo_exe shared_memory_example)
python=$DEMO_PYTHON
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
