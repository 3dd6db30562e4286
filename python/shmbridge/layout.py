"""The 512-byte header of PROTOCOL.md §3 (R-LAYOUT-1..7): encode, decode, validate.

Pure functions over bytes-like objects; nothing here reads beyond the first 512 bytes of a buffer.
Atomic fields (``word``, ``waiters``, slot ``pid``/``state``) are decoded here only for inspection
and test vectors; the channel accesses them through :mod:`shmbridge._native`.
"""

from __future__ import annotations

import struct
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Union

from .dtype import DType
from .errors import CapacityExceeded, CorruptHeader, SegmentNotFound, VersionMismatch

if TYPE_CHECKING:
    from .layout_v2 import HeaderV2

__all__ = [
    "HEADER_SIZE",
    "MAGIC",
    "MAX_DIMS",
    "OFF_CREATOR",
    "OFF_DECLARED",
    "OFF_MESSAGE",
    "OFF_REPLY_CODE",
    "OFF_REQUESTER",
    "OFF_RESPONDER",
    "OFF_WAITERS",
    "OFF_WORD",
    "PAYLOAD_OFFSET",
    "SLOT_ATTACHED",
    "SLOT_CLOSED",
    "SLOT_EMPTY",
    "Descriptor",
    "Header",
    "Slot",
    "check_host",
    "decode_common",
    "decode_descriptor",
    "decode_header",
    "encode_common",
    "encode_descriptor",
    "encode_header",
    "header_from_fields",
    "header_to_fields",
    "slot_fields",
    "validate_fixed",
    "version_mismatch",
]

Buffer = Union[bytes, bytearray, memoryview]

MAGIC = b"SHMBRIDG"
VERSION_MAJOR = 1
VERSION_MINOR = 0
HEADER_SIZE = 512
PAYLOAD_OFFSET = HEADER_SIZE
MAX_DIMS = 8
U64_MAX = (1 << 64) - 1

# Byte offsets (§3 table).
OFF_MAGIC = 0x000
OFF_VERSION_MAJOR = 0x008
OFF_VERSION_MINOR = 0x00A
OFF_HEADER_SIZE = 0x00C
OFF_CAPACITY = 0x010
OFF_SEGMENT_SIZE = 0x018
OFF_FLAGS = 0x020
OFF_MAX_DIMS = 0x024
OFF_DECLARED = 0x040
OFF_MESSAGE = 0x090
OFF_REPLY_CODE = 0x0E0
OFF_WORD = 0x100
OFF_WAITERS = 0x104
OFF_REQUESTER = 0x140
OFF_RESPONDER = 0x160
OFF_CREATOR = 0x180

# Offsets inside a slot (§3.3).
SLOT_PID = 0
SLOT_STATE = 4
SLOT_START_TIME = 8
SLOT_INCARNATION = 16
SLOT_SIZE = 32

SLOT_EMPTY = 0
SLOT_ATTACHED = 1
SLOT_CLOSED = 2

DESCRIPTOR_SIZE = 80
_FIXED = struct.Struct("<8sHHIQQII")  # magic .. max_dims, 0x00..0x28
_DESC = struct.Struct("<II8QQ")  # dtype, ndim, shape[8], nbytes
_U32 = struct.Struct("<I")
_SLOT = struct.Struct("<IIQQ")  # pid, state, start_time, incarnation (+8 reserved)

assert _FIXED.size == 0x28
assert _DESC.size == DESCRIPTOR_SIZE
assert OFF_MESSAGE == OFF_DECLARED + DESCRIPTOR_SIZE


@dataclass(frozen=True)
class Descriptor:
    """Array descriptor (§3.1). ``shape`` has exactly ``ndim`` extents."""

    dtype: int
    shape: tuple[int, ...]

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def count(self) -> int:
        n = 1
        for s in self.shape:
            n *= s
        return n

    @property
    def nbytes(self) -> int:
        return DType(self.dtype).itemsize * self.count

    def describe(self) -> str:
        try:
            name = DType(self.dtype).name
        except ValueError:
            name = f"dtype#{self.dtype}"
        return f"{name}{self.shape!r}"


@dataclass(frozen=True)
class Slot:
    """Liveness slot (§3.3)."""

    pid: int = 0
    state: int = SLOT_EMPTY
    start_time: int = 0
    incarnation: int = 0


