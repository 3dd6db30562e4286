"""Header layout (R-LAYOUT-1..7, R-DTYPE-1, R-SEG-6): the shared vectors in both directions, and
property tests (round trips over dtypes x shapes, random/mutated bytes give only typed errors)."""

from __future__ import annotations

import contextlib
import struct
from typing import Any

import pytest
from conftest import load_spec_json, shm_path
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import shmbridge
from shmbridge import errors
from shmbridge.dtype import DType
from shmbridge.layout import (
    HEADER_SIZE,
    OFF_DECLARED,
    OFF_MESSAGE,
    Descriptor,
    Header,
    Slot,
    decode_header,
    encode_header,
    header_from_fields,
    header_to_fields,
)

HEADERS = load_spec_json("vectors/headers.json")
TYPED = (errors.CorruptHeader, errors.VersionMismatch, errors.SegmentNotFound)


class ExactlyHeader(bytes):
    """512 bytes and nothing more: a decoder that reads past the header raises IndexError or
    struct.error, which the tests treat as a failure."""


def _ids(vs: list[dict[str, Any]]) -> list[str]:
    return [v["id"] for v in vs]


def test_vector_files_are_not_empty() -> None:
    """The shared header vectors exist and cover both kinds (R-LAYOUT-*)."""
    assert len(HEADERS["valid"]) >= 1 and len(HEADERS["invalid"]) >= 1
    assert HEADERS["protocol_version"] == 1


@pytest.mark.parametrize("vec", HEADERS["valid"], ids=_ids(HEADERS["valid"]))
def test_valid_header_vectors_both_directions(vec: dict[str, Any]) -> None:
    """R-LAYOUT-1..6: encoding `fields` gives exactly `hex`; decoding `hex` gives `fields`."""
    raw = bytes.fromhex(vec["hex"])
    assert len(raw) == HEADER_SIZE
    header = header_from_fields(vec["fields"])
    assert encode_header(header).hex() == vec["hex"]
    decoded = decode_header(ExactlyHeader(raw), vec["mapping_size"])
    assert header_to_fields(decoded) == vec["fields"]
    assert decoded == header


@pytest.mark.parametrize("vec", HEADERS["invalid"], ids=_ids(HEADERS["invalid"]))
def test_invalid_header_vectors(vec: dict[str, Any]) -> None:
    """R-LAYOUT-3..6, R-SEG-6 (D1): validation fails with the vector's error, reading only the 512
    header bytes."""
    raw = ExactlyHeader(bytes.fromhex(vec["hex"]))
    assert len(raw) == HEADER_SIZE
    with pytest.raises(errors.Error) as info:
        decode_header(raw, vec["mapping_size"])
    assert info.value.name == vec["error"], str(info.value)


dtypes = st.sampled_from(list(DType))
shapes = st.integers(0, 8).flatmap(
    lambda n: st.lists(st.integers(0, 6), min_size=n, max_size=n).map(tuple)
)
slots = st.builds(
    Slot,
    st.integers(0, 2**32 - 1),
    st.integers(0, 2),
    st.integers(0, 2**64 - 1),
    st.integers(0, 2**64 - 1),
)


@settings(max_examples=300)
@given(
    dt=dtypes,
    shape=shapes,
    extra=st.integers(0, 1000),
    word=st.integers(0, 2**32 - 1),
    req=slots,
    rsp=slots,
    cre=slots,
    vminor=st.integers(0, 65535),
    code=st.integers(0, 2**32 - 1),
)
def test_header_round_trip_property(
    dt: DType,
    shape: tuple[int, ...],
    extra: int,
    word: int,
    req: Slot,
    rsp: Slot,
    cre: Slot,
    vminor: int,
    code: int,
) -> None:
    """R-LAYOUT-2, R-LAYOUT-4, R-LAYOUT-5: encode/decode round trip over dtypes x shapes (ndim
    0..8, empty extents included); any version_minor is accepted."""
    d = Descriptor(int(dt), shape)
    h = Header(
        capacity=d.nbytes + extra,
        declared=d,
        message=d,
        word=word,
        requester=req,
        responder=rsp,
        creator=cre,
        version_minor=vminor,
        reply_code=code,
    )
    raw = encode_header(h)
    assert len(raw) == HEADER_SIZE
    assert decode_header(ExactlyHeader(raw), HEADER_SIZE + d.nbytes + extra) == h
    # R-LAYOUT-6: a mapping smaller than segment_size is CORRUPT_HEADER.
    with pytest.raises(errors.CorruptHeader):
        decode_header(raw, HEADER_SIZE + d.nbytes + extra - 1)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(raw=st.binary(min_size=HEADER_SIZE, max_size=HEADER_SIZE), mapping=st.integers(0, 2**64))
