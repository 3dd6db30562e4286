#!/usr/bin/env bash
# Short benchmark run (about 2 minutes here; BENCH_FULL=1: about 10): installs what the
# benchmarks need (optional packages never fail the run), builds the bench programs with
# -DSHMBRIDGE_BUILD_BENCH=ON (Release) into build/ (or $SHMBRIDGE_BUILD_DIR), and runs
# `python -m bench --quick`, which prints the table with the ratios to the floors and to the
# original design, the camera scenario's table, then the targets of the benchmark issues with
# met / not met, and writes JSON + PNG plots to bench/results/. Extra arguments go to the
# harness (e.g. `ci/bench.sh --sizes 64,1048576`);
# BENCH_FULL=1 runs the full measurement (up to 256 MiB, idle 10 s) instead; BENCH_PIN=0 runs the
# peers unpinned.
#
# Python: the project venv build/venv (ci/lib.sh; $SHMBRIDGE_PYTHON if set), never the system
# interpreter; the optional comparison packages are installed into that venv.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=ci/lib.sh
source ci/lib.sh
build_dir=${SHMBRIDGE_BUILD_DIR:-build}

echo "== bench: Python packages"
ci_project_venv bench || { echo "bench: could not build the project venv $build_dir/venv" >&2; exit 1; }
py=$SHMBRIDGE_PYTHON
pip_quiet() { "$py" -m pip install -q --disable-pip-version-check "$@" >/dev/null 2>&1; }
for mod_pkg in rich:rich matplotlib:matplotlib zmq:pyzmq iceoryx2:iceoryx2; do
  mod=${mod_pkg%%:*} pkg=${mod_pkg#*:}
  if ! "$py" -c "import $mod" 2>/dev/null; then
    pip_quiet "$pkg" && echo "bench: installed $pkg" || echo "bench: $pkg not installed (optional, skipped)"
  fi
done

echo "== bench: build ($build_dir, Release, SHMBRIDGE_BUILD_BENCH=ON)"
generator=()
command -v ninja >/dev/null && generator=(-G Ninja)
cmake -S . -B "$build_dir" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release -DSHMBRIDGE_BUILD_BENCH=ON >/dev/null
targets=(bench_peer bench_floors bench_original)
available=$(cmake --build "$build_dir" --target help 2>/dev/null | sed 's/^\.\.\. //')
grep -q '^bench_micro:' <<<"$available" && targets+=(bench_micro)
# the C++ relay ends, when CMake found libzmq and cppzmq (the relay rows below)
grep -q '^shmbridge-relay:' <<<"$available" && targets+=(shmbridge-relay)
cmake --build "$build_dir" -j "${SHMBRIDGE_JOBS:-2}" --target "${targets[@]}"

echo "== bench: run"
mode=(--quick)
[[ ${BENCH_FULL:-0} == 1 ]] && mode=()
# Pinned (requester on CPU 0, responder on CPU 1) like the README table: unpinned, a 2-core
# machine often puts both peers on one core and the figures measure the scheduler (bench/README).
# BENCH_PIN=0 runs unpinned.
pin=()
[[ ${BENCH_PIN:-1} == 1 && $(nproc 2>/dev/null || echo 1) -ge 2 ]] && pin=(--pin)
"$py" -m bench "${mode[@]}" "${pin[@]}" --build-dir "$build_dir" "$@"

# The relay rows (issue 15, spec/RELAY.md): 64 B and 1 MiB through a relay pair on loopback vs
# pyzmq REQ/REP sending the same arrays directly, same run, with the Python and (when built) the
# C++ relay ends in the same passes; about 35 s. BENCH_RELAY=0 skips it.
if [[ ${BENCH_RELAY:-1} == 1 ]]; then
  echo "== bench: relay vs direct pyzmq (bench/relay_bench.py)"
  # pyzmq was installed above with the optional comparison packages
  SHMBRIDGE_CPP_RELAY=${SHMBRIDGE_CPP_RELAY:-$build_dir/cpp/relay/shmbridge-relay} \
    "$py" -m bench.relay_bench --sizes 64,1048576 --seconds 3
fi
