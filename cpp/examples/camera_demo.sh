#!/bin/sh
# A camera requester and a camera responder on one unique segment name (the ctests of the
# examples, and ci/demo-camera.sh):
#   camera_demo.sh REQUESTER RESPONDER [ROUNDS [EVERY]]
# REQUESTER and RESPONDER are programs (build/cpp/examples/camera_requester, ...) or Python
# scripts (python/examples/camera_*.py), which run with $PYTHON (a Python with shmbridge and
# numpy: the project venv, never a bare system python3). The requester prints every EVERYth round
# (default 25) and its summary line; the exit status is the requester's, else the responder's.
set -eu
name="cam$$"
launch() {  # PROGRAM ARGS...
  prog=$1
  shift
  case $prog in
    *.py) "${PYTHON:?camera_demo.sh: set PYTHON to run $prog}" "$prog" "$@" ;;
    *) "$prog" "$@" ;;
  esac
}
launch "$2" --name "$name" --quiet --timeout 10 &
responder=$!
status=0
launch "$1" --name "$name" --rounds "${3:-50}" --quiet --every "${4:-25}" --timeout 20 || status=$?  # the responder may start slowly
wait "$responder" || status=$((status ? status : $?))
exit "$status"
