"""The relay's wire format and its checks (spec/RELAY.md §3): round trips of every kind, one bad
message per check W1-W11 (typed error, check label), hypothesis fuzzing of the decoder (any
frames: a Message or a WireError, nothing else), HELLO declarations (R-RELAY-5) and their
comparison (R-RELAY-2). No ZeroMQ needed except for the declaration helpers' imports."""

from __future__ import annotations

import contextlib
import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import shmbridge as sb
from shmbridge.errors import CorruptHeader, Error, VersionMismatch
from shmbridge.relay.wire import (
    HEADER_SIZE,
    Desc,
    Kind,
    RoundState,
    WireCorrupt,
    WireError,
    WireVersion,
    decode,
    encode_desc,
    encode_header,
)

F32 = 11  # dtype codes (PROTOCOL.md §3.2)
U8 = 3


def _req(descs: list[Desc], frames: list[bytes], **kw: int) -> list[bytes]:
    fields = {"protocol": 2, "session": 5, "epoch": 7, "relay_seq": 1, **kw}
    return [encode_header(Kind.REQ, descs=descs, **fields), *frames]


def test_r_relay_6_round_trip_of_every_kind() -> None:
    """R-RELAY-6, R-RELAY-4: each kind encodes and decodes to the same fields; one payload frame
    per descriptor, carried as is (no copy: the decoder returns the frames it was given)."""
    d = [Desc.of(F32, (2, 3)), Desc.of(U8, ())]
    data = [np.arange(6, dtype=np.float32).tobytes(), b"\x07"]
    m = decode(_req(d, data, local_seq=9))
    assert (m.kind, m.protocol, m.session, m.epoch, m.relay_seq, m.local_seq) == (
        Kind.REQ, 2, 5, 7, 1, 9
    )  # fmt: skip
    assert m.descs == tuple(d) and [bytes(f) for f in m.frames] == data
    assert m.frames[0] is data[0]
    rep = decode([encode_header(Kind.REP, protocol=1, session=1, epoch=2, relay_seq=3,
                                reply_code=18)])  # fmt: skip
    assert rep.reply_code == 18 and rep.descs == ()
    hb = decode([encode_header(Kind.HB, session=1, epoch=2, relay_seq=3, round_state=3)])
    assert hb.round_state == RoundState.DONE
    hello = decode([encode_header(Kind.HELLO, protocol=0, session=1), b""])
    assert hello.kind is Kind.HELLO and hello.protocol == 0


def _patched(frame0: bytes, offset: int, fmt: str, value: int) -> bytes:
    b = bytearray(frame0)
    struct.pack_into(fmt, b, offset, value)
    return bytes(b)


GOOD = _req([Desc.of(F32, (4,))], [bytes(16)])
BAD = [
    ("W1", []),
    ("W1", [b"SBRL"]),
    ("W2", [b"XBRL" + GOOD[0][4:], GOOD[1]]),
    ("W3", [_patched(GOOD[0], 4, "<B", 2), GOOD[1]]),
    ("W4", [_patched(GOOD[0], 5, "<B", 9), GOOD[1]]),
    ("W5", [_patched(GOOD[0], 44, "<I", 1), GOOD[1]]),
    ("W6", [_patched(GOOD[0], 6, "<B", 3), GOOD[1]]),
    ("W6", [_patched(GOOD[0], 7, "<B", 2), GOOD[1]]),  # round_state outside an HB
    ("W7", [_patched(GOOD[0], 40, "<H", 2), GOOD[1]]),  # 2 descriptors announced, 1 present
    ("W7", [encode_header(Kind.REQ, protocol=1, relay_seq=1, descs=[Desc.of(U8, ())] * 2)]),
    ("W8", [_patched(GOOD[0], 36, "<I", 3), GOOD[1]]),  # reply_code in a REQ
    ("W8", [_patched(GOOD[0], 24, "<Q", 0), GOOD[1]]),  # relay_seq 0
    ("W8", [encode_header(Kind.REP, protocol=1, relay_seq=1, reply_code=99)]),
    ("W9", [GOOD[0]]),
    ("W9", [*GOOD, b""]),
    ("W10", [_patched(GOOD[0], HEADER_SIZE, "<I", 99), GOOD[1]]),  # dtype code
    ("W10", [_patched(GOOD[0], HEADER_SIZE + 4, "<I", 9), GOOD[1]]),  # ndim
    ("W10", [_patched(GOOD[0], HEADER_SIZE + 16, "<Q", 5), GOOD[1]]),  # extent beyond ndim
    ("W10", [_patched(GOOD[0], HEADER_SIZE + 72, "<Q", 17), GOOD[1]]),  # nbytes
    ("W11", [GOOD[0], bytes(15)]),
]


