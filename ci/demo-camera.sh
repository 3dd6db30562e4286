#!/usr/bin/env bash
# The camera example (protocol v2) end to end, from one command: the C++ camera_requester creates
# the segment and sends (480, 640, 3) uint8 frames with their float64 timestamps; the Python
# "model" python/examples/camera_responder.py answers each with 0 to 100 float32 detections (N, 6)
# derived from the frame; C++ verifies every value of every reply (the rule: cpp/examples/README.md).
# Usage: ci/demo-camera.sh [--both] [ROUNDS]   (default 1000)
#   --both  then the other way too: python/examples/camera_requester.py with the C++ camera_responder
#
# Needs what ci/demo.sh needs (a C++17 compiler, CMake >= 3.16, Python >= 3.9 with venv); installs
# nothing into the system. Builds the library and the camera examples only into build-demo/
# ($SHMBRIDGE_DEMO_BUILD_DIR) and the Python package into the venv build-demo/venv (ci/lib.sh
# ci_demo_build; $SHMBRIDGE_PYTHON instead if set). The pair runs on a unique segment name
# (cpp/examples/camera_demo.sh, which the ctest label "examples" runs for 50 rounds).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=ci/lib.sh
source ci/lib.sh
usage="usage: ci/demo-camera.sh [--both] [ROUNDS]"
both=0
if [[ ${1:-} == --both ]]; then
  both=1
  shift
fi
rounds=${1:-1000}
[[ $rounds =~ ^[1-9][0-9]*$ && $# -le 1 ]] || { echo "$usage" >&2; exit 2; }
build_dir=${SHMBRIDGE_DEMO_BUILD_DIR:-build-demo}
every=$((rounds >= 10 ? rounds / 10 : 1))  # ten progress lines per direction
t0=$SECONDS

ci_check_cxx demo-camera && ci_check_python demo-camera || exit 1
ci_demo_build demo-camera "$build_dir" camera_requester camera_responder || exit 1
echo "== demo-camera: built in $((SECONDS - t0)) s"

# run_pair LABEL REQUESTER RESPONDER: the pair for $rounds rounds; one summary line from the
# requester's (rounds, verified, mean and median round trip after round 0).
failed=0
results=()
run_pair() {
  local label=$1 log status=0 t=$SECONDS line
  log="$build_dir/demo-camera-$(basename "$2" | tr -c 'A-Za-z0-9_\n' _).log"
  echo "== demo-camera: $label, $rounds rounds"
  PYTHON=$DEMO_PYTHON sh cpp/examples/camera_demo.sh "$2" "$3" "$rounds" "$every" | tee "$log" ||
    status=$?
  line=$(sed -n 's/^summary: rounds \([0-9]*\), verified \([0-9]*\), failures [0-9]*, boxes \([0-9]*\), mean round trip \([0-9.]*\) us, median round trip \([0-9.]*\) us$/\1 rounds, \2 verified, \3 boxes, mean \4 us, p50 \5 us per round/p' "$log")
  if [[ $status -ne 0 || -z $line ]]; then
    failed=1
    results+=("$label: FAILED (exit $status) ${line:+($line)} after $((SECONDS - t)) s; log $log")
  else
    results+=("$label: $line; $((SECONDS - t)) s")
  fi
}

run_pair "C++ requester -> Python responder" "$(ci_demo_exe camera_requester)" \
  python/examples/camera_responder.py
if ((both)); then
  run_pair "Python requester -> C++ responder" python/examples/camera_requester.py \
    "$(ci_demo_exe camera_responder)"
fi

echo "== demo-camera: summary (mean and p50 leave out round 0, which waits for the responder to start)"
printf '  %s\n' "${results[@]}"
echo "demo-camera: $([[ $failed -eq 0 ]] && echo PASSED || echo FAILED) in $((SECONDS - t0)) s"
exit $failed
