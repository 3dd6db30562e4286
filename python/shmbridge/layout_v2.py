"""The protocol v2 header (PROTOCOL.md §II.3): encode, decode and validate it (checks H1-H16 and
F1-F9, R-SCHEMA-9), and compare a segment's schemas with an attacher's expectations (X1-X6,
R-SCHEMA-10). Mirrors :mod:`layout` (v1).

Pure functions over bytes-like objects. The validator reads through a bounded reader: the fixed
512 bytes until H10 has passed, then up to ``header_size``, never the message tables (R-SCHEMA-9).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Union

from .dtype import DType, dtype_code
from .errors import (
    CorruptHeader,
    DtypeMismatch,
    SchemaMismatch,
    SegmentNotFound,
    ShapeMismatch,
)
from .layout import (
    MAGIC,
    Slot,
    decode_common,
    encode_common,
    slot_fields,
    version_mismatch,
)
from .schema import (
    ENTRY_SIZE,
    FIXED_HEADER_SIZE,
    MAX_DIMS,
    MAX_FIELDS,
    RECORD_SIZE,
    Declared,
    Field,
    Geometry,
    Record,
    Schema,
    Upto,
    align64,
    header_size_of,
    place_area,
    valid_name,
)

__all__ = [
    "MAX_HEADER_SIZE",
    "OFF_GEOMETRY",
    "OFF_RECORDS",
    "VERSION_MAJOR",
    "HeaderV2",
    "check_expected",
    "decode_header",
    "encode_header",
    "header_for",
    "header_from_fields",
    "header_to_fields",
    "read_version",
]

Buffer = Union[bytes, bytearray, memoryview]

VERSION_MAJOR = 2
VERSION_MINOR = 0
MAX_HEADER_SIZE = FIXED_HEADER_SIZE + RECORD_SIZE * 2 * MAX_FIELDS  # 4608
OFF_GEOMETRY = 0x040
OFF_RECORDS = 0x200

_FIXED = struct.Struct("<8sHHIQQII")  # magic .. max_dims (0x00..0x28), as v1
_GEOMETRY = struct.Struct("<IIQQQQ40x")  # §II.3.1
_RECORD = struct.Struct("<32sIIII8QQQ")  # §II.3.2
_CODES = frozenset(int(d) for d in DType)

assert _GEOMETRY.size == 80 and _RECORD.size == RECORD_SIZE


@dataclass(frozen=True)
class HeaderV2:
    """All fields of a v2 header (§II.3): the fixed part, the geometry and both schemas'
    records."""

    request: tuple[Record, ...]
    reply: tuple[Record, ...]
    geometry: Geometry
    capacity: int
    segment_size: int
    header_size: int
    version_major: int = VERSION_MAJOR
    version_minor: int = VERSION_MINOR
    flags: int = 0
    max_dims: int = MAX_DIMS
    magic: bytes = MAGIC
    reply_code: int = 0
    word: int = 0
    waiters: int = 0
    requester: Slot = field(default_factory=Slot)
    responder: Slot = field(default_factory=Slot)
    creator: Slot = field(default_factory=Slot)


def header_for(declared: Declared, **fields: Any) -> HeaderV2:
    """The header a creator writes for ``declared`` (R-SCHEMA-8); ``fields`` sets slots etc."""
    h = HeaderV2(
        request=declared.request,
        reply=declared.reply,
        geometry=declared.geometry,
        capacity=declared.capacity,
        segment_size=declared.segment_size,
        header_size=declared.header_size,
    )
    return replace(h, **fields) if fields else h


def _pack_record(out: bytearray, off: int, r: Record) -> None:
    shape = list(r.max_shape) + [0] * (MAX_DIMS - r.ndim)
    name = r.name.encode("ascii")
    _RECORD.pack_into(
        out, off, name, r.dtype, r.ndim, r.variable_mask, r.alias, *shape, r.offset, r.max_nbytes
    )


def encode_header(h: HeaderV2, *, with_magic: bool = True) -> bytes:
    """The exact ``header_size`` bytes of ``h``: the fixed part (reserved bytes zero, v1's
    ``message`` descriptor at 0x090 included, R-SCHEMA-5) and the schema table (R-SCHEMA-6).
    ``with_magic=False`` leaves the magic zero for a creator that publishes it last (R-SEG-6)."""
    out = bytearray(h.header_size)
    encode_common(out, h, with_magic)
    g = h.geometry
    _GEOMETRY.pack_into(
        out,
        OFF_GEOMETRY,
        g.request_fields,
        g.reply_fields,
        g.request_area_offset,
        g.request_area_size,
        g.reply_area_offset,
        g.reply_area_size,
    )
    for i, r in enumerate((*h.request, *h.reply)):
        _pack_record(out, OFF_RECORDS + RECORD_SIZE * i, r)
    return bytes(out)


# ---------------------------------------------------------------------------- validation


class _Reader:
    """The bytes a validator may read (R-SCHEMA-9): below ``limit`` only (512 until H10 passed,
    then ``header_size``). A read beyond it is a bug of this module, never of the input."""

    def __init__(self, raw: Buffer) -> None:
        self.raw = raw
        self.limit = FIXED_HEADER_SIZE

    def unpack(self, s: struct.Struct, off: int) -> tuple[Any, ...]:
        assert off + s.size <= self.limit, f"validator read {off}+{s.size} beyond {self.limit}"
        return s.unpack_from(self.raw, off)


def read_version(raw: Buffer) -> int:
    """``version_major`` (0x008), which keeps its offset in every version (R-VER-6)."""
    return int(struct.unpack_from("<H", raw, 8)[0])


def _corrupt(what: str, check: str) -> CorruptHeader:
    return CorruptHeader(
        f"{what}; the segment was written by an incompatible or broken peer: recreate it "
        "(shmbridge rm NAME)",
        check=check,
    )


def _check_record(
    rd: _Reader,
    index: int,
    side: str,
    k: int,
    earlier: Sequence[Record],
    request: Sequence[Record],
    expected_offset: int,
) -> Record:
    """F1-F9 on schema record ``index`` (field ``k`` of the ``side`` schema)."""
    where = f"{side} record {k}"
    (name_raw, dtype, ndim, mask, alias, *rest) = rd.unpack(
        _RECORD, OFF_RECORDS + RECORD_SIZE * index
    )
    shape8, offset, max_nbytes = rest[:8], rest[8], rest[9]
    nul = name_raw.find(b"\0")  # F1
    name_b = name_raw[:nul] if nul >= 0 else name_raw
    try:
        name = name_b.decode("ascii")
    except UnicodeDecodeError:
        name = ""
    if nul < 0 or any(name_raw[nul:]) or not name or not valid_name(name):
        raise _corrupt(
            f"{where}: name {bytes(name_raw).rstrip(bytes(1))!r} is not 1 to 31 characters "
            "[A-Za-z_][A-Za-z0-9_]* padded with NUL bytes",
            "F1",
        )
    if any(r.name == name for r in earlier):  # F2
        raise _corrupt(f"{where}: name {name!r} appears twice in the {side} schema", "F2")
    if dtype not in _CODES:  # F3
        raise _corrupt(f"{where} ({name!r}): unknown dtype code {dtype} (expected 1..14)", "F3")
    if ndim > MAX_DIMS:  # F4
        raise _corrupt(f"{where} ({name!r}): ndim {ndim} exceeds {MAX_DIMS}", "F4")
    if any(shape8[ndim:]):  # F5
        raise _corrupt(f"{where} ({name!r}): max_shape entries beyond ndim {ndim} must be 0", "F5")
    if mask >> ndim:  # F6
        raise _corrupt(
            f"{where} ({name!r}): variable_mask {mask:#x} has a bit >= ndim {ndim}", "F6"
        )
    max_shape = tuple(shape8[:ndim])
    product = DType(dtype).itemsize
    for m in max_shape:
        product *= m
    if product != max_nbytes:  # F7 (exact: a wrapped product never matches)
        raise _corrupt(
            f"{where} ({name!r}): max_nbytes {max_nbytes} != itemsize x product(max_shape) = "
            f"{product}",
            "F7",
        )
    if alias:  # F8
        t = alias - 1
        ok = (
            side == "reply"
            and t < len(request)
            and all(r.alias != alias for r in earlier)
            and (request[t].dtype, request[t].max_shape, request[t].variable_mask)
            == (dtype, max_shape, mask)
        )
        if not ok:
            raise _corrupt(
                f"{where} ({name!r}): alias {alias} is not an in-place field onto a distinct "
                "request field of the same dtype and shape",
                "F8",
            )
        want = request[t].offset
    else:
        want = expected_offset
    if offset != want:  # F9
        raise _corrupt(f"{where} ({name!r}): offset {offset}, expected {want} (R-SCHEMA-7)", "F9")
    return Record(name, dtype, mask, alias, max_shape, offset, max_nbytes)


def _records(
    rd: _Reader, side: str, first: int, count: int, area_offset: int, request: Sequence[Record]
) -> tuple[Record, ...]:
    out: list[Record] = []
    # R-SCHEMA-7: the area's table, then each own-storage field at the next aligned position
    # after the previous one; the expected offset of record k follows from the records before
    # it, which passed F7.
    pos = area_offset + align64(ENTRY_SIZE * count)
    for k in range(count):
        r = _check_record(rd, first + k, side, k, out, request, pos)
        if not r.alias:
            pos = align64(pos + r.max_nbytes)
        out.append(r)
    return tuple(out)


def decode_header(raw: Buffer, mapping_size: int, *, name: str = "") -> HeaderV2:
    """Validate (H1-H16 in order, F1-F9 per record, R-SCHEMA-9) and decode the v2 header at the
    start of ``raw`` for an OS object of ``mapping_size`` bytes. ``raw`` must hold the header's
    bytes up to ``header_size`` (more is never read; a fuzz harness passes the bytes zero-padded
    to MAX_HEADER_SIZE). Raises CorruptHeader, SegmentNotFound (H2: still initialising) or
    VersionMismatch (H4; ``name`` names the segment, R-VER-4), with ``check`` the label of the
    failing check; header errors name no field. Pure: needs neither the mapping nor the native
    helper (the v2 counterpart of ``layout.decode_header`` for cpp/fuzz/differential.py)."""
    rd = _Reader(raw)
    if mapping_size < FIXED_HEADER_SIZE or len(raw) < FIXED_HEADER_SIZE:  # H1
        raise CorruptHeader(
            f"the OS object is {mapping_size} bytes, smaller than the {FIXED_HEADER_SIZE}-byte "
            "fixed header; remove it (shmbridge rm NAME) if no peer uses it",
            check="H1",
        )
    magic, vmaj, vmin, hsize, capacity, segsize, flags, max_dims = rd.unpack(_FIXED, 0)
    if magic == bytes(8):  # H2
        raise SegmentNotFound(
            "magic is all zero: the segment is still being initialised by its creator (R-SEG-6); "
            "start the creator or wait until it has finished",
            check="H2",
        )
    if magic != MAGIC:  # H3
        raise CorruptHeader(
            f"bad magic: expected {MAGIC!r}, found {bytes(magic)!r}; this is not a shmbridge "
            "segment (remove it or choose another name)",
            check="H3",
        )
    if vmaj != VERSION_MAJOR:  # H4
        err = version_mismatch(vmaj, vmin, VERSION_MAJOR, name)
        err.check = "H4"
        raise err
    nreq, nrep, req_off, req_size, rep_off, rep_size = rd.unpack(_GEOMETRY, OFF_GEOMETRY)
    if nreq > MAX_FIELDS or nrep > MAX_FIELDS:  # H5
        raise _corrupt(
            f"field counts {nreq} (request) and {nrep} (reply): expected at most {MAX_FIELDS} each",
            "H5",
        )
    if hsize != header_size_of(nreq, nrep):  # H6
        raise _corrupt(
            f"header_size {hsize}: expected 512 + 128 x ({nreq} + {nrep}) = "
            f"{header_size_of(nreq, nrep)}",
            "H6",
        )
    if max_dims != MAX_DIMS:  # H7
        raise _corrupt(f"max_dims: expected {MAX_DIMS}, found {max_dims}", "H7")
    if flags != 0:  # H8
        raise _corrupt(f"flags: expected 0 (all bits reserved), found {flags:#x}", "H8")
    if segsize != hsize + capacity:  # H9 (exact)
        raise _corrupt(
            f"segment_size {segsize}: expected header_size + capacity = {hsize + capacity}", "H9"
        )
    if mapping_size < segsize:  # H10
        raise CorruptHeader(
            f"the OS object is {mapping_size} bytes, smaller than segment_size {segsize}; "
            "remove it (shmbridge rm NAME) if no peer uses it",
            check="H10",
        )
    rd.limit = hsize  # the schema table may be read now
    request = _records(rd, "request", 0, nreq, hsize, ())  # H11
    _, want_req_size = place_area(hsize, [r.max_nbytes for r in request], [0] * nreq)
    reply = _records(rd, "reply", nreq, nrep, hsize + want_req_size, request)
    if req_off != hsize:  # H12
        raise _corrupt(f"request_area_offset {req_off}: expected header_size {hsize}", "H12")
    if req_size != want_req_size:  # H13
        raise _corrupt(
            f"request_area_size {req_size}: expected {want_req_size} (R-SCHEMA-7)", "H13"
        )
    if rep_off != req_off + req_size:  # H14
        raise _corrupt(
            f"reply_area_offset {rep_off}: expected request_area_offset + request_area_size = "
            f"{req_off + req_size}",
            "H14",
        )
    _, want_rep_size = place_area(
        rep_off, [r.max_nbytes for r in reply], [r.alias for r in reply],
        [r.offset for r in request],
    )  # fmt: skip
    if rep_size != want_rep_size:  # H15
        raise _corrupt(f"reply_area_size {rep_size}: expected {want_rep_size} (R-SCHEMA-7)", "H15")
    if capacity != req_size + rep_size:  # H16
        raise _corrupt(
            f"capacity {capacity}: expected request_area_size + reply_area_size = "
            f"{req_size + rep_size}",
            "H16",
        )
    return HeaderV2(
        request=request,
        reply=reply,
        geometry=Geometry(nreq, nrep, req_off, req_size, rep_off, rep_size),
        capacity=capacity,
        segment_size=segsize,
        header_size=hsize,
        version_major=vmaj,
        version_minor=vmin,
        flags=flags,
        max_dims=max_dims,
        magic=bytes(magic),
        **decode_common(raw),  # below 512, the bytes the reader may read from the start
    )


# ---------------------------------------------------------------------------- vector format


def _record_fields(r: Record) -> dict[str, Any]:
    return {
        "name": r.name,
        "dtype": r.dtype,
        "ndim": r.ndim,
        "variable_mask": r.variable_mask,
        "alias": r.alias,
        "max_shape": list(r.max_shape),
        "offset": r.offset,
        "max_nbytes": r.max_nbytes,
    }


def header_to_fields(h: HeaderV2) -> dict[str, Any]:
    """The ``fields`` object of spec/vectors/headers_v2.json for ``h``."""
    g = h.geometry
    return {
        "magic": h.magic.decode("ascii"),
        "version_major": h.version_major,
        "version_minor": h.version_minor,
        "header_size": h.header_size,
        "capacity": h.capacity,
        "segment_size": h.segment_size,
        "flags": h.flags,
        "max_dims": h.max_dims,
        "geometry": {
            "request_fields": g.request_fields,
            "reply_fields": g.reply_fields,
            "request_area_offset": g.request_area_offset,
            "request_area_size": g.request_area_size,
            "reply_area_offset": g.reply_area_offset,
            "reply_area_size": g.reply_area_size,
        },
        "reply_code": h.reply_code,
        "word": h.word,
        "waiters": h.waiters,
        "requester": slot_fields(h.requester),
        "responder": slot_fields(h.responder),
        "creator": slot_fields(h.creator),
        "request_schema": [_record_fields(r) for r in h.request],
        "reply_schema": [_record_fields(r) for r in h.reply],
    }


def header_from_fields(f: dict[str, Any]) -> HeaderV2:
    """Inverse of :func:`header_to_fields` (no validation)."""

    def rec(d: dict[str, Any]) -> Record:
        return Record(
            str(d["name"]),
            int(d["dtype"]),
            int(d["variable_mask"]),
            int(d["alias"]),
            tuple(int(x) for x in d["max_shape"]),
            int(d["offset"]),
            int(d["max_nbytes"]),
        )

    def slot(d: dict[str, Any]) -> Slot:
        return Slot(int(d["pid"]), int(d["state"]), int(d["start_time"]), int(d["incarnation"]))

    g = f["geometry"]
    return HeaderV2(
        request=tuple(rec(r) for r in f["request_schema"]),
        reply=tuple(rec(r) for r in f["reply_schema"]),
        geometry=Geometry(
            int(g["request_fields"]),
            int(g["reply_fields"]),
            int(g["request_area_offset"]),
            int(g["request_area_size"]),
            int(g["reply_area_offset"]),
            int(g["reply_area_size"]),
        ),
        capacity=int(f["capacity"]),
        segment_size=int(f["segment_size"]),
        header_size=int(f["header_size"]),
        version_major=int(f["version_major"]),
        version_minor=int(f["version_minor"]),
        flags=int(f["flags"]),
        max_dims=int(f["max_dims"]),
        magic=str(f["magic"]).encode("ascii"),
        reply_code=int(f["reply_code"]),
        word=int(f["word"]),
        waiters=int(f["waiters"]),
        requester=slot(f["requester"]),
        responder=slot(f["responder"]),
        creator=slot(f["creator"]),
    )


# ---------------------------------------------------------------------------- expectations


def _expected_shape(f: Field) -> tuple[tuple[int, ...], int]:
    """(max_shape, variable_mask) of an expected field that passed C7."""
    shape = tuple(int(e.maximum if isinstance(e, Upto) else e) for e in f.shape)
    mask = sum(1 << d for d, e in enumerate(f.shape) if isinstance(e, Upto))
    return shape, mask


def check_expected(
    expected: Schema, found: Sequence[Record], side: str, request: Sequence[Record], name: str = ""
) -> None:
    """R-SCHEMA-10: compare an attacher's expected ``side`` schema (which passed C1-C8) with the
    segment's records: X1 over the whole schema, then X2-X6 field by field in schema order. The
    error of the first failing check names the field (R-FIELD-7)."""
    seg = f"segment {name!r}" if name else "the segment"
    exp = expected.fields
    for i in range(max(len(exp), len(found))):  # X1
        e = exp[i].name if i < len(exp) else None
        g = found[i].name if i < len(found) else None
        if e != g:
            field_name = e if e is not None else g
            assert field_name is not None
            raise SchemaMismatch(
                f"{side} field {i} of {seg}: expected "
                f"{repr(e) if e is not None else 'no field'}, found "
                f"{repr(g) if g is not None else 'no field'}; attach with the creator's "
                f"{side} schema ({', '.join(r.name for r in found) or 'no fields'})",
                field=field_name,
                check="X1",
            )
    for f, r in zip(exp, found):
        what = f"{side} field {f.name!r} of {seg}"
        declared = f"the segment declares {_record_text(r, request)}"
        if f.target is None:
            if int(dtype_code(f.dtype)) != r.dtype:  # X2
                raise DtypeMismatch(
                    f"{what}: expected dtype {DType(dtype_code(f.dtype)).name}, {declared}; "
                    "attach with the creator's schema",
                    field=f.name,
                    check="X2",
                )
            max_shape, mask = _expected_shape(f)
            if len(max_shape) != r.ndim:  # X3
                raise ShapeMismatch(
                    f"{what}: expected {len(max_shape)} dimensions, {declared}",
                    field=f.name,
                    check="X3",
                )
            for d, (a, b) in enumerate(zip(max_shape, r.max_shape)):  # X4
                if a != b:
                    raise ShapeMismatch(
                        f"{what}: expected extent {d} to be {'at most ' if mask >> d & 1 else ''}"
                        f"{a}, {declared}",
                        field=f.name,
                        check="X4",
                    )
            if mask != r.variable_mask:  # X5
                raise ShapeMismatch(
                    f"{what}: expected variable extents {_mask_text(mask)}, {declared}",
                    field=f.name,
                    check="X5",
                )
            if r.alias:  # X6
                raise SchemaMismatch(
                    f"{what}: expected its own storage, {declared}", field=f.name, check="X6"
                )
        elif not r.alias or request[r.alias - 1].name != f.target:  # X6
            raise SchemaMismatch(
                f"{what}: expected in place onto request field {f.target!r}, {declared}",
                field=f.name,
                check="X6",
            )


def _mask_text(mask: int) -> str:
    dims = [str(d) for d in range(32) if mask >> d & 1]
    return "(" + ", ".join(dims) + ")" if dims else "(none)"


def _record_text(r: Record, request: Sequence[Record]) -> str:
    if r.alias:
        return f"{r.name!r} in place onto request field {request[r.alias - 1].name!r}"
    return f"{r.name!r} as {r.describe()}"
