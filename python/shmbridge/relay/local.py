"""The relay's two local roles on ordinary segments (spec/RELAY.md R-RELAY-1): the near end is
the local responder, the far end the local requester, through the public API of either protocol
version. Everything that differs between v1 (one array) and v2 (named fields) is here; the ends
(near.py, far.py) only move descriptors and buffers."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, TypeVar, Union

import numpy as np

from ..channel import Options, Request, Requester, Responder
from ..dtype import DType, dtype_code
from ..errors import (
    CorruptHeader,
    DtypeMismatch,
    Error,
    ErrorCode,
    PeerGone,
    SchemaMismatch,
    ShapeMismatch,
    Timeout,
    VersionMismatch,
)
from ..layout import Descriptor, Header
from ..layout import decode_header as decode_header_v1
from ..layout import encode_header as encode_header_v1
from ..layout_v2 import HeaderV2, check_expected, header_for
from ..layout_v2 import decode_header as decode_header_v2
from ..layout_v2 import encode_header as encode_header_v2
from ..message import MessageRequest, MessageRequester, MessageResponder
from ..message_table import validate_entry
from ..schema import Declared, Record, Schema, declare, schema_of
from .wire import Desc, encode_desc

__all__ = ["Declaration", "FarLocal", "Held", "NearLocal", "Outcome"]

Handle = Union[Requester, Responder, MessageRequester, MessageResponder]
Array = np.ndarray[Any, Any]


# ---------------------------------------------------------------------------- declarations


@dataclass(frozen=True)
class Declaration:
    """What a segment declares, as a HELLO carries it (R-RELAY-5): the header a creator writes."""

    protocol: int
    raw: bytes
    v1: Header | None = None
    v2: HeaderV2 | None = None

    @classmethod
    def of_handle(cls, h: Handle) -> Declaration:
        if isinstance(h, (Requester, Responder)):
            hd = h.header()
            clean = Header(capacity=hd.capacity, declared=hd.declared, message=hd.declared)
            return cls(1, encode_header_v1(clean), v1=clean)
        h2 = h.header()
        clean2 = header_for(Declared(h2.request, h2.reply, h2.geometry))
        return cls(2, encode_header_v2(clean2), v2=clean2)

    @classmethod
    def v1_of(cls, dtype: Any, shape: Sequence[int]) -> Declaration:
        """The declaration a v1 creator of this dtype and shape writes (a near ``--create``)."""
        d = Descriptor(int(dtype_code(dtype)), tuple(int(e) for e in shape))
        h = Header(capacity=d.nbytes, declared=d, message=d)
        return cls(1, encode_header_v1(h), v1=h)

    @classmethod
    def v2_of(cls, request: Schema, reply: Schema) -> Declaration:
        """The declaration a v2 creator of these schemas writes (R-SCHEMA-3 checks them)."""
        h = header_for(declare(request, reply))
        return cls(2, encode_header_v2(h), v2=h)

    @classmethod
    def decode(cls, raw: bytes) -> Declaration:
        """R-RELAY-5: the frame must be exactly the header (512 bytes in v1, ``header_size`` in
        v2); then the local validator, with the frame's ``segment_size`` as the mapping size (the
        validators read nothing beyond ``header_size``)."""
        if len(raw) < 512:
            raise CorruptHeader(
                f"HELLO declaration: {len(raw)} bytes, expected a segment header (>= 512 bytes)"
            )
        hsize = int.from_bytes(raw[12:16], "little")
        seg = int.from_bytes(raw[24:32], "little")
        if hsize != len(raw):
            raise CorruptHeader(
                f"HELLO declaration: {len(raw)} bytes, its header_size says {hsize}"
            )
        if raw[8:10] == b"\x02\x00":
            return cls(2, bytes(raw), v2=decode_header_v2(raw, max(seg, len(raw)), name="far"))
        return cls(1, bytes(raw), v1=decode_header_v1(raw, max(seg, len(raw))))

    def describe(self) -> str:
        if self.v1 is not None:
            return f"v1 {self.v1.declared.describe()}"
        assert self.v2 is not None
        return f"v2 request {_records(self.v2.request)} reply {_records(self.v2.reply)}"

    def check_same(self, far: Declaration, near_name: str, far_name: str = "far") -> None:
        """R-RELAY-2: the near segment (self) must declare what the far one does."""
        if self.protocol != far.protocol:
            raise VersionMismatch(
                f"segment {near_name!r} uses protocol v{self.protocol}, the far segment "
                f"v{far.protocol}; both ends of a relay must use the same protocol version"
            )
        if self.v1 is not None:
            assert far.v1 is not None
            a, b = self.v1.declared, far.v1.declared
            if a.dtype != b.dtype:
                raise DtypeMismatch(
                    f"segment {near_name!r} declares {a.describe()}, the far segment "
                    f"{b.describe()}; declare the same dtype at both ends"
                )
            if a.shape != b.shape:
                raise ShapeMismatch(
                    f"segment {near_name!r} declares {a.describe()}, the far segment "
                    f"{b.describe()}; declare the same shape at both ends"
                )
            return
        assert self.v2 is not None and far.v2 is not None
        fr, fp = far.v2.request, far.v2.reply
        check_expected(schema_of(fr), self.v2.request, "request", self.v2.request, near_name)
        check_expected(schema_of(fp, fr), self.v2.reply, "reply", self.v2.request, near_name)

    def schemas(self) -> tuple[Schema, Schema]:
        assert self.v2 is not None
        return schema_of(self.v2.request), schema_of(self.v2.reply, self.v2.request)


def _records(rs: Sequence[Record]) -> str:
    return "{" + ", ".join(f"{r.name}: {r.describe()}" for r in rs) + "}"


#: wire dtype code -> numpy dtype (DType(code) is an enum call; this is a dict lookup)
_NP_DTYPE = {int(d): d.numpy for d in DType}
#: (numpy dtype, shape) -> Desc: a channel sends the same few over and over (bounded)
_DESCS: dict[tuple[Any, tuple[int, ...]], Desc] = {}


def _array(d: Desc, frame: Any) -> Array:
    """A read-only array over a payload frame (no copy; W11 checked its length)."""
    buf = getattr(frame, "buffer", frame)
    dt = _NP_DTYPE[d.dtype]
    arr: Array = np.frombuffer(buf, dtype=dt, count=d.nbytes // dt.itemsize)
    return arr.reshape(d.shape)


def _desc_of(a: Array) -> Desc:
    key = (a.dtype, a.shape)
    d = _DESCS.get(key)
    if d is None:
        d = Desc.of(int(dtype_code(a.dtype)), a.shape)
        if len(_DESCS) < 256:
            _DESCS[key] = d
    return d


def check_v1(declared: Descriptor, descs: Sequence[Desc], who: str) -> None:
    """R-RELAY-7, v1: R-MSG-1's order (dtype, then shape) against ``declared``."""
    if len(descs) != 1:
        raise ShapeMismatch(f"{who}: {len(descs)} descriptors, protocol v1 carries exactly 1")
    d = descs[0]
    if d.dtype == declared.dtype and d.shape == declared.shape:
        return  # the common case: no message text to build
    exp = declared.describe()
    got = Descriptor(d.dtype, d.shape).describe()
    if d.dtype != declared.dtype:
        raise DtypeMismatch(f"{who}: message dtype is {got}, expected {exp}")
    raise ShapeMismatch(f"{who}: message shape is {got}, expected {exp}")