@dataclass(frozen=True)
class Header:
    """All fields of the header (§3)."""

    capacity: int
    declared: Descriptor
    message: Descriptor
    version_major: int = VERSION_MAJOR
    version_minor: int = VERSION_MINOR
    header_size: int = HEADER_SIZE
    segment_size: int = -1  # -1: header_size + capacity
    flags: int = 0
    max_dims: int = MAX_DIMS
    magic: bytes = MAGIC
    reply_code: int = 0
    word: int = 0
    waiters: int = 0
    requester: Slot = field(default_factory=Slot)
    responder: Slot = field(default_factory=Slot)
    creator: Slot = field(default_factory=Slot)

    def __post_init__(self) -> None:
        if self.segment_size == -1:
            object.__setattr__(self, "segment_size", self.header_size + self.capacity)


def check_host() -> None:
    """R-LAYOUT-1: a big-endian host refuses to create or attach."""
    if sys.byteorder != "little":
        raise VersionMismatch(
            "this host is big-endian; protocol v1 is little-endian only: use a little-endian host"
        )


def encode_descriptor(desc: Descriptor) -> bytes:
    """80 bytes for ``desc``. Raises CorruptHeader for more than 8 dims."""
    if desc.ndim > MAX_DIMS:
        raise CorruptHeader(f"ndim {desc.ndim} exceeds {MAX_DIMS}")
    shape = list(desc.shape) + [0] * (MAX_DIMS - desc.ndim)
    return _DESC.pack(desc.dtype, desc.ndim, *shape, desc.nbytes)


def decode_descriptor(raw: Buffer, capacity: int, what: str = "descriptor") -> Descriptor:
    """Decode and validate an 80-byte descriptor (R-LAYOUT-5); CorruptHeader if invalid."""
    vals = _DESC.unpack_from(raw, 0)
    dtype, ndim = vals[0], vals[1]
    shape = vals[2:10]
    nbytes = vals[10]
    try:
        item = DType(dtype).itemsize
    except ValueError:
        raise CorruptHeader(
            f"{what}: unknown dtype code {dtype} (expected 1..14); the segment was written by an "
            "incompatible or broken peer"
        ) from None
    if ndim > MAX_DIMS:
        raise CorruptHeader(f"{what}: ndim {ndim} exceeds {MAX_DIMS}")
    if any(shape[ndim:]):
        raise CorruptHeader(f"{what}: shape entries beyond ndim={ndim} must be 0, found {shape}")
    product = item
    for s in shape[:ndim]:
        product *= s
    if product > U64_MAX:
        raise CorruptHeader(f"{what}: itemsize x product(shape) overflows 64 bits")
    if product != nbytes:
        raise CorruptHeader(f"{what}: nbytes {nbytes} != itemsize x product(shape) = {product}")
    if nbytes > capacity:
        raise CorruptHeader(f"{what}: nbytes {nbytes} exceeds the capacity {capacity}")
    return Descriptor(dtype, tuple(shape[:ndim]))


def _encode_slot(slot: Slot) -> bytes:
    return _SLOT.pack(slot.pid, slot.state, slot.start_time, slot.incarnation) + bytes(8)


def _decode_slot(raw: Buffer, off: int) -> Slot:
    pid, state, start, inc = _SLOT.unpack_from(raw, off)
    return Slot(pid, state, start, inc)


def encode_header(h: Header, *, with_magic: bool = True) -> bytes:
    """The exact 512 header bytes (reserved bytes zero, R-LAYOUT-2). ``with_magic=False`` leaves
    the magic zero, for a creator that publishes it last (R-SEG-6)."""
    if h.declared.nbytes > U64_MAX or h.capacity > U64_MAX - h.header_size:
        # R-LAYOUT-5: product(shape) x itemsize (and header_size + capacity) must fit 64 bits.
        raise CapacityExceeded(
            f"expected a byte size below 2^64, found {h.declared.describe()} "
            f"({h.declared.nbytes} bytes, capacity {h.capacity}); use a smaller array"
        )
    if h.declared.nbytes > h.capacity:
        raise CapacityExceeded(
            f"declared array {h.declared.describe()} needs {h.declared.nbytes} bytes, capacity is "
            f"{h.capacity}"
        )
    out = bytearray(HEADER_SIZE)
    encode_common(out, h, with_magic)
    out[OFF_DECLARED : OFF_DECLARED + DESCRIPTOR_SIZE] = encode_descriptor(h.declared)
    out[OFF_MESSAGE : OFF_MESSAGE + DESCRIPTOR_SIZE] = encode_descriptor(h.message)
    return bytes(out)


