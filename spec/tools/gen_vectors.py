#!/usr/bin/env python3
"""Reference encoder and transition model for shmbridge protocol v1.

Written only from spec/PROTOCOL.md (standard library only: struct, json).
Generates spec/vectors/headers.json, spec/vectors/sequences.json and spec/vectors/procstat.json in
the format of spec/vectors/README.md.

    python3 spec/tools/gen_vectors.py           # (re)write the vector files
    python3 spec/tools/gen_vectors.py --check   # exit 1 if the committed files differ

Sequences: every step carries a hand-derived expected `result` (reasoned from PROTOCOL.md
§5, R-WAIT-5, R-TIME-2, R-STATE-10, R-LIVE-3, R-REC-*, R-CLOSE-*). The small transition model
below independently computes every step; the generator refuses to write a vector where the two
disagree, or where the model finds the spec ambiguous for that step (see README "Decisions").
"""
from __future__ import annotations

import argparse
import json
import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
SPEC = os.path.dirname(HERE)
VEC = os.path.join(SPEC, "vectors")

# ---------------------------------------------------------------- §3 layout (R-LAYOUT-*)
MAGIC = b"SHMBRIDG"                      # R-LAYOUT-3
HEADER_SIZE = 512                        # R-LAYOUT-2
MAX_DIMS = 8
U64 = (1 << 64) - 1

DTYPES = {  # code: (name, itemsize)   §3.2, R-DTYPE-1
    1: ("bool", 1), 2: ("int8", 1), 3: ("uint8", 1), 4: ("int16", 2), 5: ("uint16", 2),
    6: ("int32", 4), 7: ("uint32", 4), 8: ("int64", 8), 9: ("uint64", 8), 10: ("float16", 2),
    11: ("float32", 4), 12: ("float64", 8), 13: ("complex64", 8), 14: ("complex128", 16),
}
DTYPE_CODE = {name: code for code, (name, _) in DTYPES.items()}

OFF = {  # header table, §3
    "magic": 0x000, "version_major": 0x008, "version_minor": 0x00A, "header_size": 0x00C,
    "capacity": 0x010, "segment_size": 0x018, "flags": 0x020, "max_dims": 0x024,
    "declared": 0x040, "message": 0x090, "reply_code": 0x0E0, "word": 0x100, "waiters": 0x104,
    "requester": 0x140, "responder": 0x160, "creator": 0x180,
}
DESC = struct.Struct("<II8QQ")    # §3.1: dtype, ndim, shape[8], nbytes  (80 bytes)
SLOT = struct.Struct("<IIQQ8x")   # §3.3: pid, state, start_time, incarnation, reserved (32 bytes)
assert DESC.size == 80 and SLOT.size == 32


def nbytes_of(dtype: int, shape) -> int:
    n = DTYPES[dtype][1]
    for e in shape:
        n *= e
    return n


def desc(dtype: int, shape, nbytes=None) -> dict:
    shape = list(shape)
    return {"dtype": dtype, "ndim": len(shape), "shape": shape,
            "nbytes": nbytes_of(dtype, shape) if nbytes is None else nbytes}


def slot(pid=0, state=0, start_time=0, incarnation=0) -> dict:
    return {"pid": pid, "state": state, "start_time": start_time, "incarnation": incarnation}


def fields_for(dtype: int, shape, capacity=None, **over) -> dict:
    d = desc(dtype, shape)
    cap = d["nbytes"] if capacity is None else capacity
    f = {
        "magic": "SHMBRIDG", "version_major": 1, "version_minor": 0, "header_size": HEADER_SIZE,
        "capacity": cap, "segment_size": HEADER_SIZE + cap, "flags": 0, "max_dims": MAX_DIMS,
        "declared": d, "message": dict(d), "reply_code": 0, "word": 0, "waiters": 0,
        "requester": slot(), "responder": slot(), "creator": slot(),
    }
    f.update(over)
    return f


def pack_desc(buf: bytearray, off: int, d: dict, raw_shape=None) -> None:
    shape = list(raw_shape if raw_shape is not None else d["shape"])
    shape += [0] * (8 - len(shape))
    DESC.pack_into(buf, off, d["dtype"], d["ndim"], *shape[:8], d["nbytes"])


def encode(f: dict, raw_shapes=None) -> bytes:
    """Encode header fields into exactly 512 bytes; reserved bytes are zero (R-LAYOUT-2)."""
    raw_shapes = raw_shapes or {}
    b = bytearray(HEADER_SIZE)
    magic = f["magic"].encode("latin-1") if isinstance(f["magic"], str) else bytes(f["magic"])
    struct.pack_into("<8s", b, OFF["magic"], magic)
    struct.pack_into("<HHI", b, OFF["version_major"], f["version_major"], f["version_minor"],
                     f["header_size"])
    struct.pack_into("<QQ", b, OFF["capacity"], f["capacity"], f["segment_size"])
    struct.pack_into("<II", b, OFF["flags"], f["flags"], f["max_dims"])
    pack_desc(b, OFF["declared"], f["declared"], raw_shapes.get("declared"))
    pack_desc(b, OFF["message"], f["message"], raw_shapes.get("message"))
    struct.pack_into("<I", b, OFF["reply_code"], f["reply_code"])
    struct.pack_into("<II", b, OFF["word"], f["word"], f["waiters"])
    for role in ("requester", "responder", "creator"):
        s = f[role]
        SLOT.pack_into(b, OFF[role], s["pid"], s["state"], s["start_time"], s["incarnation"])
    return bytes(b)


class HeaderError(Exception):
    def __init__(self, name: str, why: str):
        super().__init__(f"{name}: {why}")
        self.name = name


def _check_desc(raw: bytes, off: int, capacity: int, which: str) -> dict:
    dtype, ndim, *rest = DESC.unpack_from(raw, off)
    shape8, nbytes = rest[:8], rest[8]
    if dtype not in DTYPES:
        raise HeaderError("CORRUPT_HEADER", f"{which}.dtype {dtype} unknown")
    if ndim > MAX_DIMS:
        raise HeaderError("CORRUPT_HEADER", f"{which}.ndim {ndim} > 8")
    if any(shape8[ndim:]):
        raise HeaderError("CORRUPT_HEADER", f"{which}: unused shape entries non-zero")
    n = DTYPES[dtype][1]
    for e in shape8[:ndim]:
        n *= e                                   # exact (Python ints): overflow check below
    if n > U64:
        raise HeaderError("CORRUPT_HEADER", f"{which}: product(shape)*itemsize overflows 64 bits")
    if n != nbytes:
        raise HeaderError("CORRUPT_HEADER", f"{which}.nbytes {nbytes} != {n}")
    if nbytes > capacity:
        raise HeaderError("CORRUPT_HEADER", f"{which}.nbytes {nbytes} > capacity {capacity}")
    return {"dtype": dtype, "ndim": ndim, "shape": list(shape8[:ndim]), "nbytes": nbytes}


