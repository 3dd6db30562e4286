"""The protocol v2 vector cases (spec/vectors/headers_v2.json, messages_v2.json).

Each case states by hand the check of PROTOCOL.md Part II it exercises and the error it expects;
gen_vectors_v2.py runs its own validator on every case and refuses to write the files when the two
disagree. Every invalid case has exactly one defect, except the cases whose id ends in -ORDER,
which fix which of two defects is reported first.
"""
from __future__ import annotations

import json
import struct

from gen_vectors import DTYPES, U64, slot
from gen_vectors import encode as v1_encode
from gen_vectors import fields_for as v1_fields_for
from gen_vectors_v2 import (
    RECORD,
    encode,
    encode_table,
    fields_for,
    initial_table,
    place,
    product,
    record_of,
    schemas_block,
)

MiB = 1 << 20


def F(name, dtype, *shape):
    return {"name": name, "dtype": dtype, "shape": list(shape)}


def up(n):
    return {"upto": n}


def IP(name, target):
    return {"name": name, "inplace": target}


CAMERA = ([F("image", "uint8", 480, 640, 3), F("stamp", "float64")],
          [F("boxes", "float32", up(100), 6)])
INPLACE = ([F("array", "float32", 512, 512)], [IP("array", "array")])
MIXED = ([F("state", "float64", up(64)), F("grid", "uint16", up(4), 5, up(6)), F("flag", "bool")],
         [F("action", "float32", up(8)), IP("grid", "grid"), F("code", "int8")])
SCALARS = ([F("t", "float64"), F("n", "int32")], [F("ok", "bool"), F("z", "complex128")])
EMPTY: tuple = ([], [])
DT = [name for _, (name, _) in sorted(DTYPES.items())]        # the 14 dtype names, by code


def max_fields_schemas():
    """16 request fields cycling through every dtype, 16 reply fields (8 in place, 8 own)."""
    shapes = [(), (3,), (up(5),), (2, up(3)), (4, 4), (up(2), 2, 2), (1,), (0,)]
    req = [F(f"f{k:02d}", DT[k % 14], *shapes[k % 8]) for k in range(16)]
    rep = [IP(f"f{k:02d}", f"f{k:02d}") for k in range(8)]
    rep += [F(f"r{k:02d}", DT[(k + 5) % 14], *shapes[(k + 3) % 8]) for k in range(8, 16)]
    return req, rep


# ---------------------------------------------------------------- headers_v2.json
def rec_off(i: int, field: str) -> int:
    """Absolute offset of `field` in schema-table record i (§II.3.2)."""
    return 0x200 + RECORD * i + {"name": 0, "dtype": 32, "ndim": 36, "variable_mask": 40,
                                 "alias": 44, "max_shape": 48, "offset": 112,
                                 "max_nbytes": 120}[field]


def patch(raw: bytes, off: int, fmt: str, *vals) -> bytes:
    b = bytearray(raw)
    struct.pack_into(fmt, b, off, *vals)
    return bytes(b)


def unchecked_fields(request_records: list, reply_records: list) -> dict:
    """Header fields for records that R-SCHEMA-3 would refuse (more than 16 fields, two reply
    fields onto one target): placed by R-SCHEMA-7 all the same."""
    g = place(request_records, reply_records)
    return {"magic": "SHMBRIDG", "version_major": 2, "version_minor": 0,
            "header_size": g["header_size"], "capacity": g["capacity"],
            "segment_size": g["segment_size"], "flags": 0, "max_dims": 8,
            "geometry": {k: g[k] for k in ("request_fields", "reply_fields",
                                            "request_area_offset", "request_area_size",
                                            "reply_area_offset", "reply_area_size")},
            "reply_code": 0, "word": 0, "waiters": 0, "requester": slot(), "responder": slot(),
            "creator": slot(), "request_schema": request_records, "reply_schema": reply_records}