def encode_common(out: bytearray, h: Header | HeaderV2, with_magic: bool) -> None:
    """The fields both versions keep at the same offsets with the same encoding (R-SCHEMA-5,
    R-VER-6): magic .. max_dims, reply_code, word, waiters and the three slots."""
    _FIXED.pack_into(
        out,
        0,
        h.magic if with_magic else bytes(8),
        h.version_major,
        h.version_minor,
        h.header_size,
        h.capacity,
        h.segment_size,
        h.flags,
        h.max_dims,
    )
    _U32.pack_into(out, OFF_REPLY_CODE, h.reply_code)
    _U32.pack_into(out, OFF_WORD, h.word)
    _U32.pack_into(out, OFF_WAITERS, h.waiters)
    for off, slot in (
        (OFF_REQUESTER, h.requester),
        (OFF_RESPONDER, h.responder),
        (OFF_CREATOR, h.creator),
    ):
        out[off : off + SLOT_SIZE] = _encode_slot(slot)


def decode_common(raw: Buffer) -> dict[str, Any]:
    """reply_code, word, waiters and the slots, which both versions keep at the same offsets
    (never judged by header validation: R-STATE-11, R-SCHEMA-9)."""
    return {
        "reply_code": _U32.unpack_from(raw, OFF_REPLY_CODE)[0],
        "word": _U32.unpack_from(raw, OFF_WORD)[0],
        "waiters": _U32.unpack_from(raw, OFF_WAITERS)[0],
        "requester": _decode_slot(raw, OFF_REQUESTER),
        "responder": _decode_slot(raw, OFF_RESPONDER),
        "creator": _decode_slot(raw, OFF_CREATOR),
    }


def slot_fields(s: Slot) -> dict[str, int]:
    """A slot as the header vectors write it."""
    return {
        "pid": s.pid,
        "state": s.state,
        "start_time": s.start_time,
        "incarnation": s.incarnation,
    }


def version_mismatch(found: int, minor: int, api: int, name: str = "") -> VersionMismatch:
    """The VERSION_MISMATCH of an API speaking protocol ``api`` (1 or 2) that found a segment of
    version ``found``.``minor`` (R-VER-3, R-VER-4; segment ``name`` if known)."""
    seg = f"segment {name!r}" if name else "the segment"
    if api == 1 and found == 2:
        return VersionMismatch(
            f"{seg} uses protocol v2 (typed messages): attach with "
            "MessageRequester/MessageResponder"
        )
    if api == 2 and found == 1:
        return VersionMismatch(
            f"{seg} uses protocol v1 (one array): attach with Requester/Responder"
        )
    return VersionMismatch(
        f"{seg} uses protocol version {found}.{minor}: expected major version 1 or 2 (the "
        "versions this library supports); use peers of a supported version"
    )


