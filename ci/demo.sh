#!/usr/bin/env bash
# The original demo, end to end: the C++ requester creates SimpleShm and sends (512, 512) float32
# arrays; the Python responder adds 1.0 in place; C++ verifies every element of every reply.
# Usage: ci/demo.sh [ROUNDS]   (default 1000)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-1000}
build_dir=${SHMBRIDGE_BUILD_DIR:-build}
name=${SHMBRIDGE_DEMO_NAME:-SimpleShm}

[[ -x "$build_dir/cpp/examples/shared_memory_example" ]] || bash ci/build.sh

python=${SHMBRIDGE_PYTHON:-python3}
if ! "$python" -c 'import shmbridge._native' 2>/dev/null; then
  venv="$build_dir/demo-venv"
  [[ -x "$venv/bin/python" ]] || python3 -m venv "$venv"
  "$venv/bin/python" -m pip install -q .
  python="$venv/bin/python"
fi

# C++ creates the segment and publishes the first request; main.py retries attaching until it exists.
"$build_dir/cpp/examples/shared_memory_example" --name "$name" --rounds "$rounds" --quiet &
requester=$!
trap 'kill $requester $responder 2>/dev/null || true' EXIT
"$python" python/examples/main.py --name "$name" --quiet &
responder=$!

status=0
wait $requester || status=$?
wait $responder || status=$((status ? status : $?))
trap - EXIT
exit $status