def check_v2(records: Sequence[Record], descs: Sequence[Desc], side: str) -> None:
    """R-RELAY-7, v2: E5-E8 of R-FIELD-8 per field in schema order (E1-E4 were W10)."""
    if len(descs) != len(records):
        raise SchemaMismatch(
            f"{side}: {len(descs)} fields on the wire, the schema has {len(records)}"
        )
    for r, d in zip(records, descs):
        validate_entry(r, encode_desc(d), side)


_H = TypeVar("_H", Responder, Requester)
_M = TypeVar("_M", MessageResponder, MessageRequester)


def _attach(v1: type[_H], v2: type[_M], name: str, protocol: int, opts: Options) -> _H | _M:
    """Attach with the API of ``protocol``; 0: the v1 API, else the v2 API if the segment says
    it is a v2 segment (R-VER-3)."""
    if protocol == 2:
        return v2.attach(name, options=opts)
    try:
        return v1.attach(name, options=opts)
    except VersionMismatch:
        if protocol == 1:
            raise
        return v2.attach(name, options=opts)


# ---------------------------------------------------------------------------- near end


class Held:
    """A request the near end took (T2) and holds until it completes the round (R-RELAY-9)."""

    def __init__(self, owner: NearLocal, req: Request | MessageRequest) -> None:
        self.owner = owner
        self.req = req
        self.seq = req.seq
        if isinstance(req, Request):
            arr = req.array
            self.arrays: list[Array] = [arr]
        else:
            view = req.request
            self.arrays = [view[n] for n in owner.request_names]
        self.descs = [_desc_of(a) for a in self.arrays]

    def reply(self, descs: Sequence[Desc], frames: Sequence[Any]) -> Error | None:
        """Publish the far end's reply (T3) after R-RELAY-7; a reply that fails its checks
        completes the round with that error's code instead, and the error is returned."""
        o = self.owner
        try:
            if isinstance(self.req, Request):
                assert o.decl is not None and o.decl.v1 is not None
                check_v1(o.decl.v1.declared, descs, "reply")
                self.req.reply(_array(descs[0], frames[0]))
            else:
                check_v2(o.reply_records, descs, "reply")
                self.req.reply({n: _array(d, f) for n, d, f in zip(o.reply_names, descs, frames)})
        except Error as e:
            if not self.req.done:
                self.req.fail(e.code)
            return e
        return None

    def fail(self, code: int) -> None:
        """An error reply of ``code`` (R-MSG-2, R-RELAY-12)."""
        if not self.req.done:
            self.req.fail(code)


