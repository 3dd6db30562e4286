#!/usr/bin/env bash
# libFuzzer runs of the C++ header validation and the pure transition function (cpp/fuzz/),
# seeded from spec/vectors/, plus a differential check of the header corpus against the Python
# implementation and the reference decoder. Owned by the hardening work; called once by ci/test.sh.
#
#   bash ci/fuzz.sh                 CI mode: each target for 30 s (FUZZ_SECONDS), all in parallel;
#                                   the relay wire decoder for 5 s (RELAY_FUZZ_SECONDS: it is small)
#   bash ci/fuzz.sh --long [SEC]    each target for SEC seconds (default 600)
#
# Builds with clang-14 -fsanitize=fuzzer,address,undefined into build-fuzz/. The corpus is kept in
# build-fuzz/corpus/<target>/ between runs; crashes are written to build-fuzz/crashes/ and fail the
# script (turn each into a vector in spec/tools/gen_vectors.py and fix it).
#
# The differential step needs numpy (it imports shmbridge.layout): it runs with $SHMBRIDGE_PYTHON
# (ci/test.sh sets it to build/venv) or, alone, with the venv build-fuzz/venv (numpy only).
# The last line names every step that failed: build, a target's crash, the differential.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=ci/lib.sh
source ci/lib.sh
repo=$(pwd)
seconds=${FUZZ_SECONDS:-30}
if [[ ${1:-} == --long ]]; then
  seconds=${2:-600}
fi
out=${SHMBRIDGE_FUZZ_DIR:-build-fuzz}
t_start=$(date +%s)

# --- toolchain (apt: clang-14, libclang-rt-14-dev) ------------------------------------------
bash ci/apt-install.sh fuzz clang-14 libclang-rt-14-dev ||
  { echo "fuzz: FAILED (clang-14 and libclang-rt-14-dev are needed)" >&2; exit 1; }
failed=()  # what went wrong, for the last line
trap 'echo "fuzz: FAILED (the command on line $LINENO of ci/fuzz.sh failed: build or seeds)" >&2' ERR
cxx=clang++-14

# --- build -----------------------------------------------------------------------------------
mkdir -p "$out/obj" "$out/crashes"
common=(-std=c++17 -g -O1 -Icpp/include -fno-omit-frame-pointer)
fsan=(-fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all)
lib=(errors dtype layout protocol schema layout_v2 message_table)
objs=()
for s in "${lib[@]}"; do
  o="$out/obj/$s.o"
  if [[ ! -f $o || cpp/src/$s.cpp -nt $o || -n $(find cpp/include -newer "$o" -print -quit) ]]; then
    $cxx "${common[@]}" -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=all \
      -c "cpp/src/$s.cpp" -o "$o"
  fi
  objs+=("$o")
done
$cxx "${common[@]}" "${fsan[@]}" cpp/fuzz/fuzz_header.cpp "${objs[@]}" -o "$out/fuzz_header"
$cxx "${common[@]}" "${fsan[@]}" cpp/fuzz/fuzz_transitions.cpp "${objs[@]}" -o "$out/fuzz_transitions"
$cxx "${common[@]}" "${fsan[@]}" cpp/fuzz/fuzz_v2.cpp "${objs[@]}" -o "$out/fuzz_v2"
# The relay wire decoder (cpp/relay/wire.cpp: no ZeroMQ, so no libzmq is needed here).
$cxx "${common[@]}" "${fsan[@]}" cpp/fuzz/fuzz_relay_wire.cpp cpp/relay/wire.cpp "${objs[@]}" \
  -o "$out/fuzz_relay_wire"
$cxx "${common[@]}" -fsanitize=address,undefined cpp/fuzz/header_oracle.cpp \
  cpp/src/errors.cpp cpp/src/dtype.cpp cpp/src/layout.cpp cpp/src/schema.cpp \
  cpp/src/layout_v2.cpp cpp/src/message_table.cpp -o "$out/header_oracle"

# --- seeds (from the shared vectors, written at fuzz time) -----------------------------------
python3 cpp/fuzz/make_seeds.py header "$out/seeds/fuzz_header"
python3 cpp/fuzz/make_seeds.py transitions "$out/seeds/fuzz_transitions"
python3 cpp/fuzz/make_seeds.py v2 "$out/seeds/fuzz_v2"
python3 cpp/fuzz/make_seeds.py relay_wire "$out/seeds/fuzz_relay_wire"

