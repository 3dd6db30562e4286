#!/usr/bin/env bash
# The project's test command: installs what is missing, builds, runs ctest, then tox
# (Python tests and lint), then checks that no shmbridge segment or peer process is left behind.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
build_dir=${SHMBRIDGE_BUILD_DIR:-build}
reports="$build_dir/reports"

bash ci/deps.sh
bash ci/build.sh
mkdir -p "$reports"

shm_before=$(ls /dev/shm 2>/dev/null | sort || true)

echo "== ctest"
ctest --test-dir "$build_dir" --output-on-failure -j 2 --output-junit "$repo/$reports/ctest.xml"
bash ci/sanitizers.sh
bash ci/fuzz.sh
bash ci/test-windows.sh  # Windows: mingw-w64 cross build, tests under wine

echo "== tox (Python tests, lint)"
export SHMBRIDGE_CPP_BUILD_DIR="$repo/$build_dir"
export SHMBRIDGE_REPORTS="$repo/$reports"
python3 -m tox -e py3,lint

echo "== resource hygiene"
bash ci/check-hygiene.sh "$shm_before"

python3 ci/summary.py "$reports"
