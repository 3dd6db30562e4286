"""Hypothesis fuzz of the protocol v2 parsers against the reference validator of
spec/tools/gen_vectors_v2.py (the independent third implementation, run, not copied), seeded from
spec/vectors/headers_v2.json and messages_v2.json: byte flips and boundary values written into
the fixed part, the geometry, the schema table (R-SCHEMA-9, H1-H16, F1-F9) and the message
tables (R-FIELD-8, E1-E8) must give what the reference gives (the same error, check and field, or
the same decoded fields), only typed errors, and never a read beyond what the rules allow. A
corrupted request table in a live segment gives the same typed error at take, and the round
still completes (R-FIELD-9).

The number of examples per property is 500 by default (HYPOTHESIS_FUZZ_EXAMPLES to change it),
as test_fuzz_header.py for v1.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from typing import Any

import numpy as np
from conftest import REPO, unique_name
from hypothesis import HealthCheck, example, given, settings
from hypothesis import event as _event
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context
from v2vectors import HEADERS_V2, MESSAGES_V2, SCHEMAS, schema_pair

import shmbridge as sb
from shmbridge import errors
from shmbridge.layout_v2 import MAX_HEADER_SIZE, decode_header, header_to_fields
from shmbridge.message_table import validate_table
from shmbridge.schema import Record

EXAMPLES = int(os.environ.get("HYPOTHESIS_FUZZ_EXAMPLES", "500"))
TYPED = (errors.CorruptHeader, errors.VersionMismatch, errors.SegmentNotFound)


def _reference() -> Any:
    tools = str(REPO / "spec" / "tools")
    if tools not in sys.path:
        sys.path.insert(0, tools)  # gen_vectors_v2 imports gen_vectors from its directory
    path = REPO / "spec" / "tools" / "gen_vectors_v2.py"
    spec = importlib.util.spec_from_file_location("gen_vectors_v2_ref", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["gen_vectors_v2_ref"] = mod
    spec.loader.exec_module(mod)
    return mod


REF = _reference()
HEADER_SEEDS: list[tuple[bytes, int]] = [
    (bytes.fromhex(v["hex"]), v["mapping_size"])
    for v in HEADERS_V2["valid"] + HEADERS_V2["invalid"] + HEADERS_V2["decode_only"]
]
# The fields a mutation aims at (offset, width): the fixed part, the geometry block, and
# every field of the first records (PROTOCOL.md §II.3).
FIXED = [
    (0x08, 2),
    (0x0A, 2),
    (0x0C, 4),
    (0x10, 8),
    (0x18, 8),
    (0x20, 4),
    (0x24, 4),
    (0x40, 4),
    (0x44, 4),
    (0x48, 8),
    (0x50, 8),
    (0x58, 8),
    (0x60, 8),
    (0x68, 8),
    (0x90, 4),
]
RECORD = [(0, 1), (5, 1), (31, 1), (32, 4), (36, 4), (40, 4), (44, 4), (48, 8), (56, 8), (64, 8),
          (104, 8), (112, 8), (120, 8)]  # fmt: skip
FIELDS = FIXED + [(0x200 + 128 * i + o, w) for i in range(4) for o, w in RECORD]
BOUNDARY = [0, 1, 2, 3, 8, 9, 15, 16, 17, 63, 64, 65, 255, 511, 512, 513, 896, 4608, 1 << 31,
            1 << 32, 1 << 62, 1 << 63, (1 << 64) - 1]  # fmt: skip
MAPPINGS = st.one_of(
    st.just(None),
    st.integers(0, 5000),
    st.integers(0, (1 << 64) - 1),
    st.sampled_from([511, 512, 513, 896, 4095, 4096, 4608, 925311, 925312, 925313]),
)


def event(text: str) -> None:
    """Label the outcome in hypothesis's statistics (--hypothesis-show-statistics)."""
    if currently_in_test_context():
        _event(text)