class NearLocal:
    """The near end's segment: it is the responder (R-RELAY-1)."""

    def __init__(self, name: str, options: Options) -> None:
        self.name = name
        self.opts = options
        self.handle: Responder | MessageResponder | None = None
        self.decl: Declaration | None = None
        self.created = False
        self.request_names: tuple[str, ...] = ()
        self.reply_names: tuple[str, ...] = ()
        self.reply_records: tuple[Record, ...] = ()

    def _opened(self, h: Responder | MessageResponder, created: bool) -> None:
        self.handle = h
        self.created = created
        self.decl = Declaration.of_handle(h)
        if self.decl.v2 is not None:
            self.request_names = tuple(r.name for r in self.decl.v2.request)
            self.reply_names = tuple(r.name for r in self.decl.v2.reply)
            self.reply_records = tuple(self.decl.v2.reply)

    def create(self, decl: Declaration) -> None:
        if decl.v1 is not None:
            d = decl.v1.declared
            h: Responder | MessageResponder = Responder.create(
                self.name, DType(d.dtype).numpy, d.shape, capacity=decl.v1.capacity,
                options=self.opts,
            )  # fmt: skip
        else:
            req, rep = decl.schemas()
            h = MessageResponder.create(self.name, req, rep, options=self.opts)
        self._opened(h, True)

    def attach(self, protocol: int, timeout: float) -> None:
        """Attach with the API of ``protocol`` (0: whichever the segment is)."""
        h = _attach(
            Responder, MessageResponder, self.name, protocol, replace(self.opts, timeout=timeout)
        )
        self._opened(h, False)

    def take(self, timeout: float) -> Held | None:
        """T2 within ``timeout``, or None; PEER_GONE when the local requester left."""
        assert self.handle is not None
        try:
            req = self.handle.take(timeout)
        except Timeout:
            return None
        return Held(self, req)

    def close(self) -> None:
        if self.handle is not None:
            self.handle.close()
        self.handle = None