def test_random_bytes_only_typed_errors(raw: bytes, mapping: int) -> None:
    """R-LAYOUT-3..6: random header bytes never crash the decoder; they give a typed error (or,
    improbably, a valid header)."""
    with contextlib.suppress(TYPED):
        decode_header(ExactlyHeader(raw), mapping)


VALID_RAW = bytes.fromhex(HEADERS["valid"][0]["hex"])
VALID_MAP = HEADERS["valid"][0]["mapping_size"]


@settings(max_examples=400)
@given(
    pos=st.integers(8, HEADER_SIZE - 1),
    val=st.integers(0, 255),
    pos2=st.integers(0, HEADER_SIZE - 1),
    val2=st.integers(0, 255),
)
def test_mutated_valid_header_only_typed_errors(pos: int, val: int, pos2: int, val2: int) -> None:
    """R-LAYOUT-2..6: mutating bytes of a valid header gives a valid header or a typed error;
    mutations of reserved bytes are ignored on read (R-LAYOUT-2)."""
    b = bytearray(VALID_RAW)
    b[pos] = val
    b[pos2] = val2
    with contextlib.suppress(TYPED):
        decode_header(ExactlyHeader(bytes(b)), VALID_MAP)


@pytest.mark.parametrize("off", [0x28, 0x3F, 0xE4, 0xFF, 0x108, 0x13F, 0x15C, 0x1A0, 0x1FF])
def test_reserved_bytes_ignored_on_read(off: int) -> None:
    """R-LAYOUT-2: reserved bytes are ignored on read (D5: no vector can express this)."""
    b = bytearray(VALID_RAW)
    b[off] = 0xAB
    assert (
        decode_header(bytes(b), VALID_MAP).declared == decode_header(VALID_RAW, VALID_MAP).declared
    )


def test_descriptor_product_overflow_is_corrupt() -> None:
    """R-LAYOUT-5: a shape product that wraps 64 bits is CORRUPT_HEADER even if it wraps to
    nbytes."""
    b = bytearray(VALID_RAW)
    for off in (OFF_DECLARED, OFF_MESSAGE):
        struct.pack_into("<II8QQ", b, off, 3, 2, 2**32, 2**32, 0, 0, 0, 0, 0, 0, 0)
    with pytest.raises(errors.CorruptHeader):
        decode_header(bytes(b), VALID_MAP)


@pytest.mark.parametrize("role", ["requester", "responder"])
def test_create_byte_size_overflow_is_capacity_exceeded(role: str, segname: str) -> None:
    """R-LAYOUT-5: creating an array whose byte size (itemsize x product(shape)) overflows 64 bits
    fails with CAPACITY_EXCEEDED (as in C++, Descriptor::make) before any OS object exists; so does
    a capacity for which header_size + capacity overflows. (Was struct.error; conformance case
    capacity/overflow.)"""
    cls = shmbridge.Requester if role == "requester" else shmbridge.Responder
    with pytest.raises(errors.CapacityExceeded) as ei:
        cls.create(segname, dtype="float64", shape=(2**32, 2**32))
    assert "2^64" in str(ei.value)
    with pytest.raises(errors.CapacityExceeded):
        cls.create(segname, dtype="uint8", shape=(4,), capacity=2**64 - 1)
    assert not shm_path(segname).exists()
