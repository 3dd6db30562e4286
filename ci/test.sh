#!/usr/bin/env bash
# The project's test command: installs what is missing, builds, runs ctest, then tox
# (Python tests and lint), then checks that no shmbridge segment or peer process is left behind.
#
# Debian/Ubuntu packages are installed as root (ci/deps.sh and the scripts that need more);
# every Python tool runs from a venv created here and reused (ci/lib.sh): build/venv (shmbridge
# with its test, conformance and relay extras) and build/tools (tox, build, yamllint, actionlint, zig).
# The system python3 is never pip-installed into, and the guard below makes any step that runs
# project code with it fail here as it would on a fresh machine.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=ci/lib.sh
source ci/lib.sh
repo=$(pwd)
build_dir=${SHMBRIDGE_BUILD_DIR:-build}
reports="$build_dir/reports"
t0=$SECONDS

bash ci/deps.sh
ci_check_cxx ci/test.sh && ci_check_python ci/test.sh || exit 1
ci_guard_system_python "$build_dir/ci-guard"
export PIP_REQUIRE_VIRTUALENV=1  # a pip outside a venv refuses to install (the shims set it too)

# The Python environment of the conformance kit, the Python peer (ctest's SHMBRIDGE_PYTHON), the
# fuzz differential and the sanitizers' conformance run: build/venv, kept while its interpreter
# is current; the package is reinstalled on every run.
ci_project_venv ci/test.sh --reinstall
ci_tools "tox>=4"

bash ci/build.sh -DSHMBRIDGE_PYTHON="$SHMBRIDGE_PYTHON"
mkdir -p "$reports"

shm_before=$(ls /dev/shm 2>/dev/null | sort || true)

echo "== ctest (C++ tests, SPIN models, conformance: every case x 4 pairings)"
ctest --test-dir "$build_dir" --output-on-failure -j 2 --output-junit "$repo/$reports/ctest.xml"
bash ci/sanitizers.sh
bash ci/fuzz.sh
bash ci/test-windows.sh  # Windows: mingw-w64 cross build, tests under wine
bash ci/test-macos.sh  # macOS: zig cross build of the library, examples, peer and tests (arm64, x86_64)
bash ci/test-packaging.sh  # sdist + wheel, installed into a venv + round trip, workflow linters

echo "== tox (Python tests, lint)"
export SHMBRIDGE_CPP_BUILD_DIR="$repo/$build_dir"
export SHMBRIDGE_REPORTS="$repo/$reports"
"$TOOLS_BIN/tox" -e py3,lint

echo "== resource hygiene"
bash ci/check-hygiene.sh "$shm_before"

echo "ci/test.sh: took $((SECONDS - t0)) s"
python3 ci/summary.py "$reports"
