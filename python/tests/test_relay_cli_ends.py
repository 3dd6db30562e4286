"""The relay command line of both implementations (R-RELAY-19): `python -m shmbridge relay` and
the C++ `shmbridge-relay` (cpp/relay/) refuse the same bad configurations with the same exit
codes (spec/errors.json) and one line on stderr, before any socket or segment exists
(R-RELAY-17, R-RELAY-18), and exit 0 with a `stats` line on SIGTERM. The C++ cases need the
built program and the Python ones pyzmq, as every relay test: without them they are skipped
(reported as skipped, never as passed)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from relay_harness import free_port

ROOT = Path(__file__).resolve().parents[2]
CPP = os.environ.get("SHMBRIDGE_CPP_RELAY") or str(ROOT / "build/cpp/relay/shmbridge-relay")


def _start(impl: str) -> list[str]:
    if impl == "py":
        pytest.importorskip("zmq", reason="the relay needs pyzmq (pip install 'shmbridge[relay]')")
        return [sys.executable, "-m", "shmbridge", "relay"]
    if not os.access(CPP, os.X_OK):
        pytest.skip(f"the C++ relay {CPP} is not built (libzmq3-dev, cppzmq-dev)")
    return [CPP]


def _cli(impl: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*_start(impl), *args], capture_output=True, text=True, timeout=60)


IMPLS = ["py", "cpp"]


@pytest.mark.parametrize("impl", IMPLS)
def test_r_relay_17_remote_endpoints_are_refused(impl: str) -> None:
    """R-RELAY-17: a non-loopback --bind/--connect without --allow-remote is INVALID_ARGUMENT
    (exit 25) naming the flag's rule; '*' is remote; a malformed endpoint too."""
    r = _cli(impl, "far", "seg", "--bind", "tcp://0.0.0.0:5999")
    assert r.returncode == 25 and "--allow-remote" in r.stderr, r.stderr
    r = _cli(impl, "far", "seg", "--bind", "tcp://*:5999")
    assert r.returncode == 25, r.stderr
    r = _cli(impl, "near", "seg", "--connect", "tcp://192.0.2.1:5999")
    assert r.returncode == 25 and "loopback" in r.stderr, r.stderr
    r = _cli(impl, "near", "seg", "--connect", "udp://127.0.0.1:5999")
    assert r.returncode == 25 and "tcp://" in r.stderr, r.stderr


@pytest.mark.parametrize("impl", IMPLS)
def test_r_relay_18_key_files_are_checked(impl: str, tmp_path: Path) -> None:
    """R-RELAY-18: a missing key file, or a public key where the secret is needed, is
    INVALID_ARGUMENT naming the file; the near end's CURVE needs the server's key."""
    r = _cli("py", "keygen", str(tmp_path / "far"))
    assert r.returncode == 0, r.stderr
    ep = "tcp://127.0.0.1:5999"
    r = _cli(impl, "near", "seg", "--connect", ep, "--curve-server", str(tmp_path / "nope.key"))
    assert r.returncode == 25 and "nope.key" in r.stderr, r.stderr
    r = _cli(impl, "far", "seg", "--bind", ep, "--curve-secret", str(tmp_path / "far.key"))
    assert r.returncode == 25 and "far.key" in r.stderr, r.stderr
    r = _cli(impl, "near", "seg", "--connect", ep, "--curve-secret",
             str(tmp_path / "far.key_secret"))  # fmt: skip
    assert r.returncode == 25 and "--curve-server" in r.stderr, r.stderr


@pytest.mark.parametrize("impl", IMPLS)
def test_r_relay_19_usage_and_declaration_errors(impl: str) -> None:
    """R-RELAY-19: a missing required flag is a usage error (exit 2); a declaration without
    --create, or half a declaration, is INVALID_ARGUMENT (25); bad heartbeats too."""
    assert _cli(impl, "far", "seg").returncode == 2
    assert _cli(impl, "near", "seg").returncode == 2
    ep = "tcp://127.0.0.1:5999"
    r = _cli(impl, "far", "seg", "--bind", ep, "--dtype", "float32", "--shape", "4")
    assert r.returncode == 25 and "--create" in r.stderr, r.stderr
    r = _cli(impl, "far", "seg", "--bind", ep, "--create", "--dtype", "float32")
    assert r.returncode == 25, r.stderr
    r = _cli(impl, "near", "seg", "--connect", ep, "--heartbeat-ms", "0")
    assert r.returncode == 25, r.stderr
    r = _cli(impl, "near", "seg", "--connect", ep, "--min-rate-mib", "0")
    assert r.returncode == 25, r.stderr


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("end", ["near", "far"])
def test_r_relay_19_sigterm_logs_stats_and_exits_0(impl: str, end: str, tmp_path: Path) -> None:
    """R-RELAY-19: an end waiting for its peer logs `ready`, and on SIGTERM logs `stats` and
    exits 0 (the log is JSON lines, spec/RELAY.md §10.1)."""
    log = tmp_path / f"{end}.log"
    flag = "--connect" if end == "near" else "--bind"
    p = subprocess.Popen([*_start(impl), end, f"sbcli{os.getpid()}{end}", flag,
                          f"tcp://127.0.0.1:{free_port()}", "--log", str(log)],
                         stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and '"ready"' not in (
            log.read_text() if log.exists() else ""
        ):
            time.sleep(0.05)
        p.send_signal(signal.SIGTERM)
        assert p.wait(10) == 0, p.stderr.read() if p.stderr else ""
    finally:
        if p.poll() is None:
            p.kill()
    events = [json.loads(line) for line in log.read_text().splitlines()]
    names = [e["event"] for e in events]
    assert "ready" in names and names[-1] == "stats", names
    assert all(e["end"] == end and isinstance(e["t"], int) for e in events)
