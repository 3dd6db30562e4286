#!/usr/bin/env bash
# Install the Debian/Ubuntu packages the build and the tests need, only where they are missing
# (as root: CI, fresh machines); elsewhere it only reports what is missing. Python tools are not
# installed here: they live in venvs (ci/lib.sh), never in the system interpreter (PEP 668).
set -euo pipefail

# libzmq3-dev, cppzmq-dev: the C++ relay ends (cpp/relay/, optional: skipped without them).
apt_packages=(cmake ninja-build g++ libgtest-dev librapidcheck-dev nlohmann-json3-dev
              libbenchmark-dev spin python3-venv python3-dev libzmq3-dev cppzmq-dev)
# Not fatal here: elsewhere the build reports what it cannot find.
bash "$(dirname "$0")/apt-install.sh" ci/deps.sh "${apt_packages[@]}" || true
