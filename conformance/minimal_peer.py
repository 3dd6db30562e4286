"""A deliberately minimal shmbridge peer, written by following spec/IMPLEMENTING.md.

It proves the guide: the protocol is implemented here from spec/ alone, with the standard library,
numpy and ctypes, and without importing shmbridge:

* atomics: libatomic through ctypes (``__atomic_load_4`` ... with explicit memory orders,
  R-STATE-4, R-LAYOUT-8);
* blocking: the raw ``futex`` system call through libc ``syscall(2)``, without the private flag
  (R-WAIT-1, R-WAIT-3);
* liveness: ``/proc/PID/stat`` read as R-LIVE-7 says, ``kill(pid, 0)`` as the fallback;
* the segment: ``/dev/shm/NAME`` (what ``shm_open("/NAME")`` opens on Linux, R-NAME-2) and mmap.

The PEER.md plumbing that is not protocol (flags, data pattern and checksum, event log, crash and
delay faults) comes from conformance/peerkit.py. It supports the minimal level of spec/PEER.md §6
and exits 2 (usage) for any other fault flag. Linux, x86-64 or aarch64.

    python -m conformance run --peer mini='python -m conformance.minimal_peer' --minimal mini
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import mmap
import os
import platform
import re
import struct
import sys
import time
from pathlib import Path

import numpy as np

from . import peerkit as pk

SPEC = Path(__file__).resolve().parents[1] / "spec"
ERRORS = {e["name"]: e for e in json.loads((SPEC / "errors.json").read_text())["errors"]}
CODE_NAMES = {e["code"]: name for name, e in ERRORS.items()}
DTYPES = {d["name"]: d for d in json.loads((SPEC / "dtypes.json").read_text())["dtypes"]}
DTYPE_OF_CODE = {d["code"]: d for d in DTYPES.values()}
MINIMAL_UNSUPPORTED = ("corrupt", "out_of_turn", "retry_after_timeout", "jitter_ms")

# ---------------------------------------------------------------- layout (PROTOCOL.md §3)
HEADER = 512
MAGIC = b"SHMBRIDG"
OFF_MAGIC, OFF_DECLARED, OFF_MESSAGE, OFF_REPLY_CODE = 0x000, 0x040, 0x090, 0x0E0
OFF_WORD, OFF_WAITERS = 0x100, 0x104
SLOT = {"requester": 0x140, "responder": 0x160, "creator": 0x180}
PID, STATE, START, INCARNATION = 0, 4, 8, 16
EMPTY, ATTACHED, CLOSED = 0, 1, 2
IDLE, REQUESTED, REPLIED, TAKEN = 0x0, 0x1, 0x2, 0x4
SEQ_MASK = (1 << 28) - 1
DESC = struct.Struct("<II8QQ")  # dtype, ndim, shape[8], nbytes (§3.1)
FIXED = struct.Struct("<8sHHIQQII")  # magic .. max_dims (0x000-0x027)
SPIN_S, INTERVAL_S = 100e-6, 0.05  # R-WAIT-1 spin budget, R-WAIT-4 liveness interval

# ---------------------------------------------------------------- atomics (R-STATE-4)
_atomic = ctypes.CDLL(ctypes.util.find_library("atomic") or "libatomic.so.1")
ACQUIRE, RELEASE, SEQ_CST = 2, 3, 5


def _fn(name, restype, *argtypes):
    f = getattr(_atomic, name)
    f.restype, f.argtypes = restype, list(argtypes)
    return f


_VP, _U32, _U64, _INT = ctypes.c_void_p, ctypes.c_uint32, ctypes.c_uint64, ctypes.c_int
_load4 = _fn("__atomic_load_4", _U32, _VP, _INT)
_store4 = _fn("__atomic_store_4", None, _VP, _U32, _INT)
_cas4 = _fn("__atomic_compare_exchange_4", ctypes.c_bool, _VP, _VP, _U32, _INT, _INT)
_add4 = _fn("__atomic_fetch_add_4", _U32, _VP, _U32, _INT)
_sub4 = _fn("__atomic_fetch_sub_4", _U32, _VP, _U32, _INT)
_load8 = _fn("__atomic_load_8", _U64, _VP, _INT)
_store8 = _fn("__atomic_store_8", None, _VP, _U64, _INT)

# ---------------------------------------------------------------- futex (R-WAIT-1, R-WAIT-3)
_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
SYS_FUTEX = {"x86_64": 202, "aarch64": 98}[platform.machine()]
FUTEX_WAIT, FUTEX_WAKE = 0, 1  # shared between processes: no FUTEX_PRIVATE_FLAG


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


def futex_wait(addr: int, expected: int, seconds: float) -> None:
    ts = _Timespec(int(seconds), int((seconds % 1) * 1e9))
    _libc.syscall(ctypes.c_long(SYS_FUTEX), _VP(addr), _INT(FUTEX_WAIT), _U32(expected),
                  ctypes.byref(ts), _VP(0), _INT(0))


def futex_wake_all(addr: int) -> None:
    _libc.syscall(ctypes.c_long(SYS_FUTEX), _VP(addr), _INT(FUTEX_WAKE), _INT(0x7FFFFFFF),
                  _VP(0), _VP(0), _INT(0))


# ---------------------------------------------------------------- liveness (R-LIVE-2, R-LIVE-7)
def probe(pid: int) -> tuple[bool, int]:
    """(exists, start stamp or 0) of ``pid``: /proc/PID/stat counted after the last ')'."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            text = f.read()
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False, 0
        except PermissionError:
            pass
        return True, 0
    if not text:
        return False, 0
    close = text.rfind(b")")
    rest = text[close + 1:].split() if close >= 0 else []
    if len(rest) < 20:
        return True, 0
    if rest[0] in (b"Z", b"X", b"x"):
        return False, 0
    return True, int(rest[19]) if rest[19].isdigit() else 0