def decode(raw: bytes, mapping_size: int) -> dict:
    """Validate and decode a header (reads only the 512 header bytes).

    Order (README "Decisions"): magic (all-zero -> initialising), version_major, then
    header fields (R-LAYOUT-6), then both descriptors (R-LAYOUT-5). The word is not validated
    here (R-STATE-1/8 are the transition function's job)."""
    assert len(raw) == HEADER_SIZE
    if mapping_size < HEADER_SIZE:                # D16: the object cannot even hold the header
        raise HeaderError("CORRUPT_HEADER", f"mapping {mapping_size} < header_size 512")
    magic = raw[0:8]
    if magic == bytes(8):
        raise HeaderError("SEGMENT_NOT_FOUND", "magic is zero: still initialising (R-SEG-6)")
    if magic != MAGIC:
        raise HeaderError("CORRUPT_HEADER", f"magic {magic!r}")
    vmaj, vmin, hsize = struct.unpack_from("<HHI", raw, 8)
    if vmaj != 1:
        raise HeaderError("VERSION_MISMATCH", f"version_major {vmaj} != 1")
    cap, seg = struct.unpack_from("<QQ", raw, 0x10)
    flags, maxd = struct.unpack_from("<II", raw, 0x20)
    if hsize != HEADER_SIZE:
        raise HeaderError("CORRUPT_HEADER", f"header_size {hsize}")
    if maxd != MAX_DIMS:
        raise HeaderError("CORRUPT_HEADER", f"max_dims {maxd}")
    if flags != 0:
        raise HeaderError("CORRUPT_HEADER", f"flags {flags:#x}")
    if seg != hsize + cap:                       # exact: no 64-bit wrap
        raise HeaderError("CORRUPT_HEADER", f"segment_size {seg} != {hsize}+{cap}")
    if mapping_size < seg:
        raise HeaderError("CORRUPT_HEADER", f"mapping {mapping_size} < segment_size {seg}")
    declared = _check_desc(raw, 0x40, cap, "declared")
    message = _check_desc(raw, 0x90, cap, "message")
    (reply_code,) = struct.unpack_from("<I", raw, 0xE0)
    word, waiters = struct.unpack_from("<II", raw, 0x100)
    out = {"magic": "SHMBRIDG", "version_major": vmaj, "version_minor": vmin, "header_size": hsize,
           "capacity": cap, "segment_size": seg, "flags": flags, "max_dims": maxd,
           "declared": declared, "message": message, "reply_code": reply_code, "word": word,
           "waiters": waiters}
    for role in ("requester", "responder", "creator"):
        pid, st, t0, inc = SLOT.unpack_from(raw, OFF[role])
        out[role] = slot(pid, st, t0, inc)
    return out


# ---------------------------------------------------------------- headers.json
MiB = 1 << 20
DEMO = dict(dtype=11, shape=[512, 512])


def valid_vectors():
    V = []

    def add(vid, reqs, descr, f, mapping=None):
        V.append({"id": vid, "requirements": reqs, "description": descr, "fields": f,
                  "mapping_size": f["segment_size"] if mapping is None else mapping})

    add("H-VALID-F32-512x512", ["R-LAYOUT-2", "R-LAYOUT-5"],
        "the original demo: float32 (512, 512), fresh segment", fields_for(11, [512, 512]))
    add("H-VALID-SCALAR-F64", ["R-LAYOUT-5"],
        "ndim 0: a float64 scalar (one element, nbytes 8), capacity exactly nbytes",
        fields_for(12, []))
    add("H-VALID-NDIM8-U8", ["R-LAYOUT-5"],
        "ndim 8 (max_dims): uint8 (2,1,3,1,2,1,2,2), every shape entry used",
        fields_for(3, [2, 1, 3, 1, 2, 1, 2, 2]))
    add("H-VALID-EMPTY-I32", ["R-LAYOUT-5"],
        "an empty int32 array (3, 0, 5): extent 0 is valid, nbytes 0, capacity 64",
        fields_for(6, [3, 0, 5], capacity=64))
    add("H-VALID-CAPACITY-LARGER-C128", ["R-LAYOUT-5", "R-LAYOUT-6"],
        "complex128 (10,), nbytes 160 with capacity 1 MiB (capacity > nbytes)",
        fields_for(14, [10], capacity=MiB))
    add("H-VALID-MAPPING-LARGER", ["R-LAYOUT-6"],
        "int64 (16,): the mapping is larger than segment_size (page-rounded), still valid",
        fields_for(8, [16]), mapping=4096)
    add("H-VALID-MINOR-7", ["R-LAYOUT-4"],
        "version_minor 7 is accepted (a reader MUST accept any version_minor)",
        fields_for(11, [512, 512], version_minor=7))
    word = (0x1234567 << 4) | 0x2   # REPLIED, seq 0x1234567
    add("H-VALID-ACTIVE-I16", ["R-LAYOUT-2", "R-STATE-1"],
        "a segment in use: word REPLIED seq 0x1234567, waiters 2, reply_code 7 (PEER_GONE), "
        "all three slots filled; int16 (4, 6)",
        fields_for(4, [4, 6], capacity=4096, word=word, waiters=2, reply_code=7,
                   requester=slot(4242, 1, 123456789, 3),
                   responder=slot(0, 2, 987654321, 5),
                   creator=slot(4242, 1, 123456789, 1)))
    add("H-VALID-SEQ-MAX-U16", ["R-STATE-1"],
        "word TAKEN with seq 2^28-1 (0xfffffff4); uint16 (7,)",
        fields_for(5, [7], capacity=64, word=0xFFFFFFF4, waiters=1,
                   requester=slot(0xFFFFFFFF, 1, U64, U64), responder=slot(1, 1, 1, 1),
                   creator=slot(0xFFFFFFFF, 1, U64, U64)))
    add("H-VALID-LARGE-SHAPE-U32", ["R-LAYOUT-5"],
        "uint32 (2^30, 0): product would be large but an extent is 0, nbytes 0",
        fields_for(7, [1 << 30, 0], capacity=0))
    d0 = desc(3, [1 << 32, 1 << 32, 0])
    add("H-VALID-ZERO-EXTENT-AFTER-OVERFLOW", ["R-LAYOUT-5"],
        "uint8 (2^32, 2^32, 0): the exact product is 0 although the first two extents alone "
        "overflow 64 bits; a validator must not reject it on an intermediate product",
        fields_for(3, [1 << 32, 1 << 32, 0], capacity=0, message=d0))
    covered = {v["fields"]["declared"]["dtype"] for v in V}
    for code, (name, _) in sorted(DTYPES.items()):
        if code not in covered:
            add(f"H-VALID-DTYPE-{name.upper()}", ["R-DTYPE-1", "R-LAYOUT-5"],
                f"dtype code {code} ({name}) with shape (3, 5)", fields_for(code, [3, 5]))
    return V


