#!/usr/bin/env bash
# Fails if the test run left shmbridge segments in /dev/shm or peer processes running.
# $1: the listing of /dev/shm taken before the tests (segments that were there before are not ours).
set -uo pipefail
before=${1:-}
status=0
[[ -d /dev/shm ]] || exit 0
after=$(ls /dev/shm | sort)
left=$(comm -13 <(printf '%s\n' "$before") <(printf '%s\n' "$after") | grep -v '^$' || true)
for seg in $left; do
  if head -c 8 "/dev/shm/$seg" 2>/dev/null | grep -q SHMBRIDG; then
    echo "hygiene: segment /dev/shm/$seg left behind" >&2
    status=1
  fi
done
procs=$(pgrep -fa 'shmbridge-peer|shmbridge\.peer|shared_memory_example|responder_example|examples/main\.py' | grep -v pgrep || true)
if [[ -n "$procs" ]]; then
  echo "hygiene: processes left running:" >&2
  echo "$procs" >&2
  status=1
fi
[[ $status -eq 0 ]] && echo "hygiene: no segment and no peer process left behind"
exit $status