# --- run ---------------------------------------------------------------------------------------
export ASAN_OPTIONS=halt_on_error=1:detect_leaks=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
pids=()
targets=(fuzz_header fuzz_transitions fuzz_v2 fuzz_relay_wire)
for t in "${targets[@]}"; do
  mkdir -p "$out/corpus/$t"
  # -max_len: header = 8 + 512 bytes; transitions: a few hundred operations; v2: 8 + 4608 + 2560.
  maxlen=520
  [[ $t == fuzz_transitions ]] && maxlen=2048
  [[ $t == fuzz_v2 ]] && maxlen=7176
  t_seconds=$seconds
  # relay wire: frame 0 (48 + 16 x 80) and a few payload frames, with 2-byte length prefixes.
  if [[ $t == fuzz_relay_wire ]]; then
    maxlen=2048
    t_seconds=$(( ${RELAY_FUZZ_SECONDS:-5} < seconds ? ${RELAY_FUZZ_SECONDS:-5} : seconds ))
  fi
  "$out/$t" "$out/corpus/$t" "$out/seeds/$t" -max_total_time="$t_seconds" -max_len=$maxlen \
    -print_final_stats=1 -artifact_prefix="$out/crashes/$t-" -timeout=10 -rss_limit_mb=1024 \
    >"$out/$t.log" 2>&1 &
  pids+=($!)
done
status=0
for i in "${!pids[@]}"; do
  wait "${pids[$i]}" || { status=1; failed+=("${targets[$i]} exited non-zero (log $out/${targets[$i]}.log)"); }
done

total=0
for t in "${targets[@]}"; do
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$out/$t.log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$out/$t.log" | tail -1)
  last=$(grep -E '^#[0-9]+' "$out/$t.log" | tail -1 || true)
  cov=$(sed -n 's/.*cov: \([0-9]*\) ft: \([0-9]*\).*corp: \([0-9]*\).*/cov \1 ft \2 corpus \3/p' <<<"$last")
  echo "fuzz: $t: ${execs:-?} executions in ${seconds}s (${rate:-?}/s), ${cov:-no stats}"
  total=$((total + ${execs:-0}))
  if grep -qE 'ERROR: (libFuzzer|AddressSanitizer)|runtime error:|SUMMARY: ' "$out/$t.log"; then
    echo "fuzz: $t FOUND A CRASH:" >&2
    grep -E -A30 'ERROR:|runtime error:' "$out/$t.log" | head -60 >&2
    status=1
    failed+=("$t crashed (inputs in $out/crashes/)")
  fi
done
echo "fuzz: total $total executions"

# --- differential: C++ vs Python vs reference on the header corpus --------------------------
find "$out/corpus/fuzz_header" "$out/seeds/fuzz_header" -type f -print0 |
  xargs -0 -n 500 "$out/header_oracle" >"$out/oracle.txt"
py=${SHMBRIDGE_PYTHON:-}
if [[ -z $py ]]; then
  ci_venv "$out/venv" "numpy>=1.22" ||
    { echo "fuzz: FAILED (could not create the venv $out/venv with numpy)" >&2; exit 1; }
  py=$VENV_PY
fi
if ! "$py" cpp/fuzz/differential.py <"$out/oracle.txt"; then
  status=1
  failed+=("the v1 differential check C++ / Python / reference failed (above)")
fi
find "$out/corpus/fuzz_v2" "$out/seeds/fuzz_v2" -type f -print0 |
  xargs -0 -n 500 "$out/header_oracle" --v2 >"$out/oracle_v2.txt"
if ! "$py" cpp/fuzz/differential.py --v2 <"$out/oracle_v2.txt"; then
  status=1
  failed+=("the v2 differential check C++ / Python / reference failed (above)")
fi

echo "fuzz: took $(( $(date +%s) - t_start ))s"
if [[ $status -eq 0 ]]; then
  echo "fuzz: PASSED"
else
  printf -v why '%s; ' "${failed[@]:-exit status 1}"
  echo "fuzz: FAILED: ${why%; }" >&2
fi
exit $status
