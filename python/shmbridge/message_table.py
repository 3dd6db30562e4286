"""Protocol v2 message tables and field checks (PROTOCOL.md §II.6-§II.8): encoding a table
(R-FIELD-1, R-FIELD-2), validating a received one (checks E1-E8, R-FIELD-8), and checking the
fields a caller gives to a send, a reply or a buffer (checks S1-S7, R-FIELD-4..6).

Pure functions over records (:class:`schema.Record`) and bytes; every error names its field
(R-FIELD-7).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Optional

import numpy as np

from .dtype import CODE_OF_NUMPY, ITEMSIZE, DType, dtype_code
from .errors import (
    CapacityExceeded,
    CorruptHeader,
    DtypeMismatch,
    Error,
    InvalidArgument,
    SchemaMismatch,
    ShapeMismatch,
)
from .schema import ENTRY_SIZE, MAX_DIMS, Record

__all__ = [
    "Shape",
    "TableReader",
    "check_given",
    "check_shape",
    "encode_entry",
    "encode_table",
    "initial_shapes",
    "nbytes_of",
    "shape_arg",
    "validate_entry",
    "validate_table",
]

Shape = tuple[int, ...]
#: S3's rule for a field that was not given: its shape, or None when it must be given.
Default = Callable[[int], Optional[Shape]]

_ENTRY = struct.Struct("<II8QQ")  # dtype, ndim, shape[8], nbytes (§3.1)
_CODES = frozenset(int(d) for d in DType)
assert _ENTRY.size == ENTRY_SIZE


def nbytes_of(r: Record, shape: Shape) -> int:
    n = r.itemsize
    for e in shape:
        n *= e
    return n


def encode_entry(r: Record, shape: Shape) -> bytes:
    """The 80-byte table entry of field ``r`` with ``shape`` (R-FIELD-1)."""
    return _ENTRY.pack(
        r.dtype, r.ndim, *shape, *([0] * (MAX_DIMS - len(shape))), nbytes_of(r, shape)
    )


def encode_table(records: Sequence[Record], shapes: Sequence[Shape]) -> bytes:
    return b"".join(encode_entry(r, s) for r, s in zip(records, shapes))


def initial_shapes(records: Sequence[Record]) -> list[Shape]:
    """R-FIELD-2: each fixed extent as declared, each variable extent 0."""
    return [tuple(0 if r.variable(d) else m for d, m in enumerate(r.max_shape)) for r in records]


# ---------------------------------------------------------------------------- receipt (E1-E8)


def _entry_error(r: Record, side: str, cls: type[Error], check: str, what: str, todo: str) -> Error:
    return cls(f"{side} field {r.name!r}: {what}; {todo}", field=r.name, check=check)


_ROGUE = "the peer wrote a malformed message table (a rogue or broken writer): restart it"


def validate_entry(r: Record, raw: bytes | memoryview, side: str) -> Shape:
    """E1-E8 on the table entry of field ``r`` (R-FIELD-8); returns the message's shape."""
    dtype, ndim, *rest = _ENTRY.unpack(raw)
    shape8, nbytes = rest[:8], rest[8]
    if dtype not in _CODES:  # E1
        raise _entry_error(r, side, CorruptHeader, "E1", f"unknown dtype code {dtype}", _ROGUE)
    if ndim > MAX_DIMS:  # E2
        raise _entry_error(r, side, CorruptHeader, "E2", f"ndim {ndim} exceeds 8", _ROGUE)
    if any(shape8[ndim:]):  # E3
        raise _entry_error(
            r, side, CorruptHeader, "E3", f"extents beyond ndim {ndim} must be 0", _ROGUE
        )
    shape = tuple(shape8[:ndim])
    product = ITEMSIZE[dtype]  # E1 passed: a known code
    for e in shape:
        product *= e
    if product != nbytes:  # E4 (exact: a product above 2^64 - 1 never matches)
        raise _entry_error(
            r, side, CorruptHeader, "E4",
            f"nbytes {nbytes} != itemsize x product{shape} = {product}", _ROGUE,
        )  # fmt: skip
    if dtype != r.dtype:  # E5
        raise _entry_error(
            r, side, DtypeMismatch, "E5",
            f"the message says dtype {DType(dtype).name}, the schema {DType(r.dtype).name}",
            "the peer must send the schema's dtype",
        )  # fmt: skip
    if ndim != r.ndim:  # E6
        raise _entry_error(
            r, side, ShapeMismatch, "E6",
            f"the message has {ndim} dimensions {shape}, the schema {r.ndim} ({r.describe()})",
            "the peer must send the schema's shape",
        )  # fmt: skip
    for d, (e, m) in enumerate(zip(shape, r.max_shape)):  # E7: every fixed extent first
        if not r.variable(d) and e != m:
            raise _entry_error(
                r, side, ShapeMismatch, "E7",
                f"extent {d} is {e} in the message, {m} in the schema ({r.describe()})",
                "the peer must send the schema's shape",
            )  # fmt: skip
    for d, (e, m) in enumerate(zip(shape, r.max_shape)):  # E8
        if e > m:
            raise _entry_error(
                r, side, CorruptHeader, "E8",
                f"extent {d} is {e}, above its maximum {m} ({r.describe()})", _ROGUE,
            )  # fmt: skip
    return shape


def validate_table(records: Sequence[Record], raw: bytes | memoryview, side: str) -> list[Shape]:
    """R-FIELD-8: the shapes of a received message table (entries in schema order, each by
    E1-E8), or the error of the first failing check, naming its field."""
    mv = memoryview(raw)
    return [
        validate_entry(r, mv[ENTRY_SIZE * k : ENTRY_SIZE * (k + 1)], side)
        for k, r in enumerate(records)
    ]


