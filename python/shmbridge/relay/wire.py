"""The relay's wire format (spec/RELAY.md §3): the 48-byte relay header, the descriptors after it,
and the checks W1-W11 every received message passes before anything acts on it (R-RELAY-6).

Pure Python on bytes: no ZeroMQ here, so the decoder can be fuzzed on its own."""

from __future__ import annotations

import enum
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Union

from ..dtype import DType
from ..errors import CorruptHeader, Error, ErrorCode, VersionMismatch

__all__ = [
    "DESC_SIZE",
    "HEADER_SIZE",
    "MAGIC",
    "WIRE_VERSION",
    "Desc",
    "Head",
    "Kind",
    "Message",
    "RoundState",
    "WireCorrupt",
    "WireError",
    "WireVersion",
    "decode",
    "decode_head",
    "encode_desc",
    "encode_header",
]

MAGIC = b"SBRL"
WIRE_VERSION = 1
HEADER_SIZE = 48
DESC_SIZE = 80
MAX_FIELDS = 16
_HEADER = struct.Struct("<4sBBBBQQQIIHHI")
_DESC = struct.Struct("<II8QQ")
assert _HEADER.size == HEADER_SIZE and _DESC.size == DESC_SIZE
_CODES = frozenset(int(d) for d in DType)
_ITEMSIZE = {int(d): d.itemsize for d in DType}
_REPLY_CODES = frozenset(int(c) for c in ErrorCode)

Buffer = Union[bytes, bytearray, memoryview]


class Kind(enum.IntEnum):
    HELLO = 1
    REQ = 2
    REP = 3
    HB = 4


class RoundState(enum.IntEnum):
    """``round_state`` of the far end's HB answer (R-RELAY-13, R-RELAY-15)."""

    NONE = 0
    UNKNOWN = 1
    EXECUTING = 2
    DONE = 3


class WireError(Error):
    """Marker base of the errors W1-W11 raise (R-RELAY-6): every one is also the error of the
    PROTOCOL.md table its check names (``CorruptHeader`` or ``VersionMismatch``), with ``check``
    set to the label. Catch ``WireError`` to catch them all. ``head`` is the decoded header when
    W1-W8 passed (a check of W9-W11 failed), so that the receiver can answer that round."""

    head: Head | None = None


class WireCorrupt(CorruptHeader, WireError):
    pass


class WireVersion(VersionMismatch, WireError):
    pass


@dataclass(frozen=True)
class Desc:
    """A §3.1 descriptor carried on the wire (a v1 ``message`` or a v2 table entry)."""

    dtype: int
    shape: tuple[int, ...]
    nbytes: int

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @classmethod
    def of(cls, dtype: int, shape: Sequence[int]) -> Desc:
        n = _ITEMSIZE[dtype]
        for e in shape:
            n *= int(e)
        return cls(int(dtype), tuple(int(e) for e in shape), n)


#: Descriptors are immutable and a channel carries the same few over and over: their encoding
#: and their W10 decoding are memoised (bounded: a hostile peer cannot grow them without limit).
_CACHE_MAX = 256
_ENCODED: dict[Desc, bytes] = {}
_DECODED: dict[bytes, Desc] = {}
_KINDS = (None, Kind.HELLO, Kind.REQ, Kind.REP, Kind.HB)


def encode_desc(d: Desc) -> bytes:
    raw = _ENCODED.get(d)
    if raw is None:
        raw = _DESC.pack(d.dtype, d.ndim, *d.shape, *([0] * (8 - d.ndim)), d.nbytes)
        if len(_ENCODED) < _CACHE_MAX:
            _ENCODED[d] = raw
    return raw


def encode_header(
    kind: Kind,
    *,
    protocol: int = 0,
    round_state: int = 0,
    session: int = 0,
    epoch: int = 0,
    relay_seq: int = 0,
    local_seq: int = 0,
    reply_code: int = 0,
    descs: Sequence[Desc] = (),
) -> bytes:
    """Frame 0 of a message: the relay header and its descriptors (§3.1)."""
    head = _HEADER.pack(
        MAGIC, WIRE_VERSION, kind, protocol, round_state, session, epoch, relay_seq,
        local_seq & 0xFFFFFFFF, reply_code, len(descs), 0, 0,
    )  # fmt: skip
    if not descs:
        return head
    if len(descs) == 1:
        return head + encode_desc(descs[0])
    return head + b"".join([encode_desc(d) for d in descs])


