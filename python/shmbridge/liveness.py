"""Process liveness and slot claims (PROTOCOL.md §3.3, §7: R-LIVE-1, R-LIVE-2, R-STALE-1).

A process is alive iff its pid exists, it is not a zombie, and its start stamp equals the slot's
``start_time`` (when non-zero). Start stamps: Linux field 22 of ``/proc/PID/stat``; macOS
``proc_pidinfo(PROC_PIDTBSDINFO)`` ``pbi_start_tvsec * 10**6 + pbi_start_tvusec``; Windows the
creation FILETIME.
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct
import sys
from typing import Any

from . import _native
from .errors import OsError, RoleTaken
from .layout import (
    SLOT_ATTACHED,
    SLOT_CLOSED,
    SLOT_INCARNATION,
    SLOT_PID,
    SLOT_START_TIME,
    SLOT_STATE,
)
from .protocol import Peer

__all__ = [
    "claim_slot",
    "mark_slot_closed",
    "own_start_time",
    "peer_status",
    "process_alive",
    "process_info_from_stat",
    "process_start_time",
    "release_slot",
]

_U64 = struct.Struct("<Q")

# Sentinel: the process does not exist (or is a zombie).
_GONE = -1


def process_info_from_stat(data: bytes) -> tuple[bool, int]:
    """R-LIVE-7: what one read of /proc/PID/stat that returned ``data`` says, as
    ``(exists, start_stamp)`` (spec/vectors/procstat.json). No bytes (it exited between open and
    read) or a zombie/dead state (Z, X, x): does not exist. A text that cannot be parsed: exists
    with an unknown stamp (0), so a process is never judged dead from a text we cannot read."""
    if not data:
        return False, 0
    close = data.rfind(b")")  # comm (field 2) may contain spaces and ')'
    rest = data[close + 1 :].split() if close >= 0 else []
    # rest[0] is field 3 (state), so field 22 is rest[19].
    if len(rest) < 20:
        return True, 0
    if rest[0] in (b"Z", b"X", b"x"):
        return False, 0
    if not rest[19].isdigit():
        return True, 0
    return True, int(rest[19])


def _linux_start_time(pid: int) -> int:
    """Field 22 of /proc/PID/stat, 0 if unknown, or _GONE if the process does not exist or is a
    zombie (R-LIVE-7). A file that cannot be opened falls back to ``kill(pid, 0)``."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return _generic_start_time(pid)
    exists, stamp = process_info_from_stat(data)
    return stamp if exists else _GONE


class _ProcBsdInfo(ctypes.Structure):
    _fields_ = [
        ("pbi_flags", ctypes.c_uint32),
        ("pbi_status", ctypes.c_uint32),
        ("pbi_xstatus", ctypes.c_uint32),
        ("pbi_pid", ctypes.c_uint32),
        ("pbi_ppid", ctypes.c_uint32),
        ("pbi_uid", ctypes.c_uint32),
        ("pbi_gid", ctypes.c_uint32),
        ("pbi_ruid", ctypes.c_uint32),
        ("pbi_rgid", ctypes.c_uint32),
        ("pbi_svuid", ctypes.c_uint32),
        ("pbi_svgid", ctypes.c_uint32),
        ("rfu_1", ctypes.c_uint32),
        ("pbi_comm", ctypes.c_char * 16),
        ("pbi_name", ctypes.c_char * 32),
        ("pbi_nfiles", ctypes.c_uint32),
        ("pbi_pgid", ctypes.c_uint32),
        ("pbi_pjobc", ctypes.c_uint32),
        ("e_tdev", ctypes.c_uint32),
        ("e_tpgid", ctypes.c_uint32),
        ("pbi_nice", ctypes.c_int32),
        ("pbi_start_tvsec", ctypes.c_uint64),
        ("pbi_start_tvusec", ctypes.c_uint64),
    ]


_libproc: Any = None


def _darwin_start_time(pid: int) -> int:
    global _libproc
    if _libproc is None:
        _libproc = ctypes.CDLL("/usr/lib/libproc.dylib", use_errno=True)
    info = _ProcBsdInfo()
    proc_pidtbsdinfo = 3
    n = _libproc.proc_pidinfo(
        pid, proc_pidtbsdinfo, ctypes.c_uint64(0), ctypes.byref(info), ctypes.sizeof(info)
    )
    if n <= 0:
        err = ctypes.get_errno()
        if err == errno.EPERM:
            return 0
        return _GONE
    if info.pbi_status == 5:  # SZOMB
        return _GONE
    return int(info.pbi_start_tvsec) * 1_000_000 + int(info.pbi_start_tvusec)


def _windows_start_time(pid: int) -> int:  # pragma: no cover - untested here
    windll: Any = getattr(ctypes, "windll")  # noqa: B009
    kernel32 = windll.kernel32
    process_query_limited_information = 0x1000
    h = kernel32.OpenProcess(process_query_limited_information, False, pid)
    if not h:
        last_error: Any = getattr(ctypes, "get_last_error")  # noqa: B009 (Windows only)
        return 0 if last_error() == 5 else _GONE  # ERROR_ACCESS_DENIED: exists
    try:
        code = ctypes.c_ulong(0)
        if kernel32.GetExitCodeProcess(h, ctypes.byref(code)) and code.value != 259:
            return _GONE  # exited (259 = STILL_ACTIVE)
        times = (ctypes.c_uint64 * 4)()
        if not kernel32.GetProcessTimes(
            h,
            ctypes.byref(times, 0),
            ctypes.byref(times, 8),
            ctypes.byref(times, 16),
            ctypes.byref(times, 24),
        ):
            return 0
        return int(times[0])
    finally:
        kernel32.CloseHandle(h)


