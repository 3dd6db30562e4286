"""Protocol v2 roles (PROTOCOL.md Part II): ``MessageRequester`` and ``MessageResponder`` move
messages of named fields, each a numpy array, through the same state machine as v1.

The state machine, waits, liveness, timeouts, recovery and close are the v1 engine of
:mod:`channel` (``_RequesterCore``, ``_ResponderCore``, R-VER-1); this module is the v2 message
format plugged into it (``_MessageFormat``): two areas with their message tables (R-FIELD-1),
field checks S1-S7 before anything is written (R-FIELD-4..6), the received table validated by
E1-E8 before any field is read (R-FIELD-8), and zero-copy views per area (R-FIELD-11).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterable, Iterator, Mapping
from types import TracebackType
from typing import Any, Callable, Optional, TypeVar, Union

import numpy as np
import numpy.typing as npt

from .channel import (
    Options,
    _Handle,
    _Lease,
    _options,
    _RequesterCore,
    _ResponderCore,
    _set_writeable,
    _timeout,
)
from .dtype import DType
from .errors import (
    CapacityExceeded,
    Error,
    ErrorCode,
    InvalidArgument,
    OutOfTurn,
    SchemaMismatch,
)
from .layout import SLOT_ATTACHED, Slot
from .layout_v2 import (
    MAX_HEADER_SIZE,
    HeaderV2,
    check_expected,
    decode_header,
    encode_header,
    header_for,
)
from .liveness import claim_slot, own_start_time
from .message_table import (
    Shape,
    TableReader,
    check_given,
    check_shape,
    encode_table,
    initial_shapes,
    nbytes_of,
    shape_arg,
)
from .naming import validate_name
from .schema import ENTRY_SIZE, Record, Schema, check_expectation, declare, schema_of
from .segment import Segment

__all__ = [
    "MessageRequest",
    "MessageRequester",
    "MessageResponder",
    "MessageView",
    "ReplyHandler",
]

#: Fields given to a send or a reply: one mapping (or (name, value) pairs), then keywords.
Fields = Union[Mapping[str, Any], Iterable[tuple[str, Any]], None]
Array = np.ndarray[Any, Any]


def _given(fields: Fields, kwargs: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """The given fields in the caller's order (S1 and S2 depend on it): the positional mapping
    or pairs first, then the keyword arguments."""
    items: list[tuple[str, Any]] = []
    if fields is not None:
        pairs = fields.items() if isinstance(fields, Mapping) else fields
        for p in pairs:
            if not isinstance(p, tuple) or len(p) != 2 or not isinstance(p[0], str):
                raise InvalidArgument(
                    f"fields must be a mapping of name -> value (or (name, value) pairs), "
                    f"found {p!r}"
                )
            items.append(p)
    items.extend(kwargs.items())
    return items


class MessageView(Mapping[str, Array]):
    """A message as field name -> ndarray, in schema order (a ``Mapping``). Received messages
    are zero-copy read-only views (R-FIELD-11: a reply's until the next send, a request's until
    the reply); buffers are writable views. An unknown name raises ``SchemaMismatch`` (a
    ``KeyError``) naming it (R-FIELD-12). As a context manager it ends its views' lease."""

    __slots__ = ("_arrays", "_lease", "seq")

    def __init__(self, arrays: dict[str, Array], seq: int, lease: _Lease | None = None) -> None:
        self._arrays = arrays
        self.seq = seq
        self._lease = lease

    def __getitem__(self, name: str) -> Array:
        try:
            return self._arrays[name]
        except KeyError:
            raise SchemaMismatch(
                f"no field {name!r} in this message: expected one of {list(self._arrays)}",
                field=name,
            ) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._arrays)

    def __len__(self) -> int:
        return len(self._arrays)

    def __contains__(self, name: object) -> bool:
        return name in self._arrays

    @property
    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {k: tuple(v.shape) for k, v in self._arrays.items()}

    def copy(self) -> dict[str, Array]:
        """Copies of every field (owning arrays)."""
        return {k: v.copy() for k, v in self._arrays.items()}

    def __enter__(self) -> MessageView:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._lease is not None:
            self._lease.end()

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}: {v.dtype.name}{tuple(v.shape)}" for k, v in self._arrays.items())
        return f"MessageView(#{self.seq} {{{inner}}})"