def _corrupt(check: str, what: str) -> WireCorrupt:
    return WireCorrupt(
        f"relay message: {what} (check {check} of spec/RELAY.md); the sender is not a shmbridge "
        "relay of wire version 1 or is broken: check the address and the peer's version",
        check=check,
    )


def _buffer(frame: Any) -> memoryview:
    """The bytes of a frame: bytes-like objects, or a ``zmq.Frame`` (its ``buffer``)."""
    buf = getattr(frame, "buffer", frame)
    return memoryview(buf).cast("B") if not isinstance(buf, memoryview) else buf.cast("B")


def _nbytes(frame: Any) -> int:
    """len() of a frame's bytes without a memoryview where the type says it (zmq.Frame's len
    is its size in bytes, as is that of bytes and bytearray)."""
    if isinstance(frame, (bytes, bytearray)) or hasattr(frame, "buffer"):
        return len(frame)
    return len(_buffer(frame))


def _decode_desc(raw: bytes, k: int) -> Desc:
    d = _DECODED.get(raw)
    if d is not None:
        return d  # these exact 80 bytes passed W10 before
    dtype, ndim, *rest = _DESC.unpack(raw)
    shape8, nbytes = rest[:8], rest[8]
    if dtype not in _CODES:
        raise _corrupt("W10", f"descriptor {k} has the unknown dtype code {dtype}")
    if ndim > 8:
        raise _corrupt("W10", f"descriptor {k} has ndim {ndim}, above 8")
    if any(shape8[ndim:]):
        raise _corrupt("W10", f"descriptor {k} has non-zero extents beyond ndim {ndim}")
    shape = tuple(shape8[:ndim])
    product = _ITEMSIZE[dtype]
    for e in shape:
        product *= e
    if product != nbytes:  # exact: a product above 2^64 - 1 never matches
        raise _corrupt(
            "W10", f"descriptor {k} says nbytes {nbytes}, itemsize x product{shape} is {product}"
        )
    d = Desc(dtype, shape, nbytes)
    if len(_DECODED) < _CACHE_MAX:
        _DECODED[bytes(raw)] = d
    return d


class Head:
    """The fields of a frame 0 that passed W1-W8 (slotted: built per message received)."""

    __slots__ = (
        "epoch",
        "kind",
        "local_seq",
        "nfields",
        "protocol",
        "relay_seq",
        "reply_code",
        "round_state",
        "session",
    )  # fmt: skip

    def __init__(
        self, kind: Kind, protocol: int, round_state: int, session: int, epoch: int,
        relay_seq: int, local_seq: int, reply_code: int, nfields: int,
    ) -> None:  # fmt: skip
        self.kind = kind
        self.protocol = protocol
        self.round_state = round_state
        self.session = session
        self.epoch = epoch
        self.relay_seq = relay_seq
        self.local_seq = local_seq
        self.reply_code = reply_code
        self.nfields = nfields


class Message(Head):
    """A message that passed W1-W11: the header's fields, the descriptors and ``frames``, the
    payload frames (buffers, not copied). Slotted, not a dataclass: one is built per message
    received (hot path); the decoder builds it at W8 and fills these two after W11."""

    __slots__ = ("descs", "frames")

    descs: tuple[Desc, ...]
    frames: tuple[Any, ...]

    def __repr__(self) -> str:
        return (
            f"Message({self.kind.name}, session={self.session}, epoch={self.epoch}, "
            f"relay_seq={self.relay_seq}, reply_code={self.reply_code}, descs={self.descs})"
        )


def decode(frames: Sequence[Any]) -> Message:
    """W1-W11 in order (R-RELAY-6); the first failing check raises its typed error."""
    head, raw = _decode_head(frames)
    try:
        return _decode_rest(head, raw, frames)
    except WireCorrupt as e:
        e.head = head
        raise


def decode_head(frames: Sequence[Any]) -> Head:
    """W1-W8 on frame 0."""
    return _decode_head(frames)[0]