def invalid_vectors():
    V = []
    base = fields_for(11, [512, 512])
    MAP = base["segment_size"]

    def add(vid, reqs, descr, err, f=None, mapping=MAP, raw=None, raw_shapes=None):
        h = raw if raw is not None else encode(f, raw_shapes)
        V.append({"id": vid, "requirements": reqs, "description": descr, "hex": h.hex(),
                  "mapping_size": mapping, "error": err})

    def mod(**kw):
        f = json.loads(json.dumps(base))
        f.update(kw)
        return f

    add("H-BAD-MAGIC", ["R-LAYOUT-3"], "magic is SHMBRIDX instead of SHMBRIDG",
        "CORRUPT_HEADER", mod(magic="SHMBRIDX"))
    add("H-BAD-MAGIC-BYTESWAPPED", ["R-LAYOUT-3", "R-LAYOUT-1"],
        "magic stored byte-reversed (GDIRBMHS, as if written as a big-endian u64)",
        "CORRUPT_HEADER", mod(magic="GDIRBMHS"))
    add("H-INIT-ZERO-MAGIC", ["R-SEG-6"],
        "magic all-zero, every other field written: still initialising; with attach timeout 0 "
        "the attach fails with SEGMENT_NOT_FOUND", "SEGMENT_NOT_FOUND", mod(magic=bytes(8)))
    add("H-INIT-ZERO-HEADER", ["R-SEG-6"],
        "all 512 header bytes zero (object just sized, nothing written): still initialising, "
        "SEGMENT_NOT_FOUND with timeout 0 (no other field may be checked first)",
        "SEGMENT_NOT_FOUND", raw=bytes(HEADER_SIZE))
    add("H-BAD-VERSION-MAJOR-2", ["R-LAYOUT-4"], "version_major 2", "VERSION_MISMATCH",
        mod(version_major=2))
    add("H-BAD-VERSION-MAJOR-0", ["R-LAYOUT-4"], "version_major 0", "VERSION_MISMATCH",
        mod(version_major=0))
    add("H-BAD-VERSION-BYTESWAPPED", ["R-LAYOUT-4", "R-LAYOUT-1"],
        "version_major 0x0100 (1 written big-endian)", "VERSION_MISMATCH",
        mod(version_major=0x0100))
    add("H-BAD-VERSION-BEFORE-LAYOUT", ["R-LAYOUT-4", "R-STALE-2"],
        "version_major 2 with header_size 1024 and max_dims 16 (a future layout): the version is "
        "checked before any other field", "VERSION_MISMATCH",
        mod(version_major=2, header_size=1024, max_dims=16))
    add("H-BAD-MAGIC-BEFORE-VERSION", ["R-LAYOUT-3"],
        "bad magic and version_major 2: magic is checked first", "CORRUPT_HEADER",
        mod(magic="XXXXXXXX", version_major=2))
    add("H-BAD-HEADER-SIZE", ["R-LAYOUT-6"], "header_size 256 (segment_size still 512+capacity)",
        "CORRUPT_HEADER", mod(header_size=256))
    add("H-BAD-MAX-DIMS", ["R-LAYOUT-6"], "max_dims 16", "CORRUPT_HEADER", mod(max_dims=16))
    add("H-BAD-FLAGS", ["R-LAYOUT-6"], "flags 1 (all bits reserved in v1)", "CORRUPT_HEADER",
        mod(flags=1))
    add("H-BAD-FLAGS-HIGH-BIT", ["R-LAYOUT-6"], "flags 0x80000000", "CORRUPT_HEADER",
        mod(flags=0x80000000))
    add("H-BAD-SEGMENT-SIZE", ["R-LAYOUT-6"],
        "segment_size == capacity (header_size not added)", "CORRUPT_HEADER",
        mod(segment_size=base["capacity"]))
    cap = U64 - 255                            # 512 + cap wraps to 256 in 64 bits
    f = mod(capacity=cap, segment_size=(HEADER_SIZE + cap) & U64)
    add("H-BAD-SEGMENT-SIZE-WRAP", ["R-LAYOUT-6"],
        "capacity 2^64-256 and segment_size 256 = (512+capacity) mod 2^64: the sum must be "
        "checked without 64-bit wrap-around", "CORRUPT_HEADER", f)
    add("H-BAD-TRUNCATED-MAPPING", ["R-LAYOUT-6"],
        "the mapping is one byte smaller than segment_size", "CORRUPT_HEADER", base,
        mapping=MAP - 1)
    add("H-BAD-MAPPING-HEADER-ONLY", ["R-LAYOUT-6"],
        "the mapping holds only the 512-byte header, capacity 1 MiB", "CORRUPT_HEADER", base,
        mapping=HEADER_SIZE)
    d9 = {"dtype": 3, "ndim": 9, "shape": [1] * 8, "nbytes": 1}
    add("H-BAD-NDIM-9", ["R-LAYOUT-5"], "declared.ndim 9 (shape entries all 1, nbytes 1)",
        "CORRUPT_HEADER", mod(declared=d9, message=d9))
    dh = {"dtype": 11, "ndim": 0xFFFFFFFF, "shape": [512, 512], "nbytes": MiB}
    add("H-BAD-NDIM-HUGE", ["R-LAYOUT-5"], "declared.ndim 0xffffffff", "CORRUPT_HEADER",
        mod(declared=dh), raw_shapes={"declared": [512, 512]})
    dn = desc(11, [512, 512])
    add("H-BAD-UNUSED-SHAPE-NONZERO", ["R-LAYOUT-5"],
        "declared ndim 2 but shape[2] == 7", "CORRUPT_HEADER", mod(declared=dn),
        raw_shapes={"declared": [512, 512, 7]})
    add("H-BAD-NBYTES-NO-ITEMSIZE", ["R-LAYOUT-5"],
        "declared.nbytes 262144 = product(shape) without itemsize", "CORRUPT_HEADER",
        mod(declared=desc(11, [512, 512], nbytes=512 * 512)))
    add("H-BAD-NBYTES-EMPTY", ["R-LAYOUT-5"],
        "an empty array (0, 4) whose nbytes is 16 instead of 0", "CORRUPT_HEADER",
        mod(declared=desc(11, [0, 4], nbytes=16), message=desc(11, [0, 4], nbytes=16)))
    ov = desc(3, [1 << 32, 1 << 32], nbytes=0)
    add("H-BAD-SHAPE-OVERFLOW", ["R-LAYOUT-5"],
        "uint8 (2^32, 2^32): product 2^64 overflows; nbytes 0 is the wrapped product",
        "CORRUPT_HEADER", mod(declared=ov, message=ov))
    ov2 = desc(11, [1 << 62], nbytes=0)
    add("H-BAD-ITEMSIZE-OVERFLOW", ["R-LAYOUT-5"],
        "float32 (2^62,): product fits but x itemsize 4 overflows; nbytes 0 is the wrapped value",
        "CORRUPT_HEADER", mod(declared=ov2, message=ov2))
    big = desc(11, [513, 512])
    add("H-BAD-NBYTES-OVER-CAPACITY", ["R-LAYOUT-5"],
        "declared float32 (513, 512) = 1050624 bytes > capacity 1048576", "CORRUPT_HEADER",
        mod(declared=big, message=big))
    add("H-BAD-DTYPE-0", ["R-LAYOUT-5", "R-DTYPE-1"], "declared.dtype 0", "CORRUPT_HEADER",
        mod(declared=dict(desc(3, [MiB]), dtype=0)))
    add("H-BAD-DTYPE-15", ["R-LAYOUT-5", "R-DTYPE-1"], "declared.dtype 15 (itemsize 4 assumed "
        "for nbytes)", "CORRUPT_HEADER", mod(declared=dict(desc(11, [512, 512]), dtype=15)))
    add("H-BAD-MESSAGE-OVER-CAPACITY", ["R-LAYOUT-5", "R-MSG-1"],
        "declared valid, message float32 (513, 512) > capacity", "CORRUPT_HEADER",
        mod(message=big))
    add("H-BAD-MESSAGE-ZERO", ["R-LAYOUT-5", "R-MSG-1"],
        "declared valid, message descriptor all zero (dtype 0): the creator must initialise "
        "message = declared", "CORRUPT_HEADER",
        mod(message={"dtype": 0, "ndim": 0, "shape": [], "nbytes": 0}))
    # Hostile or truncated input (found by / added with the fuzzers, cpp/fuzz/, D16).
    add("H-BAD-MAPPING-SMALLER-THAN-HEADER", ["R-LAYOUT-6"],
        "a valid header but the OS object is only 100 bytes: smaller than the header itself",
        "CORRUPT_HEADER", base, mapping=100)
    add("H-BAD-MAPPING-TINY-ZERO-MAGIC", ["R-LAYOUT-6", "R-SEG-6"],
        "all-zero header bytes in an OS object of 8 bytes: a truncated object, not one being "
        "initialised (a creator sizes the object to segment_size at once, R-SEG-1); the size "
        "check comes before the magic (D16)", "CORRUPT_HEADER", raw=bytes(HEADER_SIZE), mapping=8)
    add("H-BAD-CAPACITY-EXCEEDS-MAPPING", ["R-LAYOUT-6"],
        "capacity 2^63 with a consistent segment_size, in a mapping of the demo's size: the "
        "payload would extend far beyond the OS object", "CORRUPT_HEADER",
        mod(capacity=1 << 63, segment_size=HEADER_SIZE + (1 << 63)))
    add("H-BAD-CAPACITY-MAX-WRAP", ["R-LAYOUT-6"],
        "capacity 2^64-1 and segment_size 511 = (512+capacity) mod 2^64", "CORRUPT_HEADER",
        mod(capacity=U64, segment_size=(HEADER_SIZE + U64) & U64))
    add("H-BAD-ALL-FF", ["R-LAYOUT-3"], "all 512 header bytes 0xff", "CORRUPT_HEADER",
        raw=b"\xff" * HEADER_SIZE)
    add("H-BAD-MAGIC-HALF-ZERO", ["R-LAYOUT-3", "R-SEG-6"],
        "magic SHMB followed by four zero bytes: not all-zero, so not 'initialising'",
        "CORRUPT_HEADER", mod(magic="SHMB\0\0\0\0"))
    add("H-BAD-VERSION-MAJOR-FFFF", ["R-LAYOUT-4"], "version_major 0xffff", "VERSION_MISMATCH",
        mod(version_major=0xFFFF))
    add("H-BAD-DTYPE-FFFFFFFF", ["R-LAYOUT-5", "R-DTYPE-1"], "declared.dtype 0xffffffff",
        "CORRUPT_HEADER", mod(declared=dict(desc(3, [MiB]), dtype=0xFFFFFFFF)))
    d0s = {"dtype": 12, "ndim": 0, "shape": [], "nbytes": 8}
    add("H-BAD-SCALAR-SHAPE-NONZERO", ["R-LAYOUT-5"],
        "a float64 scalar (ndim 0) whose shape[0] is 1: every unused entry must be 0",
        "CORRUPT_HEADER", mod(declared=d0s, message=d0s), raw_shapes={"declared": [1]})
    ov8 = desc(3, [256] * 8, nbytes=0)
    add("H-BAD-SHAPE-OVERFLOW-8-DIMS", ["R-LAYOUT-5"],
        "uint8 with 8 extents of 256: product 2^64 overflows only at the last extent; nbytes 0",
        "CORRUPT_HEADER", mod(declared=ov8, message=ov8))
    m9 = {"dtype": 3, "ndim": 9, "shape": [1] * 8, "nbytes": 1}
    add("H-BAD-MESSAGE-NDIM-9", ["R-LAYOUT-5", "R-MSG-1"],
        "declared valid, message.ndim 9", "CORRUPT_HEADER", mod(message=m9))
    add("H-BAD-MESSAGE-SHAPE-OVERFLOW", ["R-LAYOUT-5", "R-MSG-1"],
        "declared valid, message uint8 (2^32, 2^32) with nbytes 0 (the wrapped product)",
        "CORRUPT_HEADER", mod(message=ov))
    return V


