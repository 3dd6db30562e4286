"""Hypothesis fuzz of the Python header parser (shmbridge.layout), seeded from
spec/vectors/headers.json: every vector, mutated (byte flips, field overwrites with boundary
values, truncation of the mapping), must give exactly what the reference decoder of
spec/tools/gen_vectors.py gives (the same error name, or the same fields), only typed errors
(CorruptHeader / VersionMismatch / SegmentNotFound), and never a read beyond the 512 header bytes.

The number of examples per property is 500 by default (HYPOTHESIS_FUZZ_EXAMPLES to change it;
ci/fuzz.sh --long does not run these, pytest does).
"""

from __future__ import annotations

import importlib.util
import os
import struct
import sys
from typing import Any

from conftest import REPO, load_spec_json
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from shmbridge import errors
from shmbridge.layout import HEADER_SIZE, decode_header, header_to_fields

HEADERS = load_spec_json("vectors/headers.json")
SEEDS: list[tuple[bytes, int]] = [
    (bytes.fromhex(v["hex"]), v["mapping_size"]) for v in HEADERS["valid"] + HEADERS["invalid"]
]
EXAMPLES = int(os.environ.get("HYPOTHESIS_FUZZ_EXAMPLES", "500"))
TYPED = (errors.CorruptHeader, errors.VersionMismatch, errors.SegmentNotFound)

# Field offsets and widths (PROTOCOL.md §3) for targeted overwrites.
FIELDS = [
    (0x08, 2), (0x0A, 2), (0x0C, 4), (0x10, 8), (0x18, 8), (0x20, 4), (0x24, 4),
    (0x40, 4), (0x44, 4), (0x48, 8), (0x50, 8), (0x58, 8), (0x60, 8), (0x88, 8),
    (0x90, 4), (0x94, 4), (0x98, 8), (0xA0, 8), (0xD8, 8),
    (0xE0, 4), (0x100, 4), (0x140, 4), (0x144, 4), (0x180, 4),
]  # fmt: skip
BOUNDARY = [0, 1, 2, 7, 8, 9, 15, 255, 256, 511, 512, 513, 1 << 31, 1 << 32, 1 << 62, 1 << 63]


def _reference() -> Any:
    path = REPO / "spec" / "tools" / "gen_vectors.py"
    spec = importlib.util.spec_from_file_location("gen_vectors_ref", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["gen_vectors_ref"] = mod
    spec.loader.exec_module(mod)
    return mod


REF = _reference()


class ExactlyHeader(bytes):
    """512 bytes: reading past them raises (IndexError / struct.error), which is a failure."""


def check(raw: bytes, mapping: int) -> None:
    assert len(raw) == HEADER_SIZE
    try:
        want: Any = REF.decode(raw, mapping)
        want_err = None
    except REF.HeaderError as e:
        want, want_err = None, e.name
    try:
        got = decode_header(ExactlyHeader(raw), mapping)
    except TYPED as e:
        assert e.name == want_err, f"Python {e.name} ({e}), reference {want_err or 'valid'}"
        return
    assert want_err is None, f"Python accepted a header the reference rejects ({want_err})"
    assert header_to_fields(got) == want


seed = st.sampled_from(SEEDS)
mapping_sizes = st.one_of(
    st.just(None),  # keep the vector's
    st.integers(0, 600),
    st.integers(0, (1 << 64) - 1),
    st.sampled_from([511, 512, 513, 4096, 1049087, 1049088, 1049089]),
)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    s=seed,
    flips=st.lists(st.tuples(st.integers(0, HEADER_SIZE - 1), st.integers(0, 255)), max_size=6),
    mapping=mapping_sizes,
)
@example(s=SEEDS[0], flips=[], mapping=None)
def test_mutated_vectors_agree_with_reference(
    s: tuple[bytes, int], flips: list[tuple[int, int]], mapping: int | None
) -> None:
    raw = bytearray(s[0])
    for pos, val in flips:
        raw[pos] = val
    check(bytes(raw), s[1] if mapping is None else mapping)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    s=seed,
    writes=st.lists(
        st.tuples(
            st.sampled_from(FIELDS),
            st.one_of(st.sampled_from(BOUNDARY), st.integers(0, (1 << 64) - 1)),
            st.integers(-2, 2),
        ),
        min_size=1,
        max_size=4,
    ),
    mapping=mapping_sizes,
)
def test_field_overwrites_agree_with_reference(
    s: tuple[bytes, int], writes: list[tuple[tuple[int, int], int, int]], mapping: int | None
) -> None:
    """Boundary values (±2) written into the header's fields: sizes, ndim, extents, nbytes."""
    raw = bytearray(s[0])
    for (off, width), value, delta in writes:
        v = (value + delta) % (1 << (8 * width))
        raw[off : off + width] = v.to_bytes(width, "little")
    check(bytes(raw), s[1] if mapping is None else mapping)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    dtype=st.integers(0, 16),
    ndim=st.integers(0, 10),
    shape=st.lists(
        st.one_of(st.integers(0, 4), st.sampled_from([1 << 32, 1 << 62, (1 << 64) - 1])),
        min_size=8,
        max_size=8,
    ),
    nbytes=st.one_of(st.none(), st.integers(0, (1 << 64) - 1)),
    capacity=st.sampled_from([0, 64, 1 << 20, (1 << 64) - 513]),
)
def test_descriptor_fuzz_agrees_with_reference(
    dtype: int, ndim: int, shape: list[int], nbytes: int | None, capacity: int
) -> None:
    """Arbitrary declared descriptors (overflowing products, zero extents after an overflowing
    prefix, ndim > 8, unknown dtypes) in an otherwise valid header."""
    raw = bytearray(SEEDS[0][0])
    struct.pack_into("<QQ", raw, 0x10, capacity, capacity + HEADER_SIZE)
    if nbytes is None:  # the exact product, so that the other checks are reached
        n = REF.DTYPES.get(dtype, ("", 1))[1]
        for e in shape[: min(ndim, 8)]:
            n *= e
        nbytes = n % (1 << 64)
    struct.pack_into("<II8QQ", raw, 0x40, dtype, ndim, *shape, nbytes)
    raw[0x90:0xE0] = raw[0x40:0x90]
    check(bytes(raw), capacity + HEADER_SIZE)


def test_every_vector_is_a_seed() -> None:
    """The seeds are exactly the shared vectors (both kinds)."""
    assert len(SEEDS) == len(HEADERS["valid"]) + len(HEADERS["invalid"]) >= 50
    for raw, mapping in SEEDS:
        check(raw, mapping)