class TableReader:
    """Validates one area's table as it is received, round after round: an entry whose bytes
    equal the last valid ones is that shape again (the checks depend on nothing else)."""

    __slots__ = ("_last", "_records", "_side")

    def __init__(self, records: Sequence[Record], side: str) -> None:
        self._records = tuple(records)
        self._side = side
        self._last: list[tuple[bytes, Shape] | None] = [None] * len(records)

    def read(self, raw: bytes) -> list[Shape]:
        out = []
        for k, r in enumerate(self._records):
            entry = raw[ENTRY_SIZE * k : ENTRY_SIZE * (k + 1)]
            last = self._last[k]
            if last is not None and last[0] == entry:
                out.append(last[1])
                continue
            shape = validate_entry(r, entry, self._side)
            self._last[k] = (entry, shape)
            out.append(shape)
        return out


# ---------------------------------------------------------------------------- given fields (S1-S7)


def shape_arg(value: Any, name: str) -> Shape:
    """A shape given to a zero-copy call: a tuple of non-negative ints (an int is a 1-d shape).
    Anything else is an argument of the wrong kind (INVALID_ARGUMENT)."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        value = (value,)
    try:
        shape = tuple(value)
    except TypeError:
        shape = None
    if shape is None or not all(
        isinstance(e, (int, np.integer)) and not isinstance(e, bool) and e >= 0 for e in shape
    ):
        raise InvalidArgument(
            f"the shape given for field {name!r} must be a tuple of integers >= 0, found {value!r}"
        )
    return tuple(int(e) for e in shape)


def check_given(
    records: Sequence[Record],
    given: Sequence[tuple[str, Any]],
    side: str,
    default: Default,
    arrays: bool,
    index: Mapping[str, int] | None = None,
) -> list[tuple[Shape, np.ndarray[Any, Any] | None]]:
    """R-FIELD-4..6: S1 and S2 over the given names in the caller's order, S3 in schema order
    (``default(k)``: the shape an omitted field k gets, None if it must be given), then S4-S7
    field by field in schema order (S4 only for ``arrays``; else the values are shapes). Returns,
    per field, its shape and the array given (None when omitted or for a shape). ``index``:
    name -> position in ``records``, if the caller keeps one."""
    if index is None:
        index = {r.name: k for k, r in enumerate(records)}
    values: list[Any] = [_MISSING] * len(records)
    for name, value in given:
        k = index.get(name)
        if k is None:  # S1
            raise SchemaMismatch(
                f"{name!r} is not a {side} field: expected one of {list(index)}; check the name",
                field=name,
                check="S1",
            )
        if values[k] is not _MISSING:  # S2
            raise SchemaMismatch(
                f"{side} field {name!r} is given twice: expected each field once", field=name,
                check="S2",
            )  # fmt: skip
        values[k] = value
    defaults: list[Shape | None] = []
    for k, r in enumerate(records):  # S3
        d = default(k) if values[k] is _MISSING else None
        if values[k] is _MISSING and d is None:
            raise SchemaMismatch(
                f"{side} field {r.name!r} ({r.describe()}) is not given: expected every field "
                "that has no default; give it",
                field=r.name,
                check="S3",
            )
        defaults.append(d)
    out: list[tuple[Shape, np.ndarray[Any, Any] | None]] = []
    for k, r in enumerate(records):
        value = values[k]
        if value is _MISSING:
            d = defaults[k]
            assert d is not None
            out.append((d, None))
            continue
        if arrays:
            arr = np.asarray(value)
            _check_dtype(r, arr.dtype, side)  # S4
            shape: Shape = arr.shape
        else:
            arr = None
            shape = shape_arg(value, r.name)
        check_shape(r, shape, side)
        out.append((shape, arr))
    return out


class _Missing:
    pass


_MISSING = _Missing()


def _check_dtype(r: Record, dtype: np.dtype[Any], side: str) -> None:
    """S4: exactly the field's dtype; an unsupported dtype never is; no conversion."""
    if CODE_OF_NUMPY.get(dtype) == r.dtype:  # the common case, without an enum call
        return
    want = DType(r.dtype)
    try:
        ok = dtype_code(dtype) == want
        found = DType(dtype_code(dtype)).name
    except DtypeMismatch:
        ok, found = False, f"{dtype.str} (not supported)"
    if not ok:
        raise DtypeMismatch(
            f"{side} field {r.name!r}: expected dtype {want.name}, found {found}; convert it "
            f"with .astype(np.{want.name}) (no conversion is done)",
            field=r.name,
            check="S4",
        )


def check_shape(r: Record, shape: Shape, side: str) -> None:
    """S5-S7 on a shape given for field ``r``."""
    if shape == r.max_shape:  # every extent at its declared value: S5-S7 hold
        return
    if len(shape) != r.ndim:  # S5
        raise ShapeMismatch(
            f"{side} field {r.name!r}: expected {r.ndim} dimensions ({r.describe()}), found "
            f"shape {shape}",
            field=r.name,
            check="S5",
        )
    for d, (e, m) in enumerate(zip(shape, r.max_shape)):  # S6: every fixed extent first
        if not r.variable(d) and e != m:
            raise ShapeMismatch(
                f"{side} field {r.name!r}: expected extent {d} to be {m} ({r.describe()}), found "
                f"shape {shape}",
                field=r.name,
                check="S6",
            )
    for d, (e, m) in enumerate(zip(shape, r.max_shape)):  # S7
        if e > m:
            raise CapacityExceeded(
                f"{side} field {r.name!r}: extent {d} is {e}, above its maximum {m} "
                f"({r.describe()}); send at most {m}",
                field=r.name,
                check="S7",
            )