def build_headers():
    valid = valid_vectors()
    for v in valid:
        raw = encode(v["fields"])
        back = decode(raw, v["mapping_size"])
        assert back == v["fields"], (v["id"], back)
        v["hex"] = raw.hex()
    invalid = invalid_vectors()
    ids = set()
    for v in invalid + valid:
        assert v["id"] not in ids, v["id"]
        ids.add(v["id"])
    for v in invalid:
        raw = bytes.fromhex(v["hex"])
        assert len(raw) == HEADER_SIZE
        try:
            decode(raw, v["mapping_size"])
        except HeaderError as e:
            assert e.name == v["error"], (v["id"], e)
        else:
            raise AssertionError(f"{v['id']} decodes as valid")
    dts = {v["fields"]["declared"]["dtype"] for v in valid}
    assert dts == set(DTYPES), dts
    return {"generator": "spec/tools/gen_vectors.py", "protocol_version": 1,
            "valid": valid, "invalid": invalid}


# ---------------------------------------------------------------- §4/§5 transition model
PHASES = {0x0: "IDLE", 0x1: "REQUESTED", 0x4: "TAKEN", 0x2: "REPLIED"}
PBITS = {v: k for k, v in PHASES.items()}
SEQ_MASK = (1 << 28) - 1
EMPTY, ATTACHED, CLOSED, RELEASED = "EMPTY", "ATTACHED", "CLOSED", "RELEASED"


def mkword(phase: str, seq: int) -> int:
    return ((seq & SEQ_MASK) << 4) | PBITS[phase]


class Ambiguous(Exception):
    """The spec does not decide this step unambiguously; no vector may contain it."""


