"""Protocol v2 header and schemas (PROTOCOL.md §II.2-§II.4): every vector of
spec/vectors/headers_v2.json in every direction the README gives (encode, decode, declare, the
initial message tables), every invalid vector with its error and check (H1-H16, F1-F9, R-SCHEMA-9),
the decode-only vectors (reserved bytes ignored), and the declaration checks C1-C9 of
messages_v2.json "declare" as pure functions (the API replay is in test_vectors_v2.py)."""

from __future__ import annotations

import struct
from typing import Any

import numpy as np
import pytest
from v2vectors import HEADERS_V2, MESSAGES_V2, ids, schema

from shmbridge import Schema, errors, inplace, upto
from shmbridge.layout_v2 import (
    MAX_HEADER_SIZE,
    decode_header,
    encode_header,
    header_for,
    header_from_fields,
    header_to_fields,
)
from shmbridge.message_table import encode_table, initial_shapes
from shmbridge.schema import declare, schema_of

VALID = HEADERS_V2["valid"]
INVALID = HEADERS_V2["invalid"]
DECODE_ONLY = HEADERS_V2["decode_only"]
BEFORE_H10 = {f"H{n}" for n in range(1, 11)}


def test_r_schema_5_vector_counts_match_the_readme() -> None:
    """The replay below covers every v2 header vector (README: 15 valid, 70 invalid, 2
    decode-only); a vector added without a replay would be noticed here."""
    assert (len(VALID), len(INVALID), len(DECODE_ONLY)) == (15, 70, 2)
    assert HEADERS_V2["protocol_version"] == 2


@pytest.mark.parametrize("vec", VALID, ids=ids(VALID))
def test_r_schema_5_r_schema_6_valid_header_vectors_encode_and_decode(vec: dict[str, Any]) -> None:
    """R-SCHEMA-5, R-SCHEMA-6, R-SCHEMA-9: encoding `fields` gives exactly `hex`; validating and
    decoding `hex` (exactly header_size bytes: nothing beyond is read) gives `fields`."""
    raw = bytes.fromhex(vec["hex"])
    h = header_from_fields(vec["fields"])
    assert len(raw) == h.header_size
    assert encode_header(h) == raw
    decoded = decode_header(raw, vec["mapping_size"])
    assert header_to_fields(decoded) == vec["fields"]
    assert decoded == h


@pytest.mark.parametrize("vec", VALID, ids=ids(VALID))
def test_r_schema_3_r_schema_7_declaring_the_schemas_gives_the_records_and_geometry(
    vec: dict[str, Any],
) -> None:
    """R-SCHEMA-3, R-SCHEMA-4, R-SCHEMA-6, R-SCHEMA-7: declaring `schemas` gives the vector's
    records (offsets included), geometry, header_size, capacity and segment_size; the segment's
    records read back as the same Schema (req.request_schema)."""
    req, rep = schema(vec["schemas"]["request"]), schema(vec["schemas"]["reply"])
    assert req is not None and rep is not None
    declared = declare(req, rep)
    got = header_to_fields(header_for(declared))
    for key in ("request_schema", "reply_schema", "geometry", "header_size", "capacity",
                "segment_size"):  # fmt: skip
        assert got[key] == vec["fields"][key], key
    assert schema_of(declared.request) == req
    assert schema_of(declared.reply, declared.request) == rep


@pytest.mark.parametrize("vec", VALID, ids=ids(VALID))
def test_r_field_2_initial_message_tables(vec: dict[str, Any]) -> None:
    """R-FIELD-2: the tables a creator writes: fixed extents as declared, variable extents 0."""
    h = header_from_fields(vec["fields"])
    for side, records in (("request", h.request), ("reply", h.reply)):
        want = vec["initial_tables"][side]
        shapes = initial_shapes(records)
        assert [list(s) for s in shapes] == [e["shape"] for e in want["entries"]]
        assert encode_table(records, shapes).hex() == want["hex"]


@pytest.mark.parametrize("vec", INVALID, ids=ids(INVALID))
def test_r_schema_9_invalid_header_vectors(vec: dict[str, Any]) -> None:
    """R-SCHEMA-9: validation fails with the vector's error at the vector's check (H1-H16, the
    first failing one); a header error names no field (R-FIELD-7)."""
    raw = bytes.fromhex(vec["hex"])
    with pytest.raises(errors.Error) as info:
        decode_header(raw, vec["mapping_size"])
    e = info.value
    assert (e.name, e.check, e.field) == (vec["error"], vec["check"], None), str(e)


