"""Requester and Responder handles (PROTOCOL.md §4-§8), the second, independent implementation of
the protocol next to the C++ library.

Every change of the control word is a compare-and-swap from the exact expected value through the
native helper (R-STATE-2, R-STATE-4); the payload, ``message`` and ``reply_code`` are touched only
while the phase gives this side ownership (R-STATE-3).
"""

from __future__ import annotations

import contextlib
import math
import os
import struct
import sys
import time
import warnings
import weakref
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Callable, Generic, Optional, Protocol, TypeVar

import numpy as np
import numpy.typing as npt

from . import _native
from .dtype import DType, dtype_code
from .errors import (
    CapacityExceeded,
    DtypeMismatch,
    Error,
    ErrorCode,
    InvalidArgument,
    OutOfTurn,
    PeerGone,
    PeerGoneReason,
    ProtocolViolation,
    ShapeMismatch,
    Timeout,
    error_for,
    error_name,
)
from .layout import (
    DESCRIPTOR_SIZE,
    HEADER_SIZE,
    OFF_CREATOR,
    OFF_MESSAGE,
    OFF_REPLY_CODE,
    OFF_REQUESTER,
    OFF_RESPONDER,
    OFF_WAITERS,
    OFF_WORD,
    SLOT_ATTACHED,
    SLOT_CLOSED,
    Descriptor,
    Header,
    Slot,
    decode_descriptor,
    decode_header,
    encode_descriptor,
    encode_header,
)
from .layout_v2 import HeaderV2
from .liveness import (
    claim_slot,
    mark_slot_closed,
    own_start_time,
    process_alive,
    release_slot,
    slot_owner,
)
from .naming import validate_name
from .protocol import SEQ_MASK, Peer, Phase, encode_word, phase_of, seq_of
from .segment import Segment, SegmentNameRemovedWarning, name_removed_message
from .wait import block, open_events, spin, wake

__all__ = ["Options", "Reply", "Request", "Requester", "Responder", "ViewEscapedWarning"]

_U32 = struct.Struct("<I")
_cas_wake = _native.cas_wake
_load = _native.load_acquire
_wait_cas = _native.wait_cas
_CHANGED, _LEFT, _WAITING = (
    _native.WAIT_CAS_CHANGED,
    _native.WAIT_CAS_LEFT,
    _native.WAIT_CAS_WAITING,
)
_SPIN_SLICE = _native.MAX_SPIN_SLICE_S  # the longest spin of one native call
_IDLE, _REQUESTED, _TAKEN, _REPLIED = (
    int(p) for p in (Phase.IDLE, Phase.REQUESTED, Phase.TAKEN, Phase.REPLIED)
)
# The phase values of the table as plain ints: the hot paths test membership here instead of
# building a Phase enum per word (``phase_of``), which costs more than the rest of the check.
_PHASES = frozenset(int(p) for p in Phase)
_ERROR_CODES = frozenset(int(c) for c in ErrorCode)
# A step of the native wait-and-CAS (``_native.wait_cas``): match mask and value, keep mask, bits
# set, wait mask and the two words waited in.
_Step = tuple[int, int, int, int, int, int, int]
# Bit masks of the native wait-and-CAS steps: the whole word, and all but the phase bits (the
# seq a transition keeps).
_ALL, _KEEP_SEQ = 0xFFFFFFFF, 0xFFFFFFFF & ~0xF
_MESSAGE_END = OFF_MESSAGE + DESCRIPTOR_SIZE
# reply_code follows the message descriptor: one slice reads both at take (Responder._taken).
assert OFF_REPLY_CODE == _MESSAGE_END
_REPLY_CODE_END = OFF_REPLY_CODE + 4
# T2: wait in IDLE or REPLIED (any seq) for REQUESTED, then REQUESTED -> TAKEN (same seq).
_TAKE_STEP: _Step = (0xF, _REQUESTED, _KEEP_SEQ, _TAKEN, 0xF, _IDLE, _REPLIED)


_getrefcount: Callable[[Any], int] = getattr(sys, "getrefcount", lambda obj: -1)


def _refs_of_a_local() -> int:
    """What sys.getrefcount reports for an object that only one local variable refers to, as
    measured on this interpreter; 0 where the count cannot be trusted (no getrefcount, or a
    free-threaded build, whose counts are deferred), which turns the reuse it guards off."""
    if not hasattr(sys, "getrefcount") or not getattr(sys, "_is_gil_enabled", lambda: True)():
        return 0
    probe = np.zeros(1).view()
    return sys.getrefcount(probe)


class _Holder:
    __slots__ = ("held",)
    held: Any


def _refs_of_an_attribute_and_a_local() -> int:
    """As :func:`_refs_of_a_local`, for an object one attribute and one local refer to (the
    requester's last Reply while ``receive`` decides whether to reuse it)."""
    if not _refs_of_a_local():
        return 0
    holder = _Holder()
    holder.held = probe = np.zeros(1).view()
    return sys.getrefcount(probe)


_REFS_OF_AN_ATTRIBUTE_AND_A_LOCAL = _refs_of_an_attribute_and_a_local()

# ndarray.setflags(write=...) with the flag positional: the keyword costs the parse of a keyword
# dict, a tenth of a 64 B zero-copy round (callgrind). numpy's stubs declare the flags
# keyword-only; the implementation (PyArg_ParseTupleAndKeywords "|OOO") takes them in order.
_set_writeable: Callable[[np.ndarray[Any, Any], bool], None]
_set_writeable = np.ndarray.setflags  # type: ignore[assignment]


class ViewEscapedWarning(ResourceWarning):
    """A zero-copy view was still referenced after its lease ended (R-CLOSE-3): it has been made
    read-only and its contents may change under it."""


@dataclass(frozen=True)
class Options:
    """Channel options (names as in the C++ ``shmbridge::Options``)."""

    timeout: float = 5.0  #: default deadline of blocking operations and of attach, seconds
    spin: float = 100e-6  #: spin budget before blocking in the OS (R-WAIT-1)
    #: longest OS wait between peer checks (R-WAIT-4); a dead peer is noticed within about two
    #: intervals (the peer timeout of R-LIVE-3 is this bound, not a setting)
    liveness_interval: float = 0.05
    reclaim_stale: bool = True  #: reclaim a segment left by a dead creator (R-STALE-2)
    keep_segment: bool = False  #: creator: do not unlink on close (R-SEG-3)

    def __post_init__(self) -> None:
        for field in ("timeout", "spin", "liveness_interval"):
            v = getattr(self, field)
            if not isinstance(v, (int, float)) or math.isnan(v) or v < 0:
                raise InvalidArgument(f"option {field} must be a number >= 0, found {v!r}")
        if self.liveness_interval <= 0:
            raise InvalidArgument("option liveness_interval must be > 0")


def _options(opts: Options | None, kw: dict[str, Any]) -> Options:
    base = opts if opts is not None else Options()
    if not kw:
        return base
    fields = {k: getattr(base, k) for k in Options.__dataclass_fields__}
    for k, v in kw.items():
        if k not in fields:
            raise InvalidArgument(f"unknown option {k!r}; expected one of {sorted(fields)}")
        fields[k] = v
    return Options(**fields)


def _timeout(value: float | None, default: float) -> float:
    if value is None:
        return default  # validated once by Options
    if type(value) is float and value >= 0:  # the common case (NaN fails the comparison)
        return value
    t = value
    if not isinstance(t, (int, float)) or math.isnan(t) or t < 0:
        raise InvalidArgument(f"timeout must be a number >= 0 (seconds), found {value!r}")
    return float(t)


def _shape_tuple(shape: Any) -> tuple[int, ...]:
    if isinstance(shape, (int, np.integer)):
        shape = (shape,)
    try:
        out = tuple(int(s) for s in shape)
    except TypeError:
        raise InvalidArgument(f"shape must be a sequence of ints, found {shape!r}") from None
    if any(s < 0 for s in out):
        raise InvalidArgument(f"shape extents must be >= 0, found {out}")
    if len(out) > 8:
        raise ShapeMismatch(f"shape {out} has {len(out)} dims; protocol v1 allows at most 8")
    return out