class Model:
    """The two handles of one test process + the segment (README: sequences.json)."""

    def __init__(self, initial_seq: int):
        self.word = mkword("IDLE", initial_seq)
        self.reply_code = "ok"
        self.slot = {"requester": ATTACHED, "responder": ATTACHED}   # both alive (same process)
        # requester handle: pending seq, timed_out flag, last seq it observed while owning IDLE
        self.req = {"pending": None, "timed_out": False, "last": initial_seq}
        self.rsp = {"held": None}

    # helpers
    def phase(self):
        return PHASES.get(self.word & 0xF)

    def seq(self):
        return self.word >> 4

    def peer_gone(self, role):      # R-LIVE-3: ATTACHED and dead, or CLOSED; EMPTY is not gone
        st = self.slot[role]
        if st == RELEASED:
            raise Ambiguous("slot state after a failed attach is not specified")
        return st == CLOSED

    # requester
    def send(self, step):
        r = self.req
        if r is None:
            raise Ambiguous("no requester handle")
        ph, sq = self.phase(), self.seq()
        if r["pending"] is not None:                            # precondition (R-WAIT-5)
            if r["timed_out"] and ph == "REPLIED" and sq == r["pending"]:
                self.word = mkword("IDLE", sq)                  # R-STATE-10: T4, result dropped
                r.update(pending=None, timed_out=False, last=sq)
            else:
                return "OUT_OF_TURN"                            # R-STATE-7 / R-STATE-10
            ph, sq = self.phase(), self.seq()
        if ph is None:
            return "PROTOCOL_VIOLATION"                          # R-STATE-1
        if ph != "IDLE":
            return "PROTOCOL_VIOLATION"                          # R-STATE-8: only we leave IDLE
        if sq != r["last"]:
            return "PROTOCOL_VIOLATION"                          # R-STATE-8: seq jumped while owned
        nsq = (sq + 1) & SEQ_MASK                               # T1
        self.word = mkword("REQUESTED", nsq)
        self.reply_code = "ok"
        r.update(pending=nsq, timed_out=False, last=nsq)
        return "ok"

    def receive(self, step):
        r = self.req
        if r is None:
            raise Ambiguous("no requester handle")
        if r["pending"] is None:
            return "OUT_OF_TURN"                                # precondition
        ph, sq, own = self.phase(), self.seq(), r["pending"]
        if ph is None:
            return "PROTOCOL_VIOLATION"
        if ph in ("REQUESTED", "TAKEN", "REPLIED") and sq != own:
            return "PROTOCOL_VIOLATION"                          # §5, R-STATE-8
        if ph == "REPLIED":                                      # T4
            self.word = mkword("IDLE", sq)
            r.update(pending=None, timed_out=False, last=sq)
            return self.reply_code                              # R-MSG-2
        if ph in ("REQUESTED", "TAKEN"):                         # waits in
            if self.peer_gone("responder"):                      # R-LIVE-3
                self.word = mkword("IDLE", sq)                   # T5 or T7
                r.update(pending=None, timed_out=False, last=sq)
                return "PEER_GONE"
            if ph == "REQUESTED":                                # R-TIME-2: T5 then TIMEOUT
                self.word = mkword("IDLE", sq)
                r.update(pending=None, timed_out=False, last=sq)
            else:
                r["timed_out"] = True                            # late reply later (R-STATE-10)
            return "TIMEOUT"
        return "PROTOCOL_VIOLATION"                              # R-STATE-8: IDLE is ours only

    # responder
    def take(self, step):
        s = self.rsp
        if s is None:
            raise Ambiguous("no responder handle")
        if s["held"] is not None:
            return "OUT_OF_TURN"
        ph, sq = self.phase(), self.seq()
        if ph is None:
            return "PROTOCOL_VIOLATION"
        if ph == "REQUESTED":                                    # T2
            self.word = mkword("TAKEN", sq)
            s["held"] = sq
            return "ok"
        if ph in ("IDLE", "REPLIED"):                            # waits in
            if self.peer_gone("requester"):                      # R-LIVE-4
                return "PEER_GONE"
            return "TIMEOUT"                                     # R-TIME-3
        return "PROTOCOL_VIOLATION"                              # R-STATE-8: TAKEN not held

    def _reply(self, code):
        s = self.rsp
        if s is None:
            raise Ambiguous("no responder handle")
        if s["held"] is None:
            return "OUT_OF_TURN"
        ph, sq = self.phase(), self.seq()
        if ph is None or sq != s["held"]:
            return "PROTOCOL_VIOLATION"                          # R-STATE-8
        if ph != "TAKEN":
            return "OUT_OF_TURN"                                 # §5 (1.1 errata): reclaimed
        self.word = mkword("REPLIED", sq)                         # T3
        self.reply_code = code
        s["held"] = None
        return "ok"

    def reply(self, step):
        return self._reply("ok")

    def reply_error(self, step):
        return self._reply(step["code"])

    # lifecycle
    def close(self, role):
        if role == "requester":
            if self.req is not None:
                self.slot["requester"] = CLOSED                  # R-CLOSE-1/2: request left as is
            self.req = None
        else:
            if self.rsp is not None:
                if self.rsp["held"] is not None:                 # R-CLOSE-2
                    if self._reply("PEER_GONE") != "ok":
                        raise Ambiguous("close while holding, word moved")
                self.slot["responder"] = CLOSED
            self.rsp = None
        return "ok"                                              # idempotent (R-CLOSE-1)

    def attach(self, role):
        if self.slot[role] == ATTACHED:
            return "ROLE_TAKEN"                                  # R-STATE-5, R-LIVE-1
        ph, sq = self.phase(), self.seq()
        # R-STATE-11: a phase outside the table does not fail the attach (ph is None: neither
        # branch below touches the word); the first operation that reads it reports it.
        if role == "requester":                                  # R-REC-1
            if ph == "TAKEN":
                if self.peer_gone("responder"):
                    self.word = mkword("IDLE", sq)               # T7
                else:
                    self.slot["requester"] = CLOSED              # deadline 0: released (R-REC-1)
                    self.req = None
                    return "TIMEOUT"
            elif ph in ("REQUESTED", "REPLIED"):
                self.word = mkword("IDLE", sq)                   # T5 / T6
            self.slot["requester"] = ATTACHED
            self.req = {"pending": None, "timed_out": False, "last": sq}
        else:                                                    # R-REC-2
            if ph == "TAKEN":
                self.word = mkword("REPLIED", sq)                # T8
                self.reply_code = "PEER_GONE"
            self.slot["responder"] = ATTACHED
            self.rsp = {"held": None}
        return "ok"

    def poke_word(self, step):
        self.word = step["value"]
        return "ok"

    def apply(self, step):
        op, actor = step["op"], step["actor"]
        if op in ("close", "attach"):
            return getattr(self, op)(actor)
        assert actor == {"send": "requester", "receive": "requester", "take": "responder",
                         "reply": "responder", "reply_error": "responder",
                         "poke_word": "rogue"}[op], step
        return getattr(self, op)(step)


def R(op, result="ok", **kw):
    return (("requester", op), result, kw)


def P(op, result="ok", **kw):
    return (("responder", op), result, kw)


def POKE(value):
    return (("rogue", "poke_word"), "ok", {"value": value})


def ROUND(v):
    return [R("send", value=v), P("take"), P("reply"), R("receive")]


