"""R-WAIT-1 on Windows: a Python channel handle opens its two named wait events once, when it is
made, and passes that one object to every wait and wake until it closes (as the C++ Waiter,
cpp/src/wait_win32.cpp). An event opened per wait slice does not exist between two slices when
no other process holds it, so a SetEvent in that gap is lost and the waiter sleeps a whole slice.

Windows Python cannot run here: these tests switch the event path on (shmbridge.wait.USES_EVENTS)
on POSIX, where the native object keeps the names and the waits still use the futex, and check
the plumbing: how many objects are opened, which one each wait and wake gets, and that close
closes them. The Windows branch of _native.cpp is compiled by ci/test-windows.sh."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import pytest

import shmbridge
from shmbridge import _native, channel, wait


@pytest.fixture
def events_on(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[Any]]:
    calls: dict[str, list[Any]] = {"opened": [], "wait": [], "wake": []}
    real_events, real_wait, real_cas_wake = _native.WaitEvents, _native.wait, channel._cas_wake
    real_wait_cas = channel._wait_cas

    def opened(own: str, peer: str) -> Any:
        ev = real_events(own, peer)
        calls["opened"].append(ev)
        return ev

    def waited(buf: Any, off: int, expected: int, timeout: float, ev: Any = None) -> bool:
        calls["wait"].append(ev)
        return bool(real_wait(buf, off, expected, timeout, ev))

    def cas_woken(buf: Any, off: int, woff: int, e: int, d: int, ev: Any = None) -> int:
        calls["wake"].append(ev)
        return int(real_cas_wake(buf, off, woff, e, d, ev))

    def wait_cased(buf: Any, off: int, woff: int, *args: Any) -> int:
        # The hot-path wait-and-CAS: its events serve the OS wait (block_s > 0) and the wake
        # after its CAS (a result < 2**32: the word it changed).
        *step, spin_s, block_s, ev = args
        result = int(real_wait_cas(buf, off, woff, *step, spin_s, block_s, ev))
        if block_s > 0:
            calls["wait"].append(ev)
        if result <= 0xFFFFFFFF:
            calls["wake"].append(ev)
        return result

    monkeypatch.setattr(wait, "USES_EVENTS", True)
    monkeypatch.setattr(_native, "WaitEvents", opened)
    monkeypatch.setattr(_native, "wait", waited)
    monkeypatch.setattr(channel, "_cas_wake", cas_woken)
    monkeypatch.setattr(channel, "_wait_cas", wait_cased)
    return calls


def test_r_wait_1_events_opened_once_per_handle(
    events_on: dict[str, list[Any]], segname: str
) -> None:
    req = shmbridge.Requester.create(segname, np.float32, (4,), spin=0)
    rsp = shmbridge.Responder.attach(segname, dtype=np.float32, shape=(4,), spin=0)
    req_ev, rsp_ev = events_on["opened"]
    assert (req_ev.own, req_ev.peer) == (f"Local\\{segname}.req", f"Local\\{segname}.rsp")
    assert (rsp_ev.own, rsp_ev.peer) == (f"Local\\{segname}.rsp", f"Local\\{segname}.req")

    def serve() -> None:
        for _ in range(3):
            with rsp.take(timeout=10) as request:
                request.array += 1.0

    server = threading.Thread(target=serve)
    server.start()
    for i in range(3):
        out = req.call(np.full(4, i, np.float32), timeout=10)
        assert (out == i + 1).all()
    server.join(10)
    with pytest.raises(shmbridge.Timeout):
        rsp.take(timeout=0.05)  # blocks in the OS at least once (spin=0)

    # Still the two objects of the handles; every wait blocked on its own handle's events and
    # every transition woke through its own handle's events.
    assert len(events_on["opened"]) == 2
    waits = events_on["wait"]
    assert waits and all(ev is req_ev or ev is rsp_ev for ev in waits)
    assert rsp_ev in waits
    assert {id(ev) for ev in events_on["wake"]} == {id(req_ev), id(rsp_ev)}
    rsp.close()
    req.close()
    assert req_ev.closed and rsp_ev.closed
    assert len(events_on["opened"]) == 2