def alive(pid: int, start: int) -> bool:
    if pid == 0:
        return False
    exists, stamp = probe(pid)
    return exists and not (start and stamp and stamp != start)


MY_PID = os.getpid()
MY_STAMP = probe(MY_PID)[1]


# ---------------------------------------------------------------- errors (§8)
class PeerError(Exception):
    def __init__(self, name: str, message: str, reply_code: int | None = None,
                 reason: str | None = None):
        super().__init__(f"{name}: {message}")
        self.name, self.reply_code, self.reason = name, reply_code, reason
        self.exit_code = ERRORS[name]["exit"]


def fail(name: str, message: str, **kw):
    raise PeerError(name, message, **kw)


def desc_bytes(dtype_code: int, shape: tuple) -> bytes:
    nbytes = DTYPE_OF_CODE[dtype_code]["itemsize"] * int(np.prod(shape, dtype=object) if shape else 1)
    return DESC.pack(dtype_code, len(shape), *(list(shape) + [0] * (8 - len(shape))), nbytes)


def check_desc(raw: bytes, capacity: int, what: str) -> tuple[int, tuple]:
    """R-LAYOUT-5: (dtype code, shape) of a valid descriptor, else CORRUPT_HEADER."""
    dt, nd, *rest = DESC.unpack(raw)
    shape, nbytes = rest[:8], rest[8]
    if dt not in DTYPE_OF_CODE or nd > 8 or any(shape[nd:]):
        fail("CORRUPT_HEADER", f"the {what} descriptor is invalid (dtype {dt}, ndim {nd}); "
             "expected a known dtype, ndim <= 8 and zeros after the extents: recreate the segment")
    n = DTYPE_OF_CODE[dt]["itemsize"]
    for s in shape[:nd]:
        n *= s
    if n >= 1 << 64 or n != nbytes or nbytes > capacity:
        fail("CORRUPT_HEADER", f"the {what} descriptor says nbytes {nbytes}, expected "
             f"{n} <= capacity {capacity}: recreate the segment")
    return dt, tuple(shape[:nd])