SEQ_MAX = (1 << 28) - 1
SEQUENCES = [
    # id, requirements, description, steps[, dtype, shape, initial_seq]
    ("S-ROUND-1", ["R-STATE-1", "R-STATE-2", "R-STATE-3"],
     "one full round shows status 0,1,0,2,0 and seq 1", ROUND(10)),
    ("S-ROUND-3", ["R-STATE-1", "R-STATE-2", "R-STATE-6"],
     "three rounds: seq 1, 2, 3, each reply is value+1", ROUND(1) + ROUND(2) + ROUND(3)),
    ("S-ROUND-SCALAR", ["R-STATE-1", "R-LAYOUT-5"],
     "ndim 0: one round with a float64 scalar", ROUND(5), "float64", []),
    ("S-ROUND-EMPTY", ["R-STATE-1", "R-LAYOUT-5"],
     "an empty array (0, 3): one round, nbytes 0", ROUND(5), "int32", [0, 3]),
    ("S-SEQ-WRAP", ["R-STATE-1"],
     "28-bit seq wrap: initial seq 2^28-1, send gives seq 0 (word 0x1), then 1",
     ROUND(7) + ROUND(8), "float32", [4], SEQ_MAX),
    ("S-OOT-SEND-REQUESTED", ["R-STATE-7", "R-STATE-2"],
     "a second send while the request is REQUESTED is OUT_OF_TURN, word unchanged",
     [R("send", value=1), R("send", "OUT_OF_TURN", value=2), P("take"), P("reply"),
      R("receive")]),
    ("S-OOT-SEND-TAKEN", ["R-STATE-7", "R-STATE-10"],
     "a second send while the request is TAKEN is OUT_OF_TURN",
     [R("send", value=1), P("take"), R("send", "OUT_OF_TURN", value=2), P("reply"),
      R("receive")]),
    ("S-OOT-SEND-REPLIED", ["R-STATE-7", "R-STATE-10"],
     "send while its own reply waits (REPLIED) without an earlier timeout is OUT_OF_TURN; "
     "receive then gets the reply (README Decisions D6)",
     [R("send", value=1), P("take"), P("reply"), R("send", "OUT_OF_TURN", value=2),
      R("receive")]),
    ("S-OOT-TAKE-HELD", ["R-STATE-7"],
     "take while already holding a request is OUT_OF_TURN",
     [R("send", value=1), P("take"), P("take", "OUT_OF_TURN"), P("reply"), R("receive")]),
    ("S-OOT-REPLY-NO-TAKE", ["R-STATE-7"],
     "reply / reply_error without take: OUT_OF_TURN in IDLE, REQUESTED and REPLIED",
     [P("reply", "OUT_OF_TURN"), P("reply_error", "OUT_OF_TURN", code="DTYPE_MISMATCH"),
      R("send", value=1), P("reply", "OUT_OF_TURN"),
      P("reply_error", "OUT_OF_TURN", code="SHAPE_MISMATCH"), P("take"), P("reply"),
      P("reply", "OUT_OF_TURN"), P("reply_error", "OUT_OF_TURN", code="DTYPE_MISMATCH"),
      R("receive")]),
    ("S-OOT-RECEIVE", ["R-STATE-7"],
     "receive without an outstanding request is OUT_OF_TURN (fresh, and after a round)",
     [R("receive", "OUT_OF_TURN")] + ROUND(1) + [R("receive", "OUT_OF_TURN")]),
    ("S-TAKE-TIMEOUT", ["R-TIME-3", "R-WAIT-5", "R-WAIT-2"],
     "take with timeout 0 in IDLE and in REPLIED is TIMEOUT, word unchanged",
     [P("take", "TIMEOUT"), R("send", value=1), P("take"), P("reply"), P("take", "TIMEOUT"),
      R("receive"), P("take", "TIMEOUT")]),
    ("S-TIME-CANCEL", ["R-TIME-2", "R-WAIT-5", "R-TIME-1"],
     "receive times out while REQUESTED: the request is withdrawn (T5), IDLE, nothing pending",
     [R("send", value=1), R("receive", "TIMEOUT"), P("take", "TIMEOUT"),
      R("receive", "OUT_OF_TURN"), R("send", value=2), P("take"), P("reply"), R("receive")]),
    ("S-TIME-CANCEL-REPEATED", ["R-TIME-2", "R-STATE-1"],
     "cancelled requests still consume seq: send/timeout twice, then a round with seq 3",
     [R("send", value=1), R("receive", "TIMEOUT"), R("send", value=2),
      R("receive", "TIMEOUT")] + ROUND(3)),
    ("S-SEQ-RESPONDER-WRAP", ["R-STATE-8", "R-STATE-1"],
     "a responder accepts any seq (R-STATE-8 compares seqs for equality only): after taking seq "
     "2^28-1 it takes seq 2, numerically smaller, after the wrap and two withdrawn requests",
     ROUND(1) + [R("send", value=2), R("receive", "TIMEOUT"), R("send", value=3),
                 R("receive", "TIMEOUT")] + ROUND(4), "float32", [4], SEQ_MAX - 1),
    ("S-TIME-LATE-RECEIVE", ["R-TIME-2", "R-STATE-6"],
     "receive times out while TAKEN: the request stays outstanding; a later receive gets it",
     [R("send", value=1), P("take"), R("receive", "TIMEOUT"), R("receive", "TIMEOUT"),
      P("reply"), R("receive")]),
    ("S-TIME-LATE-SEND", ["R-STATE-10", "R-TIME-2", "R-STATE-7"],
     "after a timeout while TAKEN, send is OUT_OF_TURN until the late reply arrives, then it "
     "consumes the late reply and sends (seq 2)",
     [R("send", value=1), P("take"), R("receive", "TIMEOUT"),
      R("send", "OUT_OF_TURN", value=2), P("reply"), R("send", value=3), P("take"),
      P("reply"), R("receive")]),
    ("S-TIME-LATE-ERROR-DROPPED", ["R-STATE-10", "R-MSG-2"],
     "a late error reply consumed by send (R-STATE-10) is dropped: send succeeds "
     "(README Decisions D7)",
     [R("send", value=1), P("take"), R("receive", "TIMEOUT"),
      P("reply_error", code="DTYPE_MISMATCH"), R("send", value=2), P("take"), P("reply"),
      R("receive")]),
    ("S-MSG-ERROR-REPLY", ["R-MSG-2"],
     "an error reply: receive raises the responder's error after consuming it (IDLE)",
     [R("send", value=1), P("take"), P("reply_error", code="SHAPE_MISMATCH"),
      R("receive", "SHAPE_MISMATCH"), R("receive", "OUT_OF_TURN")] + ROUND(2)),
    ("S-MSG-ERROR-REPLY-CODES", ["R-MSG-2", "R-ERR-1"],
     "error replies with DTYPE_MISMATCH and INVALID_ARGUMENT, each consumed",
     [R("send", value=1), P("take"), P("reply_error", code="DTYPE_MISMATCH"),
      R("receive", "DTYPE_MISMATCH"), R("send", value=2), P("take"),
      P("reply_error", code="INVALID_ARGUMENT"), R("receive", "INVALID_ARGUMENT")]),
    ("S-CLOSE-RSP-HOLDING", ["R-CLOSE-2", "R-LIVE-3", "R-MSG-2", "R-REC-2"],
     "the responder closes while holding: it replies PEER_GONE (T3); the requester gets "
     "PEER_GONE from receive; a send then waits for nobody: receive withdraws it (T5) with "
     "PEER_GONE; a new responder attaches and a round works",
     [R("send", value=1), P("take"), P("close"), R("receive", "PEER_GONE"),
      R("send", value=2), R("receive", "PEER_GONE"), P("attach")] + ROUND(3)),
    ("S-CLOSE-RSP-IDLE", ["R-LIVE-3", "R-WAIT-5", "R-REC-2"],
     "the responder closes while IDLE: send still succeeds (no wait), receive finds the "
     "responder CLOSED: T5 then PEER_GONE; a new responder (nothing to recover) serves",
     [P("close"), R("send", value=1), R("receive", "PEER_GONE"), P("attach"),
      P("take", "TIMEOUT")] + ROUND(2)),
    ("S-CLOSE-RSP-AFTER-REPLY", ["R-WAIT-5", "R-LIVE-3"],
     "the responder replies then closes: receive still gets the reply (transition is "
     "evaluated before liveness)",
     [R("send", value=1), P("take"), P("reply"), P("close"), R("receive"),
      R("send", value=2), R("receive", "PEER_GONE")]),
    ("S-REC-RSP-REQUESTED", ["R-REC-2", "R-STATE-5"],
     "a responder closes with a request waiting (not taken); the new responder leaves "
     "REQUESTED alone and takes it",
     [R("send", value=1), P("close"), P("attach"), P("take"), P("reply"), R("receive")]),
    ("S-CLOSE-REQ-IDLE", ["R-LIVE-4", "R-WAIT-5", "R-REC-1"],
     "the requester closes: take ends with PEER_GONE; a new requester attaches and serves",
     [R("close"), P("take", "PEER_GONE"), R("attach"), P("take", "TIMEOUT")] + ROUND(1)),
    ("S-REC-REQ-REQUESTED", ["R-REC-1", "R-CLOSE-2"],
     "the requester closes with its request REQUESTED; the new requester cancels the orphan "
     "(T5) on attach",
     [R("send", value=1), R("close"), R("attach"), P("take", "TIMEOUT"),
      R("receive", "OUT_OF_TURN")] + ROUND(2)),
    ("S-REC-REQ-REPLIED", ["R-REC-1", "R-CLOSE-2", "R-LIVE-4", "R-WAIT-5"],
     "the requester closes with its request outstanding; the responder still takes and "
     "replies (transition before liveness), then take finds the requester CLOSED "
     "(PEER_GONE); the new requester discards the orphan reply (T6)",
     [R("send", value=1), R("close"), P("take"), P("reply"), P("take", "PEER_GONE"),
      R("attach"), R("receive", "OUT_OF_TURN")] + ROUND(2)),
    ("S-REC-REQ-TAKEN-TIMEOUT", ["R-REC-1", "R-CLOSE-2"],
     "the requester closes while its request is TAKEN; a new requester with attach "
     "timeout 0 fails with TIMEOUT (responder alive); after the reply, attach discards it",
     [R("send", value=1), P("take"), R("close"), R("attach", "TIMEOUT"), P("reply"),
      R("attach")] + ROUND(2)),
    ("S-ROLE-TAKEN", ["R-STATE-5", "R-LIVE-1"],
     "attaching a second requester or responder while the role is held: ROLE_TAKEN, the "
     "first handles keep working",
     [R("attach", "ROLE_TAKEN"), P("attach", "ROLE_TAKEN"), R("send", value=1),
      P("attach", "ROLE_TAKEN"), P("take"), R("attach", "ROLE_TAKEN"), P("reply"),
      R("receive")]),
    ("S-CLOSE-IDEMPOTENT", ["R-CLOSE-1"],
     "closing a handle twice is a no-op the second time",
     [P("close"), P("close"), R("close"), R("close"), P("attach"), R("attach")] + ROUND(1)),
    ("S-ROGUE-BAD-PHASE", ["R-STATE-8", "R-STATE-1", "R-STATE-2"],
     "a rogue writer stores phase 3: send and take report PROTOCOL_VIOLATION and leave the "
     "word; once the word is restored the protocol continues",
     ROUND(1) + [POKE(0x13), R("send", "PROTOCOL_VIOLATION", value=2),
                 P("take", "PROTOCOL_VIOLATION"), POKE(0x10)] + ROUND(3)),
    ("S-ROGUE-NAIVE-REPLY", ["R-STATE-8", "R-STATE-6"],
     "a naive responder stores status 2 (word 2 = REPLIED seq 0) over request seq 1: "
     "receive reports PROTOCOL_VIOLATION, never returns that reply",
     [R("send", value=1), POKE(0x2), R("receive", "PROTOCOL_VIOLATION"), POKE(0x11), P("take"),
      P("reply"), R("receive")]),
    ("S-ROGUE-REPLY-WRONG-SEQ", ["R-STATE-8", "R-STATE-6"],
     "while TAKEN seq 1 a rogue publishes REPLIED seq 5: receive and reply both report "
     "PROTOCOL_VIOLATION",
     [R("send", value=1), P("take"), POKE(0x52), R("receive", "PROTOCOL_VIOLATION"),
      P("reply", "PROTOCOL_VIOLATION"), POKE(0x14), P("reply"), R("receive")]),
    ("S-ROGUE-NAIVE-CLEAR", ["R-STATE-8"],
     "a naive requester stores 0 (IDLE seq 0) while the responder holds seq 1: reply "
     "reports PROTOCOL_VIOLATION (seq moved backwards while it owned the payload)",
     [R("send", value=1), P("take"), POKE(0x0), P("reply", "PROTOCOL_VIOLATION"), POKE(0x14),
      P("reply"), R("receive")]),
    ("S-REPLY-OWN-RECLAIMED", ["R-STATE-7", "R-STATE-8", "R-LIVE-3"],
     "the responder holds seq 1 when the word leaves TAKEN keeping seq 1 (IDLE, as a requester's "
     "reclaim T7 leaves it, then REQUESTED and REPLIED): reply is OUT_OF_TURN each time and "
     "changes nothing, take is OUT_OF_TURN (the responder still holds seq 1); once TAKEN seq 1 "
     "is restored its reply completes the round",
     [R("send", value=1), P("take"), POKE(0x10), P("reply", "OUT_OF_TURN"), POKE(0x11),
      P("reply", "OUT_OF_TURN"), POKE(0x12), P("reply", "OUT_OF_TURN"), P("take", "OUT_OF_TURN"),
      POKE(0x14), P("reply"), R("receive")]),
    ("S-ROGUE-SEQ-JUMP-IDLE", ["R-STATE-8"],
     "after a round (IDLE seq 1, owned by the requester) a rogue stores IDLE seq 7: send "
     "reports PROTOCOL_VIOLATION",
     ROUND(1) + [POKE(0x70), R("send", "PROTOCOL_VIOLATION", value=2), POKE(0x10)] + ROUND(3)),
    ("S-ROGUE-SEND-NOT-IDLE", ["R-STATE-8"],
     "after a round (IDLE seq 1, nothing pending) a rogue stores REQUESTED, TAKEN and REPLIED "
     "seq 1: send reports PROTOCOL_VIOLATION each time (only the requester moves its IDLE word); "
     "once IDLE seq 1 is restored the protocol continues",
     ROUND(1) + [POKE(0x11), R("send", "PROTOCOL_VIOLATION", value=2), POKE(0x14),
                 R("send", "PROTOCOL_VIOLATION", value=2), POKE(0x12),
                 R("send", "PROTOCOL_VIOLATION", value=2), POKE(0x10)] + ROUND(3)),
    ("S-ROGUE-RECEIVE-IDLE", ["R-STATE-8"],
     "a naive writer stores IDLE over the own outstanding request (REQUESTED seq 1, then TAKEN "
     "seq 1): receive reports PROTOCOL_VIOLATION (only the requester moves the word to IDLE); "
     "once the word is restored the round completes",
     [R("send", value=1), POKE(0x10), R("receive", "PROTOCOL_VIOLATION"), POKE(0x11), P("take"),
      POKE(0x10), R("receive", "PROTOCOL_VIOLATION"), POKE(0x14), P("reply"), R("receive")]),
    ("S-ROGUE-TAKE-TAKEN", ["R-STATE-8", "R-REC-2"],
     "a rogue stores TAKEN seq 1 over a request nobody took: the responder, holding nothing, "
     "reports PROTOCOL_VIOLATION on take (R-REC-2 completed any predecessor's round at attach); "
     "once REQUESTED is restored the round completes",
     [R("send", value=1), POKE(0x14), P("take", "PROTOCOL_VIOLATION"), POKE(0x11), P("take"),
      P("reply"), R("receive")]),
    ("S-ATTACH-BAD-PHASE", ["R-STATE-11", "R-STATE-8", "R-STATE-1", "R-REC-1", "R-REC-2"],
     "both handles close and a rogue stores phase 3 seq 1: a new requester and a new responder "
     "attach anyway (attach does not judge the word); send and take report PROTOCOL_VIOLATION, "
     "receive is OUT_OF_TURN (nothing pending); once IDLE seq 1 is restored a round works",
     ROUND(1) + [R("close"), P("close"), POKE(0x13), R("attach"), P("attach"),
                 R("send", "PROTOCOL_VIOLATION", value=2), P("take", "PROTOCOL_VIOLATION"),
                 R("receive", "OUT_OF_TURN"), POKE(0x10)] + ROUND(3)),
    ("S-REC-REQ-TIMEOUT-RELEASES", ["R-REC-1", "R-LIVE-4", "R-CLOSE-1"],
     "an attach that fails with TIMEOUT releases the requester slot as a close does (CLOSED, "
     "pid 0): after the reply, take ends with PEER_GONE; a later attach discards the orphan "
     "reply (T6) and a round works",
     [R("send", value=1), P("take"), R("close"), R("attach", "TIMEOUT"), P("reply"),
      P("take", "PEER_GONE"), R("attach")] + ROUND(2)),
]


