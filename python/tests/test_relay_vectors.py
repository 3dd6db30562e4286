"""The shared relay wire vectors (spec/vectors/relay_wire.json, R-RELAY-6, R-RELAY-4): the Python
decoder gives every valid vector's fields and payload frames and re-encodes frame 0 to the same
bytes; every invalid vector fails with its typed error and check label. The C++ relay decodes
the same file (cpp/relay/tests/test_relay_wire.cpp): a vector one side passes and the other
fails is a wire incompatibility."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from shmbridge.errors import ErrorCode
from shmbridge.relay.wire import Desc, Kind, WireError, decode, encode_header

ROOT = Path(__file__).resolve().parents[2]
VECTORS = json.loads((ROOT / "spec" / "vectors" / "relay_wire.json").read_text())


def _frames(v: dict[str, Any]) -> list[bytes]:
    return [bytes.fromhex(f) for f in v["frames"]]


@pytest.mark.parametrize("v", VECTORS["valid"], ids=lambda v: v["id"])
def test_r_relay_6_valid_vector_decodes_to_its_fields(v: dict[str, Any]) -> None:
    """R-RELAY-6: a valid message passes W1-W11 and decodes to the vector's fields; R-RELAY-4:
    one payload frame per descriptor, its bytes unchanged."""
    frames = _frames(v)
    m = decode(frames)
    f = v["fields"]
    assert m.kind is Kind[f["kind"]]
    got = (m.protocol, m.round_state, m.session, m.epoch, m.relay_seq, m.local_seq,
           m.reply_code, m.nfields)  # fmt: skip
    want = tuple(f[k] for k in ("protocol", "round_state", "session", "epoch", "relay_seq",
                                "local_seq", "reply_code", "nfields"))  # fmt: skip
    assert got == want
    descs = [Desc(d["dtype"], tuple(d["shape"]), d["nbytes"]) for d in f["descs"]]
    assert list(m.descs) == descs
    assert all(d.ndim == j["ndim"] for d, j in zip(descs, f["descs"]))
    assert [bytes(x) for x in m.frames] == frames[1:]


@pytest.mark.parametrize("v", VECTORS["valid"], ids=lambda v: v["id"])
def test_r_relay_6_valid_vector_encodes_to_its_frame0(v: dict[str, Any]) -> None:
    """R-RELAY-6: encoding the vector's fields gives frame 0 byte for byte (§3.1)."""
    f = v["fields"]
    descs = [Desc(d["dtype"], tuple(d["shape"]), d["nbytes"]) for d in f["descs"]]
    frame0 = encode_header(
        Kind[f["kind"]], protocol=f["protocol"], round_state=f["round_state"],
        session=f["session"], epoch=f["epoch"], relay_seq=f["relay_seq"],
        local_seq=f["local_seq"], reply_code=f["reply_code"], descs=descs,
    )  # fmt: skip
    assert frame0.hex() == v["frames"][0]


@pytest.mark.parametrize("v", VECTORS["invalid"], ids=lambda v: v["id"])
def test_r_relay_6_invalid_vector_fails_its_check(v: dict[str, Any]) -> None:
    """R-RELAY-6: the first failing check of W1-W11 decides; the error is a WireError of the
    table's class, with the check label; W9-W11 keep the decoded header (the round can be
    answered)."""
    with pytest.raises(WireError) as info:
        decode(_frames(v))
    e = info.value
    assert (e.check, e.code) == (v["check"], ErrorCode[v["error"]])
    if "head" in v:
        assert e.head is not None
        h = v["head"]
        assert (int(e.head.kind), e.head.session, e.head.relay_seq) == (
            h["kind"], h["session"], h["relay_seq"]
        )  # fmt: skip
    else:
        assert e.head is None


def test_r_relay_6_vectors_cover_every_check() -> None:
    """R-RELAY-6: at least one invalid vector per check W1-W11."""
    assert {v["check"] for v in VECTORS["invalid"]} == {f"W{i}" for i in range(1, 12)}


def test_r_relay_6_vector_file_is_generated() -> None:
    """The committed file is what spec/tools/make_relay_vectors.py generates."""
    r = subprocess.run(
        [sys.executable, str(ROOT / "spec" / "tools" / "make_relay_vectors.py"), "--check"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
