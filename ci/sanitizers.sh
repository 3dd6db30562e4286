#!/usr/bin/env bash
# C++ tests under ASan+UBSan and under TSan, C++<->C++ conformance cases under ASan+UBSan, and
# the Python tests against an ASan build of the native helper. Any sanitizer report fails the
# script (halt_on_error).
# Owned by the hardening work; called once by ci/test.sh.
#
#   bash ci/sanitizers.sh                 everything (asan, tsan, python-asan)
#   bash ci/sanitizers.sh asan tsan       only these parts
#
# Build dirs: build-asan/, build-tsan/ (clang-14, RelWithDebInfo, Ninja, only the tests and the
# peer), build-asan-py/ (a venv with the wheel built by clang-14 -fsanitize=address).
#
# Exclusions (the only ones), and why:
#   - TSan: none of the tests is excluded. TSan does not model futexes or shared memory across
#     processes: fork-based tests run, but the child processes are separate TSan runtimes, so only
#     the intra-process races (helper threads, views, wake/block) are checked. TSAN_OPTIONS
#     die_after_fork=0 lets the fork-based tests (test_crossprocess, test_segment, test_wait) fork
#     after their helper threads have started.
#   - ctest runs only the tests labelled `cpp` (spec_consistency and the SPIN models are Python /
#     SPIN runs with nothing to sanitize).
#   - Conformance: the cpp-cpp pairing only, under ASan+UBSan only (the cases that involve the Python
#     peer are covered by the python-asan part, and by ci/test.sh without sanitizers). Not under
#     TSan: the peer and the library start no thread, and TSan does not model memory shared across
#     processes, so a TSan peer checks nothing a plain one does not (it took ~100 s of CI).
#     Cases with time bounds get --slack-ms (sanitized peers are 2-10x slower); none is skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=ci/lib.sh
source ci/lib.sh
repo=$(pwd)
parts=("$@")
((${#parts[@]})) || parts=(asan tsan python-asan)
jobs=${SHMBRIDGE_JOBS:-2}
t0=$(date +%s)
status=0
summary=()

# --- toolchain (apt: clang-14, libclang-rt-14-dev, ninja-build) --------------------------------
bash ci/apt-install.sh sanitizers clang-14 libclang-rt-14-dev ninja-build ||
  { echo "sanitizers: FAILED" >&2; exit 1; }

export ASAN_OPTIONS=halt_on_error=1:abort_on_error=1:detect_leaks=1:detect_stack_use_after_return=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
export TSAN_OPTIONS=halt_on_error=1:die_after_fork=0:second_deadlock_stack=1

# Any of these in a log is a sanitizer report, even if a test harness swallowed the exit code.
report_re='ERROR: AddressSanitizer|runtime error:|WARNING: ThreadSanitizer|ERROR: LeakSanitizer|SUMMARY: (Address|Undefined|Thread)Sanitizer'

configure_build() {  # $1 dir, $2 sanitizer flags
  local dir=$1 flags=$2
  cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_CXX_COMPILER=clang++-14 \
    -DCMAKE_CXX_FLAGS="$flags -fno-omit-frame-pointer" \
    -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O2 -gline-tables-only -DNDEBUG" \
    -DCMAKE_EXE_LINKER_FLAGS="$flags" -DCMAKE_SHARED_LINKER_FLAGS="$flags" \
    -DSHMBRIDGE_BUILD_TESTS=ON -DSHMBRIDGE_BUILD_EXAMPLES=OFF -DSHMBRIDGE_BUILD_BENCH=OFF \
    -DSHMBRIDGE_INSTALL=OFF -DSHMBRIDGE_WERROR=OFF >"$dir/configure.log" 2>&1 ||
    { cat "$dir/configure.log" >&2; return 1; }
  cmake --build "$dir" -j "$jobs" >"$dir/build.log" 2>&1 || { tail -40 "$dir/build.log" >&2; return 1; }
}

run_part() {  # $1 name, $2 build dir, $3 flags, $4 "conformance" to run the cpp-cpp cases too
  local name=$1 dir=$2 flags=$3 with_conformance=${4:-} ts log rc=0
  ts=$(date +%s)
  echo "== sanitizers: $name: build ($dir)"
  mkdir -p "$dir"
  configure_build "$dir" "$flags" || { summary+=("$name: BUILD FAILED"); status=1; return; }
  log="$dir/sanitizer-ctest.log"
  echo "== sanitizers: $name: ctest"
  ctest --test-dir "$dir" -L cpp -j "$jobs" --output-on-failure --timeout 300 >"$log" 2>&1 || rc=1
  local tests
  tests=$(grep -Eo '[0-9]+ tests failed out of [0-9]+|100% tests passed, 0 tests failed out of [0-9]+' "$log" | tail -1)
  if grep -Eq "$report_re" "$log"; then
    echo "sanitizers: $name: REPORT in ctest:" >&2
    grep -E -B2 -A25 "$report_re" "$log" | head -80 >&2
    rc=1
  fi
  ((rc == 0)) || grep -E '^\s*[0-9]+ - |Failed|\*\*\*' "$log" | tail -20 >&2
  summary+=("$name: ctest: ${tests:-no result} (log $log)")

  if [[ $with_conformance != conformance ]]; then
    summary+=("$name: conformance cpp-cpp: not run (each peer is one thread: TSan cannot see across processes)")
  elif [[ -d conformance && -x $dir/cpp/tools/shmbridge-peer ]]; then
    echo "== sanitizers: $name: conformance cpp-cpp"
    local clog="$dir/sanitizer-conformance.log" crc=0
    "$SHMBRIDGE_PYTHON" -m conformance run --pairing cpp-cpp --cpp-peer "$dir/cpp/tools/shmbridge-peer" \
      -j "$jobs" --slack-ms "${SANITIZER_SLACK_MS:-500}" --workdir "$dir/conformance-work" \
      --json "$dir/conformance.json" >"$clog" 2>&1 || crc=1
    # Peers write sanitizer reports to stderr, which the runner keeps in its work directory.
    if grep -rEq "$report_re" "$clog" "$dir/conformance-work" 2>/dev/null; then
      echo "sanitizers: $name: REPORT in a conformance peer:" >&2
      grep -rE -B2 -A25 "$report_re" "$clog" "$dir/conformance-work" | head -80 >&2
      crc=1
    fi
    ((crc == 0)) || tail -30 "$clog" >&2
    summary+=("$name: conformance cpp-cpp: $(grep -E '^[0-9]+ runs' "$clog" | tail -1 || true) rc=$crc (log $clog)")
    rc=$((rc | crc))
  else
    summary+=("$name: conformance cpp-cpp: NOT RUN (no conformance/ or peer)")
  fi
  ((rc == 0)) || status=1
  summary+=("$name: $((rc == 0 ? 0 : 1)) failures; $(($(date +%s) - ts))s")
}

python_asan() {
  local ts dir=build-asan-py rc=0 rt
  ts=$(date +%s)
  echo "== sanitizers: python-asan: wheel with clang-14 -fsanitize=address ($dir)"
  rt=$(clang-14 -print-file-name=libclang_rt.asan-x86_64.so)
  [[ -f $rt ]] || { summary+=("python-asan: FAILED: no ASan runtime"); status=1; return; }
  [[ -x $dir/venv/bin/python ]] || python3 -m venv "$dir/venv"
  local py=$dir/venv/bin/python
  "$py" -m pip install -q --upgrade pip >/dev/null
  CC=clang-14 CXX=clang++-14 \
    CFLAGS="-fsanitize=address -fno-omit-frame-pointer" \
    CXXFLAGS="-fsanitize=address -fno-omit-frame-pointer" \
    LDFLAGS="-fsanitize=address -shared-libasan" \
    SKBUILD_BUILD_DIR="$repo/$dir/native" SKBUILD_CMAKE_BUILD_TYPE=RelWithDebInfo \
    "$py" -m pip install -q --force-reinstall --no-deps "$repo" >"$dir/pip.log" 2>&1 ||
    { tail -30 "$dir/pip.log" >&2; summary+=("python-asan: BUILD FAILED"); status=1; return; }
  "$py" -m pip install -q "numpy>=1.22" "pytest>=7" "hypothesis>=6.80" "rich>=13" >/dev/null
  local so nasan
  so=$(find "$dir/venv" -name '_native*.so' | head -1)
  nasan=$(nm -D "$so" 2>/dev/null | grep -c __asan_ || true)
  if [[ -z $so || ${nasan:-0} -eq 0 ]]; then
    summary+=("python-asan: FAILED: '$so' is not instrumented"); status=1; return
  fi
  echo "== sanitizers: python-asan: pytest ($so instrumented)"
  local log=$dir/pytest.log
  # Leaks: CPython's allocator does not free everything at exit, hence detect_leaks=0.
  ASAN_OPTIONS=detect_leaks=0:halt_on_error=1:abort_on_error=1 LD_PRELOAD="$rt" \
    SHMBRIDGE_CPP_BUILD_DIR="${SHMBRIDGE_CPP_BUILD_DIR:-$repo/build}" \
    "$py" -m pytest "$repo/python/tests" -q -p no:cacheprovider -x >"$log" 2>&1 || rc=1
  if grep -Eq "$report_re" "$log"; then
    echo "sanitizers: python-asan: REPORT:" >&2
    grep -E -B2 -A25 "$report_re" "$log" | head -80 >&2
    rc=1
  fi
  ((rc == 0)) || tail -30 "$log" >&2
  ((rc == 0)) || status=1
  summary+=("python-asan: pytest: $(tail -1 "$log") ; $(($(date +%s) - ts))s")
}

# The conformance kit runs from the project venv (ci/test.sh's, or build/venv made here).
for part in "${parts[@]}"; do
  [[ $part == python-asan ]] || { ci_project_venv sanitizers || exit 1; break; }
done
for part in "${parts[@]}"; do
  case $part in
    asan) run_part asan build-asan "-fsanitize=address,undefined -fno-sanitize-recover=all" conformance ;;
    tsan) run_part tsan build-tsan "-fsanitize=thread" ;;
    python-asan) python_asan ;;
    *) echo "sanitizers: unknown part '$part' (asan, tsan, python-asan)" >&2; exit 2 ;;
  esac
done

echo "== sanitizers: summary"
printf '  %s\n' "${summary[@]}"
echo "sanitizers: took $(($(date +%s) - t0))s"
[[ $status -eq 0 ]] && echo "sanitizers: PASSED (no sanitizer report)" || echo "sanitizers: FAILED" >&2
exit $status