@pytest.mark.parametrize(("check", "frames"), BAD, ids=[f"{c}-{i}" for i, (c, _) in enumerate(BAD)])
def test_r_relay_6_each_check_has_its_typed_error(check: str, frames: list[bytes]) -> None:
    """R-RELAY-6: W1-W11 in order; the first failing check decides a typed error of the
    PROTOCOL.md table (VERSION_MISMATCH for W3, CORRUPT_HEADER otherwise) with its label."""
    with pytest.raises(WireError) as ei:
        decode(frames)
    e = ei.value
    assert isinstance(e, Error) and e.check == check
    assert isinstance(e, WireVersion if check == "W3" else WireCorrupt)
    assert isinstance(e, VersionMismatch if check == "W3" else CorruptHeader)
    assert "spec/RELAY.md" in str(e)
    if check in ("W9", "W10", "W11"):  # the receiver can still answer that round
        assert e.head is not None and e.head.relay_seq == 1


def _check_decoder(frames: list[bytes]) -> None:
    try:
        decode(frames)
    except WireError as e:
        assert isinstance(e, Error) and e.check is not None
    # any other exception fails the test: a bad frame is never a crash (R-RELAY-6)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.binary(max_size=400), max_size=5))
def test_r_relay_6_fuzz_any_frames(frames: list[bytes]) -> None:
    """R-RELAY-6: arbitrary frames give a Message or a WireError, never anything else."""
    _check_decoder(frames)


@settings(max_examples=600, deadline=None)
@given(
    st.sampled_from([GOOD, _req([Desc.of(U8, (3, 2)), Desc.of(F32, ())], [bytes(6), bytes(4)])]),
    st.lists(st.tuples(st.integers(0, 300), st.integers(0, 255)), min_size=1, max_size=6),
    st.integers(-2, 2),
)
def test_r_relay_6_fuzz_mutated_messages(
    msg: list[bytes], flips: list[tuple[int, int]], extra: int
) -> None:
    """R-RELAY-6: valid messages with bytes overwritten (header, descriptors, sizes) and frames
    added or removed: still only Messages or WireErrors."""
    head = bytearray(msg[0])
    for off, val in flips:
        if off < len(head):
            head[off] = val
    frames = [bytes(head), *msg[1:]]
    if extra > 0:
        frames += [b"x" * extra] * extra
    elif extra < 0:
        frames = frames[:extra]
    _check_decoder(frames)


# ---------------------------------------------------------------------------- declarations


def test_r_relay_5_declarations_round_trip_and_validate(segname: str) -> None:
    """R-RELAY-5: a HELLO carries the header the segment was created with (slots and word zero),
    decoded by the local validators; a broken one is CORRUPT_HEADER or VERSION_MISMATCH."""
    pytest.importorskip("zmq")
    from shmbridge.relay.local import Declaration

    with sb.Responder.create(segname, np.float32, (4, 3)) as r:
        d = Declaration.of_handle(r)
    assert d.protocol == 1 and len(d.raw) == 512
    back = Declaration.decode(d.raw)
    assert back.v1 is not None and back.v1.declared.shape == (4, 3)
    assert back.v1.requester.pid == 0 and back.v1.word == 0
    v2 = Declaration.v2_of(
        sb.Schema(img=(np.uint8, (sb.upto(64), 3))), sb.Schema(img=sb.inplace("img"))
    )
    assert Declaration.decode(v2.raw).describe() == v2.describe()
    with pytest.raises(CorruptHeader):
        Declaration.decode(b"SHMBRIDX" + d.raw[8:])
    with pytest.raises(VersionMismatch):
        Declaration.decode(d.raw[:8] + b"\x07\x00" + d.raw[10:])
    with pytest.raises(CorruptHeader):
        Declaration.decode(v2.raw[:-1])


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=1200))
def test_r_relay_5_fuzz_declarations(raw: bytes) -> None:
    """R-RELAY-5, R-RELAY-6: any HELLO declaration is a Declaration or a shmbridge Error."""
    pytest.importorskip("zmq")
    from shmbridge.relay.local import Declaration

    with contextlib.suppress(Error):
        Declaration.decode(raw)