class _Area:
    """One area of the payload (§II.4): its records, table offset, and each field's storage (a
    uint8 slice of the payload at the field's offset, ``max_nbytes`` long)."""

    __slots__ = (
        "_copy_views", "_table_of", "dtypes", "index", "names", "reader", "records", "side",
        "storage", "table",
    )  # fmt: skip

    def __init__(
        self, h: _MessageFormat, records: tuple[Record, ...], table: int, side: str
    ) -> None:
        base = h._payload_offset
        self.records = records
        self.names = tuple(r.name for r in records)
        self.side = side
        self.table = table
        self.dtypes = [DType(r.dtype).numpy for r in records]
        self.storage = [
            h._payload[r.offset - base : r.offset - base + r.max_nbytes] for r in records
        ]
        self.reader = TableReader(records, side)
        self.index = {n: k for k, n in enumerate(self.names)}
        self._table_of: tuple[list[Shape], bytes] = ([], b"")  # the last table encoded
        self._copy_views: dict[tuple[int, Shape], Array] = {}

    def view(self, k: int, shape: Shape) -> Array:
        n = nbytes_of(self.records[k], shape)
        v: Array = self.storage[k][:n].view(self.dtypes[k]).reshape(shape)
        return v

    def copy_in(self, k: int, arr: Array) -> None:
        """Copy ``arr`` (checked: the field's dtype, a valid shape) into field ``k``. Through a
        view of this area's own that never leaves it, kept per shape: a round that sends what
        the last one did makes no view (bounded: variable extents may take many shapes)."""
        key = (k, arr.shape)
        v = self._copy_views.get(key)
        if v is None:
            if len(self._copy_views) >= 64:
                self._copy_views.clear()
            v = self._copy_views[key] = self.view(k, arr.shape)
        np.copyto(v, arr, casting="no")

    def encoded_table(self, shapes: list[Shape]) -> bytes:
        """The table of ``shapes`` (R-FIELD-1): the last one again when the shapes are."""
        last, raw = self._table_of
        if shapes != last:
            raw = encode_table(self.records, shapes)
            self._table_of = (list(shapes), raw)  # a copy: the caller's list may change
        return raw


_F = TypeVar("_F", bound="_MessageFormat")


