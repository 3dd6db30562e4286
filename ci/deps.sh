#!/usr/bin/env bash
# Install what the build and the tests need, only where it is missing.
# Debian/Ubuntu as root (CI, fresh machines); elsewhere it only reports what is missing.
set -euo pipefail

apt_packages=(cmake ninja-build g++ libgtest-dev librapidcheck-dev nlohmann-json3-dev
              libbenchmark-dev spin python3-venv)
missing=()
for p in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if ((${#missing[@]})); then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    echo "ci/deps.sh: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "ci/deps.sh: missing ${missing[*]} (install them, or run as root on Debian)" >&2
  fi
fi

python3 -m pip --version >/dev/null 2>&1 || { echo "ci/deps.sh: python3 -m pip is required" >&2; exit 1; }
python3 -c 'import tox' 2>/dev/null || python3 -m pip install -q "tox>=4"
