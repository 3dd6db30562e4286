#!/bin/sh
# camera_requester and camera_responder on one unique segment name (a ctest of the examples):
#   camera_demo.sh REQUESTER RESPONDER [ROUNDS]
set -eu
name="cam$$"
"$2" --name "$name" --quiet --timeout 10 &
responder=$!
status=0
"$1" --name "$name" --rounds "${3:-50}" --quiet --every 25 || status=$?
wait "$responder" || status=$((status ? status : $?))
exit "$status"