class _MessageFormat(_Handle):
    """Protocol v2's message format for the round engine of :mod:`channel` (R-VER-1)."""

    def _init_message(self, header: HeaderV2) -> None:
        self._header_v2 = header
        self._payload_offset = header.header_size
        g = header.geometry
        self._request_area = _Area(self, header.request, g.request_area_offset, "request")
        self._reply_area = _Area(self, header.reply, g.reply_area_offset, "reply")
        self._received: list[Shape] = []  # the shapes of the message last validated

    def _drop_message(self) -> None:
        del self._request_area
        del self._reply_area

    def _check_message(self, who: str) -> Error | None:
        """R-FIELD-8: the table of the area just received (the request after T2, the reply after
        a T4 whose reply_code is 0), by E1-E8; its shapes are kept for the views."""
        area = self._request_area if who == "take" else self._reply_area
        n = len(area.records)
        try:
            self._received = area.reader.read(self._mm[area.table : area.table + ENTRY_SIZE * n])
        except Error as e:
            return e
        return None

    def _write_message(self) -> None:
        """Nothing: a send or a reply writes its table with its fields, and an error reply
        (T3 with a code, T8, a close while holding) writes no part of the reply area
        (R-FIELD-10)."""

    def _write_table(self, area: _Area, shapes: list[Shape]) -> None:
        self._mm[area.table : area.table + ENTRY_SIZE * len(shapes)] = area.encoded_table(shapes)

    def _views(
        self, area: _Area, shapes: list[Shape], writable: bool, lease: _Lease, seq: int
    ) -> MessageView:
        arrays = {}
        for k, shape in enumerate(shapes):
            v = area.view(k, shape)
            if not writable:
                _set_writeable(v, False)
            arrays[area.names[k]] = self._track(v, lease)
        return MessageView(arrays, seq, lease)

    # -- introspection ------------------------------------------------------------------------

    @property
    def request_schema(self) -> Schema:
        """The segment's request schema."""
        return schema_of(self._header_v2.request)

    @property
    def reply_schema(self) -> Schema:
        """The segment's reply schema."""
        return schema_of(self._header_v2.reply, self._header_v2.request)

    def header(self) -> HeaderV2:
        """A decoded snapshot of the header (for diagnostics)."""
        self._check_open()
        size = self._seg.size if self._seg else 0
        return decode_header(self._mm[: min(size, MAX_HEADER_SIZE)], size)

    # -- construction -------------------------------------------------------------------------

    @classmethod
    def create(
        cls: type[_F],
        name: str,
        request: Schema,
        reply: Schema,
        *,
        options: Options | None = None,
        **kw: Any,
    ) -> _F:
        """Create a v2 segment with these schemas in this role (R-SCHEMA-8); the creator
        unlinks it on close. Options as keywords (``timeout=5.0``) or ``options=``."""
        opts = _options(options, kw)
        seg, header = cls._create_segment_v2(name, request, reply, opts)
        return cls(seg, header, opts)

    @classmethod
    def _create_segment_v2(
        cls, name: str, request: Schema, reply: Schema, opts: Options
    ) -> tuple[Segment, HeaderV2]:
        """R-SCHEMA-8: the name (R-NAME-1), the declaration (R-SCHEMA-3) and geometry
        (R-SCHEMA-7), then the object, every header field and both initial tables (R-FIELD-2)
        with the creator's slots claimed, and the magic last."""
        validate_name(name)
        declared = declare(request, reply)
        _check_array_extents(declared.request + declared.reply)
        me = Slot(os.getpid(), SLOT_ATTACHED, own_start_time(), 1)
        header = header_for(
            declared,
            creator=me,
            requester=me if cls._role == "requester" else Slot(),
            responder=me if cls._role == "responder" else Slot(),
        )
        g = declared.geometry
        tables = [
            (
                g.request_area_offset,
                encode_table(declared.request, initial_shapes(declared.request)),
            ),
            (g.reply_area_offset, encode_table(declared.reply, initial_shapes(declared.reply))),
        ]
        seg = Segment.create(
            name,
            declared.segment_size,
            encode_header(header),
            reclaim_stale=opts.reclaim_stale,
            keep=opts.keep_segment,
            deadline=time.monotonic() + min(opts.timeout, 1.0),
            tables=tables,
        )
        return seg, header

    @classmethod
    def _attach_segment_v2(
        cls, name: str, request: Schema | None, reply: Schema | None, deadline: float
    ) -> tuple[Segment, HeaderV2]:
        """R-SCHEMA-10: the name, then the stated schemas by C1-C8 before any OS object; wait for
        the segment (R-ATTACH-1), validate its header (R-SCHEMA-9), compare the expectations
        (X1-X6, request first) and only then claim the role's slot (R-LIVE-1)."""
        validate_name(name)
        check_expectation(request, reply)
        seg = Segment.attach(name, deadline=deadline, validate=_validate)
        try:
            mm = seg.mm
            assert mm is not None
            header = decode_header(mm[: min(seg.size, MAX_HEADER_SIZE)], seg.size, name=seg.name)
            if request is not None:
                check_expected(request, header.request, "request", header.request, seg.name)
            if reply is not None:
                check_expected(reply, header.reply, "reply", header.request, seg.name)
            _check_array_extents(header.request + header.reply)
            claim_slot(mm, cls._slot, cls._role)
        except BaseException:
            seg.close()
            raise
        return seg, header


#: The largest extent a NumPy array can have (np.intp); the protocol allows up to 2^64 - 1.
MAX_ARRAY_EXTENT = int(np.iinfo(np.intp).max)


def _check_array_extents(records: tuple[Record, ...]) -> None:
    """R-SCHEMA-1: a schema with a fixed extent or maximum NumPy cannot shape is refused when it
    is declared (after C1-C9) or found (after X1-X6, before the slot is claimed), so no message
    of it is ever taken or received and then cannot be handed out."""
    for r in records:
        for d, m in enumerate(r.max_shape):
            if m > MAX_ARRAY_EXTENT:
                raise CapacityExceeded(
                    f"field {r.name!r} ({r.describe()}): extent {d} may be {m}, above "
                    f"{MAX_ARRAY_EXTENT} (2^63 - 1), the largest extent a NumPy array can have; "
                    "this library cannot hand out such a field: declare a smaller maximum",
                    field=r.name,
                )