def check_header(raw: bytes, mapping: int) -> None:
    """Python's validator agrees with the reference on ``raw`` (padded to the largest header,
    which is what a mapping holds: neither may read beyond header_size, both assert that)."""
    raw = raw.ljust(MAX_HEADER_SIZE, b"\0")
    try:
        want: Any = REF.decode(raw, mapping)
        want_err = None
    except REF.V2Error as e:
        want, want_err = None, (e.name, e.check)
    event(f"header: {want_err[1] if want_err else 'valid'}")
    try:
        got = decode_header(raw, mapping)
    except TYPED as e:
        assert (e.name, e.check) == want_err, f"Python {e.name} {e.check} ({e}), ref {want_err}"
        assert e.field is None  # header errors name no field (R-FIELD-7)
        return
    assert want_err is None, f"Python accepted a header the reference rejects ({want_err})"
    assert header_to_fields(got) == want


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    s=st.sampled_from(HEADER_SEEDS),
    flips=st.lists(st.tuples(st.integers(0, MAX_HEADER_SIZE - 1), st.integers(0, 255)), max_size=6),
    mapping=MAPPINGS,
)
@example(s=HEADER_SEEDS[0], flips=[], mapping=None)
def test_r_schema_9_mutated_v2_headers_agree_with_the_reference(
    s: tuple[bytes, int], flips: list[tuple[int, int]], mapping: int | None
) -> None:
    """R-SCHEMA-9: random bytes of the fixed part and the schema table."""
    raw = bytearray(s[0])
    raw.extend(bytes(max(0, MAX_HEADER_SIZE - len(raw))))
    for pos, val in flips:
        raw[pos if pos < 0x200 or len(s[0]) <= 0x200 else 0x200 + pos % (len(s[0]) - 0x200)] = val
    check_header(bytes(raw), s[1] if mapping is None else mapping)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    s=st.sampled_from(HEADER_SEEDS),
    writes=st.lists(
        st.tuples(
            st.sampled_from(FIELDS),
            st.one_of(st.sampled_from(BOUNDARY), st.integers(0, (1 << 64) - 1)),
            st.integers(-2, 2),
        ),
        min_size=1,
        max_size=4,
    ),
    mapping=MAPPINGS,
)
def test_r_schema_9_field_overwrites_agree_with_the_reference(
    s: tuple[bytes, int], writes: list[tuple[tuple[int, int], int, int]], mapping: int | None
) -> None:
    """R-SCHEMA-9 (H5-H16, F1-F9): boundary values (+-2) in the counts, sizes, geometry, and in
    the names, dtypes, ndims, masks, aliases, maxima, offsets and max_nbytes of the records."""
    raw = bytearray(s[0]).ljust(MAX_HEADER_SIZE, b"\0")
    for (off, width), value, delta in writes:
        v = (value + delta) % (1 << (8 * width))
        raw[off : off + width] = v.to_bytes(width, "little")
    check_header(bytes(raw), s[1] if mapping is None else mapping)


def test_r_schema_9_every_v2_header_vector_is_a_seed() -> None:
    """The seeds are exactly the shared vectors (all three kinds), and agree unmutated."""
    assert len(HEADER_SEEDS) == 15 + 70 + 2
    for raw, mapping in HEADER_SEEDS:
        check_header(raw, mapping)


# ---------------------------------------------------------------------------- message tables

TABLE_SEEDS = [
    (t["schema"], t["side"], bytes.fromhex(t["hex"]))
    for t in MESSAGES_V2["tables"]["valid"] + MESSAGES_V2["tables"]["invalid"]
    if t["hex"]
]
ENTRY_FIELDS = [(0, 4), (4, 4), (8, 8), (16, 8), (24, 8), (32, 8), (64, 8), (72, 8)]


def ref_records(schema_id: str, side: str) -> list[dict[str, Any]]:
    return SCHEMAS[schema_id][f"{side}_schema"]  # type: ignore[no-any-return]


def py_records(schema_id: str, side: str) -> list[Record]:
    return [
        Record(r["name"], r["dtype"], r["variable_mask"], r["alias"], tuple(r["max_shape"]),
               r["offset"], r["max_nbytes"])
        for r in ref_records(schema_id, side)
    ]  # fmt: skip


