"""Protocol v2 schemas (PROTOCOL.md §II.2, §II.4): how a caller declares the fields of a message
(``Schema``, ``upto``, ``inplace``), the declaration checks C1-C9 (R-SCHEMA-3, R-SCHEMA-4), the
schema records a creator derives (R-SCHEMA-6) and the one geometry rule that places the areas and
the fields (R-SCHEMA-7), which the header validator of :mod:`layout_v2` checks every stored offset
against.

Building a :class:`Schema` checks only the kind of its arguments; C1-C9 are reported by
:func:`declare` (``create``) and :func:`check_expectation` (``attach``), so that the same bad
declaration fails the same way whatever order it was built in (R-SCHEMA-3).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Union

import numpy as np

from .dtype import ITEMSIZE, DType, dtype_code
from .errors import (
    CapacityExceeded,
    DtypeMismatch,
    InvalidArgument,
    SchemaMismatch,
    ShapeMismatch,
)

__all__ = [
    "ALIGN",
    "ENTRY_SIZE",
    "FIXED_HEADER_SIZE",
    "MAX_DIMS",
    "MAX_FIELDS",
    "NAME_MAX_LENGTH",
    "RECORD_SIZE",
    "U64_MAX",
    "Declared",
    "Field",
    "FieldSpec",
    "Geometry",
    "InPlace",
    "Record",
    "Schema",
    "Upto",
    "align64",
    "check_expectation",
    "declare",
    "inplace",
    "place_area",
    "schema_of",
    "upto",
    "valid_name",
]

MAX_FIELDS = 16  # fields per schema (R-SCHEMA-1)
MAX_DIMS = 8
NAME_MAX_LENGTH = 31  # characters of a name; the 32-byte record keeps a NUL (R-SCHEMA-2)
FIXED_HEADER_SIZE = 512  # bytes before the schema table (R-SCHEMA-5)
RECORD_SIZE = 128  # bytes per schema record (§II.3.2)
ENTRY_SIZE = 80  # bytes per message table entry, a §3.1 descriptor (R-FIELD-1)
ALIGN = 64  # alignment of every area and every field's storage (R-SCHEMA-7)
U64_MAX = (1 << 64) - 1
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def align64(x: int) -> int:
    """The smallest multiple of 64 that is >= x (exact arithmetic)."""
    return -(-x // ALIGN) * ALIGN


def valid_name(name: str) -> bool:
    """R-SCHEMA-2: 1 to 31 ASCII characters matching ``[A-Za-z_][A-Za-z0-9_]*``."""
    return 0 < len(name) <= NAME_MAX_LENGTH and name.isascii() and bool(_NAME.fullmatch(name))


# ---------------------------------------------------------------------------- declaration


@dataclass(frozen=True)
class Upto:
    """A variable extent with a maximum (``upto(100)``); checked by C7 at create/attach."""

    maximum: Any

    def __repr__(self) -> str:
        return f"upto({self.maximum!r})"


@dataclass(frozen=True)
class InPlace:
    """A reply field in place onto the request field named ``target`` (R-SCHEMA-4)."""

    target: str

    def __repr__(self) -> str:
        return f"inplace({self.target!r})"


def upto(maximum: int) -> Upto:
    """A variable extent of at most ``maximum`` (``Schema(boxes=(np.float32, (upto(100), 6)))``).
    The value is checked when the schema is declared (C7), not here (R-SCHEMA-3)."""
    return Upto(maximum)


def inplace(target: str) -> InPlace:
    """A reply field that uses the storage of request field ``target`` (R-SCHEMA-4)."""
    if not isinstance(target, str):
        raise InvalidArgument(
            f"inplace() takes the name of a request field (a str), found {target!r}"
        )
    return InPlace(target)


#: What a schema entry may be: ``(dtype, shape)`` or ``inplace(target)``.
FieldSpec = Union[tuple[Any, Any], InPlace]


@dataclass(frozen=True)
class Field:
    """One declared field as the caller gave it: ``dtype`` and ``shape`` (extents are ints or
    :class:`Upto`) for a field with its own storage, or ``target`` for an in-place reply field."""

    name: str
    dtype: Any = None
    shape: tuple[Any, ...] = ()
    target: str | None = None

    @property
    def is_inplace(self) -> bool:
        return self.target is not None

    def describe(self) -> str:
        if self.target is not None:
            return f"{self.name}: in place onto {self.target!r}"
        try:
            dname = DType(dtype_code(self.dtype)).name
        except Exception:
            dname = repr(self.dtype)
        return f"{self.name}: {dname} {_shape_text(self.shape)}"


def _shape_text(shape: Sequence[Any]) -> str:
    parts = [f"<={e.maximum}" if isinstance(e, Upto) else str(e) for e in shape]
    return "(" + ", ".join(parts) + ("," if len(parts) == 1 else "") + ")"


def _normalise_dtype(dtype: Any) -> Any:
    """np.dtype(dtype) when numpy understands it (so that equal schemas compare and hash alike);
    anything else is kept as given for C5 to report."""
    try:
        return np.dtype(dtype)
    except Exception:
        return dtype


def _make_field(name: Any, spec: Any) -> Field:
    if not isinstance(name, str):
        raise InvalidArgument(f"a schema field name must be a str, found {name!r}")
    if isinstance(spec, InPlace):
        return Field(name, target=spec.target)
    if isinstance(spec, (tuple, list)) and len(spec) == 2:
        dtype, shape = spec
        if isinstance(shape, (int, np.integer, Upto)) and not isinstance(shape, bool):
            shape = (shape,)
        if not isinstance(shape, (tuple, list)):
            raise InvalidArgument(
                f"field {name!r}: the shape must be a tuple of extents (ints or upto(n)), "
                f"found {shape!r}"
            )
        return Field(name, _normalise_dtype(dtype), tuple(shape))
    raise InvalidArgument(
        f"field {name!r}: expected a (dtype, shape) pair or inplace('target'), found {spec!r}"
    )


class Schema:
    """The ordered fields of a request or a reply (PROTOCOL.md R-SCHEMA-1).

    ``Schema(image=(np.uint8, (480, 640, 3)), stamp=(np.float64, ()))`` (keyword order is schema
    order), ``Schema(boxes=(np.float32, (upto(100), 6)))`` (a variable extent),
    ``Schema(array=inplace("array"))`` (a reply field in place onto a request field), or
    ``Schema([("image", (np.uint8, (480, 640, 3))), ...])`` (a mapping or pairs: any order, any
    name, even one the declaration checks will refuse). Building checks only the kind of the
    arguments; the rules (C1-C9) are checked by ``create`` and ``attach``."""

    __slots__ = ("_fields",)

    def __init__(
        self,
        fields: Mapping[str, FieldSpec] | Iterable[tuple[str, FieldSpec]] | None = None,
        /,
        **kwargs: FieldSpec,
    ) -> None:
        if fields is not None and kwargs:
            raise InvalidArgument(
                "Schema: give the fields either as one mapping/list or as keyword arguments"
            )
        items: Iterable[Any]
        if fields is None:
            items = kwargs.items()
        elif isinstance(fields, Mapping):
            items = fields.items()
        elif isinstance(fields, (str, bytes)):
            raise InvalidArgument(f"Schema: expected (name, spec) pairs, found {fields!r}")
        else:
            items = fields
        out = []
        for item in items:
            if not isinstance(item, (tuple, list)) or len(item) != 2:
                raise InvalidArgument(f"Schema: expected a (name, spec) pair, found {item!r}")
            out.append(_make_field(item[0], item[1]))
        self._fields: tuple[Field, ...] = tuple(out)

    @classmethod
    def of(cls, fields: Iterable[Field]) -> Schema:
        s = cls()
        s._fields = tuple(fields)
        return s

    @property
    def fields(self) -> tuple[Field, ...]:
        return self._fields

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self._fields)

    def __len__(self) -> int:
        return len(self._fields)

    def __iter__(self) -> Iterator[Field]:
        return iter(self._fields)

    def __getitem__(self, name: str) -> Field:
        for f in self._fields:
            if f.name == name:
                return f
        raise SchemaMismatch(
            f"no field {name!r} in the schema: expected one of {list(self.names)}", field=name
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Schema) and self._fields == other._fields

    def __hash__(self) -> int:
        return hash(self._fields)

    def __repr__(self) -> str:
        def spec(f: Field) -> str:
            if f.target is not None:
                return f"inplace({f.target!r})"
            return f"({_dtype_repr(f.dtype)}, {_shape_repr(f.shape)})"

        if all(f.name.isidentifier() for f in self._fields) and len(set(self.names)) == len(self):
            return "Schema(" + ", ".join(f"{f.name}={spec(f)}" for f in self._fields) + ")"
        return "Schema([" + ", ".join(f"({f.name!r}, {spec(f)})" for f in self._fields) + "])"


def _dtype_repr(dtype: Any) -> str:
    return f"np.{dtype.name}" if isinstance(dtype, np.dtype) and dtype.isbuiltin else repr(dtype)


def _shape_repr(shape: tuple[Any, ...]) -> str:
    inner = ", ".join(repr(e) for e in shape)
    return f"({inner}{',' if len(shape) == 1 else ''})"


# ---------------------------------------------------------------------------- records, geometry


@dataclass(frozen=True)
class Record:
    """A schema record (§II.3.2) as a creator derives it (R-SCHEMA-6) or a reader decodes it.
    ``max_shape`` has exactly ``ndim`` entries; ``alias`` is 0 (own storage) or k + 1 (in place
    onto request field k)."""

    name: str
    dtype: int
    variable_mask: int
    alias: int
    max_shape: tuple[int, ...]
    offset: int
    max_nbytes: int

    @property
    def ndim(self) -> int:
        return len(self.max_shape)

    @property
    def itemsize(self) -> int:
        size = ITEMSIZE.get(self.dtype)
        return DType(self.dtype).itemsize if size is None else size  # (unknown: its ValueError)

    def variable(self, d: int) -> bool:
        return bool(self.variable_mask >> d & 1)

    @property
    def fixed_only(self) -> bool:
        return self.variable_mask == 0

    def describe(self) -> str:
        shape = tuple(Upto(m) if self.variable(d) else m for d, m in enumerate(self.max_shape))
        name = DType(self.dtype).name if self.dtype in _CODES else f"dtype#{self.dtype}"
        return f"{name} {_shape_text(shape)}"


_CODES = frozenset(int(d) for d in DType)


@dataclass(frozen=True)
class Geometry:
    """The geometry block (§II.3.1)."""

    request_fields: int
    reply_fields: int
    request_area_offset: int
    request_area_size: int
    reply_area_offset: int
    reply_area_size: int


@dataclass(frozen=True)
class Declared:
    """A checked schema pair with its records and geometry (R-SCHEMA-6, R-SCHEMA-7)."""

    request: tuple[Record, ...]
    reply: tuple[Record, ...]
    geometry: Geometry

    @property
    def header_size(self) -> int:
        return self.geometry.request_area_offset

    @property
    def capacity(self) -> int:
        return self.geometry.request_area_size + self.geometry.reply_area_size

    @property
    def segment_size(self) -> int:
        return self.header_size + self.capacity


def header_size_of(request_fields: int, reply_fields: int) -> int:
    return FIXED_HEADER_SIZE + RECORD_SIZE * (request_fields + reply_fields)


def place_area(
    area_offset: int,
    max_nbytes: Sequence[int],
    alias: Sequence[int],
    request_offsets: Sequence[int] = (),
) -> tuple[list[int], int]:
    """R-SCHEMA-7 for one area, in exact arithmetic: the offset of every field and the area's
    size. ``alias[k]`` = t + 1 places field k onto ``request_offsets[t]`` (no space)."""
    pos = area_offset + align64(ENTRY_SIZE * len(max_nbytes))  # the message table (R-FIELD-1)
    offsets = []
    for n, a in zip(max_nbytes, alias):
        if a:
            offsets.append(request_offsets[a - 1])
        else:
            offsets.append(pos)
            pos = align64(pos + n)
    return offsets, pos - area_offset


def _place(
    request: Sequence[Record], reply: Sequence[Record]
) -> tuple[tuple[Record, ...], tuple[Record, ...], Geometry]:
    hsize = header_size_of(len(request), len(reply))
    req_off, req_size = place_area(hsize, [r.max_nbytes for r in request], [0] * len(request))
    rep_area = hsize + req_size
    rep_off, rep_size = place_area(
        rep_area, [r.max_nbytes for r in reply], [r.alias for r in reply], req_off
    )
    geometry = Geometry(len(request), len(reply), hsize, req_size, rep_area, rep_size)
    req = tuple(_with_offset(r, o) for r, o in zip(request, req_off))
    rep = tuple(_with_offset(r, o) for r, o in zip(reply, rep_off))
    return req, rep, geometry


def _with_offset(r: Record, offset: int) -> Record:
    return Record(r.name, r.dtype, r.variable_mask, r.alias, r.max_shape, offset, r.max_nbytes)


# ---------------------------------------------------------------------------- checks C1-C9


def _is_u64(x: Any) -> bool:
    return (
        isinstance(x, (int, np.integer))
        and not isinstance(x, (bool, np.bool_))
        and (0 <= int(x) <= U64_MAX)
    )


def _check_field(
    f: Field, k: int, schema: Schema, side: str, request: Schema | None, expectation: bool
) -> None:
    """C2-C8 on field ``k`` of ``schema`` (the ``side`` schema), in the order of the table."""
    what = f"{side} field {f.name!r}"
    if not valid_name(f.name):  # C2
        raise InvalidArgument(
            f"{side} field #{k} is named {f.name!r}: expected 1 to {NAME_MAX_LENGTH} ASCII "
            "characters matching [A-Za-z_][A-Za-z0-9_]* (an identifier in C++ and Python); "
            "rename it",
            field=f.name,
            check="C2",
        )
    if f.name in (g.name for g in schema.fields[:k]):  # C3
        raise InvalidArgument(
            f"{what} is declared twice in the {side} schema: expected unique names; rename one",
            field=f.name,
            check="C3",
        )
    if f.target is not None:  # C4 (in-place fields only)
        if side != "reply":
            raise InvalidArgument(
                f"{what} is declared in place onto {f.target!r}: only reply fields may be in "
                "place onto a request field; give it a dtype and a shape",
                field=f.name,
                check="C4",
            )
        if not expectation and (request is None or f.target not in request.names):
            names = [] if request is None else list(request.names)
            raise InvalidArgument(
                f"{what} is in place onto {f.target!r}, which is not a request field: expected "
                f"one of {names}",
                field=f.name,
                check="C4",
            )
        earlier = [g.name for g in schema.fields[:k] if g.target == f.target]
        if earlier:
            raise InvalidArgument(
                f"{what} is in place onto request field {f.target!r}, which reply field "
                f"{earlier[0]!r} already uses: at most one reply field may target a request "
                "field; give one of them its own storage",
                field=f.name,
                check="C4",
            )
        return
    try:  # C5
        code = dtype_code(f.dtype)
    except DtypeMismatch as err:
        raise DtypeMismatch(f"{what}: {err.message}", field=f.name, check="C5") from None
    if len(f.shape) > MAX_DIMS:  # C6
        raise ShapeMismatch(
            f"{what} has {len(f.shape)} dimensions {_shape_text(f.shape)}: expected at most "
            f"{MAX_DIMS}; reshape it",
            field=f.name,
            check="C6",
        )
    nbytes = code.itemsize
    for d, e in enumerate(f.shape):  # C7
        value = e.maximum if isinstance(e, Upto) else e
        if not _is_u64(value):
            kind = "maximum" if isinstance(e, Upto) else "extent"
            raise InvalidArgument(
                f"{what}: {kind} {d} is {value!r}, expected an integer from 0 to 2^64 - 1",
                field=f.name,
                check="C7",
            )
        nbytes *= int(value)
    if nbytes > U64_MAX:  # C8
        raise CapacityExceeded(
            f"{what} {_shape_text(f.shape)} needs {nbytes} bytes at its maximum: expected at "
            "most 2^64 - 1; lower its maxima",
            field=f.name,
            check="C8",
        )


def _check_schema(
    schema: Schema, side: str, request: Schema | None, expectation: bool = False
) -> None:
    if not isinstance(schema, Schema):
        raise InvalidArgument(f"the {side} schema must be a shmbridge.Schema, found {schema!r}")
    if len(schema) > MAX_FIELDS:  # C1
        raise InvalidArgument(
            f"the {side} schema has {len(schema)} fields: expected at most {MAX_FIELDS}; group "
            "fields into arrays",
            check="C1",
        )
    for k, f in enumerate(schema.fields):
        _check_field(f, k, schema, side, request, expectation)


def _own_record(f: Field) -> Record:
    code = int(dtype_code(f.dtype))
    max_shape = tuple(int(e.maximum if isinstance(e, Upto) else e) for e in f.shape)
    mask = sum(1 << d for d, e in enumerate(f.shape) if isinstance(e, Upto))
    nbytes = DType(code).itemsize
    for m in max_shape:
        nbytes *= m
    return Record(f.name, code, mask, 0, max_shape, 0, nbytes)


def declare(request: Schema, reply: Schema) -> Declared:
    """R-SCHEMA-3: check a declared schema pair (C1-C8 on the request schema, then on the reply
    schema, then C9) and derive its records and geometry (R-SCHEMA-6, R-SCHEMA-7). Raises the
    error of the first failing check, naming the field as given (none for C1 and C9)."""
    _check_schema(request, "request", None)
    _check_schema(reply, "reply", request)
    req = [_own_record(f) for f in request.fields]
    rep = []
    for f in reply.fields:
        if f.target is None:
            rep.append(_own_record(f))
            continue
        k = request.names.index(f.target)
        t = req[k]
        rep.append(Record(f.name, t.dtype, t.variable_mask, k + 1, t.max_shape, 0, t.max_nbytes))
    req_p, rep_p, geometry = _place(req, rep)
    declared = Declared(req_p, rep_p, geometry)
    if declared.segment_size > U64_MAX:  # C9
        raise CapacityExceeded(
            f"the segment would need {declared.segment_size} bytes (header "
            f"{declared.header_size}, request area {geometry.request_area_size}, reply area "
            f"{geometry.reply_area_size}): expected at most 2^64 - 1; lower the maxima",
            check="C9",
        )
    return declared


def check_expectation(request: Schema | None, reply: Schema | None) -> None:
    """R-SCHEMA-10: the schemas an attacher states are checked by C1-C8 before it touches the
    OS object (the request schema first); C4 only requires an in-place field to be in the reply
    schema and to target a name no earlier reply field targets (X6 compares the target)."""
    if request is not None:
        _check_schema(request, "request", None, expectation=True)
    if reply is not None:
        _check_schema(reply, "reply", request, expectation=True)


def schema_of(records: Sequence[Record], request: Sequence[Record] = ()) -> Schema:
    """The :class:`Schema` a segment's records declare (``req.request_schema``)."""
    fields = []
    for r in records:
        if r.alias:
            fields.append(Field(r.name, target=request[r.alias - 1].name))
        else:
            shape = tuple(Upto(m) if r.variable(d) else m for d, m in enumerate(r.max_shape))
            fields.append(Field(r.name, np.dtype(DType(r.dtype).name), shape))
    return Schema.of(fields)