def _validate(mm: Any, size: int, name: str) -> object:
    """The v2 API's check at attach (R-SCHEMA-9; a v1 segment is R-VER-4's mismatch)."""
    return decode_header(mm[: min(size, MAX_HEADER_SIZE)], size, name=name)


# ---------------------------------------------------------------------------------------------
# Requester
# ---------------------------------------------------------------------------------------------


class _MessageBuffer:
    """``with req.request_buffer(points=(n, 3)) as buf:``: writable views of every request field
    with the shapes given (fixed fields may be omitted), sent on a clean exit (R-FIELD-5)."""

    __slots__ = ("_lease", "_owner", "_shapes", "view")

    def __init__(self, owner: MessageRequester, shapes: list[Shape]) -> None:
        self._owner = owner
        self._shapes = shapes
        self._lease = _Lease()
        self.view: MessageView | None = None

    def __enter__(self) -> MessageView:
        o = self._owner
        o._prepare_send()  # the precondition and the word (R-STATE-7, -8, -10)
        self.view = o._views(o._request_area, self._shapes, True, self._lease, -1)
        return self.view

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._lease.end()  # R-FIELD-11: the writable views end with the block
        if et is None:
            o = self._owner
            o._write_table(o._request_area, self._shapes)
            o._publish_request()


class MessageRequester(_MessageFormat, _RequesterCore):
    """The requester role of protocol v2: ``send`` / ``receive`` / ``call`` of messages whose
    fields are numpy arrays (spec/API.md)."""

    @classmethod
    def attach(
        cls,
        name: str,
        request: Schema | None = None,
        reply: Schema | None = None,
        *,
        options: Options | None = None,
        **kw: Any,
    ) -> MessageRequester:
        """Attach as the requester, checking the schemas stated (R-SCHEMA-10); recover an orphan
        round (R-REC-1). One deadline for both (R-ATTACH-2)."""
        opts = _options(options, kw)
        deadline = time.monotonic() + opts.timeout
        seg, header = cls._attach_segment_v2(name, request, reply, deadline)
        self = cls(seg, header, opts)
        self._recover_on_attach(deadline)
        return self

    def send(self, fields: Fields = None, /, **arrays: npt.ArrayLike) -> int:
        """Copy the fields into the request area and publish the request (T1); returns its seq.
        ``send(image=frame, stamp=t)`` or ``send({"image": frame, ...})``. Checks S1-S7 (no
        conversion), then the word, before writing anything (R-FIELD-4). Does not wait."""
        if self._closed:
            self._check_open()
        area = self._request_area
        checked = check_given(
            area.records, _given(fields, arrays), "request", _none, True, area.index
        )
        w = self._prepare_send()
        shapes = []
        for k, (shape, arr) in enumerate(checked):
            if arr is not None and arr.size:
                area.copy_in(k, arr)
            shapes.append(shape)
        self._write_table(area, shapes)
        return self._publish_request(w)

    def request_buffer(self, shapes: Fields = None, /, **kw: Any) -> _MessageBuffer:
        """Zero-copy send: ``with req.request_buffer(points=(n, 3)) as buf: buf["points"][...] =
        ...``; a shape for every field with a variable extent (fixed ones may be omitted). The
        shapes are checked here (S1-S3, S5-S7), the word on entering the block (R-FIELD-5); the
        message is sent when the block ends without an exception."""
        if self._closed:
            self._check_open()
        records = self._request_area.records
        checked = check_given(
            records, _given(shapes, kw), "request", lambda k: _fixed(records[k]), False
        )
        return _MessageBuffer(self, [s for s, _ in checked])

    def receive(self, timeout: float | None = None) -> MessageView:
        """Wait for the reply to the own request (T4); its fields as read-only zero-copy views,
        valid until the next send (R-FIELD-11). The reply table is validated first (E1-E8)."""
        self._check_open()
        seq = self._receive(_timeout(timeout, self._opts.timeout))
        return self._views(self._reply_area, self._received, False, self._reply_lease, seq)

    def try_receive(self) -> MessageView:
        return self.receive(timeout=0)

    def receive_copy(self, timeout: float | None = None) -> dict[str, Array]:
        """Wait for the reply and copy every field out: ``dict`` name -> owning array."""
        self._check_open()
        self._receive(_timeout(timeout, self._opts.timeout))
        area = self._reply_area
        return {area.names[k]: area.view(k, s).copy() for k, s in enumerate(self._received)}

    def call(self, fields: Fields = None, /, **arrays: npt.ArrayLike) -> dict[str, Array]:
        """send + receive_copy (the timeout is the handle's option)."""
        self.send(fields, **arrays)
        return self.receive_copy()