def _generic_start_time(pid: int) -> int:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return _GONE
    except PermissionError:
        return 0  # EPERM: exists (R-LIVE-2)
    return 0


def process_start_time(pid: int) -> int | None:
    """The start stamp of ``pid`` (0 if it exists but the stamp is unknown), None if the process
    does not exist or is a zombie."""
    if pid <= 0:
        return None
    if sys.platform.startswith("linux") and os.path.isdir("/proc/self"):
        st = _linux_start_time(pid)
    elif sys.platform == "darwin":
        st = _darwin_start_time(pid)
    elif sys.platform == "win32":
        st = _windows_start_time(pid)
    else:
        st = _generic_start_time(pid)
    return None if st == _GONE else st


_own: tuple[int, int] = (0, 0)


def own_start_time() -> int:
    """This process's start stamp (cached per pid, so it is right after fork)."""
    global _own
    pid = os.getpid()
    if _own[0] != pid:
        st = process_start_time(pid)
        _own = (pid, st or 0)
    return _own[1]


def process_alive(pid: int, start_time: int) -> bool:
    """R-LIVE-2."""
    if pid == 0:
        return False
    st = process_start_time(pid)
    if st is None:
        return False
    return not (start_time != 0 and st != 0 and st != start_time)


def _read_u64(buf: Any, off: int) -> int:
    return int(_U64.unpack_from(buf, off)[0])


def slot_owner(buf: Any, slot: int) -> tuple[int, int, int]:
    """(pid, state, start_time) of the slot at offset ``slot``, loaded in this order (R-LIVE-6):
    a closer stores CLOSED before pid 0 (R-CLOSE-1), so a pid 0 read here comes with its CLOSED;
    a claimer zeroes the stamp before its pid CAS (R-LIVE-1, R-STALE-3), so a claimer's pid is
    never paired with the previous owner's stamp."""
    pid = _native.load_acquire(buf, slot + SLOT_PID)
    state = _native.load_acquire(buf, slot + SLOT_STATE)
    return pid, state, _native.load_acquire64(buf, slot + SLOT_START_TIME)


def slot_alive(buf: Any, slot: int) -> bool:
    pid, _state, start = slot_owner(buf, slot)
    return process_alive(pid, start)


def peer_status(buf: Any, slot: int) -> Peer:
    """What a waiting side sees in its peer's slot (R-LIVE-6): pid 0 is gone if CLOSED, else
    nobody (no peer yet: EMPTY, or ATTACHED by a claim completed between the loads); a pid that
    is not ATTACHED is a claim or a close in progress, judged by the pid alone (its start_time may
    be the previous owner's); an ATTACHED pid is alive iff R-LIVE-2 holds."""
    pid, state, start = slot_owner(buf, slot)
    if pid == 0:
        return Peer.GONE if state == SLOT_CLOSED else Peer.EMPTY
    if state != SLOT_ATTACHED:
        return Peer.ATTACHED if process_alive(pid, 0) else Peer.GONE
    return Peer.ATTACHED if process_alive(pid, start) else Peer.GONE


def claim_slot(buf: Any, slot: int, role: str) -> int:
    """R-LIVE-1: claim the slot for this process. Returns the previous pid (0 if free).
    Raises RoleTaken if a live process holds it."""
    me = os.getpid()
    if me <= 0 or me > 0xFFFFFFFF:
        raise OsError(f"process id {me} does not fit the 32-bit slot")
    start = own_start_time()
    for _ in range(1000):
        pid = _native.load_acquire(buf, slot + SLOT_PID)  # pid before start_time (R-LIVE-1)
        if pid != 0 and process_alive(pid, _native.load_acquire64(buf, slot + SLOT_START_TIME)):
            raise RoleTaken(
                f"the {role} role is held by live process {pid}; expected a free slot. Stop that "
                f"process (or attach as the other role)"
            )
        # R-LIVE-1: start_time = 0 (release) before the pid CAS, own stamp after it.
        _native.store_release64(buf, slot + SLOT_START_TIME, 0)
        if _native.compare_exchange(buf, slot + SLOT_PID, pid, me) == pid:
            _native.store_release64(buf, slot + SLOT_START_TIME, start)
            inc = _read_u64(buf, slot + SLOT_INCARNATION)
            _U64.pack_into(buf, slot + SLOT_INCARNATION, (inc + 1) & ((1 << 64) - 1))
            _native.store_release(buf, slot + SLOT_STATE, SLOT_ATTACHED)
            return pid
    raise RoleTaken(f"the {role} slot keeps changing; another process is claiming it")


def mark_slot_closed(buf: Any, slot: int) -> bool:
    """R-CLOSE-1 step (1): state = CLOSED (release), the pid still set (the slot is then judged by
    the pid alone: alive). Only if this process owns the slot; returns whether it does."""
    if _native.load_acquire(buf, slot + SLOT_PID) != os.getpid():
        return False
    _native.store_release(buf, slot + SLOT_STATE, SLOT_CLOSED)
    return True


def release_slot(buf: Any, slot: int) -> None:
    """R-CLOSE-1: state = CLOSED, then pid = 0 (release; a CAS from our own pid). Only if this
    process still owns it. start_time and incarnation are left as they are."""
    if mark_slot_closed(buf, slot):
        _native.compare_exchange(buf, slot + SLOT_PID, os.getpid(), 0)
