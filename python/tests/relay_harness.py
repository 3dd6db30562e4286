"""Processes for the relay tests (spec/RELAY.md): a relay pair (`shmbridge relay far|near` with
JSON-lines logs in files) and the conformance peers of spec/PEER.md on either side (Python
`python -m shmbridge.peer`, C++ `shmbridge-peer`)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from conftest import _cleanup, unique_name

PY = sys.executable
HB_MS = 100  # heartbeats of the test relays: gone after 3 x 100 ms (R-RELAY-13)
GONE_BOUND = 1.5  # what the tests allow for the R-RELAY-13 bound (300 ms + checks + start-up)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpp_peer_path() -> str:
    from test_interop_cpp_v2 import cpp_peer

    return cpp_peer()


def relay_cmd(end: str) -> list[str]:
    """The argv start of a relay end, before ``near|far``. $SHMBRIDGE_RELAY_ENDS=NEAR,FAR (each
    ``py`` or ``cpp``, default py,py) picks each end's implementation, so that these tests run
    against the C++ ends too (cpp/relay/ shmbridge-relay: $SHMBRIDGE_CPP_RELAY, else the build
    directory); a cpp end that is not built fails the test, it is never skipped."""
    ends = os.environ.get("SHMBRIDGE_RELAY_ENDS", "py,py").split(",")
    impl = ends[0 if end == "near" else 1].strip() if len(ends) == 2 else "?"
    if impl == "py":
        return [PY, "-m", "shmbridge", "relay"]
    if impl != "cpp":
        pytest.fail(f"SHMBRIDGE_RELAY_ENDS={ends!r}: expected NEAR,FAR with each py or cpp")
    root = Path(__file__).resolve().parents[2]
    exe = os.environ.get("SHMBRIDGE_CPP_RELAY") or str(root / "build/cpp/relay/shmbridge-relay")
    if not os.access(exe, os.X_OK):
        pytest.fail(f"SHMBRIDGE_RELAY_ENDS asks for the C++ {end} end: {exe} is not built")
    return [exe]


def peer_cmd(impl: str, args: Sequence[str]) -> list[str]:
    if impl == "py":
        return [PY, "-m", "shmbridge.peer", *args]
    return [cpp_peer_path(), *args]


class Proc:
    """A child process whose stdout goes to a file (its JSON-lines log)."""

    def __init__(self, cmd: list[str], log: Path, env: dict[str, str] | None = None) -> None:
        self.cmd = cmd
        self.log = log
        self._out = log.open("w")
        self.p = subprocess.Popen(
            cmd, stdout=self._out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )

    def events(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        if not self.log.exists():
            return out
        for line in self.log.read_text(errors="replace").splitlines():
            with contextlib.suppress(ValueError):
                rec = json.loads(line)
                if isinstance(rec, dict):
                    out.append(rec)
        return out

    def wait_event(self, pred: Any, timeout: float, what: str) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for e in self.events():
                if pred(e):
                    return e
            if self.p.poll() is not None:
                break
            time.sleep(0.02)
        for e in self.events():
            if pred(e):
                return e
        pytest.fail(f"{what}: not seen within {timeout} s; log {self.log}:\n{self.text()}")

    def text(self) -> str:
        return self.log.read_text(errors="replace")[-4000:] if self.log.exists() else ""

    def wait(self, timeout: float) -> int:
        try:
            return self.p.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"{self.cmd[:4]} did not end within {timeout} s; log:\n{self.text()}")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.p.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.p.pid, sig)

    def stop(self) -> None:
        """SIGTERM (the relays close their segment and log stats), then SIGKILL."""
        self.kill(signal.SIGTERM)
        try:
            self.p.wait(5)
        except subprocess.TimeoutExpired:
            self.kill()
            self.p.wait(5)
        self._out.close()

    def stats(self) -> dict[str, Any]:
        for e in reversed(self.events()):
            if e.get("event") == "stats":
                return e
        return {}


class Pair:
    """A far relay (creating or attaching to ``far_name``) and a near relay (the same for
    ``near_name``) on loopback; tests run peers against ``near_name`` and ``far_name``."""

    def __init__(self, tmp: Path, tag: str) -> None:
        self.tmp = tmp
        self.near_name = unique_name(f"n{tag}")
        self.far_name = unique_name(f"f{tag}")
        self.port = free_port()
        self.endpoint = f"tcp://127.0.0.1:{self.port}"
        self.far: Proc | None = None
        self.near: Proc | None = None
        self.procs: list[Proc] = []
        self._n = 0

    def _log(self, what: str) -> Path:
        self._n += 1
        return self.tmp / f"{self._n:02d}_{what}.log"

    def start_far(self, *args: str, hb_ms: int = HB_MS, crash_at: str | None = None) -> Proc:
        cmd = [*relay_cmd("far"), "far", self.far_name, "--bind", self.endpoint,
               "--heartbeat-ms", str(hb_ms), *args]  # fmt: skip
        log = self._log("far")
        self.far = Proc([*cmd, "--log", str(log)], self._log("far_stderr"), _crash_env(crash_at))
        self.far.log = log
        self.procs.append(self.far)
        return self.far

    def start_near(self, *args: str, hb_ms: int = HB_MS, crash_at: str | None = None) -> Proc:
        cmd = [*relay_cmd("near"), "near", self.near_name, "--connect",
               self.endpoint, "--heartbeat-ms", str(hb_ms), *args]  # fmt: skip
        log = self._log("near")
        self.near = Proc([*cmd, "--log", str(log)], self._log("near_stderr"), _crash_env(crash_at))
        self.near.log = log
        self.procs.append(self.near)
        return self.near

    def wait_up(self, timeout: float = 15.0) -> None:
        assert self.near is not None
        self.near.wait_event(lambda e: e.get("event") == "up", timeout, "near end up")

    def peer(self, impl: str, role: str, *args: str) -> Proc:
        name = self.near_name if role == "requester" else self.far_name
        label = f"{impl}-{role}"
        cmd = peer_cmd(impl, ["--role", role, "--name", name, "--label", label, *args])
        p = Proc(cmd, self._log(label))
        self.procs.append(p)
        return p

    def close(self) -> None:
        for p in reversed(self.procs):
            p.stop()
        for n in (self.near_name, self.far_name):
            _cleanup(n)


def _crash_env(crash_at: str | None) -> dict[str, str] | None:
    """The environment of a relay end with the test hook of RELAY.md §12 set (None: inherit)."""
    if crash_at is None:
        return None
    return {**os.environ, "SHMBRIDGE_RELAY_CRASH_AT": crash_at}


@contextlib.contextmanager
def relay_pair(tmp: Path, tag: str) -> Iterator[Pair]:
    pair = Pair(tmp, tag)
    try:
        yield pair
    finally:
        pair.close()


def attached(p: Proc, timeout: float = 20.0) -> Proc:
    """Wait until a peer logged a successful attach or create (a responder that left, CLOSED,
    makes the far end answer PEER_GONE at once, R-RELAY-12, so the tests start the requester
    once the next responder is there)."""
    p.wait_event(
        lambda e: e.get("op") in ("attach", "create") and e.get("result") == "ok",
        timeout,
        f"{p.cmd[-1]} attached",
    )
    return p


def summary(p: Proc) -> dict[str, Any]:
    for e in reversed(p.events()):
        if e.get("event") == "summary":
            return e
    pytest.fail(f"no summary in {p.log}:\n{p.text()}")


def ops(p: Proc, op: str) -> list[dict[str, Any]]:
    return [e for e in p.events() if e.get("op") == op]