def _none(k: int) -> Shape | None:
    """A copying send has no default: every field must be given (S3)."""
    return None


def _fixed(r: Record) -> Shape | None:
    """A field with only fixed extents may be omitted from a buffer: its declared shape."""
    return r.max_shape if r.fixed_only else None


# ---------------------------------------------------------------------------------------------
# Responder
# ---------------------------------------------------------------------------------------------


class MessageRequest:
    """A taken request: ``request`` (read-only views, valid until the reply), and the ways to
    answer it: ``reply(**arrays)`` (copies; in-place fields and fields prepared by
    ``reply_buffer``/``reply_field`` may be omitted), ``reply_buffer(**shapes)`` and
    ``reply_field(name, shape)`` (writable views, published by ``reply()``), ``fail(code)``.
    As a context manager, a block that ends without answering replies (``reply()``), or fails
    the round with the error's code (R-MSG-2, R-MSG-3)."""

    __slots__ = ("_lease", "_owner", "_prepared", "_request", "_taken", "done", "seq")

    def __init__(self, owner: MessageResponder, seq: int, taken: list[Shape]) -> None:
        self._owner = owner
        self.seq = seq
        self._taken = taken  # the request's shapes as taken
        self._prepared: dict[int, Shape] = {}  # reply fields prepared by a zero-copy call
        self._lease = _Lease()
        self._request: MessageView | None = None
        self.done = False

    @property
    def request(self) -> MessageView:
        """The request's fields: read-only zero-copy views, valid until the reply (R-FIELD-11)."""
        if self._request is None:
            o = self._owner
            o._check_open()
            self._request = o._views(o._request_area, self._taken, False, self._lease, self.seq)
        return self._request

    def _check_turn(self, what: str) -> None:
        """Every reply call first checks that the responder holds this request (R-FIELD-6)."""
        self._owner._check_open()
        if self.done or self._owner._held != self.seq:
            raise OutOfTurn(f"{what}: request #{self.seq} was already answered")

    def _default(self, k: int) -> Shape | None:
        """What an omitted reply field gets (S3 of R-FIELD-6): its prepared shape, or for an
        in-place field its target's shape as taken."""
        if k in self._prepared:
            return self._prepared[k]
        r = self._owner._reply_area.records[k]
        return self._taken[r.alias - 1] if r.alias else None

    def reply(self, fields: Fields = None, /, **arrays: npt.ArrayLike) -> None:
        """Copy the given fields into the reply (S1-S7; no conversion) and publish it (T3) with
        a table entry for every reply field (R-FIELD-6)."""
        self._check_turn("reply")
        o = self._owner
        area = o._reply_area
        checked = check_given(
            area.records, _given(fields, arrays), "reply", self._default, True, area.index
        )
        shapes = []
        for k, (shape, arr) in enumerate(checked):
            if arr is not None and arr.size:
                area.copy_in(k, arr)
            shapes.append(shape)
        o._write_table(area, shapes)
        o._reply(self.seq, 0)
        self.done = True
        self._lease.end()

    def reply_buffer(self, shapes: Fields = None, /, **kw: Any) -> MessageView:
        """Writable views of every reply field with the shapes given (a field with only fixed
        extents, or in place, may be omitted: its declared shape, or its target's as taken);
        ``reply()`` publishes them (R-FIELD-6)."""
        self._check_turn("reply_buffer")
        o = self._owner
        area = o._reply_area

        def default(k: int) -> Shape | None:
            r = area.records[k]
            return self._taken[r.alias - 1] if r.alias else _fixed(r)

        checked = check_given(area.records, _given(shapes, kw), "reply", default, False)
        got = [s for s, _ in checked]
        self._prepared.update(enumerate(got))
        return o._views(area, got, True, self._lease, self.seq)

    def reply_field(self, name: str, shape: Any = None) -> Array:
        """A writable view of reply field ``name`` with ``shape`` (which may be omitted for a
        field with only fixed extents: its declared shape); ``reply()`` publishes it
        (R-FIELD-6: S1, S3, S5-S7). An in-place field's view is its target's storage."""
        self._check_turn("reply_field")
        o = self._owner
        area = o._reply_area
        if name not in area.names:  # S1
            raise SchemaMismatch(
                f"{name!r} is not a reply field: expected one of {list(area.names)}",
                field=name,
                check="S1",
            )
        k = area.names.index(name)
        r = area.records[k]
        if shape is None:
            got = _fixed(r)
            if got is None:  # S3
                raise SchemaMismatch(
                    f"reply field {name!r} ({r.describe()}) has a variable extent: expected a "
                    "shape; give reply_field(name, shape)",
                    field=name,
                    check="S3",
                )
        else:
            got = shape_arg(shape, name)
            check_shape(r, got, "reply")
        self._prepared[k] = got
        v = area.view(k, got)
        o._track(v, self._lease)
        return v

    def fail(self, code: int | ErrorCode, message: str = "") -> None:
        """Complete the round with an error reply (R-MSG-2): ``reply_code`` only, the reply area
        is not written (R-FIELD-10)."""
        self._check_turn("fail")
        self._owner._fail(self.seq, code)
        self.done = True
        self._lease.end()

    def __enter__(self) -> MessageRequest:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        if not self.done and not self._owner.closed:
            if ev is None:
                try:
                    self.reply()
                except Error as e:  # e.g. a field nobody prepared (S3): still complete the round
                    self.fail(e.code)
                    raise
            else:
                self.fail(ev.code if isinstance(ev, Error) else ErrorCode.HANDLER_FAILED)  # R-MSG-3
        self._lease.end()