def build_sequences():
    out = []
    ids = set()
    for entry in SEQUENCES:
        sid, reqs, descr, steps = entry[:4]
        dtype = entry[4] if len(entry) > 4 else "float32"
        shape = entry[5] if len(entry) > 5 else [4]
        initial = entry[6] if len(entry) > 6 else 0
        assert sid not in ids, sid
        ids.add(sid)
        m = Model(initial)
        jsteps = []
        for i, ((actor, op), want, kw) in enumerate(steps):
            step = {"actor": actor, "op": op}
            step.update(kw)
            try:
                got = m.apply(step)
            except Ambiguous as e:
                raise SystemExit(f"{sid} step {i}: ambiguous in the spec: {e}")
            if got != want:
                raise SystemExit(f"{sid} step {i} {actor}.{op}: hand-derived {want}, "
                                 f"model {got}")
            exp = {"result": got}
            ph = m.phase()
            if ph is not None:
                exp["phase"] = ph
            exp["seq"] = m.seq()
            exp["status"] = m.word & 3
            if got != "PROTOCOL_VIOLATION":
                if m.req is not None:
                    exp["pending"] = m.req["pending"]
                if m.rsp is not None:
                    exp["held"] = m.rsp["held"]
            step["expect"] = exp
            jsteps.append(step)
        seq = {"id": sid, "requirements": reqs, "description": descr, "dtype": dtype,
               "shape": shape, "initial_seq": initial, "steps": jsteps}
        out.append(seq)
    return {"generator": "spec/tools/gen_vectors.py", "protocol_version": 1, "sequences": out}