class _Lease:
    """Tracks the zero-copy views handed out for one ownership period (R-CLOSE-3)."""

    __slots__ = ("views",)

    def __init__(self) -> None:
        self.views: list[weakref.ReferenceType[np.ndarray[Any, Any]]] = []

    def end(self) -> None:
        for ref in self.views:
            v = ref()
            if v is not None:
                _set_writeable(v, False)  # (half the cost of ``flags.writeable =``)
        self.views.clear()


class _Handle:
    """State shared by both roles and both protocol versions: the mapping, the payload, the word
    accessors, liveness, waiting and closing. How a message is checked, written and read is the
    format's (the hooks below): :class:`_ArrayFormat` for v1, ``message._MessageFormat`` for v2
    (PROTOCOL.md R-VER-1: one state machine for both)."""

    _role: str = ""
    _slot: int = 0
    _peer_slot: int = 0

    def __init__(self, seg: Segment, header: Header | HeaderV2, opts: Options) -> None:
        self._seg: Segment | None = seg
        mm = seg.mm
        assert mm is not None
        self._mm = mm
        self._opts = opts
        # The spin of the first native call of a blocking operation (R-WAIT-1).
        self._first_spin = min(opts.spin, _SPIN_SLICE)
        self._capacity = header.capacity
        if self._capacity > 0:  # the payload starts at header_size (512 in v1, R-SCHEMA-5 in v2)
            self._payload: np.ndarray[Any, np.dtype[np.uint8]] = np.frombuffer(
                mm, dtype=np.uint8, count=self._capacity, offset=header.header_size
            )
        else:
            self._payload = np.zeros(0, dtype=np.uint8)
        self._init_message(header)
        # R-LIVE-3 process probe cache: (pid, start_time, claiming) -> alive, until expiry.
        self._probe_key: tuple[int, int, bool] = (0, 0, False)
        self._probe_alive = False
        self._probe_expiry = 0.0
        self._gone_reason = PeerGoneReason.DIED  # why _peer() last returned GONE (R-LIVE-5)
        self._closed = False
        self._all_views: list[weakref.ReferenceType[np.ndarray[Any, Any]]] = []
        # Windows wait events, opened once per handle (R-WAIT-1); None on POSIX.
        self._events = open_events(seg.name, self._role)
        self._name_removed = False  # R-SEG-9, latched

    # -- introspection ------------------------------------------------------------------------

    @property
    def name(self) -> str:
        return self._seg.name if self._seg is not None else ""

    @property
    def capacity(self) -> int:
        return self._capacity

    @property
    def created(self) -> bool:
        return self._seg is not None and self._seg.created

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def name_removed(self) -> bool:
        """R-SEG-9 (creator, POSIX): another process removed the segment's name while it is
        mapped (e.g. a Python < 3.13 script that attached with multiprocessing.shared_memory).
        Not an error: the channel keeps working for the peers already attached, but no new peer
        can attach by name. Checked now and with each liveness probe while waiting; stays True
        once seen, and the first time issues a SegmentNameRemovedWarning."""
        return self._check_name()

    def _check_name(self) -> bool:
        if not self._name_removed and self._seg is not None and self._seg.name_removed():
            self._name_removed = True
            warnings.warn(name_removed_message(self._seg.name), SegmentNameRemovedWarning, 3)
        return self._name_removed

    @property
    def segment_size(self) -> int:
        """Diagnostics (spec/API.md): the size of this handle's mapping in bytes."""
        self._check_open()
        return len(self._mm)

    def segment_bytes(self, offset: int, n: int) -> bytes:
        """Diagnostics (spec/API.md): a copy of ``n`` bytes of this handle's own mapping at
        ``offset`` (plain reads; e.g. the conformance peer's header fields, spec/PEER.md §2).
        Works after the name was removed (R-SEG-9); InvalidArgument outside the mapping."""
        size = self.segment_size
        if not (0 <= offset <= size and 0 <= n <= size - offset):
            raise InvalidArgument(
                f"segment_bytes: expected a range within the mapping of {size} bytes, found "
                f"{n} bytes at offset {offset}; read inside [0, segment_size)"
            )
        return bytes(self._mm[offset : offset + n])

    def word(self) -> int:
        """The control word (acquire load)."""
        self._check_open()
        return _native.load_acquire(self._mm, OFF_WORD)

    def phase(self) -> Phase | None:
        """The phase of the word, None if it holds a value outside the table."""
        return phase_of(self.word())

    def seq(self) -> int:
        return seq_of(self.word())

    def status(self) -> int:
        return self.word() & 3

    # -- internals ----------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise InvalidArgument(f"the {self._role} handle is closed")

    def _cas(self, expected: int, desired: int) -> bool:
        """R-STATE-2 CAS of the word and, if it changed, the R-WAIT-3 wake: one native call."""
        found: int = _cas_wake(self._mm, OFF_WORD, OFF_WAITERS, expected, desired, self._events)
        return found == expected

    def _track(self, v: np.ndarray[Any, Any], lease: _Lease) -> np.ndarray[Any, Any]:
        """Register a zero-copy view with ``lease`` and with the handle (R-CLOSE-3)."""
        if len(self._all_views) > 64:
            self._all_views = [r for r in self._all_views if r() is not None]
        ref = weakref.ref(v)  # one weakref for both lists
        self._all_views.append(ref)
        lease.views.append(ref)
        return v

    # -- message format hooks (v1: _ArrayFormat; v2: message._MessageFormat) -------------------

    def _init_message(self, header: Any) -> None:
        """Set up what the format needs from the validated header (called by __init__)."""
        raise NotImplementedError

    def _check_message(self, who: str) -> Error | None:
        """The error of the message just received (``who``: "take" after T2, "receive" after a
        T4 whose reply_code is 0), or None (v1 R-MSG-1, v2 R-FIELD-8)."""
        raise NotImplementedError

    def _write_message(self) -> None:
        """What the format writes before T1 and before an error reply (v1: message = declared,
        R-MSG-4; v2: nothing, R-FIELD-10)."""
        raise NotImplementedError

    def _write_reply(self, reply_code: int) -> None:
        """Responder only, before T3/T8 (R-STATE-3: the requester never writes reply_code). A
        successful reply follows a take that found ``message == declared`` (R-MSG-1), which
        nobody writes while the request is TAKEN: only error replies rewrite it."""
        if reply_code:
            self._write_message()
        # Stored only when it changes (as C++ set_reply_code): the line stays shared.
        if _U32.unpack_from(self._mm, OFF_REPLY_CODE)[0] != reply_code:
            _U32.pack_into(self._mm, OFF_REPLY_CODE, reply_code)

    def _peer(self) -> Peer:
        """What a waiting side sees in its peer's slot (R-LIVE-3, R-LIVE-4), as
        :func:`liveness.peer_status`, but with the process probe cached for one liveness interval
        (as C++ ``Core::peer_state``). The slot's state, pid and start_time are read from shared
        memory on every call, so a CLOSED slot or a new owner is seen at once; only the probe of
        the same (pid, start_time) is reused, for half a liveness interval."""
        pid, state, start = slot_owner(self._mm, self._peer_slot)  # pid first (R-LIVE-6)
        if pid == 0:
            # Closed, or nobody holds the slot (EMPTY; ATTACHED = a claim completed between the
            # two loads): no peer yet, which does not end a wait (R-LIVE-3).
            if state == SLOT_CLOSED:
                self._gone_reason = PeerGoneReason.CLOSED
                return Peer.GONE
            return Peer.EMPTY
        # A slot being claimed (R-LIVE-1) or closed (R-CLOSE-1) is judged by its pid alone: its
        # start_time may be the previous owner's.
        claiming = state != SLOT_ATTACHED
        key = (pid, 0 if claiming else start, claiming)
        now = time.monotonic()
        if key != self._probe_key or now >= self._probe_expiry:
            self._probe_alive = process_alive(pid, key[1])
            self._check_name()  # R-SEG-9: the creator checks its name with each probe
            self._probe_key = key
            # Half an interval: the wait loops check every interval, so each of their checks
            # finds the probe expired (a death is seen within interval + slice, R-LIVE-3), while
            # back-to-back rounds reuse it.
            self._probe_expiry = now + 0.5 * self._opts.liveness_interval
        if self._probe_alive:
            return Peer.ATTACHED
        self._gone_reason = PeerGoneReason.DIED
        return Peer.GONE

    def _peer_gone(self, what: str) -> PeerGone:
        """PEER_GONE with the reason of the last _peer() that found the peer gone (R-LIVE-5)."""
        other = "responder" if self._role == "requester" else "requester"
        if self._gone_reason is PeerGoneReason.CLOSED:
            how = f"the {other} of {self.name!r} closed the channel (slot CLOSED, pid 0)"
            todo = f"attach a new {other} to go on"
        else:
            how = (
                f"the {other} of {self.name!r} died: process {self._probe_key[0]} is gone "
                "without closing"
            )
            todo = f"restart the {other} (it crashed)"
        return PeerGone(
            f"{what}: expected the {other} attached and alive, found that {how}; {todo}",
            reason=self._gone_reason,
        )

    def _step(self, step: _Step, spin_s: float, block_s: float) -> tuple[int, int]:
        """One call of the native wait-and-CAS (``_native.wait_cas``) with the transition
        ``step`` (match mask and value, keep mask, bits set, wait mask, the two words waited in):
        (status, word)."""
        r = _wait_cas(self._mm, OFF_WORD, OFF_WAITERS, *step, spin_s, block_s, self._events)
        w = r & _ALL
        return r - w, w

    @staticmethod
    def _budgets(
        now: float, spin_end: float, deadline: float, check_at: float
    ) -> tuple[float, float]:
        """(spin, block) budgets of the next wait: spin until ``spin_end`` (fixed when the
        operation started, R-WAIT-1), then block until the next liveness check or the deadline,
        whichever comes first (R-WAIT-4)."""
        if now < spin_end:
            return min(spin_end, deadline) - now, 0.0
        return 0.0, max(0.0, min(deadline, check_at) - now)

    def _wait_change(self, word: int, deadline: float, check_at: float, spin_end: float) -> None:
        """Wait for the word to differ from ``word``: spin until ``spin_end``, then block in the OS
        until the next liveness check or the deadline, whichever comes first (R-WAIT-1, R-WAIT-4).
        ``spin_end`` is fixed when the operation starts: a change the operation does not wait for
        (REQUESTED -> TAKEN while receiving) must not end its spin, or the reply would always
        cost a futex sleep and wake-up (bench: 64 B Python -> Python took 28 us instead of 5 us)."""
        now = time.monotonic()
        if now < spin_end:
            spin(self._mm, word, min(spin_end, deadline) - now)
            return
        limit = min(deadline, check_at) - now
        if limit > 0:
            block(self._mm, word, limit, self._events)

    def _violation(self, word: int, what: str) -> ProtocolViolation:
        return ProtocolViolation(
            f"{what}: the control word holds {word:#010x} (phase bits {word & 0xF:#x}, seq "
            f"{seq_of(word)}), which no legal transition produces; a rogue or naive writer is "
            "using the segment: stop it and recreate the segment"
        )

    # -- closing ------------------------------------------------------------------------------

    def _release(self) -> None:
        """Common close steps (R-CLOSE-1): slot CLOSED (if a responder's close did not store it
        already) and pid 0, then the creator slot, wake, unmap, creator unlinks."""
        seg = self._seg
        if seg is None:
            return
        mm = self._mm
        release_slot(mm, self._slot)
        if seg.created:
            release_slot(mm, OFF_CREATOR)
        wake(mm, self._events)  # R-CLOSE-1 / R-WAIT-3: let blocked peers see CLOSED
        if self._events is not None:
            self._events.close()
        escaped = self._escaped_views()
        for v in escaped:
            v.flags.writeable = False
        if escaped:
            warnings.warn(
                f"{self._role} on {seg.name!r} closed while {len(escaped)} zero-copy view(s) are "
                "still referenced; they stay readable (the mapping is kept until they are gone) "
                "but no longer reflect the channel",
                ViewEscapedWarning,
                stacklevel=3,
            )
        self._seg = None
        del self._payload
        del self._mm
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            seg.close()

    def _escaped_views(self) -> list[np.ndarray[Any, Any]]:
        """The zero-copy views still referenced outside the handle, once the format has dropped
        its own references into the mapping (R-CLOSE-3)."""
        self._drop_message()
        return [v for v in (r() for r in self._all_views) if v is not None]

    def _drop_message(self) -> None:
        """Drop the format's references into the mapping before it is unmapped."""

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Any:
        return self

    def __exit__(
        self,
        et: type[BaseException] | None,
        ev: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            if not getattr(self, "_closed", True):
                self.close()
        except Exception:
            pass


class _ArrayFormat(_Handle):
    """Protocol v1's message format: one array of the declared dtype and shape at the start of
    the payload, described by the ``message`` descriptor (PROTOCOL.md §3, R-MSG-*)."""

    def _init_message(self, header: Header) -> None:
        self._declared = header.declared
        self._declared_bytes = encode_descriptor(header.declared)
        # message = declared and reply_code = 0: what a v1 take finds after a successful round.
        self._declared_and_ok = self._declared_bytes + bytes(4)
        self._dtype: np.dtype[Any] = DType(header.declared.dtype).numpy
        self._shape = header.declared.shape
        self._nbytes = header.declared.nbytes
        # The typed payload, built once: operations hand out ``.view()`` of it (cheap).
        self._typed: np.ndarray[Any, Any] = (
            self._payload[: self._nbytes].view(self._dtype).reshape(self._shape)
        )
        self._read_only: np.ndarray[Any, Any] | None = None  # see _view

    def _drop_message(self) -> None:
        del self._typed
        self._read_only = None

    @property
    def dtype(self) -> np.dtype[Any]:
        return self._dtype

    @property
    def shape(self) -> tuple[int, ...]:
        return self._shape

    def header(self) -> Header:
        """A decoded snapshot of the header (for diagnostics)."""
        self._check_open()
        return decode_header(
            self._mm[:HEADER_SIZE], self._seg.size if self._seg else 0, check_message=False
        )

    def _view(self, lease: _Lease, writable: bool) -> np.ndarray[Any, Any]:
        if not writable:
            # One read-only view serves every receive and answered request: a new one would
            # show the same bytes, change with them after the next send just the same (R-CLOSE-3:
            # valid until then), and cost a view, a flag and a weakref per round.
            ro = self._read_only
            if ro is None:
                ro = self._read_only = self._typed.view()
                ro.setflags(write=False)
                self._all_views.append(weakref.ref(ro))
            return ro
        v: np.ndarray[Any, Any] = self._typed.view()  # writable like its base
        # _track, inline (once per round on the responder's hot path).
        if len(self._all_views) > 64:
            self._all_views = [r for r in self._all_views if r() is not None]
        ref = weakref.ref(v)
        self._all_views.append(ref)
        lease.views.append(ref)
        return v

    def _check_array(self, array: Any) -> np.ndarray[Any, Any]:
        arr = np.asarray(array)
        if arr.dtype != self._dtype:
            try:
                code = dtype_code(arr.dtype).name
            except DtypeMismatch:
                code = str(arr.dtype)
            raise DtypeMismatch(
                f"array dtype {code} differs from the declared dtype {self._dtype.name}; "
                f"convert it with .astype(np.{self._dtype.name})"
            )
        if arr.shape != self._shape:
            raise ShapeMismatch(
                f"array shape {arr.shape} differs from the declared shape {self._shape}; "
                "reshape it or create the segment with that shape"
            )
        if arr.nbytes > self._capacity:
            raise CapacityExceeded(
                f"array needs {arr.nbytes} bytes, the payload capacity is {self._capacity}"
            )
        return arr

    def _check_message(self, who: str) -> Error | None:
        """R-MSG-1: the published message descriptor must equal ``declared``."""
        raw = self._mm[OFF_MESSAGE : OFF_MESSAGE + DESCRIPTOR_SIZE]
        if raw == self._declared_bytes:
            return None
        try:
            msg = decode_descriptor(raw, self._capacity, "message descriptor")
        except Error as e:
            return e
        exp = self._declared.describe()
        if msg.dtype != self._declared.dtype:
            return DtypeMismatch(f"{who}: message dtype is {msg.describe()}, expected {exp}")
        return ShapeMismatch(f"{who}: message shape is {msg.describe()}, expected {exp}")

    def _write_message(self) -> None:
        # Stores only a changed descriptor (as C++ publish_message): in steady state its cache
        # lines then stay shared by both peers instead of changing owner every round.
        mm = self._mm
        if mm[OFF_MESSAGE : OFF_MESSAGE + DESCRIPTOR_SIZE] != self._declared_bytes:
            mm[OFF_MESSAGE : OFF_MESSAGE + DESCRIPTOR_SIZE] = self._declared_bytes

    # -- construction helpers -----------------------------------------------------------------

    @classmethod
    def _new_header(cls, dtype: Any, shape: Any, capacity: int | None) -> Header:
        code = dtype_code(dtype)
        shp = _shape_tuple(shape)
        desc = Descriptor(int(code), shp)
        cap = desc.nbytes if capacity is None else int(capacity)
        if cap < desc.nbytes:
            raise CapacityExceeded(
                f"capacity {cap} is smaller than the declared array {desc.describe()} "
                f"({desc.nbytes} bytes)"
            )
        me = Slot(os.getpid(), SLOT_ATTACHED, own_start_time(), 1)
        return Header(
            capacity=cap,
            declared=desc,
            message=desc,
            creator=me,
            requester=me if cls._role == "requester" else Slot(),
            responder=me if cls._role == "responder" else Slot(),
        )

    @classmethod
    def _attach_segment(
        cls, name: str, dtype: Any, shape: Any, opts: Options, deadline: float
    ) -> tuple[Segment, Header]:
        """Waits for the segment until ``deadline`` (R-ATTACH-1), validates it, compares the
        expectations (R-LAYOUT-7) and claims the role's slot (R-LIVE-1)."""
        want_dtype = None if dtype is None else dtype_code(dtype)
        want_shape = None if shape is None else _shape_tuple(shape)
        seg = Segment.attach(name, deadline=deadline)
        try:
            mm = seg.mm
            assert mm is not None
            # Both descriptors are validated, as by the C++ attach (R-LAYOUT-5, vectors D3).
            header = decode_header(mm[:HEADER_SIZE], seg.size)
            d = header.declared
            if want_dtype is not None and int(want_dtype) != d.dtype:
                raise DtypeMismatch(
                    f"segment {seg.name!r} declares {d.describe()}, expected dtype "
                    f"{want_dtype.name}; attach with the creator's dtype"
                )
            if want_shape is not None and want_shape != d.shape:
                raise ShapeMismatch(
                    f"segment {seg.name!r} declares {d.describe()}, expected shape "
                    f"{want_shape}; attach with the creator's shape"
                )
            claim_slot(mm, OFF_REQUESTER if cls._role == "requester" else OFF_RESPONDER, cls._role)
        except BaseException:
            seg.close()
            raise
        return seg, header

    @classmethod
    def _create_segment(
        cls, name: str, dtype: Any, shape: Any, capacity: int | None, opts: Options
    ) -> tuple[Segment, Header]:
        validate_name(name)
        header = cls._new_header(dtype, shape, capacity)
        seg = Segment.create(
            name,
            HEADER_SIZE + header.capacity,
            encode_header(header),
            reclaim_stale=opts.reclaim_stale,
            keep=opts.keep_segment,
            deadline=time.monotonic() + min(opts.timeout, 1.0),
        )
        return seg, header


# ---------------------------------------------------------------------------------------------
# Requester
# ---------------------------------------------------------------------------------------------


class Reply:
    """A received reply: ``array`` is a zero-copy read-only view, valid until the next send
    (R-CLOSE-3). Use it as a context manager: ``with req.receive() as a: ...``."""

    __slots__ = ("_lease", "array", "seq")

    def __init__(self, array: np.ndarray[Any, Any], seq: int, lease: _Lease) -> None:
        self.array = array
        self.seq = seq
        self._lease = lease

    def __enter__(self) -> np.ndarray[Any, Any]:
        return self.array

    def __exit__(
        self,
        et: type[BaseException] | None,
        ev: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        lease = self._lease
        if lease.views:
            lease.end()

    def copy(self) -> np.ndarray[Any, Any]:
        out: np.ndarray[Any, Any] = self.array.copy()
        return out


class _RequestBuffer:
    """``with req.request_buffer() as buf:`` fill ``buf`` in place; it is sent on a clean exit.
    One per requester, reused by every block, with one view: writable inside a block only, so a
    ``buf`` kept after the block cannot write while the responder owns the payload (R-CLOSE-3),
    and a block nested in another (its exit sends) ends the outer block's writes too. Making and
    tracking a new view per block would cost more than the rest of a zero-copy send."""

    __slots__ = ("_owner", "_word", "array")

    def __init__(self, owner: Requester, view: np.ndarray[Any, Any]) -> None:
        self._owner = owner
        self._word = 0
        self.array = view  # read-only outside a block

    def __enter__(self) -> np.ndarray[Any, Any]:
        self._word = self._owner._prepare_send()  # T1 CASes from it: any other writer is caught
        a = self.array
        _set_writeable(a, True)
        return a

    def __exit__(
        self,
        et: type[BaseException] | None,
        ev: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        _set_writeable(self.array, False)  # the block's lease ends (R-CLOSE-3)
        if et is None:
            owner = self._owner
            if owner._pending is not None:  # sent inside the block: this buffer's turn is gone
                raise OutOfTurn(
                    f"request_buffer: request #{owner._pending} was sent inside the block; "
                    "expected the block to only fill the buffer (it is sent on leaving it)"
                )
            owner._publish_request(self._word)


class _RequesterCore(_Handle):
    """The requester's side of the state machine (§4-§7), for both protocol versions: send's
    precondition and T1, receive (T4, and T5/T7 on timeout and peer death), recovery on attach
    (R-REC-1) and close. :class:`Requester` (v1) and ``MessageRequester`` (v2) add their API."""

    _role = "requester"
    _slot = OFF_REQUESTER
    _peer_slot = OFF_RESPONDER

    def __init__(self, seg: Segment, header: Header | HeaderV2, opts: Options) -> None:
        super().__init__(seg, header, opts)
        self._pending: int | None = None
        self._timed_out = False  # the outstanding request timed out while TAKEN (D6)
        # The last receive found message = declared (v1 Requester._finish_receive): nobody else
        # writes it while the requester owns the channel, so the next send need not rewrite it.
        self._message_known = False
        self._reply_lease = _Lease()
        self._last_seq = seq_of(_native.load_acquire(self._mm, OFF_WORD))

    def _resync(self) -> None:
        """Test hook (vectors README D11): re-read the word after a harness pre-set its seq."""
        self._last_seq = seq_of(_native.load_acquire(self._mm, OFF_WORD))

    def _recover_on_attach(self, deadline: float) -> None:
        """R-REC-1 for a handle that just attached; a failure releases its slot and mapping."""
        try:
            self._recover(deadline)
        except BaseException:
            self._closed = True
            self._release()
            raise

    def _recover(self, deadline: float) -> None:
        """R-REC-1: bring the channel back to IDLE before the first send."""
        check_at = 0.0
        spin_end = time.monotonic() + self._opts.spin
        while True:
            w = _native.load_acquire(self._mm, OFF_WORD)
            ph = w & 0xF
            if ph == _IDLE:
                self._last_seq = seq_of(w)
                return
            if ph in (_REQUESTED, _REPLIED):  # T5 (orphan counts as own) / T6
                self._cas(w, w & ~0xF)
                continue
            if ph != _TAKEN:
                # R-STATE-11: attach does not judge a phase outside the table; the first
                # operation that reads the word reports PROTOCOL_VIOLATION.
                self._last_seq = seq_of(w)
                return
            now = time.monotonic()
            if now >= check_at or now >= deadline:
                if self._peer() is Peer.GONE:
                    self._cas(w, w & ~0xF)  # T7
                    continue
                check_at = now + self._opts.liveness_interval
            if now >= deadline:
                raise Timeout(
                    f"attach to {self.name!r}: the responder still holds request #{seq_of(w)} "
                    "of a previous requester; expected it to reply within the attach timeout; "
                    "retry later or raise the timeout"
                )
            self._wait_change(w, deadline, check_at, spin_end)

    def pending(self) -> int | None:
        """The seq of the outstanding request, or None."""
        return self._pending

    # -- send -----------------------------------------------------------------------------------

    def _prepare_send(self) -> int:
        """Preconditions and phase check of send (R-STATE-10, T1's from). Returns the word."""
        if self._closed:
            self._check_open()
        mm = self._mm
        if self._pending is not None:
            w = _native.load_acquire(mm, OFF_WORD)
            if (
                self._timed_out
                and w == encode_word(Phase.REPLIED, self._pending)
                and self._cas(w, w & ~0xF)
            ):
                # R-STATE-10: the late reply to a timed-out request is consumed (T4) and dropped
                # with its reply_code (D7).
                self._pending = None
                self._timed_out = False
                self._last_seq = seq_of(w)
            else:
                raise OutOfTurn(
                    f"send: request #{self._pending} is still outstanding (the responder holds "
                    "it or has not taken it); expected no request pending: receive() its reply "
                    "first"
                )
        w = _load(mm, OFF_WORD)
        if w != self._last_seq << 4:  # not IDLE (phase 0) with the seq of our last round
            if w & 0xF != _IDLE:
                raise self._error_for_word(w, "send")
            self._check_idle_seq(w, "send")
        if self._reply_lease.views:
            self._reply_lease.end()
        return w

    def _check_idle_seq(self, w: int, what: str) -> None:
        if (w >> 4) & SEQ_MASK != self._last_seq:
            raise ProtocolViolation(
                f"{what}: the channel is IDLE with seq {seq_of(w)}, expected seq {self._last_seq} "
                "(the requester owns the payload in IDLE; nobody else may change the word, "
                "R-STATE-8): a rogue writer is using the segment"
            )

    def _publish_request(self, w: int | None = None) -> int:
        """Write message and CAS IDLE -> REQUESTED (T1, release); reply_code is the responder's.
        ``w``: the IDLE word ``_prepare_send`` checked, if nothing ran in between but writes of
        the payload (the requester owns the word in IDLE: the CAS catches any other writer)."""
        if w is None:
            w = _native.load_acquire(self._mm, OFF_WORD)
            if w & 0xF != _IDLE:
                raise self._error_for_word(w, "send")
            self._check_idle_seq(w, "send")
        if self._message_known:
            self._message_known = False  # once: a reply to this request may rewrite it
        else:
            self._write_message()
        seq = ((w >> 4) + 1) & SEQ_MASK  # next seq, wrapping at 28 bits
        if (
            _cas_wake(self._mm, OFF_WORD, OFF_WAITERS, w, (seq << 4) | _REQUESTED, self._events)
            != w
        ):
            # Only a rogue writer can change an IDLE word the requester owns (R-STATE-9).
            raise self._violation(_native.load_acquire(self._mm, OFF_WORD), "send")
        self._pending = self._last_seq = seq
        self._timed_out = False
        return seq

    def _error_for_word(self, w: int, what: str) -> Error:
        if phase_of(w) is None:
            return self._violation(w, what)
        # R-STATE-8: with nothing pending the requester owns the word in IDLE and only it moves
        # the word out of IDLE: another phase is a rogue write.
        return ProtocolViolation(
            f"{what}: no request is pending but the channel is {Phase(w & 0xF).name} "
            f"(seq {seq_of(w)}), expected IDLE seq {self._last_seq} (R-STATE-8); a rogue or "
            "naive writer is using the segment: stop it and recreate the segment"
        )

    def _receive(self, timeout: float) -> int:
        pending = self._pending
        if pending is None:
            raise OutOfTurn("receive: no request is outstanding; expected a send() first")
        # T4 in one native call when the reply is there or comes within the spin budget: wait in
        # REQUESTED or TAKEN of the own request (the spin goes on through REQUESTED -> TAKEN)
        # for REPLIED of it, then REPLIED -> IDLE.
        base = pending << 4
        first_spin = self._first_spin if timeout >= self._first_spin else timeout
        # The step spelled out: a call with *step costs a tuple and the slow call protocol,
        # about 2,000 instructions (callgrind), a tenth of a copying round.
        r = _wait_cas(
            self._mm, OFF_WORD, OFF_WAITERS,
            _ALL, base | _REPLIED, _KEEP_SEQ, _IDLE, _ALL, base | _REQUESTED, base | _TAKEN,
            first_spin, 0.0, self._events,
        )  # fmt: skip
        if r > _ALL:  # not changed (a result < 2**32 is the word the CAS replaced)
            w = r & _ALL
            # the call above, as a tuple for the next waits
            step: _Step = (
                _ALL, base | _REPLIED, _KEEP_SEQ, _IDLE, _ALL, base | _REQUESTED, base | _TAKEN
            )  # fmt: skip
            self._receive_slow(pending, step, r - w, w, timeout, first_spin)
        self._pending = None
        self._timed_out = False
        self._last_seq = pending
        return self._finish_receive(pending)

    def _receive_slow(
        self, pending: int, step: _Step, st: int, w: int, timeout: float, spun: float
    ) -> None:
        """The rest of a receive whose first spin ended without the reply: the words no receive
        accepts (R-STATE-6, R-STATE-8), liveness with T5/T7 (R-LIVE-3), the deadline with T5
        (R-TIME-2), further spinning and blocking (R-WAIT-1, R-WAIT-4, R-WAIT-5). Returns once T4
        is done."""
        now = time.monotonic()
        start = now - spun if st == _WAITING else now  # the first call spun ``spun`` seconds
        deadline = start + timeout
        check_at = spin_end = start + min(self._opts.spin, timeout)
        while True:
            if st == _CHANGED:
                return
            ph = w & 0xF
            if st == _LEFT:
                if ph == _IDLE:
                    # R-STATE-8: only the requester itself moves the word to IDLE.
                    raise ProtocolViolation(
                        f"receive: the channel is IDLE (seq {seq_of(w)}) but the own request "
                        f"#{pending} is outstanding; only this requester moves the word to IDLE "
                        "(R-STATE-8): a rogue or naive writer is using the segment"
                    )
                if ph not in _PHASES:
                    raise self._violation(w, "receive")
                raise ProtocolViolation(
                    f"receive: the word carries seq {seq_of(w)}, expected the own request "
                    f"#{pending} (R-STATE-6); a rogue writer or a second requester is active"
                )
            # REQUESTED or TAKEN of the own request: waits in (R-WAIT-5: liveness, then deadline).
            now = time.monotonic()
            if now >= check_at or now >= deadline:
                check_at = now + self._opts.liveness_interval
                if self._peer() is Peer.GONE:
                    if self._cas(w, w & ~0xF):  # T5 (REQUESTED) or T7 (TAKEN)
                        self._pending = None
                        self._timed_out = False
                        self._last_seq = pending
                        raise self._peer_gone(
                            f"receive: request #{pending} "
                            f"{'taken' if ph == _TAKEN else 'pending'} was withdrawn"
                        )
                    st, w = self._step(step, 0.0, 0.0)
                    continue
            if now >= deadline:
                if ph == _REQUESTED:
                    if self._cas(w, w & ~0xF):  # T5, cancel
                        self._pending = None
                        self._timed_out = False
                        self._last_seq = pending
                        raise Timeout(
                            f"receive: no responder took request #{pending} within {timeout} s; "
                            "the request was withdrawn (the channel is IDLE): send again"
                        )
                    st, w = self._step(step, 0.0, 0.0)
                    continue
                self._timed_out = True
                raise Timeout(
                    f"receive: the responder holds request #{pending} and did not reply within "
                    f"{timeout} s; the request stays outstanding: receive() again for the late "
                    "reply"
                )
            st, w = self._step(step, *self._budgets(now, spin_end, deadline, check_at))

    def _finish_receive(self, seq: int) -> int:
        """After T4 (the requester owns the payload and the channel is IDLE): reply_code first,
        then the descriptor of a successful reply (R-MSG-5). Every error raised here carries the
        reply_code it read."""
        code = _U32.unpack_from(self._mm, OFF_REPLY_CODE)[0]
        if code != 0:
            rejected = f"the responder rejected request #{seq}: reply_code {code}"
            if code not in _ERROR_CODES:
                err: Error = ProtocolViolation(
                    f"{rejected}, expected a reply_code of spec/errors.json; no version of the "
                    "protocol defines it: restart both peers"
                )
            elif code == ErrorCode.PEER_GONE:
                # R-LIVE-5: a responder closing while it holds the request stores CLOSED before
                # its T3 (R-CLOSE-1); otherwise a new responder completed a dead one's round (T8).
                _pid, state, _start = slot_owner(self._mm, OFF_RESPONDER)
                if state == SLOT_CLOSED:
                    err = PeerGone(
                        f"{rejected} (PEER_GONE): it closed the channel while holding the "
                        "request; attach a new responder and send again",
                        reason=PeerGoneReason.CLOSED,
                    )
                else:
                    err = PeerGone(
                        f"{rejected} (PEER_GONE): it died holding the request and a new "
                        "responder completed the round; send again",
                        reason=PeerGoneReason.DIED,
                    )
            else:
                # Named through the error table (HANDLER_FAILED = 18 included, R-MSG-3).
                err = error_for(
                    code, f"{rejected} ({error_name(code)}); fix the request or the responder"
                )
            err.reply_code = code
            raise err
        bad = self._check_message("receive")
        if bad is not None:
            bad.reply_code = 0
            raise bad
        return seq

    def close(self) -> None:
        """R-CLOSE-1/-2: idempotent; an outstanding request is left for the next requester."""
        if self._closed:
            return
        self._closed = True
        self._reply_lease.end()
        self._release()


class Requester(_ArrayFormat, _RequesterCore):
    """The requester role of protocol v1: ``send`` / ``receive`` / ``call`` of one array."""

    @classmethod
    def create(
        cls,
        name: str,
        dtype: Any,
        shape: Any,
        *,
        capacity: int | None = None,
        options: Options | None = None,
        **kw: Any,
    ) -> Requester:
        """Create the segment as the requester (the creator unlinks it on close)."""
        opts = _options(options, kw)
        seg, header = cls._create_segment(name, dtype, shape, capacity, opts)
        return cls(seg, header, opts)

    @classmethod
    def attach(
        cls,
        name: str,
        dtype: Any = None,
        shape: Any = None,
        *,
        options: Options | None = None,
        **kw: Any,
    ) -> Requester:
        """Attach as the requester; recover an orphan round left by a previous requester
        (R-REC-1)."""
        opts = _options(options, kw)
        deadline = time.monotonic() + opts.timeout  # one deadline for the attach (R-ATTACH-2)
        seg, header = cls._attach_segment(name, dtype, shape, opts, deadline)
        self = cls(seg, header, opts)
        self._recover_on_attach(deadline)
        return self

    def _init_message(self, header: Header) -> None:
        super()._init_message(header)
        self._request_buffer: _RequestBuffer | None = None  # made by the first request_buffer()
        self._last_reply: Reply | None = None  # receive's, reused while nobody else holds it

    def _drop_message(self) -> None:
        self._request_buffer = self._last_reply = None
        super()._drop_message()

    def _finish_receive(self, seq: int) -> int:
        # R-MSG-5 in one slice: reply_code 0 and message = declared (R-MSG-1), the common case.
        if self._mm[OFF_MESSAGE:_REPLY_CODE_END] == self._declared_and_ok:
            self._message_known = True
            return seq
        return super()._finish_receive(seq)

    def send(self, array: Any) -> int:
        """Copy ``array`` into the segment and publish the request (T1). Returns its seq.
        Does not wait: OUT_OF_TURN unless the channel is IDLE (R-STATE-7)."""
        arr = array
        if (
            type(arr) is not np.ndarray
            or (arr.dtype is not self._dtype and arr.dtype != self._dtype)
            or arr.shape != self._shape
        ):
            arr = self._check_array(array)  # converts, or raises the typed error
        # _prepare_send's checks inline for the common case (IDLE with the seq of the last round,
        # nothing pending, no reply view to end): a method call less per round.
        if self._closed or self._pending is not None or self._reply_lease.views:
            w = self._prepare_send()
        else:
            w = _load(self._mm, OFF_WORD)
            if w != self._last_seq << 4:
                w = self._prepare_send()  # raises the error of that word (R-STATE-8)
        if self._nbytes:
            # dtype and shape equal the declared ones (checked above): a plain copy, no casting
            # (a third of the cost of np.copyto at 64 B).
            self._typed[...] = arr
        return self._publish_request(w)

    def request_buffer(self) -> _RequestBuffer:
        """Zero-copy send: ``with req.request_buffer() as buf: buf[...] = ...`` (sent on exit)."""
        rb = self._request_buffer
        if rb is None:
            self._check_open()
            view = self._typed.view()
            view.setflags(write=False)
            self._all_views.append(weakref.ref(view))  # R-CLOSE-3 at close
            rb = self._request_buffer = _RequestBuffer(self, view)
        return rb

    def send_in_place(self) -> int:
        """Publish the payload as it is (written through an earlier request_buffer view)."""
        return self._publish_request(self._prepare_send())

    # -- receive --------------------------------------------------------------------------------

    def receive(self, timeout: float | None = None) -> Reply:
        """Wait for the reply to the own request (T4). Returns a :class:`Reply` whose ``array`` is
        a read-only zero-copy view valid until the next send."""
        if self._closed:
            self._check_open()
        seq = self._receive(self._opts.timeout if timeout is None else _timeout(timeout, 0.0))
        reply = self._last_reply
        if reply is not None and _getrefcount(reply) == _REFS_OF_AN_ATTRIBUTE_AND_A_LOCAL:
            reply.seq = seq  # nobody kept the last one: it shows this reply now
            return reply
        reply = self._last_reply = Reply(
            self._view(self._reply_lease, writable=False), seq, self._reply_lease
        )
        return reply

    def try_receive(self) -> Reply:
        return self.receive(timeout=0)

    def receive_copy(
        self, timeout: float | None = None, out: np.ndarray[Any, Any] | None = None
    ) -> np.ndarray[Any, Any]:
        """Wait for the reply and copy it out (into ``out`` if given)."""
        if self._closed:
            self._check_open()
        self._receive(self._opts.timeout if timeout is None else _timeout(timeout, 0.0))
        src = self._typed
        if out is None:
            copy: np.ndarray[Any, Any] = src.copy()
            return copy
        if (
            type(out) is np.ndarray
            and (out.dtype is self._dtype or out.dtype == self._dtype)
            and out.shape == self._shape
        ):
            out[...] = src  # same dtype and shape: a plain copy
        else:
            np.copyto(out, src)
        return out

    def call(
        self,
        array: Any,
        timeout: float | None = None,
        out: np.ndarray[Any, Any] | None = None,
    ) -> np.ndarray[Any, Any]:
        """send + receive_copy."""
        self.send(array)
        return self.receive_copy(timeout, out)


# ---------------------------------------------------------------------------------------------
# Responder
# ---------------------------------------------------------------------------------------------


class Request(_Lease):
    """A taken request. ``array`` is a writable zero-copy view of the payload, valid until
    ``reply``/``fail`` (R-CLOSE-3). As a context manager, a block that ends without replying
    replies in place, or, if it raised, fails the round with the error's code (R-MSG-2).
    The request is its own lease (one object per round, not two)."""

    __slots__ = ("_array", "_owner", "done", "seq")

    def __init__(self, owner: Responder, seq: int) -> None:
        self.views = []
        self._owner = owner
        self.seq = seq
        self._array: np.ndarray[Any, Any] | None = None
        self.done = False

    @property
    def array(self) -> np.ndarray[Any, Any]:
        if self._array is None:
            self._array = self._owner._view(self, writable=not self.done)
        return self._array

    @array.setter
    def array(self, value: Any) -> None:
        # ``request.array += 1`` rebinds the attribute to the same (in-place updated) view;
        # any other value is copied into the payload.
        view = self.array
        if value is view:
            return
        if self.done:
            raise OutOfTurn(f"request #{self.seq} was already answered; its view is read-only")
        np.copyto(view, self._owner._check_array(value), casting="no")

    def reply(self, array: Any = None) -> None:
        """Publish the reply (T3): the payload as computed in place, or a copy of ``array``."""
        if self.done:
            raise OutOfTurn(f"reply: request #{self.seq} was already answered")
        if array is not None:
            arr = self._owner._check_array(array)
            if self._owner._nbytes and arr is not self._array:
                np.copyto(self._owner._typed, arr, casting="no")
        self._owner._reply(self.seq, 0)
        self.done = True
        self.end()

    def fail(self, code: int | ErrorCode, message: str = "") -> None:
        """Complete the round with an error reply (R-MSG-2)."""
        if self.done:
            raise OutOfTurn(f"fail: request #{self.seq} was already answered")
        self._owner._fail(self.seq, code)
        self.done = True
        self.end()

    def __enter__(self) -> Request:
        return self

    def __exit__(
        self,
        et: type[BaseException] | None,
        ev: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if not self.done and not self._owner.closed:
            if ev is None:
                self.reply()
            else:
                self.fail(ev.code if isinstance(ev, Error) else ErrorCode.HANDLER_FAILED)  # R-MSG-3
        self.end()


Handler = Callable[[np.ndarray[Any, Any]], Optional[npt.ArrayLike]]


class _Answerable(Protocol):
    """What the responder's state machine needs of a taken request (v1 Request, v2
    MessageRequest): whether it was answered, and the error reply of R-MSG-2 / R-CLOSE-2."""

    done: bool

    def fail(self, code: int | ErrorCode, message: str = "") -> None: ...


_Req = TypeVar("_Req", bound=_Answerable)


class _ResponderCore(_Handle, Generic[_Req]):
    """The responder's side of the state machine (§4-§7), for both protocol versions: take (T2),
    reply (T3), recovery on attach (T8, R-REC-2) and close (R-CLOSE-2). :class:`Responder` (v1)
    and ``MessageResponder`` (v2) add their API and the request they hand out (``_taken``)."""

    _role = "responder"
    _slot = OFF_RESPONDER
    _peer_slot = OFF_REQUESTER

    def __init__(self, seg: Segment, header: Header | HeaderV2, opts: Options) -> None:
        super().__init__(seg, header, opts)
        self._held: int | None = None
        self._request: _Req | None = None
        self._spare: Any = None  # v1 serve: the request object of its next round
        # reply_code was 0 at this round's take (v1's _taken reads it with the message): only the
        # responder writes it (R-STATE-3), so a successful reply need not read it again.
        self._reply_code_ok = False

    def _recover_on_attach(self) -> None:
        """R-REC-2: complete a round left TAKEN by a dead predecessor with PEER_GONE (T8); a
        failure releases the slot and the mapping."""
        try:
            w = _native.load_acquire(self._mm, OFF_WORD)
            if w & 0xF == _TAKEN:
                self._write_reply(int(ErrorCode.PEER_GONE))
                self._cas(w, encode_word(Phase.REPLIED, seq_of(w)))  # T8, release
        except BaseException:
            self._closed = True
            self._release()
            raise

    def _taken(self, seq: int) -> _Req:
        """The request object for the request ``seq`` just taken (T2), after the format checked
        the message; an invalid message completes the round with its error and raises it."""
        raise NotImplementedError

    def held(self) -> int | None:
        """The seq of the request this responder took and has not answered, or None."""
        return self._held

    def take(self, timeout: float | None = None) -> _Req:
        """Wait for a request and take it (T2). Raises PEER_GONE when the requester closed or died
        (R-LIVE-4), TIMEOUT at the deadline (R-TIME-3)."""
        return self._take(_timeout(timeout, self._opts.timeout))

    def _take(self, t: float) -> _Req:
        """take with a validated timeout ``t`` (serve validates it once, not per round)."""
        if self._closed:
            self._check_open()
        if self._held is not None:
            raise OutOfTurn(
                f"take: request #{self._held} is held; expected reply() or fail() first"
            )
        # T2 in one native call when a request is there or comes within the spin budget.
        first_spin = self._first_spin if t >= self._first_spin else t
        w = _wait_cas(  # *_TAKE_STEP spelled out (see _receive)
            self._mm, OFF_WORD, OFF_WAITERS,
            0xF, _REQUESTED, _KEEP_SEQ, _TAKEN, 0xF, _IDLE, _REPLIED,
            first_spin, 0.0, self._events,
        )  # fmt: skip
        return self._took(w, t, first_spin)

    def _took(self, w: int, t: float, first_spin: float) -> _Req:
        """The rest of a take whose first native call (spinning ``first_spin``) returned ``w``."""
        if w > _ALL:  # not changed (a result < 2**32 is the word the CAS replaced)
            w = self._take_slow(w - (w & _ALL), w & _ALL, t, first_spin)
        seq = (w >> 4) & SEQ_MASK
        self._held = seq
        req = self._taken(seq)
        self._request = req
        return req

    def _take_slow(self, st: int, w: int, t: float, spun: float) -> int:
        """The rest of a take whose first spin ended without a request: liveness (R-LIVE-3,
        R-LIVE-4), deadline (R-TIME-3), further spinning and blocking (R-WAIT-1, R-WAIT-4), and the
        words no take accepts (R-STATE-8). Returns the REQUESTED word it changed to TAKEN."""
        now = time.monotonic()
        start = now - spun if st == _WAITING else now  # the first call spun ``spun`` seconds
        deadline = start + t
        check_at = spin_end = start + min(self._opts.spin, t)
        while True:
            if st == _CHANGED:
                return w
            if st == _LEFT:
                if w & 0xF == _TAKEN:
                    # R-REC-2 completed any predecessor's round at attach and no other responder
                    # holds the role (R-STATE-5): a TAKEN this responder does not hold is a rogue
                    # write (R-STATE-8).
                    raise ProtocolViolation(
                        f"take: request #{seq_of(w)} is TAKEN but this responder holds nothing; "
                        "expected REQUESTED (R-STATE-8): a rogue or naive writer is using the "
                        "segment"
                    )
                raise self._violation(w, "take")
            now = time.monotonic()
            if now >= check_at or now >= deadline:
                check_at = now + self._opts.liveness_interval
                if self._peer() is Peer.GONE:
                    if _native.load_acquire(self._mm, OFF_WORD) == w:
                        raise self._peer_gone("take")
                    # R-LIVE-3: its last request landed before it left: act on it.
                    st, w = self._step(_TAKE_STEP, 0.0, 0.0)
                    continue
            if now >= deadline:
                raise Timeout(f"take: no request within {t} s; the channel is unchanged")
            st, w = self._step(_TAKE_STEP, *self._budgets(now, spin_end, deadline, check_at))

    def try_take(self) -> _Req:
        return self.take(timeout=0)

    def _serve_take(self, timeout: float) -> _Req | None:
        """The take of a serve loop: None when the requester closed (PEER_GONE with reason
        CLOSED, R-LIVE-4: the end of service); a requester that died raises PEER_GONE (reason
        DIED, R-LIVE-5), so that a supervisor sees the crash."""
        try:
            return self._take(timeout)
        except PeerGone as e:
            if e.reason is PeerGoneReason.CLOSED:
                return None
            raise

    def _fail(self, seq: int, code: int | ErrorCode) -> None:
        """An error reply (R-MSG-2): T3 with a non-zero reply_code."""
        c = int(code)
        if c <= 0 or c > 0xFFFFFFFF:
            raise InvalidArgument(f"fail: code must be a non-zero error code, found {code!r}")
        self._reply(seq, c)

    def _reply(self, seq: int, code: int) -> None:
        """T3 (release): write reply_code (and message = declared), CAS TAKEN -> REPLIED."""
        if self._closed:
            self._check_open()
        if self._held is None or self._held != seq:
            raise OutOfTurn("reply: this responder holds no such request; expected take() first")
        mm = self._mm
        expected = (seq << 4) | _TAKEN
        if code or (not self._reply_code_ok and _U32.unpack_from(mm, OFF_REPLY_CODE)[0]):
            # Something to store (R-STATE-3): only while the request is still TAKEN by us. A
            # successful reply after one (reply_code already 0, seen here or at take) stores
            # nothing: the CAS alone checks the word.
            w = _native.load_acquire(mm, OFF_WORD)
            if w != expected:
                raise self._not_held(w, seq)
            self._write_reply(code)
        found = _cas_wake(mm, OFF_WORD, OFF_WAITERS, expected, (seq << 4) | _REPLIED, self._events)
        if found != expected:
            raise self._not_held(found, seq)
        self._held = None
        self._request = None

    def _not_held(self, w: int, seq: int) -> Error:
        """The error of a reply that found the word ``w`` instead of TAKEN #seq."""
        if w & 0xF not in _PHASES or seq_of(w) != seq:
            return self._violation(w, "reply")
        return OutOfTurn(
            f"reply: the channel is {Phase(w & 0xF).name}, expected TAKEN #{seq}; the "
            "requester reclaimed the request"
        )

    def close(self) -> None:
        """R-CLOSE-1/-2, in order: slot CLOSED; a held request completed with PEER_GONE; pid 0
        (then the creator slot, wake, unmap, unlink). Idempotent."""
        if self._closed:
            return
        if self._seg is not None:
            mark_slot_closed(self._mm, self._slot)  # R-CLOSE-1 (1): a close, not a death (R-LIVE-5)
        if self._held is not None and self._request is not None and not self._request.done:
            with contextlib.suppress(Error):
                self._request.fail(ErrorCode.PEER_GONE)
        self._held = None
        self._closed = True
        self._release()


class Responder(_ArrayFormat, _ResponderCore[Request]):
    """The responder role of protocol v1: ``take`` / ``reply`` / ``serve`` of one array."""

    @classmethod
    def create(
        cls,
        name: str,
        dtype: Any,
        shape: Any,
        *,
        capacity: int | None = None,
        options: Options | None = None,
        **kw: Any,
    ) -> Responder:
        opts = _options(options, kw)
        seg, header = cls._create_segment(name, dtype, shape, capacity, opts)
        return cls(seg, header, opts)

    @classmethod
    def attach(
        cls,
        name: str,
        dtype: Any = None,
        shape: Any = None,
        *,
        options: Options | None = None,
        **kw: Any,
    ) -> Responder:
        """Attach as the responder; complete a round left TAKEN by a dead predecessor with
        PEER_GONE (R-REC-2, T8)."""
        opts = _options(options, kw)
        seg, header = cls._attach_segment(name, dtype, shape, opts, time.monotonic() + opts.timeout)
        self = cls(seg, header, opts)
        self._recover_on_attach()
        return self

    def _taken(self, seq: int) -> Request:
        # R-MSG-1, inline: message = declared, and reply_code = 0 in the same slice (else
        # _reply reads it; nobody else writes it while we hold the request, R-STATE-3).
        ok = self._reply_code_ok = self._mm[OFF_MESSAGE:_REPLY_CODE_END] == self._declared_and_ok
        if not ok and self._mm[OFF_MESSAGE:_MESSAGE_END] != self._declared_bytes:
            bad = self._check_message("take")
            if bad is not None:  # R-MSG-2: still complete the round
                self._reply(seq, int(bad.code))
                raise bad
        req: Request | None = self._spare  # serve's request of the last round, nobody saw it
        if req is None:
            return Request(self, seq)
        self._spare = None
        req.seq = seq
        req.done = False
        return req

    def reply(self, array: Any = None) -> None:
        """Reply to the held request (low level; same as ``request.reply``). OUT_OF_TURN if this
        responder holds nothing (R-STATE-7)."""
        self._check_open()
        if self._request is None:
            raise OutOfTurn("reply: this responder holds no request; expected take() first")
        self._request.reply(array)

    def reply_error(self, code: int | ErrorCode, message: str = "") -> None:
        """Complete the held round with an error reply (R-MSG-2); OUT_OF_TURN if none is held."""
        self._check_open()
        if self._request is None:
            raise OutOfTurn("reply_error: this responder holds no request; expected take() first")
        self._request.fail(code, message)

    def serve(self, handler: Handler, *, timeout: float | None = math.inf) -> int:
        """Loop: take a request, call ``handler(array)`` (array is a writable zero-copy view),
        reply with its result (None: in place). Returns the number of rounds when the requester
        closes (PEER_GONE with reason CLOSED, R-LIVE-4); raises PeerGone when it died (reason
        DIED, R-LIVE-5), so that a supervisor sees the crash. A handler exception fails the round
        (R-MSG-2) and is re-raised."""
        t = _timeout(timeout, self._opts.timeout)  # validated once, not per round
        n = 0
        # A view and a request nobody but this loop holds serve the next round too (R-CLOSE-3
        # only concerns views somebody kept): one object less to make and track per round.
        view: np.ndarray[Any, Any] | None = None
        alone = _refs_of_a_local()  # the count of a view only this loop holds; 0: never reuse
        take = self._take
        # The round after one that ended in place with nothing kept (``spare``) takes and replies
        # inline: _take and _reply without the calls and the checks that round already made.
        mm, events = self._mm, self._events
        first_spin = self._first_spin if t >= self._first_spin else t
        clean = self._declared_and_ok
        spare: Request | None = None
        try:
            while True:
                try:  # _serve_take, inline
                    if spare is None or self._closed or self._held is not None:
                        req = take(t)
                    else:
                        w = _wait_cas(  # *_TAKE_STEP spelled out (see _receive)
                            mm, OFF_WORD, OFF_WAITERS,
                            0xF, _REQUESTED, _KEEP_SEQ, _TAKEN, 0xF, _IDLE, _REPLIED,
                            first_spin, 0.0, events,
                        )  # fmt: skip
                        if w <= _ALL and mm[OFF_MESSAGE:_REPLY_CODE_END] == clean:  # R-MSG-1
                            req = spare  # _took and _taken, inline
                            self._held = req.seq = (w >> 4) & SEQ_MASK
                            req.done = False
                            self._request = req
                            self._reply_code_ok = True
                        else:
                            self._spare = spare
                            req = self._took(w, t, first_spin)
                        spare = None
                except PeerGone as e:
                    if e.reason is PeerGoneReason.CLOSED:
                        return n  # R-LIVE-4: the end of service
                    raise  # R-LIVE-5: a requester that died is reported
                # ``with req:`` spelled out: the same completion rules without two calls.
                in_place = False
                try:
                    if view is None or not req.views:  # (a reused view comes with its lease)
                        view = self._view(req, True)  # tracked by req (its lease) and the handle
                    req._array = view
                    result = handler(view)
                    if not req.done:
                        if result is None or result is view:
                            seq = req.seq
                            if self._reply_code_ok and self._held == seq and not self._closed:
                                # _reply's T3, inline: reply_code was 0 at take (R-STATE-3)
                                expected = (seq << 4) | _TAKEN
                                found = _cas_wake(
                                    mm, OFF_WORD, OFF_WAITERS, expected, seq << 4 | _REPLIED, events
                                )
                                if found != expected:
                                    raise self._not_held(found, seq)
                                self._held = self._request = None
                            else:
                                self._reply(seq, 0)  # Request.reply without its checks
                            req.done = in_place = True
                        else:
                            req.reply(result)
                except BaseException as e:
                    req.__exit__(type(e), e, e.__traceback__)
                    raise
                # The lease ends (R-CLOSE-3): a view somebody kept becomes read-only.
                req._array = result = None
                if in_place and _getrefcount(view) == alone:
                    spare = req  # view and request: nobody else holds them
                else:
                    req.end()
                    view = None
                n += 1
        finally:
            self._spare = None
