#!/usr/bin/env bash
# Fails if this test run left shmbridge segments in /dev/shm or peer processes running.
# $1: the listing of /dev/shm taken before the tests (segments that were there before are not ours).
#
# The machine may be shared (other checkouts running their own tests at the same time), so only
# what belongs to this run is judged:
#   - a peer process is ours when its working directory or executable is inside this checkout, or
#     its command line names a path inside it (the venv interpreters, the peer binaries);
#   - a new shmbridge segment is ours unless its creator slot names a live process that is not
#     ours (another checkout's channel, still open). A segment whose creator is dead or gone is
#     always reported: nobody else will remove it.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
repo=$(pwd -P)
before=${1:-}
status=0
[[ -d /dev/shm ]] || exit 0

ours() {  # PID: true if the process belongs to this checkout
  local pid=$1 path
  for path in "$(readlink "/proc/$pid/cwd" 2>/dev/null)" "$(readlink "/proc/$pid/exe" 2>/dev/null)"; do
    [[ $path == "$repo" || $path == "$repo/"* ]] && return 0
  done
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF "$repo/"
}

after=$(ls /dev/shm | sort)
left=$(comm -13 <(printf '%s\n' "$before") <(printf '%s\n' "$after") | grep -v '^$' || true)
others=0
for seg in $left; do
  head -c 8 "/dev/shm/$seg" 2>/dev/null | grep -q SHMBRIDG || continue
  # Creator slot: u32 pid at 0x180 (spec/PROTOCOL.md §3.3).
  creator=$(od -An -tu4 -j $((0x180)) -N4 "/dev/shm/$seg" 2>/dev/null | tr -d ' ')
  if [[ -n $creator && $creator != 0 && -d /proc/$creator ]] && ! ours "$creator"; then
    others=$((others + 1))
    continue
  fi
  echo "hygiene: segment /dev/shm/$seg left behind (creator pid ${creator:-?})" >&2
  status=1
done
procs=""
while read -r pid cmd; do
  [[ -n $pid && $pid != "$$" ]] && ours "$pid" && procs+="$pid $cmd"$'\n'
done < <(pgrep -fa 'shmbridge-peer|shmbridge\.peer|shared_memory_example|responder_example|examples/main\.py' || true)
if [[ -n "$procs" ]]; then
  echo "hygiene: processes left running:" >&2
  printf '%s' "$procs" >&2
  status=1
fi
((others == 0)) || echo "hygiene: ignored $others new segment(s) held open by other checkouts' live processes"
[[ $status -eq 0 ]] && echo "hygiene: no segment and no peer process left behind"
exit $status
