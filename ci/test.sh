#!/usr/bin/env bash
# The project's test command: installs what is missing, builds, runs ctest, then tox
# (Python tests and lint), then checks that no shmbridge segment or peer process is left behind.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
build_dir=${SHMBRIDGE_BUILD_DIR:-build}
reports="$build_dir/reports"

bash ci/deps.sh

# The Python environment of the conformance kit and the Python peer (ctest's SHMBRIDGE_PYTHON):
# build/venv, kept while its interpreter is current; the package is reinstalled on every run.
venv="$repo/$build_dir/venv"
want=$(python3 -c 'import sys; print(sys.version)')
have=$("$venv/bin/python" -c 'import sys; print(sys.version)' 2>/dev/null || true)
if [[ "$have" != "$want" ]]; then
  rm -rf "$venv"
  python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip install -q ".[conformance,test]"

bash ci/build.sh -DSHMBRIDGE_PYTHON="$venv/bin/python"
mkdir -p "$reports"

shm_before=$(ls /dev/shm 2>/dev/null | sort || true)

echo "== ctest (C++ tests, SPIN models, conformance: every case x 4 pairings)"
ctest --test-dir "$build_dir" --output-on-failure -j 2 --output-junit "$repo/$reports/ctest.xml"
bash ci/sanitizers.sh
bash ci/fuzz.sh
bash ci/test-windows.sh  # Windows: mingw-w64 cross build, tests under wine
bash ci/test-packaging.sh  # sdist + wheel, pip install round trip, workflow linters

echo "== tox (Python tests, lint)"
export SHMBRIDGE_CPP_BUILD_DIR="$repo/$build_dir"
export SHMBRIDGE_REPORTS="$repo/$reports"
python3 -m tox -e py3,lint

echo "== resource hygiene"
bash ci/check-hygiene.sh "$shm_before"

python3 ci/summary.py "$reports"
