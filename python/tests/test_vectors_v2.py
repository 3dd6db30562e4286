"""Replay of spec/vectors/messages_v2.json through the public v2 API on real segments (format in
spec/vectors/README.md): every message table (E1-E8, R-FIELD-8, R-FIELD-9), every send/reply/buffer
case (S1-S7, R-FIELD-4..6), every attach expectation (X1-X6, C1-C8, R-SCHEMA-10) and every
declaration (C1-C9, R-SCHEMA-3): the same error, the same check and the same field (R-FIELD-7),
and nothing changed by a rejected call."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from conftest import map_raw, shm_path, unique_name
from v2vectors import MESSAGES_V2, SCHEMAS, ids, np_dtype, schema, schema_pair

import shmbridge as sb
from shmbridge import errors
from shmbridge.layout import OFF_RESPONDER, OFF_WORD
from shmbridge.message_table import encode_table, validate_table
from shmbridge.schema import declare

TABLES_VALID = MESSAGES_V2["tables"]["valid"]
TABLES_INVALID = MESSAGES_V2["tables"]["invalid"]
SEND = MESSAGES_V2["send"]
EXPECT = MESSAGES_V2["expect"]
DECLARE = MESSAGES_V2["declare"]


def test_r_field_8_vector_counts_match_the_readme() -> None:
    """README: 5 schemas, 10 valid and 23 invalid tables, 46 send/reply cases (18 succeed), 25
    attach expectations (5 succeed), 20 declarations: all replayed below."""
    assert len(SCHEMAS) == 5
    assert (len(TABLES_VALID), len(TABLES_INVALID)) == (10, 23)
    assert (len(SEND), sum(v["error"] == "ok" for v in SEND)) == (46, 18)
    assert (len(EXPECT), sum(v["error"] == "ok" for v in EXPECT)) == (25, 5)
    assert len(DECLARE) == 20


def outcome(e: errors.Error) -> tuple[str, str | None, str | None]:
    return (e.name, e.field, e.check)


def expected(v: dict[str, Any]) -> tuple[str, str | None, str | None]:
    return (v["error"], v["field"], v["check"])


class Pair:
    """A fresh segment of a vector schema: a requester (creator, keeps nothing) and a responder,
    plus a raw mapping to read (and, as a rogue writer would, write) the areas."""

    def __init__(self, schema_id: str) -> None:
        self.name = unique_name("v2")
        req_s, rep_s = schema_pair(schema_id)
        self.req = sb.MessageRequester.create(self.name, req_s, rep_s, timeout=2.0, spin=0.0)
        self.rsp = sb.MessageResponder.attach(self.name, timeout=2.0, spin=0.0)
        h = self.req.header()
        self.h = h
        self.raw = map_raw(self.name, h.segment_size)

    def areas(self) -> bytes:
        return bytes(self.raw[self.h.header_size : self.h.segment_size])

    def word(self) -> int:
        return int.from_bytes(self.raw[OFF_WORD : OFF_WORD + 4], "little")

    def request_arrays(self, shapes: list[dict[str, Any]]) -> dict[str, np.ndarray[Any, Any]]:
        recs = {r.name: r for r in self.h.request}
        return {
            s["name"]: np.zeros(s["shape"], sb.DType(recs[s["name"]].dtype).numpy) for s in shapes
        }

    def close(self) -> None:
        self.rsp.close()
        self.req.close()
        self.raw.close()


@pytest.fixture
def pairs() -> Iterator[list[Pair]]:
    made: list[Pair] = []
    yield made
    for p in made:
        p.close()


def pair(pairs: list[Pair], schema_id: str) -> Pair:
    p = Pair(schema_id)
    pairs.append(p)
    return p


def records(schema_id: str, side: str) -> Any:
    req, rep = schema_pair(schema_id)
    d = declare(req, rep)
    return d.request if side == "request" else d.reply


# ---------------------------------------------------------------------------- tables


@pytest.mark.parametrize("vec", TABLES_VALID, ids=ids(TABLES_VALID))
def test_r_field_1_r_field_8_valid_tables(vec: dict[str, Any], pairs: list[Pair]) -> None:
    """R-FIELD-1, R-FIELD-8: validating `hex` as the side's table gives `entries`, encoding them
    gives `hex`; written into a real segment, the receiving side hands out views of those
    shapes."""
    recs = records(vec["schema"], vec["side"])
    raw = bytes.fromhex(vec["hex"])
    shapes = validate_table(recs, raw, vec["side"])
    assert [list(s) for s in shapes] == [e["shape"] for e in vec["entries"]]
    assert encode_table(recs, shapes) == raw
    got = deliver(pair(pairs, vec["schema"]), vec["side"], raw)
    assert isinstance(got, sb.MessageView)
    assert [list(a.shape) for a in got.values()] == [e["shape"] for e in vec["entries"]]


def deliver(p: Pair, side: str, table: bytes) -> sb.MessageView | errors.Error:
    """A valid round up to the side's receipt, with ``table`` written over the side's table
    right after the transition that published it (a rogue writer): the view received or the
    error raised."""
    g = p.h.geometry
    p.req.send(p.request_arrays([{"name": r.name, "shape": list(initial(r))} for r in p.h.request]))
    if side == "request":
        p.raw[g.request_area_offset : g.request_area_offset + len(table)] = table
        try:
            return p.rsp.try_take().request
        except errors.Error as e:
            return e
    r = p.rsp.try_take()
    r.reply_buffer(**{f.name: initial(f) for f in p.h.reply if not f.alias})
    r.reply()
    p.raw[g.reply_area_offset : g.reply_area_offset + len(table)] = table
    try:
        return p.req.try_receive()
    except errors.Error as e:
        return e


def initial(r: Any) -> tuple[int, ...]:
    return tuple(0 if r.variable(d) else m for d, m in enumerate(r.max_shape))


@pytest.mark.parametrize("vec", TABLES_INVALID, ids=ids(TABLES_INVALID))
def test_r_field_8_r_field_9_invalid_tables(vec: dict[str, Any], pairs: list[Pair]) -> None:
    """R-FIELD-8: the first failing check of E1-E8 (entries in schema order) decides the error,
    which names the entry's field (R-FIELD-7). R-FIELD-9: a responder completes the round with
    that reply_code and raises the error; a requester has consumed the reply (IDLE)."""
    recs = records(vec["schema"], vec["side"])
    raw = bytes.fromhex(vec["hex"])
    with pytest.raises(errors.Error) as info:
        validate_table(recs, raw, vec["side"])
    assert outcome(info.value) == expected(vec), str(info.value)
    p = pair(pairs, vec["schema"])
    got = deliver(p, vec["side"], raw)
    assert isinstance(got, errors.Error) and outcome(got) == expected(vec), got
    if vec["side"] == "request":
        assert p.rsp.held() is None and p.req.phase() is sb.Phase.REPLIED
        with pytest.raises(errors.Error) as info:
            p.req.try_receive()
        # the code crossed the processes, the field did not (R-FIELD-7)
        assert (info.value.name, info.value.field, info.value.reply_code) == (
            vec["error"],
            None,
            int(errors.ErrorCode[vec["error"]]),
        )
    else:
        assert got.reply_code == 0
        assert p.req.phase() is sb.Phase.IDLE and p.req.pending() is None
    assert p.req.phase() is sb.Phase.IDLE
    p.req.send(p.request_arrays([{"name": r.name, "shape": list(initial(r))} for r in p.h.request]))


# ---------------------------------------------------------------------------- send / reply


def given_arrays(v: dict[str, Any]) -> list[tuple[str, Any]]:
    return [(g["name"], np.zeros(g["shape"], np_dtype(g["dtype"]))) for g in v["given"]]


def given_shapes(v: dict[str, Any]) -> list[tuple[str, Any]]:
    return [(g["name"], tuple(g["shape"])) for g in v["given"]]


@pytest.mark.parametrize("vec", SEND, ids=ids(SEND))
def test_r_field_4_r_field_5_r_field_6_send_and_reply_vectors(
    vec: dict[str, Any], pairs: list[Pair]
) -> None:
    """R-FIELD-4..6: S1 and S2 over the names given in the caller's order, S3 in schema order,
    S4-S7 field by field; the error names the field (R-FIELD-7). A rejected call leaves both
    areas and the word untouched and the handle able to go on; a successful one publishes the
    table with `shapes`."""
    p = pair(pairs, vec["schema"])
    if vec["side"] == "request":
        replay_request(p, vec)
    else:
        replay_reply(p, vec)


def replay_request(p: Pair, vec: dict[str, Any]) -> None:
    before, word = p.areas(), p.word()
    try:
        if vec["api"] == "copy":
            p.req.send(given_arrays(vec))
            shapes = None
        else:
            with p.req.request_buffer(given_shapes(vec)) as buf:
                shapes = [[k, list(a.shape)] for k, a in buf.items()]
                assert all(a.flags.writeable for a in buf.values())
    except errors.Error as e:
        assert outcome(e) == expected(vec), str(e)
        assert p.areas() == before and p.word() == word
        assert p.req.pending() is None
        return
    assert vec["error"] == "ok"
    if shapes is not None:
        assert shapes == vec["shapes"]
    taken = p.rsp.try_take()
    assert [[k, list(a.shape)] for k, a in taken.request.items()] == vec["shapes"]
    taken.fail(sb.ErrorCode.HANDLER_FAILED)


def replay_reply(p: Pair, vec: dict[str, Any]) -> None:
    p.req.send(p.request_arrays(vec["taken"]))
    r = p.rsp.try_take()
    for item in vec.get("prepared", []):
        r.reply_field(item["name"], tuple(item["shape"]))
    before, word = p.areas(), p.word()
    try:
        if vec["api"] == "copy":
            r.reply(given_arrays(vec))
        elif vec["api"] == "buffer":
            bufs = r.reply_buffer(given_shapes(vec))
            assert [[k, list(a.shape)] for k, a in bufs.items()] == vec["shapes"]
            r.reply()
        else:
            (g,) = vec["given"]
            view = r.reply_field(g["name"], None if g["shape"] is None else tuple(g["shape"]))
            assert [[g["name"], list(view.shape)]] == vec["shapes"] and view.flags.writeable
            r.fail(sb.ErrorCode.HANDLER_FAILED)  # the replayer ends the round as it likes
            return
    except errors.Error as e:
        assert outcome(e) == expected(vec), str(e)
        assert p.areas() == before and p.word() == word  # nothing written, nothing published
        assert p.rsp.held() == r.seq and not r.done  # the responder may call again
        r.fail(sb.ErrorCode.HANDLER_FAILED)
        with pytest.raises(errors.HandlerFailed):
            p.req.try_receive()
        return
    assert vec["error"] == "ok"
    with p.req.try_receive() as msg:
        assert [[k, list(a.shape)] for k, a in msg.items()] == vec["shapes"]


# ---------------------------------------------------------------------------- attach expectations


def responder_slot(name: str) -> tuple[int, int]:
    raw = map_raw(name)
    try:
        return (
            int.from_bytes(raw[OFF_RESPONDER : OFF_RESPONDER + 4], "little"),
            int.from_bytes(raw[OFF_RESPONDER + 4 : OFF_RESPONDER + 8], "little"),
        )
    finally:
        raw.close()


@pytest.mark.parametrize("vec", EXPECT, ids=ids(EXPECT))
def test_r_schema_10_attach_expectation_vectors(vec: dict[str, Any], segname: str) -> None:
    """R-SCHEMA-10: the stated request schema, then the reply schema, by X1 over the whole schema
    then X2-X6 field by field; the error names the field and the attacher's slot stays
    unclaimed. A stated schema that is not a valid declaration fails C1-C8 before the attacher
    touches any OS object (so also for a name that does not exist)."""
    req_s, rep_s = schema_pair(vec["schema"])
    exp_req, exp_rep = schema(vec["expected"]["request"]), schema(vec["expected"]["reply"])
    with sb.MessageRequester.create(segname, req_s, rep_s, timeout=1.0):
        if vec["error"] == "ok":
            with sb.MessageResponder.attach(segname, exp_req, exp_rep, timeout=1.0):
                assert responder_slot(segname) == (os.getpid(), 1)
            return
        with pytest.raises(errors.Error) as info:
            sb.MessageResponder.attach(segname, exp_req, exp_rep, timeout=1.0)
        assert outcome(info.value) == expected(vec), str(info.value)
        assert responder_slot(segname) == (0, 0)
    if vec["check"].startswith("C"):
        with pytest.raises(errors.Error) as info:
            sb.MessageRequester.attach(unique_name("none"), exp_req, exp_rep, timeout=0)
        assert outcome(info.value) == expected(vec)


# ---------------------------------------------------------------------------- declarations


@pytest.mark.parametrize("role", ["requester", "responder"])
@pytest.mark.parametrize("vec", DECLARE, ids=ids(DECLARE))
def test_r_schema_3_declaration_vectors_through_create(
    vec: dict[str, Any], role: str, segname: str
) -> None:
    """R-SCHEMA-3, R-SCHEMA-8: building the schemas succeeds, create fails with the first
    failing check naming the field as given (none for C1 and C9), and no OS object exists
    afterwards."""
    req_s, rep_s = schema(vec["request"]), schema(vec["reply"])
    assert req_s is not None and rep_s is not None
    cls = sb.MessageRequester if role == "requester" else sb.MessageResponder
    with pytest.raises(errors.Error) as info:
        cls.create(segname, req_s, rep_s)
    assert outcome(info.value) == expected(vec), str(info.value)
    assert not shm_path(segname).exists()


def test_r_schema_3_the_segment_name_is_checked_before_the_schemas() -> None:
    """R-SCHEMA-3: create checks the segment name (R-NAME-1) first, then the schemas."""
    bad = schema(DECLARE[0]["request"])
    assert bad is not None
    with pytest.raises(errors.InvalidName):
        sb.MessageRequester.create("-bad", bad, sb.Schema())
