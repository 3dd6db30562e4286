#!/usr/bin/env bash
# Packaging checks (kept under 3 minutes on 2 cores):
#   1. `python -m build`: sdist + wheel, from a clean copy of the source tree (the files git tracks
#      or would track, so build trees never end up in the sdist), then the wheel is installed
#      (`pip install`) into a throwaway venv and does one round trip (Python requester and
#      responder in one process) with its version checked against CMakeLists.txt.
#   2. The GitHub workflows: yamllint and actionlint (a Go module, installed into
#      build-packaging/gobin when missing; NOT RUN, said so, where no Go toolchain is installed:
#      Debian's golang-go is too old for it).
# `build` and yamllint run from the tools venv build/tools (ci/lib.sh), never from the system
# interpreter.
# The CMake side (cmake --install + tests/consumer with find_package, one version number) runs in
# ctest (label "packaging", tests/CMakeLists.txt).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=ci/lib.sh
source ci/lib.sh
repo=$(pwd)
start=$SECONDS
out=${SHMBRIDGE_PACKAGING_DIR:-build-packaging}
mkdir -p "$out"
out=$(cd "$out" && pwd)
actionlint_version=v1.7.12

echo "== packaging: sdist + wheel (python -m build)"
ci_tools "build>=1" "yamllint>=1.26" || { echo "packaging: could not set up the tools venv" >&2; exit 1; }
rm -rf "$out/src" "$out/dist" "$out/venv"
mkdir -p "$out/src"
git ls-files -z --cached --others --exclude-standard | while IFS= read -r -d '' f; do
  [[ -e $f ]] && printf '%s\0' "$f"
done | (cd "$repo" && xargs -0 cp -P --parents -t "$out/src")
# Run from $out: a ./build directory in the cwd would shadow the `build` module.
(cd "$out" && "$TOOLS_BIN/python" -m build --outdir "$out/dist" "$out/src" >"$out/build.log" 2>&1) ||
  { tail -40 "$out/build.log"; exit 1; }
version=$(sed -n 's/^project(shmbridge VERSION \([0-9.]*\).*/\1/p' CMakeLists.txt)
sdist=$(ls "$out/dist"/shmbridge-"$version".tar.gz)
wheel=$(ls "$out/dist"/shmbridge-"$version"-*.whl)
echo "   built $(basename "$sdist") and $(basename "$wheel") ($((SECONDS - start)) s)"
listing=$(tar -tzf "$sdist")
for f in pyproject.toml python/CMakeLists.txt python/shmbridge/_native.cpp spec/PROTOCOL.md \
         cpp/include/shmbridge/detail/os_sync_darwin.h; do
  grep -qx "shmbridge-$version/$f" <<<"$listing" || { echo "sdist lacks $f" >&2; exit 1; }
done
python3 - "$wheel" <<'EOF'
import sys, zipfile
names = zipfile.ZipFile(sys.argv[1]).namelist()
for want in ("shmbridge/__init__.py", "shmbridge/py.typed", "shmbridge/_native"):
    if not any(n.startswith(want) for n in names):
        sys.exit(f"wheel lacks {want}")
if any(n.endswith(".cpp") for n in names):
    sys.exit("wheel ships C++ sources")
EOF

echo "== packaging: the wheel installed into a venv, one round trip"
python3 -m venv "$out/venv"
"$out/venv/bin/python" -m pip install -q "$wheel"
(cd "$out" && "$out/venv/bin/python" - "$version" <<'EOF'
import os, sys
import numpy as np
import shmbridge
assert shmbridge.__version__ == sys.argv[1], (shmbridge.__version__, sys.argv[1])
name = f"sbwheel{os.getpid()}"
req = shmbridge.Requester.create(name, np.float32, (2, 3))
rsp = shmbridge.Responder.attach(name, dtype=np.float32, shape=(2, 3))
req.send(np.arange(6, dtype=np.float32).reshape(2, 3))
with rsp.take() as request:
    request.array += 1.0
    request.reply()
out = req.receive_copy()
rsp.close()
req.close()
assert (out == np.arange(6, dtype=np.float32).reshape(2, 3) + 1).all(), out
print(f"   shmbridge {shmbridge.__version__} from the wheel: round trip OK")
EOF
)

echo "== packaging: workflow linters (yamllint, actionlint)"
"$TOOLS_BIN/yamllint" -s -d '{extends: default, rules: {line-length: {max: 120}, document-start: disable,
  truthy: {check-keys: false}}}' .github/workflows
gobin="$out/gobin"
if [[ ! -x $gobin/actionlint ]] && command -v go >/dev/null; then
  GOBIN=$gobin GOFLAGS=-mod=mod go install "github.com/rhysd/actionlint/cmd/actionlint@$actionlint_version"
fi
if [[ -x $gobin/actionlint ]]; then
  "$gobin/actionlint" -no-color
else
  echo "   actionlint: NOT RUN (no Go toolchain on PATH to build it; yamllint checked the syntax)"
fi
echo "== packaging: done in $((SECONDS - start)) s"