@pytest.mark.parametrize(
    "vec", [v for v in INVALID if v["check"] in BEFORE_H10], ids=lambda v: v["id"]
)
def test_r_schema_9_nothing_beyond_512_bytes_is_read_before_h10(vec: dict[str, Any]) -> None:
    """R-SCHEMA-9: a header that fails H1-H10 fails the same way from its first 512 bytes alone
    (the validator reads nothing at or beyond 512 before H10 has passed)."""
    raw = bytes.fromhex(vec["hex"])[:512]
    with pytest.raises(errors.Error) as info:
        decode_header(raw, vec["mapping_size"])
    assert (info.value.name, info.value.check) == (vec["error"], vec["check"])


@pytest.mark.parametrize("vec", DECODE_ONLY, ids=ids(DECODE_ONLY))
def test_r_schema_5_reserved_bytes_are_ignored(vec: dict[str, Any]) -> None:
    """R-SCHEMA-5 (vectors V2): non-zero reserved bytes, v1's message descriptor at 0x090
    included, are ignored on read."""
    decoded = decode_header(bytes.fromhex(vec["hex"]), vec["mapping_size"])
    assert header_to_fields(decoded) == vec["fields"]


def test_r_ver_2_any_minor_version_is_accepted_and_v1_is_refused() -> None:
    """R-VER-2, R-VER-4: version_minor is not judged; version_major 1 is VERSION_MISMATCH with
    the v1 help, any other major names the versions supported."""
    raw = bytearray(bytes.fromhex(VALID[0]["hex"]))
    struct.pack_into("<H", raw, 10, 0xFFFF)
    assert decode_header(bytes(raw), VALID[0]["mapping_size"]).version_minor == 0xFFFF
    struct.pack_into("<H", raw, 8, 1)
    with pytest.raises(errors.VersionMismatch, match=r"uses protocol v1 \(one array\): attach "
                       "with Requester/Responder"):  # fmt: skip
        decode_header(bytes(raw), VALID[0]["mapping_size"], name="cam")
    struct.pack_into("<H", raw, 8, 7)
    with pytest.raises(errors.VersionMismatch, match=r"version 7\.65535: expected major "
                       "version 1 or 2"):  # fmt: skip
        decode_header(bytes(raw), VALID[0]["mapping_size"])


def test_r_schema_5_header_size_bounds() -> None:
    """R-SCHEMA-5: header_size is a multiple of 64 from 512 to 4608 (16 + 16 records)."""
    assert MAX_HEADER_SIZE == 4608
    sizes = {v["fields"]["header_size"] for v in VALID}
    assert min(sizes) == 512 and max(sizes) == 4608
    assert all(s % 64 == 0 for s in sizes)


# ---------------------------------------------------------------------------- C1-C9 as functions

DECLARE = MESSAGES_V2["declare"]


@pytest.mark.parametrize("vec", DECLARE, ids=ids(DECLARE))
def test_r_schema_3_declaration_vectors(vec: dict[str, Any]) -> None:
    """R-SCHEMA-3: the declaration fails with the first failing check (C1-C8 on the request, then
    the reply, then C9), naming the field as given (none for C1 and C9)."""
    req, rep = schema(vec["request"]), schema(vec["reply"])
    assert req is not None and rep is not None
    with pytest.raises(errors.Error) as info:
        declare(req, rep)
    e = info.value
    assert (e.name, e.field, e.check) == (vec["error"], vec["field"], vec["check"]), str(e)


def test_r_schema_3_building_a_schema_reports_none_of_c1_c9() -> None:
    """R-SCHEMA-3: Schema(...) accepts what C1-C9 refuse (17 fields, bad names, negative or
    huge extents, unsupported dtypes); only an argument of the wrong kind is refused at once."""
    s = Schema([(f"f{i}", (np.int8, ())) for i in range(17)])
    assert len(s) == 17
    Schema([("1x", (np.dtype("object"), (-1, upto(-5), 2**64)))])
    Schema(x=inplace("nothing"))  # a request field in place: C4 at create
    for bad in ((np.int8,), 3, "float32", (np.int8, "3")):
        with pytest.raises(errors.InvalidArgument):
            Schema(x=bad)  # type: ignore[arg-type]
    with pytest.raises(errors.InvalidArgument):
        inplace(3)  # type: ignore[arg-type]


