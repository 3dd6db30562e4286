"""Generate spec/vectors/relay_wire.json: the relay wire vectors of spec/RELAY.md §3 (R-RELAY-6).

Valid messages are encoded with the Python relay's encoder (shmbridge.relay.wire) and carry
their decoded fields; invalid ones are built from those frames with one field broken (struct,
from the §3.1 table) and carry the error name and the label of the first check W1-W11 that
fails. Both implementations decode every vector in their tests (python/tests/test_relay_vectors.py,
cpp/relay/tests/test_relay_wire.cpp).

    python spec/tools/make_relay_vectors.py           write the file
    python spec/tools/make_relay_vectors.py --check   fail if the committed file differs

Needs the shmbridge package (numpy): run it with the project venv."""

from __future__ import annotations

import argparse
import json
import struct
import sys
from pathlib import Path
from typing import Any

from shmbridge.relay.wire import Desc, Kind, encode_header

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "spec" / "vectors" / "relay_wire.json"

F32, U8, I16, U16, C128 = 11, 3, 4, 5, 14  # PROTOCOL.md §3.2
HEAD = struct.Struct("<4sBBBBQQQIIHHI")
DESC = struct.Struct("<II8QQ")
DESC_AT = 48  # first descriptor's offset in frame 0
# Field offsets in the 48-byte header (spec/RELAY.md §3.1) and their struct formats.
AT = {
    "magic": (0, "4s"),
    "wire_version": (4, "B"),
    "kind": (5, "B"),
    "protocol": (6, "B"),
    "round_state": (7, "B"),
    "session": (8, "Q"),
    "epoch": (16, "Q"),
    "relay_seq": (24, "Q"),
    "local_seq": (32, "I"),
    "reply_code": (36, "I"),
    "nfields": (40, "H"),
    "reserved16": (42, "H"),
    "reserved32": (44, "I"),
}


def _declaration(name: str) -> bytes:
    """A HELLO declaration frame (R-RELAY-5): the first valid header of a committed vector file."""
    data = json.loads((ROOT / "spec" / "vectors" / name).read_text())
    return bytes.fromhex(data["valid"][0]["hex"])


#: The HELLO declaration frame per protocol (0: a near end without a segment sends an empty one).
DECLARATIONS = {0: b"", 1: _declaration("headers.json"), 2: _declaration("headers_v2.json")}


def _payload(d: Desc, seed: int) -> bytes:
    return bytes((seed + i * 7) & 0xFF for i in range(d.nbytes))


def _desc_json(d: Desc) -> dict[str, Any]:
    return {"dtype": d.dtype, "ndim": d.ndim, "shape": list(d.shape), "nbytes": d.nbytes}


def _valid(
    vid: str, description: str, kind: Kind, descs: list[Desc], **fields: int
) -> dict[str, Any]:
    frame0 = encode_header(kind, descs=descs, **fields)
    payload = [_payload(d, i + 1) for i, d in enumerate(descs)]
    if kind is Kind.HELLO:  # its declaration frame (R-RELAY-5)
        payload = [DECLARATIONS[fields.get("protocol", 0)]]
    decoded = {
        "kind": kind.name,
        "protocol": fields.get("protocol", 0),
        "round_state": fields.get("round_state", 0),
        "session": fields.get("session", 0),
        "epoch": fields.get("epoch", 0),
        "relay_seq": fields.get("relay_seq", 0),
        "local_seq": fields.get("local_seq", 0),
        "reply_code": fields.get("reply_code", 0),
        "nfields": len(descs),
        "descs": [_desc_json(d) for d in descs],
    }
    return {
        "id": vid,
        "requirements": ["R-RELAY-6"] + (["R-RELAY-4"] if descs else []),
        "description": description,
        "fields": decoded,
        "frames": [f.hex() for f in [frame0, *payload]],
    }


def _patch(frame0: bytes, field: str, value: Any) -> bytes:
    off, fmt = AT[field]
    out = bytearray(frame0)
    struct.pack_into("<" + fmt, out, off, value)
    return bytes(out)