def header_cases():
    valid, invalid, decode_only = [], [], []

    def add_valid(vid, reqs, descr, schemas, mapping=None, **over):
        f = fields_for(*schemas, **over)
        valid.append({"id": vid, "requirements": reqs, "description": descr,
                      "schemas": schemas_block(*schemas), "fields": f,
                      "mapping_size": f["segment_size"] if mapping is None else mapping})

    add_valid("H2-VALID-CAMERA", ["R-SCHEMA-5", "R-SCHEMA-6", "R-SCHEMA-7", "R-FIELD-2"],
              "the camera case of PROTOCOL.md §II.4: image uint8 (480, 640, 3) + stamp float64 () "
              "-> boxes float32 (<=100, 6)", CAMERA)
    add_valid("H2-VALID-INPLACE", ["R-SCHEMA-4", "R-SCHEMA-7"],
              "the v1-like case: array float32 (512, 512), reply in place onto 'array' (the reply "
              "area is its table only)", INPLACE)
    add_valid("H2-VALID-EMPTY", ["R-SCHEMA-1", "R-SCHEMA-7"],
              "no fields in either schema: header_size 512, both areas at 512 with size 0, "
              "capacity 0", EMPTY)
    add_valid("H2-VALID-MAX-FIELDS", ["R-SCHEMA-1", "R-SCHEMA-5", "R-DTYPE-1", "R-SCHEMA-4"],
              "16 request fields (every dtype, 0-d to 3-d, fixed and variable) and 16 reply fields "
              "(8 in place, 8 own): header_size 4608", max_fields_schemas())
    add_valid("H2-VALID-SCALARS", ["R-SCHEMA-6", "R-SCHEMA-7"],
              "0-d fields only: t float64, n int32 -> ok bool, z complex128 "
              "(max_nbytes = itemsize)",
              SCALARS)
    add_valid("H2-VALID-MIXED", ["R-SCHEMA-4", "R-SCHEMA-6", "R-SCHEMA-7"],
              "several variable extents in one field, and an in-place reply field with variable "
              "extents between two own-storage reply fields", MIXED)
    add_valid("H2-VALID-REQUEST-ONLY", ["R-SCHEMA-1"],
              "a reply with no fields (an acknowledgement)",
              ([F("pose", "float64", 4, 4), F("id", "uint32")], []))
    add_valid("H2-VALID-REPLY-ONLY", ["R-SCHEMA-1"],
              "a request with no fields (a trigger) and a variable reply",
              ([], [F("frame", "uint8", up(1080), up(1920), 3)]))
    add_valid("H2-VALID-NDIM8-ZERO-SIZE", ["R-SCHEMA-6", "R-SCHEMA-7"],
              "an 8-d field with variable extents 1, 3 and 6; a field of max_nbytes 0 (int64 "
              "(0, 5)) shares its offset with the next field",
              ([F("nd", "uint16", 2, up(3), 1, up(2), 2, 1, up(1), 2), F("none", "int64", 0, 5),
                F("after", "uint8", 7)], [F("none", "float32", up(0), 3), F("last", "int16")]))
    add_valid("H2-VALID-NAMES", ["R-SCHEMA-2"],
              "names of 31 characters, '_', '_9', 'A'; the same name ('x') in the request and "
              "the reply, each with own storage",
              ([F("a" * 30 + "Z", "int8"), F("_", "int8"), F("_9", "int8"), F("x", "int8")],
               [F("A", "int8"), F("x", "int16")]))
    add_valid("H2-VALID-BIG-MAXIMA", ["R-SCHEMA-7", "R-SCHEMA-9"],
              "large maxima: float32 (<=2^32, 3) and uint8 (<=2^40): 48 GiB + 1 TiB of storage "
              "(mapping_size = segment_size; the OS object is never made)",
              ([F("cloud", "float32", up(1 << 32), 3), F("raw", "uint8", up(1 << 40))],
               [F("sum", "float64")]))
    add_valid("H2-VALID-NEAR-2^64", ["R-SCHEMA-7", "R-SCHEMA-9"],
              "one uint8 field of up to 2^64 - 4096 bytes: segment_size 2^64 - 3328, every sum "
              "of R-SCHEMA-7 just below 2^64 (exact arithmetic)",
              ([F("huge", "uint8", up(U64 - 4095))], []))
    add_valid("H2-VALID-MINOR-3", ["R-VER-2"], "version_minor 3 is accepted", CAMERA,
              version_minor=3)
    add_valid("H2-VALID-ACTIVE", ["R-SCHEMA-5", "R-SCHEMA-9"],
              "a segment in use: word REPLIED seq 77, waiters 1, reply_code 19 (SCHEMA_MISMATCH), "
              "slots filled (the word, reply_code and slots are not judged by validation)", MIXED,
              word=(77 << 4) | 0x2, waiters=1, reply_code=19,
              requester=slot(4242, 1, 123456789, 3), responder=slot(0, 2, 987654321, 5),
              creator=slot(4242, 1, 123456789, 1))
    add_valid("H2-VALID-MAPPING-LARGER", ["R-SCHEMA-9", "R-SEG-8"],
              "the OS object is larger than segment_size (page-rounded)", SCALARS, mapping=4096)

    cam = fields_for(*CAMERA)
    CAM = encode(cam)
    MAP = cam["segment_size"]
    inp = fields_for(*INPLACE)
    INP = encode(inp)
    mix = fields_for(*MIXED)
    MIX = encode(mix)

    def add(vid, reqs, descr, err, check, raw, mapping=MAP):
        invalid.append({"id": vid, "requirements": reqs, "description": descr, "hex": raw.hex(),
                        "mapping_size": mapping, "error": err, "check": check})

    def with_fields(base, **kw):
        f = json.loads(json.dumps(base))
        f.update(kw)
        return encode(f)

    C = "CORRUPT_HEADER"
    # H1-H4: size, magic, version (before any other field).
    add("H2-BAD-MAPPING-TINY", ["R-SCHEMA-9"], "a valid camera header in an OS object of 100 "
        "bytes", C, "H1", CAM, mapping=100)
    add("H2-BAD-MAPPING-TINY-ZERO-MAGIC-ORDER", ["R-SCHEMA-9", "R-SEG-6"],
        "512 zero bytes in an OS object of 8 bytes: H1 comes before H2", C, "H1", bytes(512),
        mapping=8)
    add("H2-INIT-ZERO-MAGIC", ["R-SCHEMA-9", "R-SEG-6"],
        "magic all zero, every other field written: still initialising (attach with timeout 0 "
        "fails with SEGMENT_NOT_FOUND)", "SEGMENT_NOT_FOUND", "H2", patch(CAM, 0, "<8s", bytes(8)))
    add("H2-INIT-ZERO-HEADER", ["R-SCHEMA-9", "R-SEG-6"],
        "the 512 bytes of the fixed part are zero", "SEGMENT_NOT_FOUND", "H2", bytes(512),
        mapping=4096)
    add("H2-INIT-ZERO-MAGIC-V1-ORDER", ["R-SCHEMA-9", "R-SEG-6", "R-VER-2"],
        "a v1 header with magic zero: H2 comes before H4", "SEGMENT_NOT_FOUND", "H2",
        patch(v1_encode(v1_fields_for(11, [512, 512])), 0, "<8s", bytes(8)), mapping=1049088)
    add("H2-BAD-MAGIC", ["R-SCHEMA-9", "R-LAYOUT-3"], "magic SHMBRIDX", C, "H3",
        with_fields(cam, magic="SHMBRIDX"))
    add("H2-BAD-MAGIC-VERSION-ORDER", ["R-SCHEMA-9", "R-VER-2"],
        "bad magic and version_major 1: H3 comes before H4", C, "H3",
        with_fields(cam, magic="XXXXXXXX", version_major=1))
    v1demo = v1_encode(v1_fields_for(11, [512, 512]))
    add("H2-BAD-VERSION-1", ["R-VER-4", "R-SCHEMA-9"],
        "the v1 demo header (float32 (512, 512)) read by the v2 API: VERSION_MISMATCH "
        "('uses protocol v1 ... attach with Requester/Responder')", "VERSION_MISMATCH", "H4",
        v1demo, mapping=1049088)
    add("H2-BAD-VERSION-3", ["R-VER-4"], "version_major 3", "VERSION_MISMATCH", "H4",
        with_fields(cam, version_major=3))
    add("H2-BAD-VERSION-0", ["R-VER-4"], "version_major 0", "VERSION_MISMATCH", "H4",
        with_fields(cam, version_major=0))
    add("H2-BAD-VERSION-BYTESWAPPED", ["R-VER-4", "R-LAYOUT-1"],
        "version_major 0x0200 (2 written big-endian)", "VERSION_MISMATCH", "H4",
        with_fields(cam, version_major=0x0200))
    add("H2-BAD-VERSION-COUNTS-ORDER", ["R-VER-2", "R-SCHEMA-9"],
        "version_major 3 and request_fields 99: the version is checked before any other field",
        "VERSION_MISMATCH", "H4", patch(with_fields(cam, version_major=3), 0x040, "<I", 99))
    # H5-H10: counts, sizes, mapping.
    seventeen = [record_of(F(f"q{k}", "int8", 2), None) for k in range(17)]
    add("H2-BAD-REQUEST-FIELDS-17", ["R-SCHEMA-1", "R-SCHEMA-9"],
        "17 request records, each valid and placed by R-SCHEMA-7 (header_size 2816)", C, "H5",
        encode(unchecked_fields(seventeen, [record_of(F("r", "int8"), None)])), mapping=1 << 16)
    add("H2-BAD-REPLY-FIELDS-17", ["R-SCHEMA-1", "R-SCHEMA-9"],
        "17 reply records, each valid and placed by R-SCHEMA-7", C, "H5",
        encode(unchecked_fields([], [record_of(F(f"r{k}", "int8", 2), None)
                                     for k in range(17)])), mapping=1 << 16)
    add("H2-BAD-FIELDS-HUGE", ["R-SCHEMA-9"], "request_fields 0xffffffff", C, "H5",
        patch(CAM, 0x040, "<I", 0xFFFFFFFF))
    add("H2-BAD-HEADER-SIZE-PLUS-128", ["R-SCHEMA-5", "R-SCHEMA-9"],
        "header_size 1024 with 2 + 1 records (896 expected); segment_size follows it", C, "H6",
        with_fields(cam, header_size=1024, segment_size=1024 + cam["capacity"]),
        mapping=MAP + 128)
    add("H2-BAD-HEADER-SIZE-512", ["R-SCHEMA-5", "R-SCHEMA-9"],
        "header_size 512 (the v1 value) with 2 + 1 records", C, "H6",
        with_fields(cam, header_size=512, segment_size=512 + cam["capacity"]))
    add("H2-BAD-COUNTS-SWAPPED", ["R-SCHEMA-9"],
        "request_fields 1 and reply_fields 1 while 3 records are written: header_size 896 no "
        "longer matches 512 + 128 x 2", C, "H6", patch(CAM, 0x040, "<I", 1))
    add("H2-BAD-MAX-DIMS", ["R-SCHEMA-9"], "max_dims 4", C, "H7", with_fields(cam, max_dims=4))
    add("H2-BAD-FLAGS", ["R-SCHEMA-9"], "flags 1 (all bits reserved)", C, "H8",
        with_fields(cam, flags=1))
    add("H2-BAD-SEGMENT-SIZE", ["R-SCHEMA-9"], "segment_size = capacity (header_size not added)",
        C, "H9", with_fields(cam, segment_size=cam["capacity"]))
    cap = U64 - 255
    add("H2-BAD-SEGMENT-SIZE-WRAP", ["R-SCHEMA-9"],
        "capacity 2^64 - 256 and segment_size (896 + capacity) mod 2^64: the sum is exact",
        C, "H9", with_fields(cam, capacity=cap, segment_size=(896 + cap) & U64))
    add("H2-BAD-MAPPING-SMALLER-THAN-SEGMENT", ["R-SCHEMA-9", "R-SEG-8"],
        "the OS object is one byte smaller than segment_size", C, "H10", CAM, mapping=MAP - 1)
    add("H2-BAD-MAPPING-SMALLER-THAN-HEADER", ["R-SCHEMA-9"],
        "the OS object (600 bytes) holds the fixed part but not the schema table (896 bytes): "
        "the records are never read", C, "H10", CAM, mapping=600)
    mf = fields_for(*max_fields_schemas())
    add("H2-BAD-MAPPING-MAX-FIELDS-4096", ["R-SCHEMA-9"],
        "16 + 16 records (header_size 4608) in an OS object of 4096 bytes", C, "H10", encode(mf),
        mapping=4096)
    big = fields_for([F("raw", "uint8", up(1 << 40))], [])
    add("H2-BAD-BIG-MAXIMA-MAPPING", ["R-SCHEMA-9", "R-SCHEMA-7"],
        "uint8 (<=2^40) declared, but the OS object is only 1 MiB", C, "H10", encode(big),
        mapping=MiB)

    # F1-F9 on records (request record 0 = image, 1 = stamp, reply record 0 = boxes at index 2).
    def name(i, raw_name, base=CAM):
        return patch(base, rec_off(i, "name"), "<32s", raw_name)

    add("H2-BAD-NAME-EMPTY", ["R-SCHEMA-2", "R-SCHEMA-9"], "request record 0: name all NUL", C,
        "F1", name(0, b""))
    add("H2-BAD-NAME-NO-NUL", ["R-SCHEMA-2", "R-SCHEMA-9"],
        "request record 0: 32 letters, no NUL (too long)", C, "F1", name(0, b"a" * 32))
    add("H2-BAD-NAME-ILLEGAL-CHAR", ["R-SCHEMA-2"], "request record 0: name 'ima-ge'", C, "F1",
        name(0, b"ima-ge"))
    add("H2-BAD-NAME-LEADING-DIGIT", ["R-SCHEMA-2"], "request record 1: name '1stamp'", C, "F1",
        name(1, b"1stamp"))
    add("H2-BAD-NAME-NON-ASCII", ["R-SCHEMA-2"], "request record 0: name 'im\\xc3\\xa9' (UTF-8)",
        C, "F1", name(0, "imé".encode()))
    add("H2-BAD-NAME-SPACE", ["R-SCHEMA-2"], "request record 0: name 'im age'", C, "F1",
        name(0, b"im age"))
    add("H2-BAD-NAME-PADDING", ["R-SCHEMA-2", "R-SCHEMA-6"],
        "request record 0: 'image', NUL, then 'x': the padding after the first NUL is not NUL",
        C, "F1", name(0, b"image\0x"))
    add("H2-BAD-NAME-REPLY", ["R-SCHEMA-2"], "reply record 0: name 'box.es'", C, "F1",
        name(2, b"box.es"))
    add("H2-BAD-NAME-DUPLICATE-REQUEST", ["R-SCHEMA-2"],
        "request record 1 is named 'image' like record 0", C, "F2", name(1, b"image"))
    add("H2-BAD-NAME-DUPLICATE-REPLY", ["R-SCHEMA-2"],
        "MIXED: reply record 2 is named 'action' like reply record 0", C, "F2",
        name(5, b"action", MIX), mapping=mix["segment_size"])
    add("H2-BAD-DTYPE-0", ["R-DTYPE-1", "R-SCHEMA-9"], "request record 1: dtype 0", C, "F3",
        patch(CAM, rec_off(1, "dtype"), "<I", 0))
    add("H2-BAD-DTYPE-15", ["R-DTYPE-1"], "reply record 0: dtype 15", C, "F3",
        patch(CAM, rec_off(2, "dtype"), "<I", 15))
    add("H2-BAD-DTYPE-FFFFFFFF", ["R-DTYPE-1"], "request record 0: dtype 0xffffffff", C, "F3",
        patch(CAM, rec_off(0, "dtype"), "<I", 0xFFFFFFFF))
    add("H2-BAD-NDIM-9", ["R-SCHEMA-1"], "request record 0: ndim 9", C, "F4",
        patch(CAM, rec_off(0, "ndim"), "<I", 9))
    add("H2-BAD-NDIM-HUGE", ["R-SCHEMA-1"], "reply record 0: ndim 0xffffffff", C, "F4",
        patch(CAM, rec_off(2, "ndim"), "<I", 0xFFFFFFFF))
    add("H2-BAD-MAX-SHAPE-UNUSED", ["R-SCHEMA-6"], "request record 0 (ndim 3): max_shape[3] = 1",
        C, "F5", patch(CAM, rec_off(0, "max_shape") + 24, "<Q", 1))
    add("H2-BAD-MAX-SHAPE-SCALAR", ["R-SCHEMA-6"], "request record 1 (0-d): max_shape[0] = 1",
        C, "F5", patch(CAM, rec_off(1, "max_shape"), "<Q", 1))
    add("H2-BAD-MASK-BIT-NDIM", ["R-SCHEMA-6"],
        "reply record 0 (ndim 2): variable_mask 0b101 (bit 2 >= ndim)", C, "F6",
        patch(CAM, rec_off(2, "variable_mask"), "<I", 0b101))
    add("H2-BAD-MASK-SCALAR", ["R-SCHEMA-6"], "request record 1 (0-d): variable_mask 1", C, "F6",
        patch(CAM, rec_off(1, "variable_mask"), "<I", 1))
    add("H2-BAD-MASK-HIGH-BIT", ["R-SCHEMA-6"], "request record 0: variable_mask 0x80000000",
        C, "F6", patch(CAM, rec_off(0, "variable_mask"), "<I", 0x80000000))
    add("H2-BAD-MAX-NBYTES-NO-ITEMSIZE", ["R-SCHEMA-6"],
        "reply record 0: max_nbytes 600 = product(max_shape) without itemsize 4", C, "F7",
        patch(CAM, rec_off(2, "max_nbytes"), "<Q", 600))
    add("H2-BAD-MAX-NBYTES-PLUS-1", ["R-SCHEMA-6"], "request record 1: max_nbytes 9", C, "F7",
        patch(CAM, rec_off(1, "max_nbytes"), "<Q", 9))
    add("H2-BAD-MAX-NBYTES-OVERFLOW", ["R-SCHEMA-6", "R-SCHEMA-9"],
        "request record 0: max_shape (2^32, 2^32, 1), max_nbytes 0 (the product wrapped)", C,
        "F7", patch(patch(CAM, rec_off(0, "max_shape"), "<QQQ", 1 << 32, 1 << 32, 1),
                    rec_off(0, "max_nbytes"), "<Q", 0))
    add("H2-BAD-ALIAS-ON-REQUEST", ["R-SCHEMA-4", "R-SCHEMA-6"],
        "request record 1: alias 1 (request fields are never in place)", C, "F8",
        patch(CAM, rec_off(1, "alias"), "<I", 1))
    add("H2-BAD-ALIAS-OUT-OF-RANGE", ["R-SCHEMA-4"],
        "INPLACE: reply record 0 alias 2 with 1 request field", C, "F8",
        patch(INP, rec_off(1, "alias"), "<I", 2), mapping=inp["segment_size"])
    add("H2-BAD-ALIAS-HUGE", ["R-SCHEMA-4"], "INPLACE: reply record 0 alias 0xffffffff", C, "F8",
        patch(INP, rec_off(1, "alias"), "<I", 0xFFFFFFFF), mapping=inp["segment_size"])
    add("H2-BAD-ALIAS-DTYPE", ["R-SCHEMA-4"],
        "INPLACE: the in-place reply record says int32 (same itemsize) onto float32", C, "F8",
        patch(INP, rec_off(1, "dtype"), "<I", 6), mapping=inp["segment_size"])
    add("H2-BAD-ALIAS-SHAPE", ["R-SCHEMA-4"],
        "INPLACE: the in-place reply record says (256, 1024) onto (512, 512) (same max_nbytes)",
        C, "F8", patch(INP, rec_off(1, "max_shape"), "<QQ", 256, 1024),
        mapping=inp["segment_size"])
    add("H2-BAD-ALIAS-NDIM", ["R-SCHEMA-4"],
        "INPLACE: the in-place reply record says (262144,) onto (512, 512) (same max_nbytes)",
        C, "F8", patch(patch(INP, rec_off(1, "ndim"), "<I", 1), rec_off(1, "max_shape"), "<QQ",
                       512 * 512, 0), mapping=inp["segment_size"])
    add("H2-BAD-ALIAS-MASK", ["R-SCHEMA-4"],
        "MIXED: the in-place reply record 'grid' has variable_mask 0b001, its target 0b101", C,
        "F8", patch(MIX, rec_off(4, "variable_mask"), "<I", 0b001), mapping=mix["segment_size"])
    twice = unchecked_fields([record_of(F("array", "float32", 512, 512), None)], [])
    tgt = twice["request_schema"]
    twice = unchecked_fields(tgt, [record_of(IP("array", "array"), tgt),
                                   record_of(IP("copy", "array"), tgt)])
    add("H2-BAD-ALIAS-TWICE", ["R-SCHEMA-4"],
        "two reply records ('array', 'copy') in place onto the same request field", C, "F8",
        encode(twice), mapping=twice["segment_size"])
    stamp_off = cam["request_schema"][1]["offset"]
    image_off = cam["request_schema"][0]["offset"]
    add("H2-BAD-OFFSET-SHIFTED", ["R-SCHEMA-7", "R-SCHEMA-9"],
        "request record 1: offset + 64 (aligned, inside the area, but not the rule's)", C, "F9",
        patch(CAM, rec_off(1, "offset"), "<Q", stamp_off + 64))
    add("H2-BAD-OFFSET-MISALIGNED", ["R-SCHEMA-7"], "request record 0: offset + 8", C, "F9",
        patch(CAM, rec_off(0, "offset"), "<Q", image_off + 8))
    add("H2-BAD-OFFSET-OVERLAP", ["R-SCHEMA-7"],
        "request record 1 ('stamp') placed inside 'image' (image offset + 64)", C, "F9",
        patch(CAM, rec_off(1, "offset"), "<Q", image_off + 64))
    add("H2-BAD-OFFSET-IN-TABLE", ["R-SCHEMA-7", "R-FIELD-1"],
        "request record 0 placed at the request area's start, over its message table", C, "F9",
        patch(CAM, rec_off(0, "offset"), "<Q", cam["header_size"]))
    add("H2-BAD-OFFSET-BEYOND-SEGMENT", ["R-SCHEMA-7"], "reply record 0: offset = segment_size",
        C, "F9", patch(CAM, rec_off(2, "offset"), "<Q", cam["segment_size"]))
    add("H2-BAD-OFFSET-REPLY-ON-REQUEST", ["R-SCHEMA-7", "R-SCHEMA-4"],
        "reply record 0 ('boxes', own storage, alias 0) at the offset of request field 'image'",
        C, "F9", patch(CAM, rec_off(2, "offset"), "<Q", image_off))
    add("H2-BAD-OFFSET-ZERO", ["R-SCHEMA-7"], "request record 0: offset 0 (over the header)", C,
        "F9", patch(CAM, rec_off(0, "offset"), "<Q", 0))
    own = inp["geometry"]["reply_area_offset"] + 128
    add("H2-BAD-ALIAS-OWN-OFFSET", ["R-SCHEMA-4", "R-SCHEMA-7"],
        "INPLACE: the in-place reply record has an offset in the reply area (after its table) "
        "instead of its target's", C, "F9", patch(INP, rec_off(1, "offset"), "<Q", own),
        mapping=inp["segment_size"])
    # H12-H16: the geometry block.
    g = cam["geometry"]
    add("H2-BAD-REQUEST-AREA-OFFSET", ["R-SCHEMA-7"], "request_area_offset 512", C, "H12",
        patch(CAM, 0x048, "<Q", 512))
    add("H2-BAD-REQUEST-AREA-SIZE", ["R-SCHEMA-7"], "request_area_size + 64", C, "H13",
        patch(CAM, 0x050, "<Q", g["request_area_size"] + 64))
    add("H2-BAD-REPLY-AREA-OFFSET", ["R-SCHEMA-7"], "reply_area_offset + 64", C, "H14",
        patch(CAM, 0x058, "<Q", g["reply_area_offset"] + 64))
    add("H2-BAD-REPLY-AREA-SIZE", ["R-SCHEMA-7"], "reply_area_size - 64", C, "H15",
        patch(CAM, 0x060, "<Q", g["reply_area_size"] - 64))
    add("H2-BAD-CAPACITY", ["R-SCHEMA-7"],
        "capacity + 64 with segment_size + 64 and a big enough OS object: capacity is not the "
        "sum of the areas", C, "H16",
        with_fields(cam, capacity=cam["capacity"] + 64, segment_size=cam["segment_size"] + 64),
        mapping=MAP + 64)

    # Reserved bytes are ignored on read (R-SCHEMA-5): decoding gives the fields, encoding the
    # fields gives zeros there.
    def add_decode(vid, descr, base_fields, base_raw, ranges, mapping):
        raw = bytearray(base_raw)
        for off, data in ranges:
            raw[off:off + len(data)] = data
        decode_only.append({"id": vid, "requirements": ["R-SCHEMA-5"], "description": descr,
                            "fields": base_fields, "mapping_size": mapping, "hex": raw.hex()})

    junk = [(0x028, b"\xa5" * 24), (0x068, b"\xa5" * 40), (0x090, b"\xa5" * 80),
            (0x0E4, b"\xa5" * 28), (0x108, b"\xa5" * 56), (0x1A0, b"\xa5" * 96)]
    junk += [(0x140 + 32 * i + 24, b"\xa5" * 8) for i in range(3)]
    add_decode("H2-DECODE-RESERVED-A5", "every reserved byte of the fixed part is 0xa5 (the "
               "geometry block's tail, v1's message descriptor, the slots' tails included)",
               cam, CAM, junk, MAP)
    v1msg = struct.pack("<II8QQ", 99, 9, *([7] * 8), 1)
    add_decode("H2-DECODE-V1-MESSAGE-INVALID", "0x090 holds an invalid v1 descriptor (dtype 99, "
               "ndim 9): v2 does not read v1's message descriptor", mix, MIX, [(0x090, v1msg)],
               mix["segment_size"])
    return valid, invalid, decode_only