def test_r_schema_1_a_schema_may_have_no_fields_and_keeps_its_order() -> None:
    """R-SCHEMA-1: 0 to 16 fields in declaration order; keyword order is schema order."""
    assert len(Schema()) == 0
    s = Schema(b=(np.int8, ()), a=(np.float32, (upto(3),)), c=inplace("x"))
    assert s.names == ("b", "a", "c")
    assert s == Schema([("b", (np.int8, ())), ("a", ("float32", [upto(3)])), ("c", inplace("x"))])
    d = declare(Schema(), Schema())
    assert (d.header_size, d.capacity, d.segment_size) == (512, 0, 512)


def test_r_schema_2_names() -> None:
    """R-SCHEMA-2: 1..31 ASCII identifier characters, unique per schema; one name may be used in
    both schemas."""
    ok = Schema(**{"a" * 31: (np.int8, ()), "_": (np.int8, ()), "_9": (np.int8, ())})
    declare(ok, Schema(_=(np.int8, ())))
    for name in ("", "a" * 32, "9a", "a b", "a-b", "é", "a\0"):
        with pytest.raises(errors.InvalidArgument) as info:
            declare(Schema([(name, (np.int8, ()))]), Schema())
        assert (info.value.field, info.value.check) == (name, "C2")


def test_r_schema_4_inplace_takes_its_target_and_shares_its_storage() -> None:
    """R-SCHEMA-4: an in-place reply field takes its target's dtype, ndim, maxima and variable
    extents, has no storage of its own (its target's offset) and the reply area holds only its
    table."""
    d = declare(
        Schema(a=(np.float32, (upto(4), 3)), b=(np.uint8, (5,))),
        Schema(x=inplace("b"), y=inplace("a")),
    )
    (a, b), (x, y) = d.request, d.reply
    assert (x.dtype, x.max_shape, x.variable_mask, x.offset, x.alias) == (3, (5,), 0, b.offset, 2)
    assert (y.dtype, y.max_shape, y.variable_mask, y.offset, y.alias) == (
        11,
        (4, 3),
        1,
        a.offset,
        1,
    )
    assert d.geometry.reply_area_size == 192  # align64(2 x 80), no storage


def test_r_schema_7_every_offset_is_aligned_and_fields_do_not_overlap() -> None:
    """R-SCHEMA-7 consequences: every area and field offset is a multiple of 64; own-storage
    fields overlap neither each other nor a message table; a field of 0 bytes shares the next
    field's offset."""
    d = declare(
        Schema(a=(np.uint8, (3,)), z=(np.int64, (0, 5)), b=(np.complex128, (upto(2), 2))),
        Schema(c=(np.bool_, ()), d=inplace("b")),
    )
    g = d.geometry
    a, z, b = d.request
    assert all(x % 64 == 0 for x in (a.offset, z.offset, b.offset, g.reply_area_offset))
    assert a.offset == g.request_area_offset + 256  # align64(3 x 80)
    assert z.offset == b.offset == a.offset + 64
    c = d.reply[0]
    assert c.offset == g.reply_area_offset + 192  # align64(2 x 80)
    assert d.reply[1].offset == b.offset
    assert g.reply_area_offset == g.request_area_offset + g.request_area_size


def test_r_schema_9_the_validator_is_a_pure_function_importable_without_the_native_helper() -> None:
    """For the fuzz differential (cpp/fuzz/differential.py loads shmbridge.layout without the
    package __init__, which needs _native): shmbridge.layout_v2.decode_header(bytes,
    mapping_size) is importable the same way and gives the error name and check label."""
    import subprocess
    import sys

    from conftest import REPO

    code = (
        "import importlib, sys, types\n"
        "pkg = types.ModuleType('shmbridge')\n"
        f"pkg.__path__ = [{str(REPO / 'python' / 'shmbridge')!r}]\n"
        "sys.modules['shmbridge'] = pkg\n"
        "v2 = importlib.import_module('shmbridge.layout_v2')\n"
        "assert 'shmbridge._native' not in sys.modules\n"
        f"raw = bytes.fromhex({INVALID[0]['hex']!r}).ljust(v2.MAX_HEADER_SIZE, bytes(1))\n"
        "try:\n"
        f"    v2.decode_header(raw, {INVALID[0]['mapping_size']})\n"
        "except Exception as e:\n"
        "    print(e.name, e.check)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == [INVALID[0]["error"], INVALID[0]["check"]]