def _patch_desc(frame0: bytes, k: int, **kw: Any) -> bytes:
    """Descriptor k of frame 0 with fields replaced (dtype, ndim, shape as 8 extents, nbytes)."""
    off = DESC_AT + 80 * k
    dtype, ndim, *rest = DESC.unpack_from(frame0, off)
    shape, nbytes = list(rest[:8]), rest[8]
    dtype, ndim = kw.get("dtype", dtype), kw.get("ndim", ndim)
    shape, nbytes = kw.get("shape", shape), kw.get("nbytes", nbytes)
    out = bytearray(frame0)
    DESC.pack_into(out, off, dtype, ndim, *shape, nbytes)
    return bytes(out)


def _invalid(
    vid: str,
    check: str,
    description: str,
    frames: list[bytes],
    error: str = "CORRUPT_HEADER",
    head: dict[str, int] | None = None,
) -> dict[str, Any]:
    v: dict[str, Any] = {
        "id": vid,
        "requirements": ["R-RELAY-6"],
        "description": description,
        "frames": [f.hex() for f in frames],
        "error": error,
        "check": check,
    }
    if head is not None:
        # W9-W11: the header passed W1-W8, so a receiver can answer that round (R-RELAY-6).
        v["head"] = head
    return v


def build() -> dict[str, Any]:
    ids = {"session": 0x1122334455667788, "epoch": 0x0102030405060708}
    v1d = [Desc.of(F32, (2, 3))]
    v2d = [Desc.of(F32, (2, 3)), Desc.of(U8, ()), Desc.of(I16, (0, 4))]
    valid = [
        _valid(
            "RW-HELLO-NEAR-NO-SEGMENT",
            "near end's first HELLO: no segment yet (protocol 0, epoch 0, empty declaration frame)",
            Kind.HELLO,
            [],
            session=ids["session"],
        ),
        _valid(
            "RW-HELLO-V1",
            "far end's HELLO, protocol 1: its 512-byte v1 header "
            "(spec/vectors/headers.json valid[0])",
            Kind.HELLO,
            [],
            protocol=1,
            **ids,
        ),
        _valid(
            "RW-HELLO-V2",
            "far end's HELLO, protocol 2: its v2 header (spec/vectors/headers_v2.json valid[0])",
            Kind.HELLO,
            [],
            protocol=2,
            **ids,
        ),
        _valid(
            "RW-REQ-V1",
            "v1 REQ: one float32 (2, 3) descriptor and its 24 payload bytes",
            Kind.REQ,
            v1d,
            protocol=1,
            relay_seq=1,
            local_seq=5,
            **ids,
        ),
        _valid(
            "RW-REQ-V1-SCALAR",
            "v1 REQ of a 0-d complex128 (ndim 0: one element)",
            Kind.REQ,
            [Desc.of(C128, ())],
            protocol=1,
            relay_seq=2**64 - 1,
            local_seq=2**32 - 1,
            **ids,
        ),
        _valid(
            "RW-REQ-V2",
            "v2 REQ with three fields in schema order: float32 (2, 3), a 0-d "
            "uint8, an empty int16 (0, 4) (its payload frame has 0 bytes)",
            Kind.REQ,
            v2d,
            protocol=2,
            relay_seq=7,
            local_seq=9,
            **ids,
        ),
        _valid(
            "RW-REQ-V2-ZERO-EXTENT",
            "v2 REQ of an int16 (0, 2^40, 2^40): the exact product is 0 (an extent 0), although "
            "the other extents' product exceeds 2^64 (E4 is exact)",
            Kind.REQ,
            [Desc.of(I16, (0, 2**40, 2**40))],
            protocol=2,
            relay_seq=8,
            **ids,
        ),
        _valid(
            "RW-REQ-V2-NO-FIELDS",
            "v2 REQ of a schema without fields: header only",
            Kind.REQ,
            [],
            protocol=2,
            relay_seq=3,
            **ids,
        ),
        _valid(
            "RW-REP-V1-OK",
            "v1 REP, reply_code 0: one descriptor and its payload",
            Kind.REP,
            v1d,
            protocol=1,
            relay_seq=1,
            local_seq=5,
            **ids,
        ),
        _valid(
            "RW-REP-V2-OK",
            "v2 REP, reply_code 0, two reply fields",
            Kind.REP,
            [Desc.of(U16, (4,)), Desc.of(F32, (1, 1))],
            protocol=2,
            relay_seq=7,
            **ids,
        ),
        _valid(
            "RW-REP-ERROR-HANDLER-FAILED",
            "REP carrying HANDLER_FAILED (18): no descriptor, no payload frame (R-RELAY-12)",
            Kind.REP,
            [],
            protocol=1,
            relay_seq=4,
            reply_code=18,
            **ids,
        ),
        _valid(
            "RW-REP-ERROR-PEER-GONE",
            "v2 REP carrying PEER_GONE (7)",
            Kind.REP,
            [],
            protocol=2,
            relay_seq=4,
            reply_code=7,
            **ids,
        ),
        _valid(
            "RW-HB-NEAR", "near end's HB with no round in flight (relay_seq 0)", Kind.HB, [], **ids
        ),
    ]
    for state, name in ((1, "UNKNOWN"), (2, "EXECUTING"), (3, "DONE")):
        valid.append(
            _valid(
                f"RW-HB-FAR-{name}",
                f"far end's HB answer: round_state {state} {name} of "
                "relay_seq 12 (R-RELAY-13, R-RELAY-15)",
                Kind.HB,
                [],
                relay_seq=12,
                round_state=state,
                **ids,
            )
        )
    for v in valid:
        if v["id"].startswith("RW-HB-FAR"):
            v["requirements"] += ["R-RELAY-13", "R-RELAY-15"]

    by_id = {v["id"]: [bytes.fromhex(f) for f in v["frames"]] for v in valid}
    req1, req2 = by_id["RW-REQ-V1"], by_id["RW-REQ-V2"]
    hb = by_id["RW-HB-NEAR"][0]
    hello_near = by_id["RW-HELLO-NEAR-NO-SEGMENT"]
    rep_err = by_id["RW-REP-ERROR-HANDLER-FAILED"][0]
    rep_ok = by_id["RW-REP-V1-OK"]
    h1 = {"kind": 2, "session": ids["session"], "relay_seq": 1}
    h2 = {"kind": 2, "session": ids["session"], "relay_seq": 7}
    r0, p1, p2 = req1[0], req1[1:], req2[1:]
    f0 = req2[0]
    invalid = [
        _invalid("RW-W1-NO-FRAME", "W1", "a message of no frame at all", []),
        _invalid("RW-W1-EMPTY", "W1", "frame 0 is empty", [b""]),
        _invalid("RW-W1-SHORT", "W1", "frame 0 has 47 bytes", [hb[:47]]),
        _invalid("RW-W2-MAGIC", "W2", "magic SBRX", [_patch(hb, "magic", b"SBRX")]),
        _invalid(
            "RW-W2-BEFORE-W3",
            "W2",
            "bad magic and bad wire_version: W2 is checked first",
            [_patch(_patch(hb, "magic", b"sbrl"), "wire_version", 9)],
        ),
        _invalid(
            "RW-W3-VERSION-2",
            "W3",
            "wire_version 2",
            [_patch(hb, "wire_version", 2)],
            "VERSION_MISMATCH",
        ),
        _invalid(
            "RW-W3-VERSION-0",
            "W3",
            "wire_version 0 with kind 9: W3 before W4",
            [_patch(_patch(hb, "wire_version", 0), "kind", 9)],
            "VERSION_MISMATCH",
        ),
        _invalid("RW-W4-KIND-0", "W4", "kind 0", [_patch(hb, "kind", 0)]),
        _invalid("RW-W4-KIND-5", "W4", "kind 5", [_patch(hb, "kind", 5)]),
        _invalid(
            "RW-W5-RESERVED16", "W5", "the u16 at offset 42 is 1", [_patch(hb, "reserved16", 1)]
        ),
        _invalid(
            "RW-W5-RESERVED32",
            "W5",
            "the u32 at offset 44 is 0x80000000",
            [_patch(hb, "reserved32", 0x80000000)],
        ),
        _invalid(
            "RW-W6-REQ-PROTOCOL-0", "W6", "protocol 0 in a REQ", [_patch(r0, "protocol", 0), *p1]
        ),
        _invalid(
            "RW-W6-REQ-PROTOCOL-3", "W6", "protocol 3 in a REQ", [_patch(r0, "protocol", 3), *p1]
        ),
        _invalid(
            "RW-W6-HELLO-PROTOCOL-3",
            "W6",
            "protocol 3 in a HELLO",
            [_patch(hello_near[0], "protocol", 3), b""],
        ),
        _invalid("RW-W6-HB-PROTOCOL-1", "W6", "protocol 1 in an HB", [_patch(hb, "protocol", 1)]),
        _invalid(
            "RW-W6-REQ-ROUND-STATE",
            "W6",
            "round_state 1 in a REQ (non-zero only in HB)",
            [_patch(r0, "round_state", 1), *p1],
        ),
        _invalid(
            "RW-W6-HB-ROUND-STATE-4", "W6", "round_state 4 in an HB", [_patch(hb, "round_state", 4)]
        ),
        _invalid(
            "RW-W7-V1-TWO-FIELDS",
            "W7",
            "a v1 REQ with nfields 2 (and frame 0 sized for 2)",
            [_patch(r0 + r0[48:], "nfields", 2), *p1, *p1],
        ),
        _invalid(
            "RW-W7-V2-17-FIELDS",
            "W7",
            "a v2 REQ with nfields 17",
            [_patch(f0[:48] + f0[48:128] * 17, "nfields", 17)]
            + [_payload(Desc.of(F32, (2, 3)), 0)] * 17,
        ),
        _invalid(
            "RW-W7-FRAME0-LONG",
            "W7",
            "frame 0 has one byte more than 48 + 80 x nfields",
            [r0 + b"\x00", *p1],
        ),
        _invalid(
            "RW-W7-FRAME0-SHORT",
            "W7",
            "frame 0 lacks the last byte of its descriptor",
            [r0[:-1], *p1],
        ),
        _invalid(
            "RW-W7-HB-FIELDS",
            "W7",
            "an HB with one descriptor",
            [_patch(hb, "nfields", 1) + r0[48:]],
        ),
        _invalid(
            "RW-W7-HELLO-FIELDS",
            "W7",
            "a HELLO with one descriptor",
            [_patch(hello_near[0], "nfields", 1) + r0[48:], b""],
        ),
        _invalid(
            "RW-W7-REP-ERROR-FIELDS",
            "W7",
            "an error REP (reply_code 18) with a descriptor",
            [_patch(rep_err, "nfields", 1) + r0[48:], *p1],
        ),
        _invalid(
            "RW-W8-REQ-REPLY-CODE",
            "W8",
            "reply_code 7 in a REQ",
            [_patch(r0, "reply_code", 7), *p1],
        ),
        _invalid(
            "RW-W8-HB-REPLY-CODE", "W8", "reply_code 10 in an HB", [_patch(hb, "reply_code", 10)]
        ),
        _invalid(
            "RW-W8-REP-UNKNOWN-CODE",
            "W8",
            "reply_code 20 in a REP (codes are 1..19)",
            [_patch(rep_err, "reply_code", 20)],
        ),
        _invalid(
            "RW-W8-REQ-SEQ-0", "W8", "relay_seq 0 in a REQ", [_patch(r0, "relay_seq", 0), *p1]
        ),
        _invalid(
            "RW-W8-REP-SEQ-0",
            "W8",
            "relay_seq 0 in a REP",
            [_patch(rep_ok[0], "relay_seq", 0), *rep_ok[1:]],
        ),
        _invalid(
            "RW-W9-REQ-MISSING-FRAME",
            "W9",
            "a v2 REQ of 3 descriptors with 2 payload frames",
            [f0, *p2[:2]],
            head=h2,
        ),
        _invalid(
            "RW-W9-REQ-EXTRA-FRAME", "W9", "a v1 REQ with 2 payload frames", [r0, *p1, *p1], head=h1
        ),
        _invalid(
            "RW-W9-HELLO-ONE-FRAME",
            "W9",
            "a HELLO without its declaration frame",
            hello_near[:1],
            head={"kind": 1, "session": ids["session"], "relay_seq": 0},
        ),
        _invalid(
            "RW-W9-HB-TWO-FRAMES",
            "W9",
            "an HB with a frame after frame 0",
            [hb, b""],
            head={"kind": 4, "session": ids["session"], "relay_seq": 0},
        ),
        _invalid(
            "RW-W9-BEFORE-W10",
            "W9",
            "a bad descriptor and a missing frame: W9 first",
            [_patch_desc(r0, 0, dtype=0)],
            head=h1,
        ),
        _invalid(
            "RW-W10-DTYPE-0",
            "W10",
            "descriptor dtype code 0",
            [_patch_desc(r0, 0, dtype=0), *p1],
            head=h1,
        ),
        _invalid(
            "RW-W10-DTYPE-15",
            "W10",
            "descriptor dtype code 15 (codes are 1..14)",
            [_patch_desc(r0, 0, dtype=15), *p1],
            head=h1,
        ),
        _invalid(
            "RW-W10-NDIM-9", "W10", "descriptor ndim 9", [_patch_desc(r0, 0, ndim=9), *p1], head=h1
        ),
        _invalid(
            "RW-W10-EXTENT-BEYOND-NDIM",
            "W10",
            "shape[2] = 1 with ndim 2",
            [_patch_desc(r0, 0, shape=[2, 3, 1, 0, 0, 0, 0, 0]), *p1],
            head=h1,
        ),
        _invalid(
            "RW-W10-NBYTES",
            "W10",
            "nbytes 25 for float32 (2, 3)",
            [_patch_desc(r0, 0, nbytes=25), *p1],
            head=h1,
        ),
        _invalid(
            "RW-W10-OVERFLOW",
            "W10",
            "float32 (2^32, 2^32) with nbytes 0: the product "
            "4 x 2^64 wraps to 0 in 64 bits but never matches (E4)",
            [_patch_desc(r0, 0, shape=[2**32, 2**32, 0, 0, 0, 0, 0, 0], nbytes=0), b""],
            head=h1,
        ),
        _invalid(
            "RW-W10-SECOND-DESC",
            "W10",
            "v2: descriptor 1 (of 3) has ndim 9; all "
            "descriptors pass W10 before any payload frame is measured (W11)",
            [_patch_desc(f0, 1, ndim=9), b"", *p2[1:]],
            head=h2,
        ),
        _invalid(
            "RW-W11-SHORT",
            "W11",
            "payload frame of 23 bytes for nbytes 24",
            [r0, p1[0][:-1]],
            head=h1,
        ),
        _invalid(
            "RW-W11-LONG",
            "W11",
            "payload frame of 25 bytes for nbytes 24",
            [r0, p1[0] + b"\x00"],
            head=h1,
        ),
        _invalid(
            "RW-W11-EMPTY-FIELD",
            "W11",
            "v2: the empty int16 (0, 4) field's frame has 1 byte",
            [f0, p2[0], p2[1], b"\x00"],
            head=h2,
        ),
        _invalid(
            "RW-W11-REP",
            "W11",
            "a REP (reply_code 0) whose payload frame is short",
            [rep_ok[0], rep_ok[1][:4]],
            head={"kind": 3, "session": ids["session"], "relay_seq": 1},
        ),
    ]
    return {
        "generator": "spec/tools/make_relay_vectors.py",
        "wire_version": 1,
        "spec": "spec/RELAY.md §3 (R-RELAY-4, R-RELAY-6)",
        "valid": valid,
        "invalid": invalid,
    }


def render() -> str:
    return json.dumps(build(), indent=1) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="fail if the committed file differs")
    args = ap.parse_args()
    text = render()
    if args.check:
        if not OUT.exists() or OUT.read_text() != text:
            print(f"{OUT} is not what {__file__} generates: run it and commit", file=sys.stderr)
            return 1
        print(f"{OUT.name}: up to date")
        return 0
    OUT.write_text(text)
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