# ---------------------------------------------------------------- the channel
class Channel:
    def __init__(self, role: str, name: str, timeout: float):
        if timeout < 0:
            fail("INVALID_ARGUMENT", f"timeout must be >= 0, found {timeout}: pass 0 to try once")
        bare = name[1:] if name.startswith("/") else name
        if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,29}", bare):
            fail("INVALID_NAME", f"segment name {name!r} breaks R-NAME-1: expected 1-30 characters "
                 "of [A-Za-z0-9_.-], not starting with '.' or '-'")
        self.role, self.name, self.timeout = role, bare, timeout
        self.path = f"/dev/shm/{bare}"
        self.peer_role = "responder" if role == "requester" else "requester"
        self.mm = None
        self.created = False
        self.keep = False
        self.pending = self.held = None
        self.last_seq = 0
        self.closed = False

    # -- memory -------------------------------------------------------------------------------
    def _map(self, fd: int, size: int) -> None:
        self.mm = mmap.mmap(fd, size)
        self._anchor = ctypes.c_char.from_buffer(self.mm)
        self.base = ctypes.addressof(self._anchor)
        self.size = size

    def load(self, off: int = OFF_WORD) -> int:
        return _load4(self.base + off, ACQUIRE)

    def cas(self, expected: int, desired: int, off: int = OFF_WORD) -> bool:
        """R-STATE-2 CAS (sequentially consistent), then the R-WAIT-3 wake."""
        e = _U32(expected)
        ok = _cas4(self.base + off, ctypes.byref(e), desired, SEQ_CST, ACQUIRE)
        if ok and off == OFF_WORD:
            self.wake()
        return bool(ok)

    def wake(self) -> None:
        if _load4(self.base + OFF_WAITERS, SEQ_CST):
            futex_wake_all(self.base + OFF_WORD)

    def wait_change(self, w: int, until: float, spin_end: float) -> None:
        now = time.monotonic()
        if now < spin_end:  # spin (R-WAIT-1), yielding the CPU now and then
            for _ in range(20):
                if self.load() != w:
                    return
            os.sched_yield()
            return
        left = min(until - now, INTERVAL_S)  # sliced by the liveness interval (R-WAIT-4)
        if left > 0:
            _add4(self.base + OFF_WAITERS, 1, SEQ_CST)
            if _load4(self.base + OFF_WORD, SEQ_CST) == w:
                futex_wait(self.base + OFF_WORD, w, left)
            _sub4(self.base + OFF_WAITERS, 1, SEQ_CST)

    # -- slots (R-LIVE-1, R-LIVE-6, R-CLOSE-1) ---------------------------------------------------
    def slot(self, role: str) -> tuple[int, int, int]:
        off = self.base + SLOT[role]
        pid = _load4(off + PID, ACQUIRE)  # pid first (R-LIVE-6)
        return pid, _load4(off + STATE, ACQUIRE), _load8(off + START, ACQUIRE)

    def peer_gone(self) -> str | None:
        """None while the peer lives or has not come yet; else the reason, CLOSED or DIED."""
        pid, state, start = self.slot(self.peer_role)
        if pid == 0:
            return "CLOSED" if state == CLOSED else None
        return None if alive(pid, 0 if state != ATTACHED else start) else "DIED"

    def claim(self, role: str) -> None:
        off = self.base + SLOT[role]
        while True:
            seen = _load4(off + PID, ACQUIRE)
            if seen and alive(seen, _load8(off + START, ACQUIRE)):
                fail("ROLE_TAKEN", f"the {role} role is held by live process {seen}; expected a "
                     "free slot: stop that process")
            _store8(off + START, 0, RELEASE)
            e = _U32(seen)
            if _cas4(off + PID, ctypes.byref(e), MY_PID, SEQ_CST, ACQUIRE):
                break
        _store8(off + START, MY_STAMP, RELEASE)
        _store8(off + INCARNATION, _load8(off + INCARNATION, ACQUIRE) + 1, RELEASE)
        _store4(off + STATE, ATTACHED, RELEASE)

    def _release(self, role: str, completing=None) -> None:
        off = self.base + SLOT[role]
        if _load4(off + PID, ACQUIRE) != MY_PID:
            return
        _store4(off + STATE, CLOSED, RELEASE)  # (1) CLOSED, pid still set: judged alive
        if completing:
            completing()  # (2) R-CLOSE-2
        e = _U32(MY_PID)
        _cas4(off + PID, ctypes.byref(e), 0, SEQ_CST, ACQUIRE)  # (3) pid 0

    # -- create (R-SEG-1/2/6, R-STALE-*) ---------------------------------------------------------
    def create(self, dtype: str, shape: tuple, capacity: int | None, reclaim: bool,
               keep: bool) -> None:
        if dtype not in DTYPES:
            fail("DTYPE_MISMATCH", f"dtype {dtype!r} is not supported: expected one of "
                 f"{', '.join(DTYPES)}")
        code = DTYPES[dtype]["code"]
        nbytes = DTYPES[dtype]["itemsize"] * int(np.prod(shape, dtype=object) if shape else 1)
        cap = nbytes if capacity is None else capacity
        if nbytes >= 1 << 64 or cap < nbytes:
            fail("CAPACITY_EXCEEDED", f"the array needs {nbytes} bytes, capacity {cap}: "
                 "declare a smaller array or a larger capacity")
        deadline = time.monotonic() + min(self.timeout, 1.0)
        while True:
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
                break
            except FileExistsError:
                self._inspect_existing(reclaim, deadline)
        try:
            os.ftruncate(fd, HEADER + cap)
            self._map(fd, HEADER + cap)
        finally:
            os.close(fd)
        self.created, self.keep = True, keep
        self.declared = desc_bytes(code, shape)
        self.mm[8:HEADER] = bytes(HEADER - 8)
        struct.pack_into("<HHIQQII", self.mm, 8, 1, 0, HEADER, cap, HEADER + cap, 0, 8)
        self.mm[OFF_DECLARED:OFF_DECLARED + 80] = self.declared
        self.mm[OFF_MESSAGE:OFF_MESSAGE + 80] = self.declared
        for role in ("creator", self.role):  # the slots before the magic (R-SEG-6)
            struct.pack_into("<IIQQ", self.mm, SLOT[role], MY_PID, ATTACHED, MY_STAMP, 1)
        _store8(self.base + OFF_MAGIC, int.from_bytes(MAGIC, "little"), RELEASE)
        self._setup(code, shape, cap)

    def _inspect_existing(self, reclaim: bool, deadline: float) -> None:
        try:
            fd = os.open(self.path, os.O_RDWR)
        except FileNotFoundError:
            return
        try:
            size = os.fstat(fd).st_size
            if 0 < size < HEADER:
                fail("CORRUPT_HEADER", f"{self.path} is {size} bytes, expected at least the "
                     f"512-byte header: remove it if no peer uses it")
            m = mmap.mmap(fd, HEADER) if size >= HEADER else None
        finally:
            os.close(fd)
        if m is None or bytes(m[:8]) == bytes(8):
            if m is not None:
                m.close()
            if time.monotonic() >= deadline:
                fail("CORRUPT_HEADER", f"{self.path} exists but its magic is still zero: its "
                     "creator died while initialising it; remove it if no peer uses it")
            time.sleep(0.001)
            return
        anchor = ctypes.c_char.from_buffer(m)
        base = ctypes.addressof(anchor)
        try:
            self._validate(bytes(m[:HEADER]), size)
            pid, start = _load4(base + SLOT["creator"], ACQUIRE), \
                _load8(base + SLOT["creator"] + START, ACQUIRE)
            if pid and alive(pid, start):
                fail("ALREADY_EXISTS", f"segment {self.name!r} exists and its creator (pid {pid}) "
                     "is alive: choose another name or stop that process")
            if not reclaim:
                fail("STALE_SEGMENT", f"segment {self.name!r} was left by a dead creator and "
                     f"reclaiming is off: remove it with rm {self.path}")
            _store8(base + SLOT["creator"] + START, 0, RELEASE)  # R-STALE-3: claim, then unlink
            e = _U32(pid)
            if _cas4(base + SLOT["creator"], ctypes.byref(e), MY_PID, SEQ_CST, ACQUIRE):
                _store8(base + SLOT["creator"] + START, MY_STAMP, RELEASE)
                try:
                    os.unlink(self.path)
                except FileNotFoundError:
                    pass
        finally:
            del anchor
            m.close()

    def _validate(self, h: bytes, size: int) -> None:
        """Header validation in the order of spec/vectors D2."""
        magic, major, _minor, hsize, cap, segsize, flags, maxdims = FIXED.unpack_from(h)
        if magic != MAGIC:
            fail("CORRUPT_HEADER", f"magic is {magic!r}, expected {MAGIC!r}: not a shmbridge "
                 "segment, or a damaged one")
        if major != 1:
            fail("VERSION_MISMATCH", f"version_major is {major}, this peer speaks 1: use peers "
                 "of the same major version")
        if hsize != HEADER or maxdims != 8 or flags != 0 or segsize != HEADER + cap \
                or size < segsize:
            fail("CORRUPT_HEADER", f"header_size {hsize}, max_dims {maxdims}, flags {flags}, "
                 f"segment_size {segsize} (object {size} bytes), expected 512, 8, 0, 512 + "
                 f"capacity {cap}: recreate the segment")
        check_desc(h[OFF_DECLARED:OFF_DECLARED + 80], cap, "declared")
        check_desc(h[OFF_MESSAGE:OFF_MESSAGE + 80], cap, "message")

    # -- attach (R-ATTACH-1/2, R-LAYOUT-7, R-REC-*) ---------------------------------------------
    def attach(self, dtype: str | None, shape: tuple | None) -> None:
        start = time.monotonic()
        deadline, pause = start + self.timeout, 0.002
        while True:
            missing = None
            try:
                fd = os.open(self.path, os.O_RDWR)
            except FileNotFoundError:
                missing = f"no segment named {self.name!r}"
            else:
                try:
                    size = os.fstat(fd).st_size
                    if 0 < size < HEADER:
                        fail("CORRUPT_HEADER", f"{self.path} is {size} bytes, expected at least "
                             "the 512-byte header: remove it and restart the creator")
                    if size >= HEADER:
                        self._map(fd, size)
                finally:
                    os.close(fd)
                if self.mm is not None and _load8(self.base + OFF_MAGIC, ACQUIRE):
                    break
                if self.mm is not None:
                    del self._anchor
                    self.mm.close()
                    self.mm = None
                missing = f"segment {self.name!r} is still being initialised (magic 0)"
            now = time.monotonic()
            if now >= deadline:
                waited = ("after one check (timeout 0)" if self.timeout == 0
                          else f"after waiting {now - start:.3g} s")
                fail("SEGMENT_NOT_FOUND", f"{missing} {waited}: start the creator first")
            time.sleep(min(pause, deadline - now))
            pause = min(2 * pause, 0.05)
        self._validate(bytes(self.mm[:HEADER]), self.size)
        cap = struct.unpack_from("<Q", self.mm, 0x10)[0]
        code, dshape = check_desc(bytes(self.mm[OFF_DECLARED:OFF_DECLARED + 80]), cap, "declared")
        if dtype is not None and (dtype not in DTYPES or DTYPES[dtype]["code"] != code):
            fail("DTYPE_MISMATCH", f"expected dtype {dtype}, the segment declares "
                 f"{DTYPE_OF_CODE[code]['name']}: attach with the creator's dtype")
        if shape is not None and tuple(shape) != dshape:
            fail("SHAPE_MISMATCH", f"expected shape {tuple(shape)}, the segment declares {dshape}: "
                 "attach with the creator's shape")
        self.declared = bytes(self.mm[OFF_DECLARED:OFF_DECLARED + 80])
        self.claim(self.role)
        self._setup(code, dshape, cap)
        try:
            if self.role == "requester":
                self._recover(deadline)
            elif self.load() & 0xF == TAKEN:  # R-REC-2: T8 for a dead predecessor
                w = self.load()
                self._answer_raw(ERRORS["PEER_GONE"]["code"])
                self.cas(w, (w & ~0xF) | REPLIED)
        except PeerError:
            self._release(self.role)
            raise

    def _setup(self, code: int, shape: tuple, cap: int) -> None:
        dt = pk.np_dtype(DTYPE_OF_CODE[code]["name"])
        self.dtype, self.shape = DTYPE_OF_CODE[code]["name"], shape
        n = int(np.prod(shape, dtype=np.int64)) if shape else 1
        self.payload = np.frombuffer(self.mm, dtype=dt, count=n, offset=HEADER).reshape(shape) \
            if n else np.zeros(shape, dt)
        self.last_seq = self.load() >> 4 & SEQ_MASK

    def _recover(self, deadline: float) -> None:
        """R-REC-1: back to IDLE before the first send, whoever left what."""
        while True:
            w = self.load()
            ph = w & 0xF
            if ph in (REQUESTED, REPLIED):
                self.cas(w, w & ~0xF)  # T5 (the orphan counts as own) / T6
            elif ph == TAKEN and self.peer_gone():
                self.cas(w, w & ~0xF)  # T7
            elif ph == TAKEN:
                if time.monotonic() >= deadline:
                    fail("TIMEOUT", f"the responder still holds request #{w >> 4} of a previous "
                         "requester; expected its reply within the attach timeout: retry later")
                self.wait_change(w, deadline, 0)
            else:  # IDLE, or a phase outside the table: the first operation reports it
                self.last_seq = w >> 4 & SEQ_MASK
                return

    # -- requester (T1, T4, T5, T7) ----------------------------------------------------------
    def send(self, data: np.ndarray) -> int:
        if data.dtype != self.payload.dtype:
            fail("DTYPE_MISMATCH", f"array dtype {data.dtype}, expected the declared {self.dtype}:"
                 " convert the array")
        if data.shape != self.shape:
            fail("SHAPE_MISMATCH", f"array shape {data.shape}, expected the declared "
                 f"{self.shape}: reshape the array")
        if self.pending is not None:
            fail("OUT_OF_TURN", f"request #{self.pending} is outstanding; expected none: "
                 "receive its reply first")
        w = self.load()
        if w != self.last_seq << 4:
            fail("PROTOCOL_VIOLATION", f"the word is {w:#x}, expected IDLE seq {self.last_seq} "
                 "(R-STATE-8): a rogue writer is using the segment")
        self.payload[...] = data
        self.mm[OFF_MESSAGE:OFF_MESSAGE + 80] = self.declared
        seq = (self.last_seq + 1) & SEQ_MASK
        if not self.cas(w, seq << 4 | REQUESTED):
            fail("PROTOCOL_VIOLATION", "the IDLE word changed under the requester (R-STATE-8)")
        self.pending = self.last_seq = seq
        return seq

    def receive(self) -> np.ndarray:
        seq = self.pending
        if seq is None:
            fail("OUT_OF_TURN", "no request is outstanding; expected a send first")
        start = time.monotonic()
        deadline, check_at = start + self.timeout, start + min(SPIN_S, self.timeout)
        while True:
            w = self.load()
            if w == seq << 4 | REPLIED:
                if self.cas(w, seq << 4):  # T4
                    self.pending = None
                    return self._finish_receive(seq)
                continue
            ph = w & 0xF
            if ph not in (REQUESTED, TAKEN) or w >> 4 & SEQ_MASK != seq:
                fail("PROTOCOL_VIOLATION", f"receive found the word {w:#x}, expected request "
                     f"#{seq} REQUESTED, TAKEN or REPLIED (R-STATE-8): a rogue writer")
            now = time.monotonic()
            if now >= check_at or now >= deadline:
                check_at = now + INTERVAL_S
                reason = self.peer_gone()
                if reason:
                    if self.cas(w, seq << 4):  # T5 / T7 (R-LIVE-3)
                        self.pending = None
                        fail("PEER_GONE", f"the responder {self._how(reason)}; request #{seq} "
                             "was withdrawn: start a responder and send again", reason=reason)
                    continue
            if now >= deadline:
                if ph == REQUESTED:
                    if self.cas(w, seq << 4):  # T5 (R-TIME-2)
                        self.pending = None
                        fail("TIMEOUT", f"no responder took request #{seq} within "
                             f"{self.timeout} s; withdrawn, send again")
                    continue
                fail("TIMEOUT", f"the responder holds request #{seq} and did not reply within "
                     f"{self.timeout} s; it stays outstanding")
            self.wait_change(w, deadline, start + SPIN_S)

    def _finish_receive(self, seq: int) -> np.ndarray:
        """R-MSG-5: reply_code first, then the descriptor of a successful reply."""
        rc = struct.unpack_from("<I", self.mm, OFF_REPLY_CODE)[0]
        if rc:
            name = CODE_NAMES.get(rc, "PROTOCOL_VIOLATION")
            reason = None
            if name == "PEER_GONE":
                reason = "CLOSED" if self.slot("responder")[1] == CLOSED else "DIED"
            fail(name, f"the responder rejected request #{seq}: reply_code {rc}",
                 reply_code=rc, reason=reason)
        self._check_message(reply_code=0)
        return self.payload.copy()

    def _check_message(self, reply_code: int | None = None) -> int:
        """R-MSG-1 in its order; returns the error code of a bad descriptor (0: fine)."""
        raw = bytes(self.mm[OFF_MESSAGE:OFF_MESSAGE + 80])
        if raw == self.declared:
            return 0
        cap = self.size - HEADER
        try:
            code, shape = check_desc(raw, cap, "message")
        except PeerError as e:
            e.reply_code = reply_code
            raise
        if code != DESC.unpack(self.declared)[0]:
            fail("DTYPE_MISMATCH", f"the message dtype is {code}, expected the declared "
                 f"{self.dtype}", reply_code=reply_code)
        fail("SHAPE_MISMATCH", f"the message shape is {shape}, expected the declared "
             f"{self.shape}", reply_code=reply_code)

    # -- responder (T2, T3, T8) ---------------------------------------------------------------
    def take(self) -> int:
        if self.held is not None:
            fail("OUT_OF_TURN", f"request #{self.held} is held; expected a reply first")
        start = time.monotonic()
        deadline, check_at = start + self.timeout, start + min(SPIN_S, self.timeout)
        while True:
            w = self.load()
            ph = w & 0xF
            if ph == REQUESTED:
                if not self.cas(w, (w & ~0xF) | TAKEN):  # T2
                    continue
                self.held = w >> 4 & SEQ_MASK
                try:
                    self._check_message()
                except PeerError as e:  # R-MSG-2: the round is still completed
                    self._answer(ERRORS[e.name]["code"])
                    raise
                return self.held
            if ph not in (IDLE, REPLIED):
                fail("PROTOCOL_VIOLATION", f"take found the word {w:#x} while holding nothing, "
                     "expected IDLE, REQUESTED or REPLIED (R-STATE-8): a rogue writer")
            now = time.monotonic()
            if now >= check_at or now >= deadline:
                check_at = now + INTERVAL_S
                reason = self.peer_gone()
                if reason and self.load() == w:  # R-LIVE-3: its last request first
                    fail("PEER_GONE", f"the requester {self._how(reason)}", reason=reason)
            if now >= deadline:
                fail("TIMEOUT", f"no request within {self.timeout} s; the channel is unchanged")
            self.wait_change(w, deadline, start + SPIN_S)

    def reply(self) -> None:
        self._answer(0)

    def _answer_raw(self, code: int) -> None:
        if code:
            self.mm[OFF_MESSAGE:OFF_MESSAGE + 80] = self.declared  # R-MSG-4
        struct.pack_into("<I", self.mm, OFF_REPLY_CODE, code)

    def _answer(self, code: int) -> None:
        """T3 with reply_code ``code``."""
        seq, self.held = self.held, None
        w = self.load()
        if w != seq << 4 | TAKEN:
            fail("PROTOCOL_VIOLATION", f"reply found the word {w:#x}, expected TAKEN #{seq}")
        self._answer_raw(code)
        if not self.cas(w, seq << 4 | REPLIED):
            fail("PROTOCOL_VIOLATION", "the held TAKEN word changed (R-STATE-8)")

    def _how(self, reason: str) -> str:
        return ("closed the channel (slot CLOSED, pid 0)" if reason == "CLOSED"
                else "died: its process is gone without closing; restart it")

    # -- close (R-CLOSE-1/2, R-SEG-3) -----------------------------------------------------------
    def close(self) -> None:
        if self.closed or self.mm is None:
            return
        self.closed = True

        def complete():
            if self.held is not None:
                try:
                    self._answer(ERRORS["PEER_GONE"]["code"])
                except PeerError:
                    pass

        self._release(self.role, complete)
        if self.created:
            self._release("creator")
        futex_wake_all(self.base + OFF_WORD)
        self.__dict__.pop("payload", None)  # absent when attach failed before it was set up
        del self._anchor
        self.mm.close()
        if self.created and not self.keep:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass

    def phase(self) -> str | None:
        return None if self.mm is None or self.closed else pk.phase_name(self.load())

    def header_hex(self, off: int, n: int = 80) -> str:
        return bytes(self.mm[off:off + n]).hex()