# ---------------------------------------------------------------- /proc/PID/stat (R-LIVE-7)
def _stat_line(comm: str, state: str, starttime: str = "123456", tail: int = 30) -> str:
    """A /proc/PID/stat text: pid (comm) state, then fields 4.. with field 22 = starttime."""
    fields = [str(k) for k in range(4, 22)] + [starttime] + [str(k) for k in range(23, 23 + tail)]
    return f"4242 ({comm}) {state} " + " ".join(fields) + "\n"


def parse_stat(text: str) -> dict:
    """The reference reading of R-LIVE-7: fields after the last ')'; Z/X/x dead; no bytes: gone;
    unparsable: exists with an unknown stamp (0)."""
    if text == "":
        return {"exists": False, "start_stamp": 0}
    close = text.rfind(")")
    toks = text[close + 1:].split() if close >= 0 else []
    if close < 0 or len(toks) < 20:
        return {"exists": True, "start_stamp": 0}
    if toks[0] in ("Z", "X", "x"):
        return {"exists": False, "start_stamp": 0}
    if not toks[19].isdigit() or not toks[19].isascii():
        return {"exists": True, "start_stamp": 0}
    return {"exists": True, "start_stamp": int(toks[19])}


PROCSTAT = [
    # id, description, text, hand-derived (exists, start_stamp)
    ("P-PLAIN", "a sleeping process: field 22 is the start stamp",
     _stat_line("python3", "S"), (True, 123456)),
    ("P-RUNNING", "state R, a large stamp", _stat_line("peer", "R", "18446744073709551"),
     (True, 18446744073709551)),
    ("P-COMM-SPACES", "a command name with spaces", _stat_line("my peer 2", "S"), (True, 123456)),
    ("P-COMM-PAREN", "a command name that contains ') ' and digits: count after the LAST ')'",
     _stat_line("a) Z 1 2 3 (b", "S", "777"), (True, 777)),
    ("P-COMM-EMPTY", "an empty command name", _stat_line("", "S", "9"), (True, 9)),
    ("P-ZOMBIE", "state Z: a zombie is not alive", _stat_line("worker", "Z"), (False, 0)),
    ("P-DEAD-X", "state X: dead", _stat_line("worker", "X"), (False, 0)),
    ("P-DEAD-x", "state x: dead (old kernels)", _stat_line("worker", "x"), (False, 0)),
    ("P-STOPPED", "state T (stopped) is alive", _stat_line("worker", "T", "5"), (True, 5)),
    ("P-EMPTY-READ", "the read returned no bytes: the process exited between open and read", "",
     (False, 0)),
    ("P-NO-PAREN", "no ')' at all: unparsable, exists with an unknown stamp", "4242 garbage\n",
     (True, 0)),
    ("P-SHORT", "fewer than 20 fields after the last ')': exists, unknown stamp",
     "4242 (x) S 1 2 3\n", (True, 0)),
    ("P-NONDECIMAL", "field 22 is not a decimal number: exists, unknown stamp",
     _stat_line("x", "S", "12a4"), (True, 0)),
    ("P-NO-NEWLINE", "no trailing newline", _stat_line("x", "S", "42").rstrip("\n"), (True, 42)),
]


def build_procstat():
    out = []
    for pid_, descr, text, (exists, stamp) in PROCSTAT:
        got = parse_stat(text)
        want = {"exists": exists, "start_stamp": stamp}
        if got != want:
            raise SystemExit(f"{pid_}: hand-derived {want}, reference parser {got}")
        out.append({"id": pid_, "requirements": ["R-LIVE-7", "R-LIVE-2"], "description": descr,
                    "text": text, "expect": want})
    return {"generator": "spec/tools/gen_vectors.py", "protocol_version": 1, "cases": out}


# ---------------------------------------------------------------- output
def render(obj) -> str:
    """JSON with one vector/step per line group: stable, diff-friendly."""
    return json.dumps(obj, indent=1, sort_keys=False) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true",
                    help="exit 1 if the committed vector files differ from what is generated")
    ap.add_argument("--out", default=VEC, help="output directory (default spec/vectors)")
    a = ap.parse_args(argv)
    files = {"headers.json": render(build_headers()),
             "sequences.json": render(build_sequences()),
             "procstat.json": render(build_procstat())}
    bad = 0
    for name, text in files.items():
        path = os.path.join(a.out, name)
        if a.check:
            try:
                with open(path, encoding="utf-8") as fh:
                    cur = fh.read()
            except FileNotFoundError:
                cur = None
            if cur != text:
                print(f"gen_vectors --check: {path} differs from the generated vectors "
                      f"(run spec/tools/gen_vectors.py)", file=sys.stderr)
                bad = 1
        else:
            with open(path, "w", encoding="utf-8") as fh:
                fh.write(text)
    if a.check and not bad:
        print("gen_vectors --check: vectors up to date")
    return bad


if __name__ == "__main__":
    sys.exit(main())
