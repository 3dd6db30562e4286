"""Versions across languages, with the C++ peer of this build (spec/PEER.md; it speaks v1, and
any v1 API keeps failing on a v2 segment): a C++ v1 attacher on a segment the Python v2 API
created fails with VERSION_MISMATCH and claims nothing (R-VER-6, R-VER-3), and the Python v2 API
on a C++-created v1 segment fails the same way (R-VER-4). C++ <-> Python v2 rounds need the C++
v2 library (another branch) and are the conformance kit's v2 cases; none is written here.

The C++ build is looked up as test_interop_cpp.py does (SHMBRIDGE_ALLOW_NO_CPP=1 to skip)."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import time

import numpy as np
import pytest
from conftest import map_raw, shm_path
from test_interop_cpp import BUILD

import shmbridge as sb

PEER = BUILD / "cpp" / "tools" / "shmbridge-peer"


def cpp_peer() -> str:
    if not (PEER.is_file() and os.access(PEER, os.X_OK)):
        msg = f"C++ peer {PEER} not found: build it first (bash ci/build.sh)"
        if os.environ.get("SHMBRIDGE_ALLOW_NO_CPP") == "1":
            pytest.skip(f"{msg} (SHMBRIDGE_ALLOW_NO_CPP=1)")
        pytest.fail(msg + "; set SHMBRIDGE_ALLOW_NO_CPP=1 to skip instead", pytrace=False)
    return str(PEER)


def test_r_ver_6_a_cpp_v1_attacher_fails_on_a_python_v2_segment(segname: str) -> None:
    """R-VER-6, R-VER-3: magic and version_major keep their place, so a v1 library refuses a v2
    segment with VERSION_MISMATCH (exit 18) without claiming its slot or touching the name."""
    request = sb.Schema(image=(np.uint8, (4, 4)), stamp=(np.float64, ()))
    with sb.MessageRequester.create(segname, request, sb.Schema(ok=(np.bool_, ()))):
        p = subprocess.run(
            [cpp_peer(), "--role", "responder", "--name", segname, "--attach", "--timeout", "2"],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert p.returncode == 18, p.stdout + p.stderr
        attach = next(json.loads(x) for x in p.stdout.splitlines() if '"attach"' in x)
        assert attach["result"] == "VERSION_MISMATCH"
        raw = map_raw(segname)
        assert struct.unpack_from("<II", raw, 0x160) == (0, 0)  # responder slot unclaimed
        raw.close()
        assert shm_path(segname).exists()


def test_r_ver_4_the_python_v2_api_on_a_cpp_v1_segment(segname: str) -> None:
    """R-VER-4: a segment the C++ peer created (v1) refuses MessageRequester/MessageResponder with
    the message that names the v1 API."""
    cpp = subprocess.Popen(
        [cpp_peer(), "--role", "responder", "--name", segname, "--create", "--dtype", "int16",
         "--shape", "3", "--rounds", "0", "--timeout", "3", "--hold-ms", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while not shm_path(segname).exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        with pytest.raises(sb.VersionMismatch, match=r"uses protocol v1 \(one array\): attach "
                           "with Requester/Responder"):  # fmt: skip
            sb.MessageResponder.attach(segname, timeout=5)
        with sb.Requester.attach(segname, timeout=5) as v1:  # the v1 API still works there
            assert v1.shape == (3,)
    finally:
        cpp.wait(timeout=30)
        for f in (cpp.stdout, cpp.stderr):
            if f:
                f.close()