def _frame0(frames: Sequence[Any]) -> bytes:
    """Frame 0 as bytes (it is small: 48 + 80 x nfields; a copy is cheaper than a view)."""
    f = frames[0]
    if isinstance(f, bytes):
        return f
    b = getattr(f, "bytes", None)
    return b if isinstance(b, bytes) else bytes(_buffer(f))


def _decode_head(frames: Sequence[Any]) -> tuple[Message, bytes]:
    if not frames:
        raise _corrupt("W1", "no frame")
    head = _frame0(frames)
    n = len(head)
    if n < HEADER_SIZE:
        raise _corrupt("W1", f"frame 0 has {n} bytes, expected at least {HEADER_SIZE}")
    (magic, version, kind, protocol, state, session, epoch, relay_seq, local_seq, reply_code,
     nfields, res16, res32) = _HEADER.unpack_from(head)  # fmt: skip
    if magic != MAGIC:
        raise _corrupt("W2", f"magic is {bytes(magic)!r}, expected {MAGIC!r}")
    if version != WIRE_VERSION:
        raise WireVersion(
            f"relay message: wire version {version}, this relay speaks {WIRE_VERSION} (check W3 "
            "of spec/RELAY.md); run the same shmbridge release at both ends",
            check="W3",
        )
    if not 1 <= kind <= 4:
        raise _corrupt("W4", f"kind {kind}, expected 1 to 4")
    k = _KINDS[kind]
    assert k is not None
    if res16 or res32:
        raise _corrupt("W5", "reserved fields are not zero")
    # HELLO: 0 is a near end that has no segment yet (it creates it from the far end's HELLO).
    allowed = (0,) if k is Kind.HB else (0, 1, 2) if k is Kind.HELLO else (1, 2)
    if protocol not in allowed:
        raise _corrupt("W6", f"protocol {protocol} in a {k.name}")
    if state > 3 or (state and k is not Kind.HB):
        raise _corrupt("W6", f"round_state {state} in a {k.name}")
    limit = 1 if protocol == 1 else MAX_FIELDS
    if nfields > limit:
        raise _corrupt("W7", f"{nfields} descriptors, at most {limit} in protocol {protocol}")
    if n != HEADER_SIZE + DESC_SIZE * nfields:
        raise _corrupt("W7", f"frame 0 has {n} bytes, {HEADER_SIZE} + 80 x {nfields} expected")
    if nfields and (k is Kind.HELLO or k is Kind.HB or (k is Kind.REP and reply_code)):
        raise _corrupt("W7", f"{nfields} descriptors in a {k.name} that carries none")
    if reply_code and (k is not Kind.REP or reply_code not in _REPLY_CODES):
        raise _corrupt("W8", f"reply_code {reply_code} in a {k.name}")
    if relay_seq == 0 and (k is Kind.REQ or k is Kind.REP):
        raise _corrupt("W8", f"relay_seq 0 in a {k.name}")
    h = Message(k, protocol, state, session, epoch, relay_seq, local_seq, reply_code, nfields)
    return h, head


def _decode_rest(h: Message, head: bytes, frames: Sequence[Any]) -> Message:
    """W9-W11."""
    k, nfields = h.kind, h.nfields
    want = 2 if k is Kind.HELLO else 1 + nfields
    if len(frames) != want:
        raise _corrupt("W9", f"{len(frames)} frames, expected {want} for a {k.name}")
    if nfields == 0:
        descs: tuple[Desc, ...] = ()
    elif nfields == 1:
        descs = (_decode_desc(head[HEADER_SIZE:], 0),)
    else:
        descs = tuple(
            [_decode_desc(head[HEADER_SIZE + DESC_SIZE * i : HEADER_SIZE + DESC_SIZE * (i + 1)], i)
             for i in range(nfields)]
        )  # fmt: skip
    payload = tuple(frames[1:])
    for i in range(nfields):
        n, want_n = _nbytes(payload[i]), descs[i].nbytes
        if n != want_n:
            raise _corrupt("W11", f"payload frame {i + 1} has {n} bytes, its descriptor {want_n}")
    h.descs = descs
    h.frames = payload
    return h