# ---------------------------------------------------------------- messages_v2.json
SCHEMAS = {
    "SCH-CAMERA": ("the camera case (PROTOCOL.md §II.4)", CAMERA),
    "SCH-INPLACE": ("the v1-like in-place case", INPLACE),
    "SCH-MIXED": ("several variable extents; an in-place reply field with variable extents",
                  MIXED),
    "SCH-SCALARS": ("0-d fields only", SCALARS),
    "SCH-EMPTY": ("no fields in either schema", EMPTY),
}


def message_cases():
    schemas = [{"id": sid, "description": d, **schemas_block(*s)}
               for sid, (d, s) in SCHEMAS.items()]
    recs = {sid: fields_for(*s) for sid, (_, s) in SCHEMAS.items()}

    def table_valid():
        out = []

        def add(vid, reqs, descr, sid, side, shapes):
            rs = recs[sid][f"{side}_schema"]
            entries = [{"dtype": r["dtype"], "ndim": len(s), "shape": list(s),
                        "nbytes": DTYPES[r["dtype"]][1] * product(s)} for r, s in zip(rs, shapes)]
            out.append({"id": vid, "requirements": reqs, "description": descr, "schema": sid,
                        "side": side, "entries": entries, "hex": encode_table(entries).hex()})

        add("M-VALID-CAMERA-REQUEST", ["R-FIELD-1", "R-FIELD-8"], "a camera request",
            "SCH-CAMERA", "request", [[480, 640, 3], []])
        add("M-VALID-CAMERA-REPLY-17", ["R-FIELD-1", "R-FIELD-8"], "17 detections",
            "SCH-CAMERA", "reply", [[17, 6]])
        add("M-VALID-CAMERA-REPLY-0", ["R-FIELD-8"], "no detections: variable extent 0",
            "SCH-CAMERA", "reply", [[0, 6]])
        add("M-VALID-CAMERA-REPLY-MAX", ["R-FIELD-8"], "100 detections: the maximum",
            "SCH-CAMERA", "reply", [[100, 6]])
        add("M-VALID-INPLACE-REPLY", ["R-FIELD-1", "R-FIELD-8", "R-SCHEMA-4"],
            "the in-place reply field has its own table entry", "SCH-INPLACE", "reply",
            [[512, 512]])
        add("M-VALID-MIXED-REQUEST", ["R-FIELD-8"], "state (3,), grid (4, 5, 0), flag ()",
            "SCH-MIXED", "request", [[3], [4, 5, 0], []])
        add("M-VALID-MIXED-REPLY", ["R-FIELD-8"],
            "action (0,), grid in place (1, 5, 6) (other extents than the request's), code ()",
            "SCH-MIXED", "reply", [[0], [1, 5, 6], []])
        add("M-VALID-SCALARS-REPLY", ["R-FIELD-8"], "0-d fields: one element each",
            "SCH-SCALARS", "reply", [[], []])
        add("M-VALID-EMPTY-REQUEST", ["R-FIELD-1"], "no fields: an empty table (hex '')",
            "SCH-EMPTY", "request", [])
        initial = initial_table(recs["SCH-MIXED"]["request_schema"])
        assert [e["shape"] for e in initial] == [[0], [0, 5, 0], []]
        add("M-VALID-MIXED-INITIAL", ["R-FIELD-2"],
            "the table a creator writes (R-FIELD-2): variable extents 0", "SCH-MIXED", "request",
            [[0], [0, 5, 0], []])
        return out

    def table_invalid():
        out = []

        def add(vid, reqs, descr, sid, side, shapes, edits, err, check, field):
            rs = recs[sid][f"{side}_schema"]
            entries = [{"dtype": r["dtype"], "ndim": len(s), "shape": list(s),
                        "nbytes": DTYPES[r["dtype"]][1] * product(s)} for r, s in zip(rs, shapes)]
            raw = bytearray(encode_table(entries))
            for k, what, value in edits:
                off, fmt = {"dtype": (0, "<I"), "ndim": (4, "<I"), "nbytes": (72, "<Q")}.get(
                    what, (8 + 8 * int(what[5:]) if what.startswith("shape") else 0, "<Q"))
                struct.pack_into(fmt, raw, 80 * k + off, value)
            out.append({"id": vid, "requirements": reqs, "description": descr, "schema": sid,
                        "side": side, "hex": bytes(raw).hex(), "error": err, "check": check,
                        "field": field})

        C, D, S = "CORRUPT_HEADER", "DTYPE_MISMATCH", "SHAPE_MISMATCH"
        cam_req = [[480, 640, 3], []]
        add("M-BAD-DTYPE-0", ["R-FIELD-8", "R-DTYPE-1"], "stamp entry: dtype 0", "SCH-CAMERA",
            "request", cam_req, [(1, "dtype", 0)], C, "E1", "stamp")
        add("M-BAD-DTYPE-15", ["R-FIELD-8"], "boxes entry: dtype 15", "SCH-CAMERA", "reply",
            [[3, 6]], [(0, "dtype", 15)], C, "E1", "boxes")
        add("M-BAD-DTYPE-FFFFFFFF", ["R-FIELD-8"], "image entry: dtype 0xffffffff",
            "SCH-CAMERA", "request", cam_req, [(0, "dtype", 0xFFFFFFFF)], C, "E1", "image")
        add("M-BAD-NDIM-9", ["R-FIELD-8"], "boxes entry: ndim 9", "SCH-CAMERA", "reply",
            [[3, 6]], [(0, "ndim", 9)], C, "E2", "boxes")
        add("M-BAD-UNUSED-EXTENT", ["R-FIELD-8"], "boxes entry (ndim 2): shape[2] = 1",
            "SCH-CAMERA", "reply", [[3, 6]], [(0, "shape2", 1)], C, "E3", "boxes")
        add("M-BAD-SCALAR-EXTENT", ["R-FIELD-8"], "stamp entry (0-d): shape[0] = 1",
            "SCH-CAMERA", "request", cam_req, [(1, "shape0", 1)], C, "E3", "stamp")
        add("M-BAD-NBYTES-PLUS-1", ["R-FIELD-8"], "boxes entry (3, 6): nbytes 73",
            "SCH-CAMERA", "reply", [[3, 6]], [(0, "nbytes", 73)], C, "E4", "boxes")
        add("M-BAD-NBYTES-NO-ITEMSIZE", ["R-FIELD-8"], "boxes entry (3, 6): nbytes 18",
            "SCH-CAMERA", "reply", [[3, 6]], [(0, "nbytes", 18)], C, "E4", "boxes")
        add("M-BAD-NBYTES-OVERFLOW", ["R-FIELD-8"],
            "boxes entry (2^62, 6): nbytes 0, the wrapped product", "SCH-CAMERA", "reply",
            [[3, 6]], [(0, "shape0", 1 << 62), (0, "nbytes", 0)], C, "E4", "boxes")
        add("M-BAD-DTYPE-DIFFERS", ["R-FIELD-8"],
            "image entry says int8 (valid, nbytes consistent) for a uint8 field", "SCH-CAMERA",
            "request", cam_req, [(0, "dtype", 2)], D, "E5", "image")
        add("M-BAD-DTYPE-DIFFERS-SCALAR", ["R-FIELD-8"],
            "stamp entry says int64 (itemsize 8) for a float64 field", "SCH-CAMERA", "request",
            cam_req, [(1, "dtype", 8)], D, "E5", "stamp")
        add("M-BAD-NDIM-DIFFERS", ["R-FIELD-8"],
            "boxes entry with ndim 1, shape (18,), nbytes 72", "SCH-CAMERA", "reply", [[3, 6]],
            [(0, "ndim", 1), (0, "shape0", 18), (0, "shape1", 0)], S, "E6", "boxes")
        add("M-BAD-FIXED-EXTENT", ["R-FIELD-8"], "image entry (480, 640, 4), nbytes consistent",
            "SCH-CAMERA", "request", cam_req, [(0, "shape2", 4), (0, "nbytes", 480 * 640 * 4)],
            S, "E7", "image")
        add("M-BAD-FIXED-EXTENT-OF-VARIABLE-FIELD", ["R-FIELD-8"],
            "boxes entry (3, 7): the fixed extent 6 differs", "SCH-CAMERA", "reply", [[3, 6]],
            [(0, "shape1", 7), (0, "nbytes", 84)], S, "E7", "boxes")
        add("M-BAD-VARIABLE-OVER-MAX", ["R-FIELD-8"],
            "boxes entry (101, 6): the variable extent is above its maximum 100", "SCH-CAMERA",
            "reply", [[3, 6]], [(0, "shape0", 101), (0, "nbytes", 2424)], C, "E8", "boxes")
        add("M-BAD-VARIABLE-HUGE", ["R-FIELD-8"],
            "MIXED state entry (2^60,) with a consistent nbytes 2^63: far above its maximum 64",
            "SCH-MIXED", "request", [[3], [4, 5, 0], []],
            [(0, "shape0", 1 << 60), (0, "nbytes", 1 << 63)], C, "E8", "state")
        add("M-BAD-INPLACE-OVER-MAX", ["R-FIELD-8", "R-SCHEMA-4"],
            "MIXED reply: the in-place field grid (5, 5, 6), 5 above its maximum 4", "SCH-MIXED",
            "reply", [[0], [4, 5, 6], []], [(1, "shape0", 5), (1, "nbytes", 300)], C, "E8",
            "grid")
        add("M-BAD-INPLACE-DTYPE", ["R-FIELD-8", "R-SCHEMA-4"],
            "INPLACE reply: the in-place field's entry says int32", "SCH-INPLACE", "reply",
            [[512, 512]], [(0, "dtype", 6)], D, "E5", "array")
        add("M-BAD-SECOND-FIELD", ["R-FIELD-8"],
            "MIXED request: state is fine, grid's fixed extent 5 says 4", "SCH-MIXED", "request",
            [[3], [4, 5, 0], []], [(1, "shape1", 4)], S, "E7", "grid")
        add("M-BAD-FIRST-FIELD-WINS-ORDER", ["R-FIELD-8"],
            "SCALARS reply: ok has dtype int8 (E5), z has dtype 0 (E1): the first field decides",
            "SCH-SCALARS", "reply", [[], []], [(0, "dtype", 2), (1, "dtype", 0)], D, "E5", "ok")
        add("M-BAD-NBYTES-BEFORE-DTYPE-ORDER", ["R-FIELD-8"],
            "image says float32 with nbytes for uint8: E4 (malformed) comes before E5",
            "SCH-CAMERA", "request", cam_req, [(0, "dtype", 11)], C, "E4", "image")
        add("M-BAD-DTYPE-BEFORE-NDIM-ORDER", ["R-FIELD-8"],
            "boxes says int32, ndim 1, shape (18,), nbytes 72: E5 comes before E6", "SCH-CAMERA",
            "reply", [[3, 6]], [(0, "dtype", 6), (0, "ndim", 1), (0, "shape0", 18),
                                (0, "shape1", 0)], D, "E5", "boxes")
        add("M-BAD-FIXED-BEFORE-VARIABLE-ORDER", ["R-FIELD-8"],
            "grid (5, 4, 0): extent 0 above its maximum (E8) and extent 1 differs (E7): all fixed "
            "extents are checked first", "SCH-MIXED", "request", [[3], [4, 5, 0], []],
            [(1, "shape0", 5), (1, "shape1", 4)], S, "E7", "grid")
        return out

    def send_cases():
        out = []

        def add(vid, reqs, descr, sid, side, api, given, err="ok", check=None, field=None,
                shapes=None, taken=None, prepared=None):
            c = {"id": vid, "requirements": reqs, "description": descr, "schema": sid,
                 "side": side, "api": api, "given": given}
            if taken is not None:
                c["taken"] = taken
            if prepared is not None:
                c["prepared"] = prepared
            c.update(error=err, field=field, check=check)
            if err == "ok":
                c["shapes"] = shapes
            out.append(c)

        def G(name, dtype, *shape):
            return {"name": name, "dtype": dtype, "shape": list(shape)}

        def B(name, *shape):
            return {"name": name, "shape": list(shape)}

        R4 = ["R-FIELD-4"]
        img, stp = G("image", "uint8", 480, 640, 3), G("stamp", "float64")
        cam_ok = [["image", [480, 640, 3]], ["stamp", []]]
        add("SEND-CAMERA-OK", R4, "image and stamp as declared", "SCH-CAMERA", "request", "copy",
            [img, stp], shapes=cam_ok)
        add("SEND-CAMERA-OK-OTHER-ORDER", R4, "the caller's order does not matter",
            "SCH-CAMERA", "request", "copy", [stp, img], shapes=cam_ok)
        add("SEND-UNKNOWN-NAME", R4, "an extra field 'time'", "SCH-CAMERA", "request", "copy",
            [img, stp, G("time", "float64")], "SCHEMA_MISMATCH", "S1", "time")
        add("SEND-DUPLICATE", R4, "image given twice", "SCH-CAMERA", "request", "copy",
            [img, stp, img], "SCHEMA_MISMATCH", "S2", "image")
        add("SEND-MISSING", R4, "stamp not given", "SCH-CAMERA", "request", "copy", [img],
            "SCHEMA_MISMATCH", "S3", "stamp")
        add("SEND-NOTHING", R4, "no field given: the first missing one is named", "SCH-CAMERA",
            "request", "copy", [], "SCHEMA_MISMATCH", "S3", "image")
        add("SEND-UNKNOWN-BEFORE-MISSING-ORDER", R4,
            "'time' given instead of 'stamp': S1 (in the caller's order) comes before S3",
            "SCH-CAMERA", "request", "copy", [img, G("time", "float64")], "SCHEMA_MISMATCH", "S1",
            "time")
        add("SEND-MISSING-BEFORE-DTYPE-ORDER", R4,
            "image with a wrong dtype and stamp missing: S3 comes before S4", "SCH-CAMERA",
            "request", "copy", [G("image", "uint16", 480, 640, 3)], "SCHEMA_MISMATCH", "S3",
            "stamp")
        add("SEND-DTYPE", R4, "image as uint16", "SCH-CAMERA", "request", "copy",
            [G("image", "uint16", 480, 640, 3), stp], "DTYPE_MISMATCH", "S4", "image")
        add("SEND-DTYPE-SCALAR", R4, "stamp as float32 (no conversion)", "SCH-CAMERA", "request",
            "copy", [img, G("stamp", "float32")], "DTYPE_MISMATCH", "S4", "stamp")
        add("SEND-DTYPE-UNSUPPORTED", [*R4, "R-DTYPE-1"],
            "stamp with an unsupported dtype ('object')", "SCH-CAMERA", "request", "copy",
            [img, G("stamp", "object")], "DTYPE_MISMATCH", "S4", "stamp")
        add("SEND-NDIM", R4, "image (480, 640)", "SCH-CAMERA", "request", "copy",
            [G("image", "uint8", 480, 640), stp], "SHAPE_MISMATCH", "S5", "image")
        add("SEND-NDIM-SCALAR", R4, "stamp as shape (1,)", "SCH-CAMERA", "request", "copy",
            [img, G("stamp", "float64", 1)], "SHAPE_MISMATCH", "S5", "stamp")
        add("SEND-FIXED-EXTENT", R4, "image (480, 640, 4)", "SCH-CAMERA", "request", "copy",
            [G("image", "uint8", 480, 640, 4), stp], "SHAPE_MISMATCH", "S6", "image")
        add("SEND-FIRST-FIELD-WINS-ORDER", R4,
            "image (480, 640, 4) and stamp float32: schema order decides", "SCH-CAMERA",
            "request", "copy", [G("stamp", "float32"), G("image", "uint8", 480, 640, 4)],
            "SHAPE_MISMATCH", "S6", "image")
        add("SEND-MIXED-OK-MAX", R4, "state (64,), grid (4, 5, 6): every variable extent at its "
            "maximum", "SCH-MIXED", "request", "copy",
            [G("state", "float64", 64), G("grid", "uint16", 4, 5, 6), G("flag", "bool")],
            shapes=[["state", [64]], ["grid", [4, 5, 6]], ["flag", []]])
        add("SEND-MIXED-OK-ZERO", R4, "every variable extent 0", "SCH-MIXED", "request", "copy",
            [G("state", "float64", 0), G("grid", "uint16", 0, 5, 0), G("flag", "bool")],
            shapes=[["state", [0]], ["grid", [0, 5, 0]], ["flag", []]])
        add("SEND-MIXED-OVER-MAX", R4, "grid (4, 5, 7): extent 2 above its maximum 6",
            "SCH-MIXED", "request", "copy",
            [G("state", "float64", 1), G("grid", "uint16", 4, 5, 7), G("flag", "bool")],
            "CAPACITY_EXCEEDED", "S7", "grid")
        add("SEND-FIXED-BEFORE-VARIABLE-ORDER", R4,
            "grid (5, 6, 0): extent 0 over its maximum and fixed extent 1 differs: S6 first",
            "SCH-MIXED", "request", "copy",
            [G("state", "float64", 1), G("grid", "uint16", 5, 6, 0), G("flag", "bool")],
            "SHAPE_MISMATCH", "S6", "grid")
        add("SEND-EMPTY-OK", R4, "a schema with no fields: nothing to give", "SCH-EMPTY",
            "request", "copy", [], shapes=[])
        add("SEND-EMPTY-EXTRA", R4, "a field given to a schema with no fields", "SCH-EMPTY",
            "request", "copy", [G("x", "int8")], "SCHEMA_MISMATCH", "S1", "x")
        # zero-copy request buffers (R-FIELD-5)
        R5 = ["R-FIELD-5"]
        add("BUF-CAMERA-OK-NOTHING", R5, "request_buffer() with no shape: every field is fixed",
            "SCH-CAMERA", "request", "buffer", [], shapes=cam_ok)
        add("BUF-CAMERA-OK-FIXED-GIVEN", R5, "a fixed field may be given its declared shape",
            "SCH-CAMERA", "request", "buffer", [B("image", 480, 640, 3)], shapes=cam_ok)
        add("BUF-CAMERA-FIXED-WRONG", R5, "image given (480, 640, 4)", "SCH-CAMERA", "request",
            "buffer", [B("image", 480, 640, 4)], "SHAPE_MISMATCH", "S6", "image")
        add("BUF-MIXED-MISSING-VARIABLE", R5,
            "state (variable) given, grid (variable) not: S3 names grid", "SCH-MIXED", "request",
            "buffer", [B("state", 2)], "SCHEMA_MISMATCH", "S3", "grid")
        add("BUF-MIXED-OK", R5, "shapes for the variable fields; flag (fixed) omitted",
            "SCH-MIXED", "request", "buffer", [B("grid", 2, 5, 3), B("state", 7)],
            shapes=[["state", [7]], ["grid", [2, 5, 3]], ["flag", []]])
        add("BUF-MIXED-OVER-MAX", R5, "state (65,): above its maximum", "SCH-MIXED", "request",
            "buffer", [B("state", 65), B("grid", 1, 5, 1)], "CAPACITY_EXCEEDED", "S7", "state")
        add("BUF-UNKNOWN-NAME", R5, "a shape for 'points', not a field", "SCH-MIXED", "request",
            "buffer", [B("state", 1), B("points", 3)], "SCHEMA_MISMATCH", "S1", "points")
        # replies (R-FIELD-6)
        R6 = ["R-FIELD-6"]
        add("REPLY-CAMERA-OK", R6, "17 detections", "SCH-CAMERA", "reply", "copy",
            [G("boxes", "float32", 17, 6)], shapes=[["boxes", [17, 6]]],
            taken=[B("image", 480, 640, 3), B("stamp")])
        add("REPLY-CAMERA-OVER-MAX", R6, "101 detections", "SCH-CAMERA", "reply", "copy",
            [G("boxes", "float32", 101, 6)], "CAPACITY_EXCEEDED", "S7", "boxes",
            taken=[B("image", 480, 640, 3), B("stamp")])
        add("REPLY-CAMERA-MISSING", R6, "a reply without boxes (own storage, not prepared)",
            "SCH-CAMERA", "reply", "copy", [], "SCHEMA_MISMATCH", "S3", "boxes",
            taken=[B("image", 480, 640, 3), B("stamp")])
        add("REPLY-CAMERA-REQUEST-FIELD", R6,
            "'image' is a request field, not a reply field", "SCH-CAMERA", "reply", "copy",
            [G("boxes", "float32", 1, 6), G("image", "uint8", 480, 640, 3)], "SCHEMA_MISMATCH",
            "S1", "image", taken=[B("image", 480, 640, 3), B("stamp")])
        add("REPLY-CAMERA-PREPARED", R6,
            "boxes prepared by reply_field('boxes', (5, 6)), then reply() with no array",
            "SCH-CAMERA", "reply", "copy", [], shapes=[["boxes", [5, 6]]],
            taken=[B("image", 480, 640, 3), B("stamp")], prepared=[B("boxes", 5, 6)])
        add("REPLY-CAMERA-PREPARED-THEN-COPIED", R6,
            "boxes prepared as (5, 6), then copied as (2, 6): the copy wins", "SCH-CAMERA",
            "reply", "copy", [G("boxes", "float32", 2, 6)], shapes=[["boxes", [2, 6]]],
            taken=[B("image", 480, 640, 3), B("stamp")], prepared=[B("boxes", 5, 6)])
        add("REPLY-INPLACE-OMITTED", [*R6, "R-SCHEMA-4"],
            "the in-place field omitted: published with the request's shape (the v1 case)",
            "SCH-INPLACE", "reply", "copy", [], shapes=[["array", [512, 512]]],
            taken=[B("array", 512, 512)])
        add("REPLY-INPLACE-GIVEN", R6, "the in-place field copied in", "SCH-INPLACE", "reply",
            "copy", [G("array", "float32", 512, 512)], shapes=[["array", [512, 512]]],
            taken=[B("array", 512, 512)])
        add("REPLY-INPLACE-DTYPE", R6, "the in-place field given as float64", "SCH-INPLACE",
            "reply", "copy", [G("array", "float64", 512, 512)], "DTYPE_MISMATCH", "S4", "array",
            taken=[B("array", 512, 512)])
        mixed_taken = [B("state", 3), B("grid", 2, 5, 4), B("flag")]
        add("REPLY-MIXED-INPLACE-DEFAULT", R6,
            "action and code given, grid (in place) omitted: it takes the request's (2, 5, 4)",
            "SCH-MIXED", "reply", "copy", [G("code", "int8"), G("action", "float32", 8)],
            shapes=[["action", [8]], ["grid", [2, 5, 4]], ["code", []]], taken=mixed_taken)
        add("REPLY-MIXED-INPLACE-OTHER-SHAPE", R6,
            "grid (in place) given (4, 5, 6): within its maxima, other than the request's",
            "SCH-MIXED", "reply", "copy",
            [G("action", "float32", 0), G("grid", "uint16", 4, 5, 6), G("code", "int8")],
            shapes=[["action", [0]], ["grid", [4, 5, 6]], ["code", []]], taken=mixed_taken)
        add("REPLY-MIXED-INPLACE-OVER-MAX", R6, "grid (in place) given (5, 5, 6)", "SCH-MIXED",
            "reply", "copy",
            [G("action", "float32", 0), G("grid", "uint16", 5, 5, 6), G("code", "int8")],
            "CAPACITY_EXCEEDED", "S7", "grid", taken=mixed_taken)
        add("REPLY-BUF-MIXED-OK", R6, "reply_buffer(action=(3,)): grid in place and code fixed "
            "omitted", "SCH-MIXED", "reply", "buffer", [B("action", 3)],
            shapes=[["action", [3]], ["grid", [2, 5, 4]], ["code", []]], taken=mixed_taken)
        add("REPLY-BUF-MIXED-MISSING", R6, "reply_buffer() without action (variable)",
            "SCH-MIXED", "reply", "buffer", [], "SCHEMA_MISMATCH", "S3", "action",
            taken=mixed_taken)
        add("REPLY-FIELD-OK", R6, "reply_field('boxes', (9, 6))", "SCH-CAMERA", "reply", "field",
            [B("boxes", 9, 6)], shapes=[["boxes", [9, 6]]],
            taken=[B("image", 480, 640, 3), B("stamp")])
        add("REPLY-FIELD-NO-SHAPE", R6, "reply_field('boxes') without a shape (variable)",
            "SCH-CAMERA", "reply", "field", [{"name": "boxes", "shape": None}],
            "SCHEMA_MISMATCH", "S3", "boxes", taken=[B("image", 480, 640, 3), B("stamp")])
        add("REPLY-FIELD-FIXED-NO-SHAPE", R6, "reply_field('code') without a shape (fixed)",
            "SCH-MIXED", "reply", "field", [{"name": "code", "shape": None}],
            shapes=[["code", []]], taken=mixed_taken)
        add("REPLY-FIELD-UNKNOWN", R6, "reply_field('stamp'): a request field", "SCH-CAMERA",
            "reply", "field", [B("stamp")], "SCHEMA_MISMATCH", "S1", "stamp",
            taken=[B("image", 480, 640, 3), B("stamp")])
        return out

    def expect_cases():
        out = []

        def add(vid, reqs, descr, sid, request, reply, err="ok", check=None, field=None):
            out.append({"id": vid, "requirements": reqs, "description": descr, "schema": sid,
                        "expected": {"request": request, "reply": reply}, "error": err,
                        "field": field, "check": check})

        RX = ["R-SCHEMA-10"]
        req, rep = CAMERA
        add("X-CAMERA-BOTH-OK", RX, "both schemas as declared", "SCH-CAMERA", req, rep)
        add("X-CAMERA-NONE-OK", RX, "no expectation: any schema is accepted", "SCH-CAMERA", None,
            None)
        add("X-CAMERA-REPLY-ONLY-OK", RX, "only the reply schema stated", "SCH-CAMERA", None, rep)
        add("X-NAME", RX, "expected 'time' at position 1, found 'stamp'", "SCH-CAMERA",
            [req[0], F("time", "float64")], None, "SCHEMA_MISMATCH", "X1", "time")
        add("X-FEWER", RX, "only image expected: the segment's 'stamp' is named", "SCH-CAMERA",
            [req[0]], None, "SCHEMA_MISMATCH", "X1", "stamp")
        add("X-MORE", RX, "an extra expected field 'seq'", "SCH-CAMERA",
            [*req, F("seq", "uint64")], None, "SCHEMA_MISMATCH", "X1", "seq")
        add("X-SWAPPED", RX, "stamp, image expected: position 0 differs", "SCH-CAMERA",
            [req[1], req[0]], None, "SCHEMA_MISMATCH", "X1", "stamp")
        add("X-EMPTY-EXPECTED", RX, "no fields expected: the segment's first field is named",
            "SCH-CAMERA", [], None, "SCHEMA_MISMATCH", "X1", "image")
        add("X-DTYPE", RX, "image expected uint16", "SCH-CAMERA",
            [F("image", "uint16", 480, 640, 3), req[1]], None, "DTYPE_MISMATCH", "X2", "image")
        add("X-NDIM", RX, "image expected (480, 640)", "SCH-CAMERA",
            [F("image", "uint8", 480, 640), req[1]], None, "SHAPE_MISMATCH", "X3", "image")
        add("X-EXTENT", RX, "image expected (480, 640, 4)", "SCH-CAMERA",
            [F("image", "uint8", 480, 640, 4), req[1]], None, "SHAPE_MISMATCH", "X4", "image")
        add("X-MAXIMUM", RX, "boxes expected (<=50, 6)", "SCH-CAMERA", None,
            [F("boxes", "float32", up(50), 6)], "SHAPE_MISMATCH", "X4", "boxes")
        add("X-VARIABLE", RX, "boxes expected fixed (100, 6): which extents vary differs",
            "SCH-CAMERA", None, [F("boxes", "float32", 100, 6)], "SHAPE_MISMATCH", "X5", "boxes")
        add("X-NAMES-BEFORE-DTYPE-ORDER", RX,
            "image expected uint16 and 'time' for 'stamp': X1 (whole schema) comes first",
            "SCH-CAMERA", [F("image", "uint16", 480, 640, 3), F("time", "float64")], None,
            "SCHEMA_MISMATCH", "X1", "time")
        add("X-REQUEST-BEFORE-REPLY-ORDER", RX,
            "a wrong reply name and a wrong request dtype: the request schema comes first",
            "SCH-CAMERA", [F("image", "int8", 480, 640, 3), req[1]],
            [F("dets", "float32", up(100), 6)], "DTYPE_MISMATCH", "X2", "image")
        add("X-INPLACE-OK", RX, "the in-place reply expected in place", "SCH-INPLACE", None,
            [IP("array", "array")])
        add("X-INPLACE-EXPECTED-OWN", RX,
            "expected own storage with the same dtype and shape, found in place", "SCH-INPLACE",
            None, [F("array", "float32", 512, 512)], "SCHEMA_MISMATCH", "X6", "array")
        add("X-OWN-EXPECTED-INPLACE", RX,
            "action expected in place onto 'state', found with own storage", "SCH-MIXED", None,
            [IP("action", "state"), IP("grid", "grid"), F("code", "int8")], "SCHEMA_MISMATCH",
            "X6", "action")
        add("X-INPLACE-OTHER-TARGET", RX, "grid expected in place onto 'state', found onto 'grid'",
            "SCH-MIXED", None,
            [F("action", "float32", up(8)), IP("grid", "state"), F("code", "int8")],
            "SCHEMA_MISMATCH", "X6", "grid")
        add("X-INPLACE-DTYPE-BEFORE-STORAGE-ORDER", RX,
            "grid expected own storage with dtype int16: X2 comes before X6", "SCH-MIXED", None,
            [F("action", "float32", up(8)), F("grid", "int16", up(4), 5, up(6)),
             F("code", "int8")], "DTYPE_MISMATCH", "X2", "grid")
        add("X-EMPTY-OK", RX, "empty schemas expected and found", "SCH-EMPTY", [], [])
        add("X-DECLARE-TOO-MANY", [*RX, "R-SCHEMA-3"],
            "17 expected request fields: the stated schema is checked by C1-C8 before any OS "
            "object", "SCH-CAMERA", [F(f"f{k}", "int8") for k in range(17)], None,
            "INVALID_ARGUMENT", "C1", None)
        add("X-DECLARE-BAD-NAME", [*RX, "R-SCHEMA-3"],
            "an expected reply field named '1boxes' (C2 before any comparison)", "SCH-CAMERA",
            None, [F("1boxes", "float32", up(100), 6)], "INVALID_ARGUMENT", "C2", "1boxes")
        add("X-DECLARE-INPLACE-TWICE", [*RX, "R-SCHEMA-3"],
            "two expected reply fields in place onto 'array' (C4 for expectations)",
            "SCH-INPLACE", None, [IP("array", "array"), IP("copy", "array")],
            "INVALID_ARGUMENT", "C4", "copy")
        add("X-DECLARE-TARGET-UNCHECKED", RX,
            "in place onto 'nothing': not a C4 error for an expectation, X6 against the segment",
            "SCH-INPLACE", None, [IP("array", "nothing")], "SCHEMA_MISMATCH", "X6", "array")
        return out

    def declare_cases():
        out = []

        def add(vid, reqs, descr, request, reply, err, check, field):
            out.append({"id": vid, "requirements": reqs, "description": descr,
                        "request": request, "reply": reply, "error": err, "field": field,
                        "check": check})

        R3 = ["R-SCHEMA-3"]
        INV = "INVALID_ARGUMENT"
        req, _rep = CAMERA
        add("C-TOO-MANY", [*R3, "R-SCHEMA-1"], "17 request fields",
            [F(f"f{k}", "int8") for k in range(17)], [], INV, "C1", None)
        add("C-TOO-MANY-BEFORE-NAME-ORDER", R3,
            "17 reply fields, the first with a bad name: C1 comes first", [],
            [F("1bad", "int8")] + [F(f"f{k}", "int8") for k in range(16)], INV, "C1", None)
        add("C-NAME-EMPTY", [*R3, "R-SCHEMA-2"], "name ''", [F("", "int8")], [], INV, "C2", "")
        add("C-NAME-TOO-LONG", [*R3, "R-SCHEMA-2"], "a name of 32 characters",
            [F("a" * 32, "int8")], [], INV, "C2", "a" * 32)
        add("C-NAME-LEADING-DIGIT", [*R3, "R-SCHEMA-2"], "name '2d'", req,
            [F("2d", "float32", 3)], INV, "C2", "2d")
        add("C-NAME-DASH", [*R3, "R-SCHEMA-2"], "name 'a-b'", [F("a-b", "int8")], [], INV, "C2",
            "a-b")
        add("C-NAME-NON-ASCII", [*R3, "R-SCHEMA-2"], "name 'é'", [F("é", "int8")], [], INV, "C2",
            "é")
        add("C-NAME-DUPLICATE", [*R3, "R-SCHEMA-2"], "'image' twice in the request",
            [req[0], F("image", "uint8", 3)], [], INV, "C3", "image")
        add("C-INPLACE-IN-REQUEST", [*R3, "R-SCHEMA-4"], "an in-place field in the request",
            [req[0], IP("copy", "image")], [], INV, "C4", "copy")
        add("C-INPLACE-NO-TARGET", [*R3, "R-SCHEMA-4"], "in place onto 'missing'", req,
            [IP("boxes", "missing")], INV, "C4", "boxes")
        add("C-INPLACE-TWICE", [*R3, "R-SCHEMA-4"], "two reply fields in place onto 'image'", req,
            [IP("a", "image"), IP("b", "image")], INV, "C4", "b")
        add("C-DTYPE", [*R3, "R-DTYPE-1"], "an unsupported dtype ('object')",
            [F("x", "object", 3)], [], "DTYPE_MISMATCH", "C5", "x")
        add("C-NDIM-9", R3, "9 dimensions", [F("x", "uint8", *([1] * 9))], [], "SHAPE_MISMATCH",
            "C6", "x")
        add("C-NEGATIVE", R3, "extent -1", [F("x", "uint8", 3, -1)], [], INV, "C7", "x")
        add("C-NEGATIVE-MAXIMUM", R3, "upto(-1)", [], [F("y", "float32", up(-1))], INV, "C7", "y")
        add("C-EXTENT-2^64", R3, "extent 2^64 (not a u64)", [F("x", "uint8", 1 << 64)], [], INV,
            "C7", "x")
        add("C-MAX-NBYTES-OVERFLOW", R3, "uint16 (<=2^63): 2^64 bytes",
            [F("x", "uint16", up(1 << 63))], [], "CAPACITY_EXCEEDED", "C8", "x")
        add("C-SEGMENT-OVERFLOW", R3, "two uint8 fields of 2^63 bytes each: each fits, the "
            "segment does not", [F("a", "uint8", up(1 << 63))], [F("b", "uint8", up(1 << 63))],
            "CAPACITY_EXCEEDED", "C9", None)
        add("C-REQUEST-BEFORE-REPLY-ORDER", R3,
            "a bad reply name and an unsupported request dtype: the request schema comes first",
            [F("x", "object")], [F("-", "int8")], "DTYPE_MISMATCH", "C5", "x")
        add("C-NAME-BEFORE-DTYPE-ORDER", R3, "name '1x' with dtype 'object': C2 comes first",
            [F("1x", "object")], [], INV, "C2", "1x")
        return out

    return {"schemas": schemas,
            "tables": {"valid": table_valid(), "invalid": table_invalid()},
            "send": send_cases(), "expect": expect_cases(), "declare": declare_cases()}
