"""Protocol v2 roles in one process (PROTOCOL.md §II.5-§II.10), one test per requirement where
the shared vectors (test_vectors_v2.py) do not already pin it: the bytes a send and a reply write
(R-FIELD-1..3), zero-copy buffers and view lifetimes (R-FIELD-5, R-FIELD-11), in-place replies
(R-SCHEMA-4, R-FIELD-6), error replies (R-FIELD-9, R-FIELD-10), field access (R-FIELD-12), the
fields errors name (R-FIELD-7) and versions (R-VER-*)."""

from __future__ import annotations

import mmap
import os
import struct
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from conftest import map_raw, reaped_pid, shm_path, unique_name

import shmbridge as sb
from shmbridge import Schema, inplace, upto
from shmbridge.layout import OFF_CREATOR, OFF_REPLY_CODE, OFF_REQUESTER, OFF_RESPONDER
from shmbridge.layout_v2 import decode_header
from shmbridge.message_table import encode_table, initial_shapes

CAMERA = (
    Schema(image=(np.uint8, (4, 6, 3)), stamp=(np.float64, ())),
    Schema(boxes=(np.float32, (upto(5), 6))),
)
MIXED = (
    Schema(state=(np.float64, (upto(8),)), grid=(np.uint16, (upto(3), 2))),
    Schema(action=(np.float32, (upto(4),)), grid=inplace("grid"), code=(np.int8, ())),
)
OPTS: dict[str, Any] = {"timeout": 2.0, "spin": 0.0}


class Raw:
    """A plain mapping of the whole segment, to read what the library wrote (and, in a few
    tests, to write as a rogue peer would)."""

    def __init__(self, name: str) -> None:
        self.mm: mmap.mmap = map_raw(name, os.stat(shm_path(name)).st_size)
        self.h = decode_header(self.mm[:4608], len(self.mm))

    def table(self, side: str) -> bytes:
        g = self.h.geometry
        off, n = (
            (g.request_area_offset, g.request_fields)
            if side == "request"
            else (g.reply_area_offset, g.reply_fields)
        )
        return bytes(self.mm[off : off + 80 * n])

    def field(self, side: str, name: str, n: int) -> bytes:
        r = next(
            r for r in (self.h.request if side == "request" else self.h.reply) if r.name == name
        )
        return bytes(self.mm[r.offset : r.offset + n])

    def area(self, side: str) -> bytes:
        g = self.h.geometry
        if side == "request":
            return bytes(self.mm[g.request_area_offset : g.reply_area_offset])
        return bytes(self.mm[g.reply_area_offset : g.reply_area_offset + g.reply_area_size])


@pytest.fixture
def camera(segname: str) -> Iterator[tuple[sb.MessageRequester, sb.MessageResponder, Raw]]:
    req = sb.MessageRequester.create(segname, *CAMERA, **OPTS)
    rsp = sb.MessageResponder.attach(segname, **OPTS)
    raw = Raw(segname)
    yield req, rsp, raw
    rsp.close()
    req.close()
    raw.mm.close()


@pytest.fixture
def mixed(segname: str) -> Iterator[tuple[sb.MessageRequester, sb.MessageResponder, Raw]]:
    req = sb.MessageRequester.create(segname, *MIXED, **OPTS)
    rsp = sb.MessageResponder.attach(segname, *MIXED, **OPTS)
    raw = Raw(segname)
    yield req, rsp, raw
    rsp.close()
    req.close()
    raw.mm.close()


def frame(v: int = 0) -> np.ndarray[Any, Any]:
    return ((np.arange(72) + v) % 251).astype(np.uint8).reshape(4, 6, 3)


# ---------------------------------------------------------------------------- create / attach