def test_r_relay_2_declarations_must_match() -> None:
    """R-RELAY-2: protocol, then dtype, then shape (v1); X1-X6 naming the field (v2)."""
    pytest.importorskip("zmq")
    from shmbridge.errors import DtypeMismatch, SchemaMismatch, ShapeMismatch
    from shmbridge.relay.local import Declaration

    a = Declaration.v1_of(np.float32, (4,))
    a.check_same(Declaration.v1_of(np.float32, (4,)), "near")
    with pytest.raises(DtypeMismatch):
        a.check_same(Declaration.v1_of(np.int32, (5,)), "near")
    with pytest.raises(ShapeMismatch):
        a.check_same(Declaration.v1_of(np.float32, (5,)), "near")
    s = Declaration.v2_of(sb.Schema(x=(np.float32, (4,))), sb.Schema(y=(np.int8, ())))
    with pytest.raises(VersionMismatch):
        a.check_same(s, "near")
    other = Declaration.v2_of(sb.Schema(x=(np.float32, (4,))), sb.Schema(z=(np.int8, ())))
    with pytest.raises(SchemaMismatch) as ei:
        s.check_same(other, "near")
    assert ei.value.field in ("y", "z")


def test_r_relay_7_descriptors_checked_like_a_local_receipt() -> None:
    """R-RELAY-7: v1 by R-MSG-1 (dtype first, then shape), v2 by E5-E8 naming the field."""
    pytest.importorskip("zmq")
    from shmbridge.errors import DtypeMismatch, ShapeMismatch
    from shmbridge.layout import Descriptor
    from shmbridge.relay.local import check_v1, check_v2

    decl = Descriptor(F32, (4,))
    check_v1(decl, [Desc.of(F32, (4,))], "request")
    with pytest.raises(DtypeMismatch):
        check_v1(decl, [Desc.of(U8, (5,))], "request")
    with pytest.raises(ShapeMismatch):
        check_v1(decl, [Desc.of(F32, (5,))], "request")
    from shmbridge.relay.local import Declaration

    d = Declaration.v2_of(sb.Schema(a=(np.uint8, (sb.upto(8), 2))), sb.Schema())
    assert d.v2 is not None
    check_v2(d.v2.request, [Desc.of(U8, (3, 2))], "request")
    with pytest.raises(CorruptHeader) as ei:  # E8: above the maximum
        check_v2(d.v2.request, [Desc.of(U8, (9, 2))], "request")
    assert ei.value.field == "a" and ei.value.check == "E8"
    with pytest.raises(ShapeMismatch) as ei2:  # E7: a fixed extent
        check_v2(d.v2.request, [Desc.of(U8, (3, 3))], "request")
    assert ei2.value.check == "E7"


def test_r_relay_4_desc_encoding_is_the_protocol_descriptor() -> None:
    """R-RELAY-4: a wire descriptor is the 80-byte §3.1 descriptor (the v1 encoder's bytes)."""
    from shmbridge.layout import Descriptor, encode_descriptor

    assert encode_desc(Desc.of(F32, (2, 5))) == encode_descriptor(Descriptor(F32, (2, 5)))


def test_relay_coverage_every_requirement_has_a_test() -> None:
    """spec/RELAY_COVERAGE.md is up to date and no R-RELAY id lacks a citing test."""
    import subprocess
    import sys
    from pathlib import Path

    tool = Path(__file__).resolve().parents[2] / "spec" / "tools" / "relay_coverage.py"
    r = subprocess.run([sys.executable, str(tool), "--check"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