# ---------------------------------------------------------------- the peer (spec/PEER.md)
class Peer:
    def __init__(self, a):
        self.a, self.f = a, a.faults
        self.log = pk.EventLog(a.label, "minimal", a.role, a.name)
        self.ch: Channel | None = None
        self.rounds_ok = self.verified = self.mismatches = 0

    def event(self, op, rnd, t0, t1, result, seq=None, cs=None, **extra):
        phase = self.ch.phase() if self.ch else None
        self.log.event(op, rnd, t0, t1, result, seq, phase, cs, **extra)

    def call(self, op, rnd, fn, injected=False):
        """Runs one operation; logs and returns its error, or returns (t_call, t_return, value)."""
        t0 = pk.now_ns()
        try:
            value = fn()
            return None, (t0, pk.now_ns(), value)
        except PeerError as e:
            t1 = pk.now_ns()
            extra = {"reason": e.reason, "injected": injected or None}
            if op == "receive" and e.reply_code is not None:
                extra.update(self.reply_fields())
            self.event(op, rnd, t0, t1, e.name, message=str(e)[:300], **extra)
            return e, None

    def reply_fields(self):
        return {"reply_code": struct.unpack_from("<I", self.ch.mm, OFF_REPLY_CODE)[0],
                "message_desc": self.ch.header_hex(OFF_MESSAGE)}

    def point(self, when, where, rnd):
        if when == "before":
            self.f.jitter()
        self.f.delay(when, where, rnd)
        if self.f.crash_due(when, where, rnd):
            pk.die(self.log, self.f.crash_mode, rnd)

    def open(self):
        a = self.a
        t0 = pk.now_ns()
        try:
            self.ch = Channel(a.role, a.name, a.timeout)
            if a.create:
                self.ch.create(a.dtype, a.shape_t, a.capacity, not a.no_reclaim, a.keep)
            else:
                dtype, shape = a.dtype, a.shape_t
                if a.wrong_dtype:
                    dtype = pk.wrong_dtype(dtype)
                if a.wrong_shape:
                    shape = pk.wrong_shape(shape)
                self.ch.attach(dtype, shape)
        except PeerError as e:
            self.event("create" if a.create else "attach", 0, t0, pk.now_ns(), e.name,
                       message=str(e)[:300])
            raise
        self.event("create" if a.create else "attach", 0, t0, pk.now_ns(), "ok",
                   self.ch.load() >> 4, declared_desc=self.ch.header_hex(OFF_DECLARED))
        self.point("after", "ready", 0)
        if a.wait_peer:
            pk.wait_peer(a.name, a.role, 10.0)

    def run_requester(self):
        a, ch = self.a, self.ch
        rnd, gone_since = 1, None
        while rnd <= a.rounds:
            data = pk.pattern(ch.dtype, ch.shape, rnd, a.seed)
            if rnd == 1 and a.create and (a.wrong_shape or a.wrong_dtype):
                bad = pk.pattern(pk.wrong_dtype(ch.dtype) if a.wrong_dtype else ch.dtype,
                                 pk.wrong_shape(ch.shape) if a.wrong_shape else ch.shape,
                                 rnd, a.seed)
                self.call("send", rnd, lambda b=bad: ch.send(b), injected=True)
            if ch.pending is None:
                self.point("before", "send", rnd)
                err, val = self.call("send", rnd, lambda d=data: ch.send(d))
                if err:
                    raise err
                self.event("send", rnd, val[0], val[1], "ok", val[2], pk.hexsum(data))
                self.point("after", "send", rnd)
            self.point("before", "receive", rnd)
            err, val = self.call("receive", rnd, ch.receive)
            if err and err.name == "PEER_GONE" and a.on_peer_gone == "retry":
                gone_since = gone_since or time.monotonic()
                if time.monotonic() - gone_since <= a.timeout:
                    time.sleep(0.02)
                    continue
            if err:
                raise err
            reply = val[2]
            good = bool(np.array_equal(reply, pk.expected_reply(a.op, data))) \
                if a.op != "checksum" else pk.checksum(reply) == pk.checksum(data)
            self.event("receive", rnd, val[0], val[1], "ok", ch.last_seq, pk.hexsum(reply),
                       verified=good, **self.reply_fields())
            self.rounds_ok += 1
            self.verified += good
            self.mismatches += not good
            self.point("after", "receive", rnd)
            rnd, gone_since = rnd + 1, None

    def run_responder(self):
        a, ch = self.a, self.ch
        rnd, gone_since = 0, None
        while a.rounds == 0 or rnd < a.rounds:
            self.point("before", "take", rnd + 1)
            err, val = self.call("take", rnd + 1, ch.take)
            if err and err.name == "PEER_GONE":
                if a.on_peer_gone == "retry":
                    gone_since = gone_since or time.monotonic()
                    if time.monotonic() - gone_since <= a.timeout:
                        time.sleep(0.02)
                        continue
                if a.rounds == 0:
                    return  # end of service (R-LIVE-4)
            if err:
                raise err
            rnd, gone_since = rnd + 1, None
            self.event("take", rnd, val[0], val[1], "ok", val[2], pk.hexsum(ch.payload))
            self.point("after", "take", rnd)
            pk.apply_op(a.op, ch.payload)
            self.point("before", "reply", rnd)
            cs, seq = pk.hexsum(ch.payload), ch.held
            err, val = self.call("reply", rnd, ch.reply)
            if err:
                raise err
            self.event("reply", rnd, val[0], val[1], "ok", seq, cs)
            self.rounds_ok += 1
            self.verified += 1
            self.point("after", "reply", rnd)

    def close(self):
        if self.ch is None or self.ch.mm is None:
            return
        t0 = pk.now_ns()
        self.ch.close()
        self.event("close", 0, t0, pk.now_ns(), "ok")


def main(argv=None) -> int:
    a = pk.parse_args(sys.argv[1:] if argv is None else argv, prog="minimal_peer")
    if a.print_clock:
        print(json.dumps({"event": "clock", "t": pk.now_ns()}), flush=True)
        return 0
    unsupported = [f for f in MINIMAL_UNSUPPORTED if getattr(a, f)]
    if unsupported:
        sys.stderr.write(f"usage error: the minimal peer does not support --"
                         f"{unsupported[0].replace('_', '-')} (spec/PEER.md §6)\n")
        return 2
    peer = Peer(a)
    code, error = 0, None
    try:
        peer.open()
        peer.run_requester() if a.role == "requester" else peer.run_responder()
        if a.hold_ms > 0:
            time.sleep(a.hold_ms / 1000)
    except PeerError as e:
        code, error = e.exit_code, e.name
    peer.close()
    if code == 0 and peer.mismatches:
        code = 3
    peer.log.summary(peer.rounds_ok, peer.verified, peer.mismatches, code, error)
    return code


if __name__ == "__main__":
    sys.exit(main())