def test_r_schema_8_r_field_2_a_new_segment_holds_the_header_and_both_initial_tables(
    camera: Any,
) -> None:
    """R-SCHEMA-8, R-FIELD-2: a segment is published with its schema table and both initial
    message tables (fixed extents as declared, variable extents 0), version 2.0."""
    _req, _rsp, raw = camera
    h = raw.h
    assert (h.version_major, h.version_minor, h.header_size) == (2, 0, 512 + 3 * 128)
    assert raw.table("request") == encode_table(h.request, initial_shapes(h.request))
    assert raw.table("reply") == encode_table(h.reply, [(0, 6)])
    assert bytes(raw.mm[0x090:0x0E0]) == bytes(80)  # v1's message descriptor is reserved


def test_r_schema_10_an_attacher_stating_nothing_accepts_any_schema(camera: Any) -> None:
    """R-SCHEMA-10: the segment's schemas are readable from any attached handle."""
    req, rsp, _raw = camera
    assert rsp.request_schema == req.request_schema == CAMERA[0]
    assert rsp.reply_schema == CAMERA[1]


def test_r_schema_1_extents_numpy_cannot_shape_are_refused_when_declared_or_found(
    segname: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """R-SCHEMA-1: a maximum of 2^64 - 1 next to an extent 0 is a legal schema (max_nbytes 0),
    but NumPy arrays cannot have an extent above 2^63 - 1: create refuses it before any OS
    object, attach (to a segment made by a library without that limit) before it claims a slot,
    both with CAPACITY_EXCEEDED naming the field. Found by the conformance case
    v2/extents/u64-maximum: the Python responder took a C++ request of shape (2^64 - 1, 0) and
    crashed with a ValueError building its view."""
    big = Schema(e=(np.float32, (upto(2**64 - 1), 0)), s=(np.int8, ()))
    reply = Schema(f=(np.float32, (upto(2**63), 0)))
    with pytest.raises(sb.CapacityExceeded) as info:
        sb.MessageRequester.create(segname, big, reply, **OPTS)
    assert info.value.field == "e" and "2^63 - 1" in info.value.message
    assert not os.path.exists(shm_path(segname))
    ok = Schema(e=(np.float32, (upto(2**63 - 1), 0)))  # at the limit: fine
    with sb.MessageRequester.create(segname, ok, ok, keep_segment=True, **OPTS):
        pass
    os.unlink(shm_path(segname))
    from shmbridge import message

    monkeypatch.setattr(message, "_check_array_extents", lambda records: None)
    creator = sb.MessageRequester.create(segname, Schema(a=(np.int8, ())), reply, **OPTS)
    monkeypatch.undo()  # as a library without NumPy's limit made it
    with pytest.raises(sb.CapacityExceeded) as info:
        sb.MessageResponder.attach(segname, **OPTS)
    assert info.value.field == "f"
    raw = map_raw(segname)
    assert struct.unpack_from("<I", raw, OFF_RESPONDER)[0] == 0  # no slot claimed
    raw.close()
    creator.close()


def test_r_ver_3_v1_api_on_a_v2_segment(camera: Any) -> None:
    """R-VER-3: Requester/Responder on a v2 segment: VERSION_MISMATCH with the message of the
    spec, no slot claimed."""
    req, rsp, raw = camera
    rsp.close()
    want = (
        f"segment '{req.name}' uses protocol v2 (typed messages): attach with "
        "MessageRequester/MessageResponder"
    )
    for cls in (sb.Requester, sb.Responder):
        with pytest.raises(sb.VersionMismatch) as info:
            cls.attach(req.name, timeout=0)
        assert info.value.message == want
    assert struct.unpack_from("<II", raw.mm, OFF_RESPONDER) == (0, 2)  # still the closed slot


def test_r_ver_4_v2_api_on_a_v1_segment(segname: str) -> None:
    """R-VER-4: MessageRequester/MessageResponder on a v1 segment: VERSION_MISMATCH with the
    message of the spec, no slot claimed."""
    with sb.Requester.create(segname, np.float32, (4,)):
        want = f"segment '{segname}' uses protocol v1 (one array): attach with Requester/Responder"
        for cls in (sb.MessageRequester, sb.MessageResponder):
            with pytest.raises(sb.VersionMismatch) as info:
                cls.attach(segname, timeout=0)
            assert info.value.message == want
        raw = map_raw(segname)
        assert struct.unpack_from("<I", raw, OFF_RESPONDER)[0] == 0
        raw.close()


def test_r_ver_4_other_major_versions(segname: str) -> None:
    """R-VER-4: any other version_major fails with VERSION_MISMATCH naming the version found and
    the versions supported, for both APIs."""
    with sb.MessageRequester.create(segname, *CAMERA, keep_segment=True):
        pass
    raw = map_raw(segname)
    struct.pack_into("<H", raw, 8, 3)
    raw.close()
    for attach in (sb.Requester.attach, sb.MessageRequester.attach):
        with pytest.raises(
            sb.VersionMismatch, match=r"version 3\.0: expected major version 1 or 2"
        ):
            attach(segname, timeout=0)


def test_r_ver_5_r_ver_6_each_api_creates_its_own_version(segname: str, make_name: Any) -> None:
    """R-VER-5, R-VER-6: the v1 API creates v1 segments (version 1.0, header 512) and the v2 API
    v2 segments; magic and version_major are at the same offsets in both."""
    other = make_name()
    with sb.Requester.create(segname, np.float32, (4,)), sb.MessageResponder.create(other, *CAMERA):
        a, b = map_raw(segname), map_raw(other)
        assert bytes(a[:8]) == bytes(b[:8]) == b"SHMBRIDG"
        assert struct.unpack_from("<HHI", a, 8) == (1, 0, 512)
        assert struct.unpack_from("<HHI", b, 8) == (2, 0, 896)
        a.close()
        b.close()


def test_r_ver_7_a_creator_of_either_api_reclaims_a_stale_segment_of_the_other(
    segname: str,
) -> None:
    """R-VER-7: a stale segment (dead creator) of either version is reclaimed by a creator of the
    other API (or STALE_SEGMENT without reclaim); a live creator's is ALREADY_EXISTS."""
    dead = reaped_pid()
    for make_first, make_second in (
        (lambda: sb.MessageRequester.create(segname, *CAMERA, keep_segment=True),
         lambda **kw: sb.Requester.create(segname, np.float32, (4,), **kw)),
        (lambda: sb.Requester.create(segname, np.float32, (4,), keep_segment=True),
         lambda **kw: sb.MessageResponder.create(segname, *CAMERA, **kw)),
    ):  # fmt: skip
        first = make_first()
        with pytest.raises(sb.AlreadyExists):
            make_second()
        first.close()
        raw = map_raw(segname)
        struct.pack_into("<II", raw, OFF_CREATOR, dead, 1)  # the creator died
        raw.close()
        with pytest.raises(sb.StaleSegment):
            make_second(reclaim_stale=False)
        make_second().close()
        assert not shm_path(segname).exists()


def test_r_ver_7_a_header_valid_in_neither_version_is_never_reclaimed(segname: str) -> None:
    """R-VER-7: an existing object whose header validates as neither v1 nor v2 is
    CORRUPT_HEADER (or VERSION_MISMATCH for an unknown version) and stays."""
    with sb.MessageRequester.create(segname, *CAMERA, keep_segment=True):
        pass
    raw = map_raw(segname, 1024)
    struct.pack_into("<I", raw, 0x220, 99)  # request record 0's dtype (F3)
    raw.close()
    for create in (
        lambda: sb.Requester.create(segname, np.float32, (4,)),
        lambda: sb.MessageRequester.create(segname, *CAMERA),
    ):
        with pytest.raises(sb.CorruptHeader):
            create()
    assert shm_path(segname).exists()


# ---------------------------------------------------------------------------- sending


def test_r_field_1_a_send_writes_the_table_and_the_data_at_the_fields_offsets(
    camera: Any,
) -> None:
    """R-FIELD-1: entry k of the request table describes field k as sent; the data are its
    nbytes, C-contiguous, at the field's offset (a non-contiguous array is copied in order)."""
    req, _rsp, raw = camera
    img = frame(7)[:, ::-1]  # not C-contiguous
    req.send(image=np.ascontiguousarray(img).copy(), stamp=np.float64(2.5))
    assert raw.field("request", "image", 72) == np.ascontiguousarray(img).tobytes()
    assert raw.field("request", "stamp", 8) == struct.pack("<d", 2.5)
    h = raw.h
    assert raw.table("request") == encode_table(h.request, [(4, 6, 3), ()])


def test_r_field_4_field_checks_come_before_the_word(camera: Any) -> None:
    """R-FIELD-4 (vectors V3): a bad send while a request is outstanding fails with the field's
    error, not OUT_OF_TURN; a good one then fails OUT_OF_TURN (R-STATE-7)."""
    req, _rsp, _raw = camera
    req.send(image=frame(), stamp=1.0)
    with pytest.raises(sb.SchemaMismatch) as info:
        req.send(image=frame())
    assert (info.value.field, info.value.check) == ("stamp", "S3")
    with pytest.raises(sb.OutOfTurn):
        req.send(image=frame(), stamp=1.0)


def test_r_field_1_r_field_6_tables_and_data_follow_every_shape_change(mixed: Any) -> None:
    """R-FIELD-1, R-FIELD-6: a handle reuses the table it last encoded and its copy views per
    shape (bounded): whatever order the shapes come in, more of them than it keeps, every
    table and every field's bytes are those of the round just sent or replied."""
    req, rsp, raw = mixed
    rng = np.random.default_rng(5)
    shapes = [(n, m) for n in range(9) for m in range(4)] * 3  # 36 shapes, 108 rounds
    rng.shuffle(shapes)
    for i, (n, m) in enumerate(shapes):
        state = rng.random(n)
        grid = rng.integers(0, 60000, (min(m, 3), 2)).astype(np.uint16)
        req.send(state=state, grid=grid)
        assert raw.table("request") == encode_table(raw.h.request, [(n,), grid.shape])
        with rsp.take() as r:
            assert np.array_equal(r.request["state"], state)
            assert np.array_equal(r.request["grid"], grid)
            action = np.full(min(i % 5, 4), i, np.float32)
            r.reply(action=action, code=np.int8(i % 100))
        got = req.receive_copy()
        assert np.array_equal(got["action"], action) and int(got["code"]) == i % 100
        assert np.array_equal(got["grid"], grid)  # in place: the request as taken


def test_r_field_4_s4_refuses_a_byte_swapped_array_of_the_fields_kind(camera: Any) -> None:
    """R-FIELD-4 (S4): exactly the field's dtype, little-endian; a big-endian float64 is not
    float64 (no conversion), and nothing is written."""
    req, _rsp, raw = camera
    before = raw.area("request")
    with pytest.raises(sb.DtypeMismatch) as info:
        req.send(image=frame(), stamp=np.array(1.0, ">f8"))
    assert (info.value.field, info.value.check) == ("stamp", "S4")
    assert raw.area("request") == before


def test_r_field_4_a_mapping_gives_names_that_are_not_keywords(segname: str) -> None:
    """API.md: send/call take one positional-only mapping for names that collide with their
    parameters; keyword arguments follow it in the caller's order (S2 over both)."""
    s = Schema(fields=(np.int8, ()), timeout=(np.int8, ()))
    with sb.MessageRequester.create(segname, s, Schema(), **OPTS) as req:
        req.send({"fields": np.int8(1)}, timeout=np.int8(2))
        with sb.MessageResponder.attach(segname, **OPTS) as rsp:
            with rsp.take() as r:
                assert {k: int(v) for k, v in r.request.items()} == {"fields": 1, "timeout": 2}
            req.receive_copy()
            with pytest.raises(sb.SchemaMismatch) as info:
                req.send({"fields": np.int8(1), "timeout": np.int8(2)}, fields=np.int8(3))
            assert (info.value.field, info.value.check) == ("fields", "S2")


def test_r_field_5_a_request_buffer_left_by_an_exception_sends_nothing(camera: Any) -> None:
    """R-FIELD-5: views over the request storage, sent on a clean exit; an exception sends
    nothing and leaves the requester owning the areas; the views end with the block."""
    req, rsp, _raw = camera
    with pytest.raises(RuntimeError), req.request_buffer() as buf:
        buf["image"][...] = 9
        raise RuntimeError("abandon")
    assert req.phase() is sb.Phase.IDLE and req.pending() is None
    assert not buf["image"].flags.writeable
    with req.request_buffer(image=(4, 6, 3)) as buf:
        assert set(buf) == {"image", "stamp"}
        buf["image"][...] = frame(1)
        buf["stamp"][...] = 3.25
    assert req.phase() is sb.Phase.REQUESTED
    with rsp.take() as r:
        np.testing.assert_array_equal(r.request["image"], frame(1))
        assert r.request["stamp"] == 3.25
        r.reply(boxes=np.zeros((0, 6), np.float32))
    assert req.receive_copy()["boxes"].shape == (0, 6)


def test_r_field_3_the_request_area_keeps_the_last_request(camera: Any) -> None:
    """R-FIELD-3: between rounds the request area keeps the last request's table and data (no
    reply field targets it here); a request buffer opens on those bytes; the responder wrote
    nothing of the request area."""
    req, rsp, raw = camera
    req.send(image=frame(3), stamp=1.0)
    before = raw.area("request")
    with rsp.take() as r:
        r.reply(boxes=np.ones((2, 6), np.float32))
    req.receive_copy()
    assert raw.area("request") == before
    with req.request_buffer() as buf:
        np.testing.assert_array_equal(buf["image"], frame(3))
        assert buf["stamp"] == 1.0


def test_r_field_3_the_requester_never_writes_the_reply_area(camera: Any) -> None:
    """R-FIELD-3: sends (copying or zero-copy) leave the reply area as the last reply left it."""
    req, rsp, raw = camera
    req.send(image=frame(), stamp=0.0)
    with rsp.take() as r:
        r.reply(boxes=np.full((3, 6), 7, np.float32))
    req.receive_copy()
    reply_area = raw.area("reply")
    req.send(image=frame(5), stamp=5.0)
    assert raw.area("reply") == reply_area
    with rsp.take() as r:
        r.fail(sb.ErrorCode.HANDLER_FAILED)
    with pytest.raises(sb.HandlerFailed):
        req.receive_copy()
    with req.request_buffer() as buf:
        buf["image"][...] = 1
    assert raw.area("reply") == reply_area


# ---------------------------------------------------------------------------- replying


def test_r_schema_4_r_field_6_an_omitted_inplace_field_is_the_request_as_taken(
    mixed: Any,
) -> None:
    """R-SCHEMA-4, R-FIELD-6: an in-place reply field may be omitted: it is published with its
    target's shape as taken, over its target's storage; written through reply_buffer it is the
    request field's storage (the responder's request view shows the write, R-FIELD-11)."""
    req, rsp, _raw = mixed
    grid = np.arange(6, dtype=np.uint16).reshape(3, 2)
    req.send(state=np.zeros(2), grid=grid)
    with rsp.take() as r:
        r.reply(action=np.ones(1, np.float32), code=np.int8(-1))
    out = req.receive_copy()
    np.testing.assert_array_equal(out["grid"], grid)
    assert (out["action"].shape, int(out["code"])) == ((1,), -1)
    req.send(state=np.zeros(0), grid=grid[:2])
    with rsp.take() as r:
        bufs = r.reply_buffer(action=(0,))
        assert bufs["grid"].shape == (2, 2)
        bufs["grid"][...] += 100
        np.testing.assert_array_equal(r.request["grid"], grid[:2] + 100)
        assert not r.request["grid"].flags.writeable
        r.reply()
    np.testing.assert_array_equal(req.receive_copy()["grid"], grid[:2] + 100)


def test_r_field_6_reply_field_needs_a_shape_unless_every_extent_is_fixed(mixed: Any) -> None:
    """R-FIELD-6 (S1, S3, S5-S7 of reply_field): a fixed field's shape may be omitted; an
    in-place field with a variable extent needs one (S3); the field prepared is published by
    reply() unless copied again."""
    req, rsp, _raw = mixed
    req.send(state=np.zeros(3), grid=np.zeros((1, 2), np.uint16))
    with rsp.take() as r:
        assert r.reply_field("code").shape == ()
        with pytest.raises(sb.SchemaMismatch) as info:
            r.reply_field("grid")
        assert (info.value.field, info.value.check) == ("grid", "S3")
        with pytest.raises(sb.CapacityExceeded) as cap:
            r.reply_field("grid", (4, 2))
        assert (cap.value.field, cap.value.check) == ("grid", "S7")
        r.reply_field("grid", (3, 2))[...] = 5
        r.reply_field("action", (2,))[...] = 1.5
        r.reply(action=np.zeros(4, np.float32))
    out = req.receive_copy()
    assert out["grid"].shape == (3, 2) and (out["grid"] == 5).all()
    assert out["action"].tolist() == [0, 0, 0, 0]


def test_r_field_9_r_field_10_an_error_reply_writes_no_part_of_the_reply_area(
    camera: Any,
) -> None:
    """R-FIELD-10, R-FIELD-9: fail(), a handler error, T8 (R-REC-2) and a close while holding
    (R-CLOSE-2) publish reply_code only; the requester reads no reply table; the error carries
    the reply_code and no field (R-FIELD-7)."""
    req, rsp, raw = camera
    req.send(image=frame(), stamp=0.0)
    with rsp.take() as r:
        r.reply(boxes=np.full((4, 6), 3, np.float32))
    req.receive_copy()
    reply_area = raw.area("reply")
    req.send(image=frame(), stamp=1.0)
    with pytest.raises(ZeroDivisionError), rsp.take():
        raise ZeroDivisionError
    with pytest.raises(sb.HandlerFailed) as info:
        req.receive()
    assert (info.value.reply_code, info.value.field) == (18, None)
    req.send(image=frame(), stamp=2.0)
    rsp.take()
    rsp.close()  # R-CLOSE-2
    with pytest.raises(sb.PeerGone) as gone:
        req.receive_copy()
    assert gone.value.reason is sb.PeerGoneReason.CLOSED and gone.value.field is None
    req.send(image=frame(), stamp=3.0)
    rsp2 = sb.MessageResponder.attach(req.name, **OPTS)
    rsp2.take()
    raw.mm[OFF_RESPONDER : OFF_RESPONDER + 8] = struct.pack("<II", reaped_pid(), 1)  # it died
    rsp3 = sb.MessageResponder.attach(req.name, **OPTS)  # T8
    with pytest.raises(sb.PeerGone) as t8:
        req.receive_copy()
    assert t8.value.reason is sb.PeerGoneReason.DIED and t8.value.reply_code == 7
    assert raw.area("reply") == reply_area
    rsp3.close()
    rsp2._closed = True  # its slot was taken over; nothing of it to release


def test_r_field_6_a_rejected_reply_call_still_completes_the_round_in_a_with_block(
    camera: Any,
) -> None:
    """R-FIELD-6, R-MSG-2: a block that ends without answering replies; if that reply is
    rejected (a variable field nobody gave, S3) the round completes with that error."""
    req, rsp, _raw = camera
    req.send(image=frame(), stamp=0.0)
    with pytest.raises(sb.SchemaMismatch), rsp.take():
        pass
    assert rsp.held() is None
    with pytest.raises(sb.SchemaMismatch) as info:
        req.receive_copy()
    assert info.value.reply_code == 19 and info.value.field is None


def test_r_field_6_serve_replies_with_the_mapping_the_handler_returns(segname: str) -> None:
    """R-FIELD-6, R-LIVE-4: serve: handler(request fields) -> reply fields; it ends when the
    requester closes; a handler error fails the round (R-MSG-3) and is raised."""
    import threading

    req = sb.MessageRequester.create(segname, *MIXED, **OPTS)
    rsp = sb.MessageResponder.attach(segname, **OPTS)
    result: list[Any] = []

    def handler(m: sb.MessageView) -> dict[str, Any]:
        if m["state"].size == 0:
            raise ValueError("empty state")
        return {"action": m["state"][:4].astype(np.float32), "code": np.int8(m["state"].size)}

    t = threading.Thread(target=lambda: result.append(rsp.serve(handler)))
    t.start()
    out = req.call(state=np.arange(6.0), grid=np.ones((2, 2), np.uint16))
    assert out["action"].tolist() == [0, 1, 2, 3] and int(out["code"]) == 6
    np.testing.assert_array_equal(out["grid"], np.ones((2, 2)))
    req.close()
    t.join(10)
    assert result == [1]
    rsp.close()
    req = sb.MessageRequester.create(segname, *MIXED, **OPTS)
    rsp = sb.MessageResponder.attach(segname, **OPTS)
    errs: list[BaseException] = []

    def run() -> None:
        try:
            rsp.serve(handler)
        except BaseException as e:
            errs.append(e)

    t = threading.Thread(target=run)
    t.start()
    with pytest.raises(sb.HandlerFailed):
        req.call(state=np.zeros(0), grid=np.zeros((0, 2), np.uint16))
    t.join(10)
    assert isinstance(errs[0], ValueError)
    rsp.close()
    req.close()


# ---------------------------------------------------------------------------- views


def test_r_field_11_view_lifetimes_per_area(camera: Any) -> None:
    """R-FIELD-11: request views are read-only until the reply; reply buffers are writable until
    the reply, then read-only; a reply view stays valid (and unchanged) while the requester fills
    the next request buffer."""
    req, rsp, _raw = camera
    req.send(image=frame(1), stamp=1.0)
    r = rsp.take()
    image = r.request["image"]
    assert not image.flags.writeable
    with pytest.raises(ValueError):
        image[0, 0, 0] = 1
    boxes = r.reply_buffer(boxes=(2, 6))["boxes"]
    boxes[...] = 4
    r.reply()
    assert not boxes.flags.writeable
    with req.receive() as msg:
        got = msg["boxes"]
        with req.request_buffer() as buf:
            buf["image"][...] = 0
            np.testing.assert_array_equal(got, np.full((2, 6), 4, np.float32))
    assert not buf["image"].flags.writeable


def test_r_field_11_an_inplace_reply_view_shows_the_next_request(mixed: Any) -> None:
    """R-FIELD-11: a reply view of an in-place field is its target's storage: its content is
    unspecified once the requester writes that request field."""
    req, rsp, _raw = mixed
    req.send(state=np.zeros(1), grid=np.full((1, 2), 1, np.uint16))
    with rsp.take() as r:
        r.reply(action=np.zeros(0, np.float32), code=np.int8(0))
    with req.receive() as msg:
        grid = msg["grid"]
        assert grid.tolist() == [[1, 1]]
        with req.request_buffer(state=(0,), grid=(1, 2)) as buf:
            buf["grid"][...] = 9
        assert grid.tolist() == [[9, 9]]  # the same bytes


def test_r_field_11_closing_with_views_alive_keeps_them_readable(segname: str) -> None:
    """R-FIELD-11 (R-CLOSE-3 per area): closing while views of both areas are referenced does not
    crash; the views stay readable, read-only, with the last content."""
    req = sb.MessageRequester.create(segname, *CAMERA, **OPTS)
    rsp = sb.MessageResponder.attach(segname, **OPTS)
    req.send(image=frame(2), stamp=0.5)
    r = rsp.take()
    request_image = r.request["image"]
    r.reply(boxes=np.ones((1, 6), np.float32))
    boxes = req.receive()["boxes"]
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        rsp.close()
        req.close()
    assert boxes.tolist() == [[1.0] * 6] and not boxes.flags.writeable
    np.testing.assert_array_equal(request_image, frame(2))


def test_r_field_12_unknown_names_are_schema_mismatch_naming_them(camera: Any) -> None:
    """R-FIELD-12: accessing a field that is not in the schema is SCHEMA_MISMATCH (a KeyError)
    naming it, in received messages, buffers, requests and schemas; `in` and .get work."""
    req, rsp, _raw = camera
    req.send(image=frame(), stamp=1.0)
    r = rsp.take()
    for mapping in (r.request, r.reply_buffer(boxes=(1, 6)), CAMERA[0]):
        with pytest.raises(sb.SchemaMismatch) as info:
            mapping["nope"]
        assert info.value.field == "nope"
        assert isinstance(info.value, KeyError)
    assert "image" in r.request and "nope" not in r.request and r.request.get("nope") is None
    with pytest.raises(sb.SchemaMismatch) as info:
        r.reply_field("image")
    assert (info.value.field, info.value.check) == ("image", "S1")
    r.reply()
    assert list(req.receive()) == ["boxes"]


def test_r_field_7_errors_name_fields_only_for_field_checks(camera: Any, segname: str) -> None:
    """R-FIELD-7: header validation errors and errors raised from a reply_code have no field;
    field checks name theirs; every error still says what was expected and found."""
    req, _rsp, raw = camera
    with pytest.raises(sb.DtypeMismatch) as info:
        req.send(image=frame().astype(np.int8), stamp=1.0)
    assert info.value.field == "image" and "expected dtype uint8, found int8" in str(info.value)
    raw.mm[0x024:0x028] = struct.pack("<I", 4)  # max_dims: H7
    with pytest.raises(sb.CorruptHeader) as bad:
        sb.MessageResponder.attach(segname, timeout=0)
    assert bad.value.field is None and bad.value.check == "H7"


def test_r_ver_1_the_v2_handles_share_the_v1_state_machine(camera: Any) -> None:
    """R-VER-1: out-of-turn operations, timeouts with withdrawal (R-TIME-2), the word's seq and
    phases behave as in v1 (the stateful test drives every transition)."""
    req, rsp, _raw = camera
    with pytest.raises(sb.OutOfTurn):
        req.try_receive()
    with pytest.raises(sb.OutOfTurn):
        rsp.reply(boxes=np.zeros((0, 6), np.float32))
    seq = req.send(image=frame(), stamp=0.0)
    assert (req.phase(), req.status(), req.seq()) == (sb.Phase.REQUESTED, 1, seq)
    with pytest.raises(sb.Timeout):
        req.receive(timeout=0)  # T5: withdrawn
    assert req.phase() is sb.Phase.IDLE and req.pending() is None
    req.send(image=frame(), stamp=0.0)
    r = rsp.try_take()
    assert (rsp.phase(), rsp.held()) == (sb.Phase.TAKEN, r.seq)
    with pytest.raises(sb.Timeout):
        req.receive(timeout=0)
    r.reply(boxes=np.zeros((1, 6), np.float32))
    assert req.phase() is sb.Phase.REPLIED
    with pytest.raises(sb.OutOfTurn):
        r.reply(boxes=np.zeros((1, 6), np.float32))
    req.send(image=frame(), stamp=9.0)  # R-STATE-10: the late reply is consumed and dropped
    assert req.pending() == seq + 2
    assert struct.unpack_from("<I", _raw.mm, OFF_REPLY_CODE)[0] == 0
    assert struct.unpack_from("<II", _raw.mm, OFF_REQUESTER)[0] == os.getpid()


def test_r_ver_1_attach_waits_for_the_name_and_recovers(segname: str) -> None:
    """R-VER-1 (R-ATTACH-1, R-REC-1): the v2 attach waits for the segment until its deadline
    and a new requester withdraws an orphan request."""
    with pytest.raises(sb.SegmentNotFound, match="waiting"):
        sb.MessageRequester.attach(unique_name("absent"), timeout=0.05)
    req = sb.MessageRequester.create(segname, *CAMERA, keep_segment=True, **OPTS)
    req.send(image=frame(), stamp=0.0)
    req.close()
    with sb.MessageRequester.attach(segname, **OPTS) as again:
        assert again.phase() is sb.Phase.IDLE
    os.unlink(shm_path(segname))