def check_table(schema_id: str, side: str, raw: bytes) -> tuple[str, str, str] | None:
    """Python's E1-E8 agree with the reference; returns the error (name, check, field)."""
    try:
        want: Any = REF.validate_table(ref_records(schema_id, side), raw)
        want_err = None
    except REF.V2Error as e:
        want, want_err = None, (e.name, e.check, e.field)
    event(f"table: {want_err[1] if want_err else 'valid'}")
    try:
        got = validate_table(py_records(schema_id, side), raw, side)
    except errors.Error as e:
        assert isinstance(e, (errors.CorruptHeader, errors.DtypeMismatch, errors.ShapeMismatch))
        assert (e.name, e.check, e.field) == want_err, f"Python {e}, reference {want_err}"
        return want_err
    assert want_err is None, f"Python accepted a table the reference rejects ({want_err})"
    assert [list(s) for s in got] == [e["shape"] for e in want]
    return None


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    s=st.sampled_from(TABLE_SEEDS),
    flips=st.lists(st.tuples(st.integers(0, 1 << 16), st.integers(0, 255)), max_size=5),
    writes=st.lists(
        st.tuples(
            st.integers(0, 15),
            st.sampled_from(ENTRY_FIELDS),
            st.one_of(st.sampled_from(BOUNDARY), st.integers(0, (1 << 64) - 1)),
        ),
        max_size=3,
    ),
)
def test_r_field_8_corrupted_message_tables_agree_with_the_reference(
    s: tuple[str, str, bytes],
    flips: list[tuple[int, int]],
    writes: list[tuple[int, tuple[int, int], int]],
) -> None:
    """R-FIELD-8 (E1-E8, entries in schema order): random bytes and boundary values in the
    dtype, ndim, extents and nbytes of the entries."""
    schema_id, side, seed = s
    raw = bytearray(seed)
    for pos, val in flips:
        raw[pos % len(raw)] = val
    for entry, (off, width), value in writes:
        at = 80 * (entry % (len(raw) // 80)) + off
        raw[at : at + width] = (value % (1 << (8 * width))).to_bytes(width, "little")
    check_table(schema_id, side, bytes(raw))


MIXED = schema_pair("SCH-MIXED")


@settings(max_examples=max(50, EXAMPLES // 5), deadline=None,
          suppress_health_check=list(HealthCheck))  # fmt: skip
@given(
    writes=st.lists(
        st.tuples(
            st.integers(0, 2),
            st.sampled_from(ENTRY_FIELDS),
            st.one_of(st.sampled_from(BOUNDARY), st.integers(0, (1 << 64) - 1)),
        ),
        min_size=1,
        max_size=3,
    )
)
def test_r_field_9_a_corrupted_request_table_in_a_live_segment(
    writes: list[tuple[int, tuple[int, int], int]],
) -> None:
    """R-FIELD-8, R-FIELD-9: a rogue writer corrupts the request table after T1; take gives the
    reference's error naming the field (or the shapes it accepts), never a crash, and the round
    completes: the requester receives that error's reply_code."""
    name = unique_name("fz")
    req = sb.MessageRequester.create(name, *MIXED, timeout=1.0, spin=0.0)
    rsp = sb.MessageResponder.attach(name, timeout=1.0, spin=0.0)
    try:
        req.send(state=np.ones(3), grid=np.zeros((2, 5, 4), np.uint16), flag=np.bool_(True))
        off = req.header().geometry.request_area_offset
        mm = req._mm
        for entry, (o, width), value in writes:
            at = off + 80 * entry + o
            mm[at : at + width] = (value % (1 << (8 * width))).to_bytes(width, "little")
        want = check_table("SCH-MIXED", "request", bytes(mm[off : off + 240]))
        try:
            r = rsp.try_take()
        except errors.Error as e:
            assert (e.name, e.check, e.field) == want
            assert rsp.held() is None
            try:
                req.try_receive()
                raise AssertionError("the error reply was not received")
            except errors.Error as got:
                assert (got.name, got.reply_code, got.field) == (want[0], got.code, None)
            return
        assert want is None
        r.fail(sb.ErrorCode.HANDLER_FAILED)
    finally:
        rsp.close()
        req.close()
