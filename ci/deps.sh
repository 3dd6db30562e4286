#!/usr/bin/env bash
# Install what the build and the tests need, only where it is missing.
# Debian/Ubuntu as root (CI, fresh machines); elsewhere it only reports what is missing.
set -euo pipefail

apt_packages=(cmake ninja-build g++ libgtest-dev librapidcheck-dev nlohmann-json3-dev
              libbenchmark-dev spin python3-venv)
# Not fatal here: elsewhere the build reports what it cannot find.
bash "$(dirname "$0")/apt-install.sh" ci/deps.sh "${apt_packages[@]}" || true

python3 -m pip --version >/dev/null 2>&1 || { echo "ci/deps.sh: python3 -m pip is required" >&2; exit 1; }
python3 -c 'import tox' 2>/dev/null || python3 -m pip install -q "tox>=4"