def validate_fixed(raw: Buffer, mapping_size: int, *, name: str = "") -> tuple[int, int]:
    """Validate magic, version and the sizes (R-LAYOUT-3, -4, -6). Returns (capacity,
    segment_size). An all-zero magic is SegmentNotFound ("still initialising", R-SEG-6); the
    attach path retries on it before calling this. ``name`` names the segment in a version
    mismatch (R-VER-3)."""
    if mapping_size < HEADER_SIZE or len(raw) < HEADER_SIZE:
        raise CorruptHeader(
            f"the OS object is {mapping_size} bytes, smaller than the {HEADER_SIZE}-byte header"
        )
    magic, vmaj, vmin, hsize, capacity, segsize, flags, max_dims = _FIXED.unpack_from(raw, 0)
    if magic == bytes(8):
        raise SegmentNotFound(
            "magic is all zero: the segment is still being initialised by its creator (R-SEG-6); "
            "start the creator or wait until it has finished"
        )
    if magic != MAGIC:
        raise CorruptHeader(
            f"bad magic: expected {MAGIC!r}, found {bytes(magic)!r}; this is not a shmbridge "
            "segment (remove it or choose another name)"
        )
    if vmaj != VERSION_MAJOR:
        raise version_mismatch(vmaj, vmin, VERSION_MAJOR, name)
    if hsize != HEADER_SIZE:
        raise CorruptHeader(f"header_size: expected {HEADER_SIZE}, found {hsize}")
    if max_dims != MAX_DIMS:
        raise CorruptHeader(f"max_dims: expected {MAX_DIMS}, found {max_dims}")
    if flags != 0:
        raise CorruptHeader(f"flags: expected 0 (all bits reserved in v1), found {flags:#x}")
    if segsize != hsize + capacity:
        raise CorruptHeader(
            f"segment_size: expected header_size + capacity = {hsize + capacity}, found {segsize}"
        )
    if mapping_size < segsize:
        raise CorruptHeader(
            f"the OS object is {mapping_size} bytes, smaller than segment_size {segsize}"
        )
    return capacity, segsize


def decode_header(raw: Buffer, mapping_size: int, *, check_message: bool = True) -> Header:
    """Decode and validate the header in the first 512 bytes of ``raw`` for an OS object of
    ``mapping_size`` bytes (R-LAYOUT-*). Raises CorruptHeader / VersionMismatch."""
    mv = memoryview(raw)[:HEADER_SIZE]
    capacity, segsize = validate_fixed(mv, mapping_size)
    _, vmaj, vmin, hsize, _, _, flags, max_dims = _FIXED.unpack_from(mv, 0)
    declared = decode_descriptor(mv[OFF_DECLARED:], capacity, "declared descriptor")
    if check_message:
        message = decode_descriptor(mv[OFF_MESSAGE:], capacity, "message descriptor")
    else:
        message = declared
    return Header(
        capacity=capacity,
        declared=declared,
        message=message,
        version_major=vmaj,
        version_minor=vmin,
        header_size=hsize,
        segment_size=segsize,
        flags=flags,
        max_dims=max_dims,
        **decode_common(mv),
    )


def header_to_fields(h: Header) -> dict[str, Any]:
    """The ``fields`` object of spec/vectors/headers.json for ``h``."""

    def desc(d: Descriptor) -> dict[str, Any]:
        return {"dtype": d.dtype, "ndim": d.ndim, "shape": list(d.shape), "nbytes": d.nbytes}

    slot = slot_fields

    return {
        "magic": h.magic.decode("ascii"),
        "version_major": h.version_major,
        "version_minor": h.version_minor,
        "header_size": h.header_size,
        "capacity": h.capacity,
        "segment_size": h.segment_size,
        "flags": h.flags,
        "max_dims": h.max_dims,
        "declared": desc(h.declared),
        "message": desc(h.message),
        "reply_code": h.reply_code,
        "word": h.word,
        "waiters": h.waiters,
        "requester": slot(h.requester),
        "responder": slot(h.responder),
        "creator": slot(h.creator),
    }


def header_from_fields(f: dict[str, Any]) -> Header:
    """Inverse of :func:`header_to_fields` (no validation beyond struct ranges)."""

    def desc(d: dict[str, Any]) -> Descriptor:
        return Descriptor(int(d["dtype"]), tuple(int(x) for x in d["shape"]))

    def slot(s: dict[str, Any]) -> Slot:
        return Slot(int(s["pid"]), int(s["state"]), int(s["start_time"]), int(s["incarnation"]))

    return Header(
        magic=str(f["magic"]).encode("ascii"),
        version_major=int(f["version_major"]),
        version_minor=int(f["version_minor"]),
        header_size=int(f["header_size"]),
        capacity=int(f["capacity"]),
        segment_size=int(f["segment_size"]),
        flags=int(f["flags"]),
        max_dims=int(f["max_dims"]),
        declared=desc(f["declared"]),
        message=desc(f["message"]),
        reply_code=int(f["reply_code"]),
        word=int(f["word"]),
        waiters=int(f["waiters"]),
        requester=slot(f["requester"]),
        responder=slot(f["responder"]),
        creator=slot(f["creator"]),
    )