# ---------------------------------------------------------------------------- far end


@dataclass
class Outcome:
    """The result of a far-side round: reply_code 0 with the reply's descriptors and arrays, or
    an error code (R-RELAY-12)."""

    reply_code: int
    descs: list[Desc]
    arrays: list[Array]
    local_seq: int
    message: str = ""


class FarLocal:
    """The far end's segment: it is the requester (R-RELAY-1). A round is started by ``start``
    and advanced by ``step`` with short waits, so that the caller can serve the network between
    them (R-RELAY-11: a request withdrawn by a timeout while REQUESTED is sent again)."""

    def __init__(self, name: str, options: Options) -> None:
        self.name = name
        self.opts = options
        self.handle: Requester | MessageRequester | None = None
        self.decl: Declaration | None = None
        self.created = False
        self.request_records: tuple[Record, ...] = ()
        self.request_names: tuple[str, ...] = ()
        self.reply_names: tuple[str, ...] = ()
        self._args: list[Array] = []
        self.local_seq = 0

    def _opened(self, h: Requester | MessageRequester, created: bool) -> None:
        self.handle = h
        self.created = created
        self.decl = Declaration.of_handle(h)
        if self.decl.v2 is not None:
            self.request_records = tuple(self.decl.v2.request)
            self.request_names = tuple(r.name for r in self.decl.v2.request)
            self.reply_names = tuple(r.name for r in self.decl.v2.reply)

    def create_v1(self, dtype: Any, shape: Any) -> None:
        self._opened(Requester.create(self.name, dtype, shape, options=self.opts), True)

    def create_v2(self, request: Schema, reply: Schema) -> None:
        self._opened(MessageRequester.create(self.name, request, reply, options=self.opts), True)

    def attach(self, protocol: int, timeout: float) -> None:
        h = _attach(
            Requester, MessageRequester, self.name, protocol, replace(self.opts, timeout=timeout)
        )
        self._opened(h, False)

    def check(self, descs: Sequence[Desc]) -> None:
        """R-RELAY-7 on a REQ's descriptors."""
        assert self.decl is not None
        if self.decl.v1 is not None:
            check_v1(self.decl.v1.declared, descs, "request")
        else:
            check_v2(self.request_records, descs, "request")

    def start(self, descs: Sequence[Desc], frames: Sequence[Any]) -> None:
        """T1 of a new round (the arrays are copied into the segment)."""
        self._args = [_array(d, f) for d, f in zip(descs, frames)]
        self._send()

    def _send(self) -> None:
        h = self.handle
        assert h is not None
        if isinstance(h, Requester):
            self.local_seq = h.send(self._args[0])
        else:
            self.local_seq = h.send(dict(zip(self.request_names, self._args)))

    def step(self, timeout: float) -> Outcome | None:
        """Wait up to ``timeout`` for the reply: the outcome, or None (still waiting)."""
        h = self.handle
        assert h is not None
        try:
            if isinstance(h, Requester):
                arrays = [h.receive_copy(timeout)]
            else:
                got = h.receive_copy(timeout)
                arrays = [got[n] for n in self.reply_names]
        except Timeout as e:
            if e.reply_code is not None:  # an error reply TIMEOUT of the far responder
                return Outcome(int(e.code), [], [], self.local_seq, e.message)
            if h.pending() is None:  # withdrawn while REQUESTED (T5): not taken, send again
                self._send()
            return None
        except PeerGone as e:
            return Outcome(int(ErrorCode.PEER_GONE), [], [], self.local_seq, e.message)
        except Error as e:
            return Outcome(int(e.code), [], [], self.local_seq, e.message)
        descs = [_desc_of(a) for a in arrays]
        return Outcome(0, descs, [np.ascontiguousarray(a) for a in arrays], self.local_seq)

    def close(self) -> None:
        if self.handle is not None:
            self.handle.close()
        self.handle = None
