"""Waiting on the control word (PROTOCOL.md §6: R-WAIT-1..4).

Spin briefly with acquire loads, then block in the OS through the native helper, with the waiters
counter protocol of R-WAIT-3. Slicing by the liveness interval and the deadline is done by the
caller (channel.py), which checks peer liveness between slices (R-LIVE-3).
"""

from __future__ import annotations

import os
import time
from typing import Any

from . import _native
from .errors import OsError
from .layout import OFF_WAITERS, OFF_WORD
from .naming import windows_names

__all__ = ["block", "open_events", "spin", "wake"]

#: Windows waits on named events (R-WAIT-1); POSIX waits on the word itself (futex, os_sync).
USES_EVENTS = os.name == "nt"


def open_events(name: str, role: str) -> _native.WaitEvents | None:
    """The wait events of one channel handle: on Windows ``Local\\N.req`` / ``Local\\N.rsp``,
    opened once here and kept by the handle until it closes (as the C++ ``Waiter``), so that a
    wake between two wait slices is never lost; None where waits need no events."""
    if not USES_EVENTS:
        return None
    _mapping, req, rsp = windows_names(name)
    own, peer = (req, rsp) if role == "requester" else (rsp, req)
    try:
        return _native.WaitEvents(own, peer)
    except RuntimeError as exc:  # pragma: no cover - Windows only
        raise OsError(str(exc)) from None


def spin(buf: Any, expected: int, budget_s: float) -> int:
    """Re-read the word with acquire loads for up to ``budget_s`` seconds; return the first value
    different from ``expected`` (or ``expected`` when the budget ran out). The loop runs in the
    native helper with the GIL released, in slices of <= 10 ms (Ctrl-C between slices)."""
    native_spin = _native.spin
    word: int = native_spin(buf, OFF_WORD, expected, budget_s)
    if word != expected or budget_s <= 0.010:
        return word
    end = time.monotonic() + budget_s
    while word == expected:
        left = end - time.monotonic()
        if left <= 0:
            break
        word = native_spin(buf, OFF_WORD, expected, left)
    return word


def block(
    buf: Any, expected: int, timeout_s: float, events: _native.WaitEvents | None = None
) -> int:
    """Block in the OS while the word equals ``expected``, at most ``timeout_s`` (R-WAIT-3: count
    ourselves in ``waiters`` before re-checking the word, and out after waking). Returns the word
    value seen afterwards. The GIL is released while blocked; Ctrl-C raises KeyboardInterrupt."""
    _native.fetch_add(buf, OFF_WAITERS, 1)
    try:
        word = _native.load_acquire(buf, OFF_WORD)
        if word != expected:
            return word
        _native.wait(buf, OFF_WORD, expected, max(0.0, timeout_s), events)
        return _native.load_acquire(buf, OFF_WORD)
    finally:
        _native.fetch_add(buf, OFF_WAITERS, -1)


def wake(buf: Any, events: _native.WaitEvents | None = None) -> None:
    """After changing the word: read ``waiters`` (sequentially consistent, as a fetch_add of 0) and
    wake everybody blocked on the word if it is non-zero (R-WAIT-3)."""
    if _native.fetch_add(buf, OFF_WAITERS, 0) != 0:
        _native.wake_all(buf, OFF_WORD, events)