#: ``serve``'s handler: the request's fields -> the reply's fields (None: reply() as prepared).
ReplyHandler = Callable[[MessageView], Optional[Mapping[str, Any]]]


class MessageResponder(_MessageFormat, _ResponderCore[MessageRequest]):
    """The responder role of protocol v2: ``take`` / ``serve`` (spec/API.md)."""

    @classmethod
    def attach(
        cls,
        name: str,
        request: Schema | None = None,
        reply: Schema | None = None,
        *,
        options: Options | None = None,
        **kw: Any,
    ) -> MessageResponder:
        """Attach as the responder, checking the schemas stated (R-SCHEMA-10); complete a round
        left TAKEN by a dead predecessor with PEER_GONE (R-REC-2, T8)."""
        opts = _options(options, kw)
        seg, header = cls._attach_segment_v2(name, request, reply, time.monotonic() + opts.timeout)
        self = cls(seg, header, opts)
        self._recover_on_attach()
        return self

    def _taken(self, seq: int) -> MessageRequest:
        bad = self._check_message("take")
        if bad is not None:  # R-FIELD-9: complete the round with that error, then raise it
            self._reply(seq, int(bad.code))
            raise bad
        return MessageRequest(self, seq, list(self._received))

    def reply(self, fields: Fields = None, /, **arrays: npt.ArrayLike) -> None:
        """Reply to the held request (low level; ``take().reply(...)``). OUT_OF_TURN if this
        responder holds nothing (R-STATE-7)."""
        self._check_open()
        if self._request is None:
            raise OutOfTurn("reply: this responder holds no request; expected take() first")
        self._request.reply(fields, **arrays)

    def reply_error(self, code: int | ErrorCode, message: str = "") -> None:
        """Complete the held round with an error reply (R-MSG-2); OUT_OF_TURN if none is held."""
        self._check_open()
        if self._request is None:
            raise OutOfTurn("reply_error: this responder holds no request; expected take() first")
        self._request.fail(code, message)

    def serve(self, handler: ReplyHandler, *, timeout: float | None = math.inf) -> int:
        """Loop: take a request, call ``handler(request_fields)``, reply with the mapping it
        returns (None: ``reply()`` with what it prepared and the in-place fields). Returns the
        number of rounds when the requester closes (R-LIVE-4); raises PeerGone when it died
        (R-LIVE-5). A handler error fails the round (R-MSG-2, R-MSG-3) and is re-raised."""
        t = _timeout(timeout, self._opts.timeout)
        n = 0
        while True:
            r = self._serve_take(t)
            if r is None:
                return n
            try:
                result = handler(r.request)
                if not r.done:
                    r.reply(result)
            except BaseException as e:
                r.__exit__(type(e), e, e.__traceback__)
                raise
            n += 1
