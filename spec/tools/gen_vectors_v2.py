#!/usr/bin/env python3
"""Reference encoder and validator for shmbridge protocol v2 (typed messages).

Written only from spec/PROTOCOL.md Part II (standard library only: struct, json). Generates
spec/vectors/headers_v2.json and spec/vectors/messages_v2.json in the format of
spec/vectors/README.md ("Protocol v2 vectors").

    python3 spec/tools/gen_vectors_v2.py           # (re)write the v2 vector files
    python3 spec/tools/gen_vectors_v2.py --check   # exit 1 if the committed files differ

Every invalid vector states the check (H1-H16, F1-F9, E1-E8, S1-S7, X1-X6, C1-C9) it breaks and
the error it expects; the generator runs its own validator on every vector and refuses to write one
whose check or error differs from what was stated by hand.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
# The v1 basics (§3.1 descriptor, §3.2 dtypes, §3.3 slot) are shared with the v1 encoder.
from gen_vectors import DESC, DTYPE_CODE, DTYPES, MAGIC, SLOT, U64, slot  # noqa: E402

SPEC = os.path.dirname(HERE)
VEC = os.path.join(SPEC, "vectors")
GENERATOR = "spec/tools/gen_vectors_v2.py"

# ---------------------------------------------------------------- Part II layout (§II.3)
FIXED = 512                      # R-SCHEMA-5
RECORD = 128                     # §II.3.2
ENTRY = 80                       # R-FIELD-1 (§3.1 descriptor)
MAX_FIELDS = 16
MAX_DIMS = 8
ALIGN = 64
NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
OFF = {"magic": 0x000, "version_major": 0x008, "version_minor": 0x00A, "header_size": 0x00C,
       "capacity": 0x010, "segment_size": 0x018, "flags": 0x020, "max_dims": 0x024,
       "geometry": 0x040, "reply_code": 0x0E0, "word": 0x100, "waiters": 0x104,
       "requester": 0x140, "responder": 0x160, "creator": 0x180, "schema": 0x200}
GEOM = struct.Struct("<IIQQQQ40x")          # §II.3.1
REC = struct.Struct("<32sIIII8QQQ")        # §II.3.2
GEOM_KEYS = ("request_fields", "reply_fields", "request_area_offset", "request_area_size",
             "reply_area_offset", "reply_area_size")
assert GEOM.size == 80 and REC.size == RECORD and DESC.size == ENTRY


def align64(x: int) -> int:
    return -(-x // ALIGN) * ALIGN


def itemsize(code: int) -> int:
    return DTYPES[code][1]


def product(xs) -> int:
    n = 1
    for x in xs:
        n *= x
    return n


class V2Error(Exception):
    """A check failed: ``name`` is the error, ``check`` the label of PROTOCOL.md Part II,
    ``field`` the field named (None when the error names no field, R-FIELD-7)."""

    def __init__(self, name: str, check: str, why: str, field: str | None = None):
        super().__init__(f"{name} ({check}): {why}")
        self.name, self.check, self.field = name, check, field


# ---------------------------------------------------------------- declared schemas (§II.2)
# A declared field (the "structured form" of spec/vectors/README.md):
#   {"name": "boxes", "dtype": "float32", "shape": [{"upto": 100}, 6]}   own storage
#   {"name": "array", "inplace": "array"}                                  in place (reply only)
def fixed_only(field: dict) -> bool:
    return "inplace" not in field and not any(isinstance(e, dict) for e in field["shape"])


def declare(request: list, reply: list) -> tuple[list, list]:
    """R-SCHEMA-3 (checks C1-C9): the records of both schemas, offsets placed by R-SCHEMA-7."""
    check_declared(request, reply, expectation=False)
    req = [record_of(f, None) for f in request]
    rep = [record_of(f, req) for f in reply]
    g = place(req, rep)
    if g["segment_size"] > U64:
        raise V2Error("CAPACITY_EXCEEDED", "C9", "segment_size overflows 64 bits")
    return req, rep


def check_declared(request, reply, expectation: bool) -> None:
    """C1-C8 on each given schema (None: not stated). For an attacher's expectations
    (R-SCHEMA-10) C4 does not ask whether the target exists: that is X6."""
    for side, schema in (("request", request), ("reply", reply)):
        if schema is None:
            continue
        if len(schema) > MAX_FIELDS:
            raise V2Error("INVALID_ARGUMENT", "C1", f"{side} schema has {len(schema)} fields")
        seen: set[str] = set()
        targets: set[str] = set()
        for f in schema:
            name = f["name"]
            if not (isinstance(name, str) and 1 <= len(name) <= 31 and NAME_RE.fullmatch(name)
                    and name.isascii()):
                raise V2Error("INVALID_ARGUMENT", "C2", f"bad name {name!r}", name)
            if name in seen:
                raise V2Error("INVALID_ARGUMENT", "C3", f"duplicate name {name!r}", name)
            seen.add(name)
            if "inplace" in f:
                t = f["inplace"]
                missing = not expectation and t not in {g["name"] for g in request}
                if side == "request" or missing or t in targets:
                    raise V2Error("INVALID_ARGUMENT", "C4", f"bad in-place target {t!r}", name)
                targets.add(t)
                continue
            if f["dtype"] not in DTYPE_CODE:
                raise V2Error("DTYPE_MISMATCH", "C5", f"unsupported dtype {f['dtype']}", name)
            if len(f["shape"]) > MAX_DIMS:
                raise V2Error("SHAPE_MISMATCH", "C6", f"{len(f['shape'])} dims", name)
            for e in f["shape"]:
                v = e["upto"] if isinstance(e, dict) else e
                if not (isinstance(v, int) and 0 <= v <= U64):
                    raise V2Error("INVALID_ARGUMENT", "C7", f"extent {v!r}", name)
            if itemsize(DTYPE_CODE[f["dtype"]]) * product(max_shape_of(f)) > U64:
                raise V2Error("CAPACITY_EXCEEDED", "C8", "max_nbytes overflows 64 bits", name)


def max_shape_of(f: dict) -> list:
    return [e["upto"] if isinstance(e, dict) else e for e in f["shape"]]


def record_of(f: dict, request_records) -> dict:
    """R-SCHEMA-6 (offset filled in by place())."""
    if "inplace" in f:
        k = [r["name"] for r in request_records].index(f["inplace"])
        t = request_records[k]
        return {"name": f["name"], "dtype": t["dtype"], "ndim": t["ndim"],
                "variable_mask": t["variable_mask"], "alias": k + 1,
                "max_shape": list(t["max_shape"]), "offset": 0, "max_nbytes": t["max_nbytes"]}
    code = DTYPE_CODE[f["dtype"]]
    ms = max_shape_of(f)
    mask = sum(1 << d for d, e in enumerate(f["shape"]) if isinstance(e, dict))
    return {"name": f["name"], "dtype": code, "ndim": len(ms), "variable_mask": mask, "alias": 0,
            "max_shape": ms, "offset": 0, "max_nbytes": itemsize(code) * product(ms)}


def header_size_of(nreq: int, nrep: int) -> int:
    return FIXED + RECORD * (nreq + nrep)


def place_area(area_offset: int, records: list, request_records) -> int:
    """R-SCHEMA-7 place(): sets each record's offset, returns the area size."""
    pos = area_offset + align64(ENTRY * len(records))
    for r in records:
        if r["alias"]:
            r["offset"] = request_records[r["alias"] - 1]["offset"]
        else:
            r["offset"] = pos
            pos = align64(pos + r["max_nbytes"])
    return pos - area_offset


def place(req: list, rep: list) -> dict:
    hs = header_size_of(len(req), len(rep))
    req_size = place_area(hs, req, None)
    rep_off = hs + req_size
    rep_size = place_area(rep_off, rep, req)
    cap = req_size + rep_size
    return {"request_fields": len(req), "reply_fields": len(rep), "request_area_offset": hs,
            "request_area_size": req_size, "reply_area_offset": rep_off,
            "reply_area_size": rep_size, "header_size": hs, "capacity": cap,
            "segment_size": hs + cap}


def fields_for(request: list, reply: list, **over) -> dict:
    """The header fields of a fresh segment for these declared schemas."""
    req, rep = declare(request, reply)
    g = place(req, rep)
    f = {"magic": "SHMBRIDG", "version_major": 2, "version_minor": 0,
         "header_size": g["header_size"], "capacity": g["capacity"],
         "segment_size": g["segment_size"], "flags": 0, "max_dims": MAX_DIMS,
         "geometry": {k: g[k] for k in GEOM_KEYS}, "reply_code": 0, "word": 0, "waiters": 0,
         "requester": slot(), "responder": slot(), "creator": slot(),
         "request_schema": req, "reply_schema": rep}
    f.update(over)
    return f


# ---------------------------------------------------------------- encoding (R-SCHEMA-5/6)
def pack_record(buf: bytearray, off: int, r: dict) -> None:
    name = r["name"].encode("ascii") if isinstance(r["name"], str) else bytes(r["name"])
    ms = list(r["max_shape"]) + [0] * (MAX_DIMS - len(r["max_shape"]))
    REC.pack_into(buf, off, name, r["dtype"], r["ndim"], r["variable_mask"], r["alias"], *ms,
                  r["offset"], r["max_nbytes"])


def encode(f: dict) -> bytes:
    """The header_size bytes of a v2 header; reserved bytes are zero (R-SCHEMA-5)."""
    recs = f["request_schema"] + f["reply_schema"]
    b = bytearray(FIXED + RECORD * len(recs))
    struct.pack_into("<8sHHIQQII", b, 0, f["magic"].encode("latin-1"), f["version_major"],
                     f["version_minor"], f["header_size"], f["capacity"], f["segment_size"],
                     f["flags"], f["max_dims"])
    g = f["geometry"]
    GEOM.pack_into(b, OFF["geometry"], *(g[k] for k in GEOM_KEYS))
    struct.pack_into("<I", b, OFF["reply_code"], f["reply_code"])
    struct.pack_into("<II", b, OFF["word"], f["word"], f["waiters"])
    for role in ("requester", "responder", "creator"):
        s = f[role]
        SLOT.pack_into(b, OFF[role], s["pid"], s["state"], s["start_time"], s["incarnation"])
    for i, r in enumerate(recs):
        pack_record(b, OFF["schema"] + RECORD * i, r)
    return bytes(b)


# ---------------------------------------------------------------- validation (R-SCHEMA-9)
class Reader:
    """Reads the header bytes a validator may read: never at or beyond `limit` (512 until H10 has
    passed, then header_size), never beyond the bytes given (the vector's hex)."""

    def __init__(self, raw: bytes):
        self.raw, self.limit = raw, FIXED

    def unpack(self, fmt, off: int):
        s = struct.Struct(fmt)
        assert off + s.size <= self.limit, f"validator read {off}+{s.size} beyond {self.limit}"
        assert off + s.size <= len(self.raw), "validator read beyond the bytes given"
        return s.unpack_from(self.raw, off)


def check_record(rd: Reader, idx: int, side: str, names: set, recs_req: list, pos: int,
                 used_alias: set, nreq: int) -> tuple[dict, int]:
    """F1-F9 for the record at schema-table index idx; returns (record, next position)."""
    def bad(check, why):
        raise V2Error("CORRUPT_HEADER", check, f"{side} record {idx}: {why}")
    vals = rd.unpack(REC.format, OFF["schema"] + RECORD * idx)
    raw_name, dtype, ndim, mask, alias = vals[:5]
    ms8, offset, max_nbytes = list(vals[5:13]), vals[13], vals[14]
    nul = raw_name.find(b"\0")
    name = raw_name[:nul] if nul >= 0 else raw_name
    if (nul < 1 or any(raw_name[nul:]) or not name.isascii()
            or not NAME_RE.fullmatch(name.decode("ascii"))):
        bad("F1", f"name {raw_name!r}")
    name = name.decode("ascii")
    if name in names:
        bad("F2", f"duplicate name {name!r}")
    names.add(name)
    if dtype not in DTYPES:
        bad("F3", f"dtype {dtype}")
    if ndim > MAX_DIMS:
        bad("F4", f"ndim {ndim}")
    if any(ms8[ndim:]):
        bad("F5", "max_shape entries beyond ndim")
    if mask >> ndim:
        bad("F6", f"variable_mask {mask:#x} with ndim {ndim}")
    ms = ms8[:ndim]
    if itemsize(dtype) * product(ms) != max_nbytes:       # exact: no wrap
        bad("F7", f"max_nbytes {max_nbytes}")
    if side == "request":
        if alias != 0:
            bad("F8", f"alias {alias} in a request record")
    elif alias:
        if alias > nreq or alias in used_alias:
            bad("F8", f"alias {alias}")
        t = recs_req[alias - 1]
        if (t["dtype"], t["ndim"], t["max_shape"], t["variable_mask"]) != (dtype, ndim, ms, mask):
            bad("F8", f"alias {alias} differs from its target")
        used_alias.add(alias)
    if alias:
        expect = recs_req[alias - 1]["offset"]
    else:
        expect = pos
        pos = align64(pos + max_nbytes)
    if offset != expect:
        bad("F9", f"offset {offset} != {expect}")
    return ({"name": name, "dtype": dtype, "ndim": ndim, "variable_mask": mask, "alias": alias,
             "max_shape": ms, "offset": offset, "max_nbytes": max_nbytes}, pos)


def decode(raw: bytes, mapping_size: int) -> dict:
    """Validate (H1-H16, F1-F9) and decode a v2 header; raises V2Error."""
    rd = Reader(raw)
    if mapping_size < FIXED:
        raise V2Error("CORRUPT_HEADER", "H1", f"mapping {mapping_size} < 512")
    (magic,) = rd.unpack("<8s", 0)
    if magic == bytes(8):
        raise V2Error("SEGMENT_NOT_FOUND", "H2", "magic is zero: still initialising")
    if magic != MAGIC:
        raise V2Error("CORRUPT_HEADER", "H3", f"magic {magic!r}")
    vmaj, vmin, hs, cap, seg, flags, maxd = rd.unpack("<HHIQQII", 8)
    if vmaj != 2:
        raise V2Error("VERSION_MISMATCH", "H4", f"version_major {vmaj}")
    geo = dict(zip(GEOM_KEYS, rd.unpack(GEOM.format, OFF["geometry"])))
    nreq, nrep = geo["request_fields"], geo["reply_fields"]
    if nreq > MAX_FIELDS or nrep > MAX_FIELDS:
        raise V2Error("CORRUPT_HEADER", "H5", f"field counts {nreq}, {nrep}")
    if hs != header_size_of(nreq, nrep):
        raise V2Error("CORRUPT_HEADER", "H6", f"header_size {hs}")
    if maxd != MAX_DIMS:
        raise V2Error("CORRUPT_HEADER", "H7", f"max_dims {maxd}")
    if flags != 0:
        raise V2Error("CORRUPT_HEADER", "H8", f"flags {flags:#x}")
    if seg != hs + cap:
        raise V2Error("CORRUPT_HEADER", "H9", f"segment_size {seg} != {hs} + {cap}")
    if mapping_size < seg:
        raise V2Error("CORRUPT_HEADER", "H10", f"mapping {mapping_size} < segment_size {seg}")
    rd.limit = hs
    req: list = []
    pos = hs + align64(ENTRY * nreq)
    names: set = set()
    for k in range(nreq):
        r, pos = check_record(rd, k, "request", names, req, pos, set(), nreq)
        req.append(r)
    req_size = pos - hs
    rep: list = []
    rep_off = hs + req_size
    pos = rep_off + align64(ENTRY * nrep)
    names, used = set(), set()
    for j in range(nrep):
        r, pos = check_record(rd, nreq + j, "reply", names, req, pos, used, nreq)
        rep.append(r)
    rep_size = pos - rep_off
    for check, key, want in (("H12", "request_area_offset", hs),
                             ("H13", "request_area_size", req_size),
                             ("H14", "reply_area_offset", geo["request_area_offset"]
                              + geo["request_area_size"]),
                             ("H15", "reply_area_size", rep_size)):
        if geo[key] != want:
            raise V2Error("CORRUPT_HEADER", check, f"{key} {geo[key]} != {want}")
    if cap != geo["request_area_size"] + geo["reply_area_size"]:
        raise V2Error("CORRUPT_HEADER", "H16", f"capacity {cap}")
    (reply_code,) = rd.unpack("<I", OFF["reply_code"])
    word, waiters = rd.unpack("<II", OFF["word"])
    out = {"magic": "SHMBRIDG", "version_major": vmaj, "version_minor": vmin, "header_size": hs,
           "capacity": cap, "segment_size": seg, "flags": flags, "max_dims": maxd,
           "geometry": geo, "reply_code": reply_code, "word": word, "waiters": waiters}
    for role in ("requester", "responder", "creator"):
        out[role] = slot(*rd.unpack(SLOT.format, OFF[role]))
    out["request_schema"], out["reply_schema"] = req, rep
    return out


# ---------------------------------------------------------------- message tables (§II.6, §II.8)
def entry(rec: dict, shape: list) -> dict:
    return {"dtype": rec["dtype"], "ndim": len(shape), "shape": list(shape),
            "nbytes": itemsize(rec["dtype"]) * product(shape)}


def initial_table(records: list) -> list:
    """R-FIELD-2: fixed extents as declared, variable extents 0."""
    return [entry(r, [0 if r["variable_mask"] >> d & 1 else e
                      for d, e in enumerate(r["max_shape"])]) for r in records]


def encode_table(entries: list, raw_shapes=None) -> bytes:
    b = bytearray(ENTRY * len(entries))
    for k, e in enumerate(entries):
        shape = list(raw_shapes[k] if raw_shapes and k in raw_shapes else e["shape"])
        DESC.pack_into(b, ENTRY * k, e["dtype"], e["ndim"], *(shape + [0] * (8 - len(shape))),
                       e["nbytes"])
    return bytes(b)


def validate_table(records: list, raw: bytes) -> list:
    """R-FIELD-8 (E1-E8): the entries of a received message table, or V2Error naming the field."""
    assert len(raw) == ENTRY * len(records)
    out = []
    for k, r in enumerate(records):
        dtype, ndim, *rest = DESC.unpack_from(raw, ENTRY * k)
        shape8, nbytes = list(rest[:8]), rest[8]

        def bad(err, check, why, r=r):
            raise V2Error(err, check, f"field {r['name']!r}: {why}", r["name"])
        if dtype not in DTYPES:
            bad("CORRUPT_HEADER", "E1", f"dtype {dtype}")
        if ndim > MAX_DIMS:
            bad("CORRUPT_HEADER", "E2", f"ndim {ndim}")
        if any(shape8[ndim:]):
            bad("CORRUPT_HEADER", "E3", "shape entries beyond ndim")
        shape = shape8[:ndim]
        if itemsize(dtype) * product(shape) != nbytes:
            bad("CORRUPT_HEADER", "E4", f"nbytes {nbytes}")
        if dtype != r["dtype"]:
            bad("DTYPE_MISMATCH", "E5", f"dtype {dtype} != {r['dtype']}")
        if ndim != r["ndim"]:
            bad("SHAPE_MISMATCH", "E6", f"ndim {ndim} != {r['ndim']}")
        variable = [bool(r["variable_mask"] >> d & 1) for d in range(ndim)]
        if any(not v and e != m for v, e, m in zip(variable, shape, r["max_shape"])):
            bad("SHAPE_MISMATCH", "E7", f"shape {shape} vs {r['max_shape']}")
        if any(v and e > m for v, e, m in zip(variable, shape, r["max_shape"])):
            bad("CORRUPT_HEADER", "E8", f"shape {shape} above {r['max_shape']}")
        out.append({"dtype": dtype, "ndim": ndim, "shape": shape, "nbytes": nbytes})
    return out


# ---------------------------------------------------------------- send / reply checks (§II.7)
def check_values(r: dict, dtype, shape: list, with_dtype: bool) -> None:
    """S4-S7 for one field."""
    name = r["name"]
    if with_dtype and DTYPE_CODE.get(dtype) != r["dtype"]:
        raise V2Error("DTYPE_MISMATCH", "S4", f"dtype {dtype}", name)
    if len(shape) != r["ndim"]:
        raise V2Error("SHAPE_MISMATCH", "S5", f"ndim {len(shape)}", name)
    variable = [bool(r["variable_mask"] >> d & 1) for d in range(r["ndim"])]
    if any(not v and e != m for v, e, m in zip(variable, shape, r["max_shape"])):
        raise V2Error("SHAPE_MISMATCH", "S6", f"shape {shape}", name)
    if any(v and e > m for v, e, m in zip(variable, shape, r["max_shape"])):
        raise V2Error("CAPACITY_EXCEEDED", "S7", f"shape {shape}", name)


def check_given(records: list, given: list, may_omit) -> dict:
    """S1-S3; returns {name: given item}."""
    names = {r["name"] for r in records}
    got: dict = {}
    for g in given:
        if g["name"] not in names:
            raise V2Error("SCHEMA_MISMATCH", "S1", f"unknown field {g['name']!r}", g["name"])
        if g["name"] in got:
            raise V2Error("SCHEMA_MISMATCH", "S2", f"{g['name']!r} given twice", g["name"])
        got[g["name"]] = g
    for r in records:
        if r["name"] not in got and not may_omit(r):
            raise V2Error("SCHEMA_MISMATCH", "S3", f"{r['name']!r} not given", r["name"])
    return got


def check_send(case: dict, schema: dict) -> list:
    """R-FIELD-4/5/6 for one send-vector case: the published shapes in schema order."""
    side, api = case["side"], case["api"]
    recs = schema[f"{side}_schema"]
    req = schema["request_schema"]
    taken = {t["name"]: t["shape"] for t in case.get("taken", [])}
    prepared = {p["name"]: p["shape"] for p in case.get("prepared", [])}

    def target_shape(r):
        return taken[req[r["alias"] - 1]["name"]]

    def fixed(r):
        return not r["variable_mask"]

    if api == "field":                               # reply_field: one field (R-FIELD-6)
        (g,) = case["given"]
        by = {r["name"]: r for r in recs}
        if g["name"] not in by:
            raise V2Error("SCHEMA_MISMATCH", "S1", f"unknown field {g['name']!r}", g["name"])
        r = by[g["name"]]
        shape = g.get("shape")
        if shape is None and fixed(r):
            shape = r["max_shape"]
        if shape is None:
            raise V2Error("SCHEMA_MISMATCH", "S3", f"{r['name']!r} needs a shape", r["name"])
        check_values(r, None, shape, False)
        return [[r["name"], shape]]
    if api == "copy":
        got = check_given(recs, case["given"], lambda r: side == "reply" and (
            r["alias"] != 0 or r["name"] in prepared))
    else:                                            # buffer: request_buffer / reply_buffer
        got = check_given(recs, case["given"], lambda r: fixed(r) or (
            side == "reply" and r["alias"] != 0))
    shapes = []
    for r in recs:
        g = got.get(r["name"])
        if g is not None:
            check_values(r, g.get("dtype"), g["shape"], api == "copy")
            shapes.append([r["name"], g["shape"]])
        elif api == "copy" and r["name"] in prepared:
            shapes.append([r["name"], prepared[r["name"]]])
        elif r["alias"]:
            shapes.append([r["name"], target_shape(r)])
        else:
            shapes.append([r["name"], r["max_shape"]])
    return shapes


# ---------------------------------------------------------------- attach expectations (R-SCHEMA-10)
def check_expect(schema: dict, expected: dict) -> None:
    check_declared(expected.get("request"), expected.get("reply"), expectation=True)
    req = schema["request_schema"]
    for side in ("request", "reply"):
        exp = expected.get(side)
        if exp is None:
            continue
        recs = schema[f"{side}_schema"]
        for i in range(max(len(exp), len(recs))):
            e = exp[i]["name"] if i < len(exp) else None
            s = recs[i]["name"] if i < len(recs) else None
            if e != s:
                raise V2Error("SCHEMA_MISMATCH", "X1", f"position {i}: expected {e!r}, found {s!r}",
                              e if e is not None else s)
        for f, r in zip(exp, recs):
            if "inplace" in f:
                if not r["alias"] or req[r["alias"] - 1]["name"] != f["inplace"]:
                    raise V2Error("SCHEMA_MISMATCH", "X6", "storage differs", f["name"])
                continue
            if DTYPE_CODE[f["dtype"]] != r["dtype"]:
                raise V2Error("DTYPE_MISMATCH", "X2", "dtype differs", f["name"])
            if len(f["shape"]) != r["ndim"]:
                raise V2Error("SHAPE_MISMATCH", "X3", "ndim differs", f["name"])
            if max_shape_of(f) != r["max_shape"]:
                raise V2Error("SHAPE_MISMATCH", "X4", "extent or maximum differs", f["name"])
            mask = sum(1 << d for d, x in enumerate(f["shape"]) if isinstance(x, dict))
            if mask != r["variable_mask"]:
                raise V2Error("SHAPE_MISMATCH", "X5", "variable extents differ", f["name"])
            if r["alias"]:
                raise V2Error("SCHEMA_MISMATCH", "X6", "in place in the segment", f["name"])


# ---------------------------------------------------------------- PEER.md §7 SPEC grammar
SPEC_FIELD = re.compile(r"([A-Za-z0-9_]+)(?::=([A-Za-z0-9_]+)|:([a-z0-9]+):(.*))")
UINT = re.compile(r"0|[1-9][0-9]*")


def format_spec(schema: list) -> str:
    def ext(e):
        return f"<={e['upto']}" if isinstance(e, dict) else str(e)
    return ";".join(f"{f['name']}:={f['inplace']}" if "inplace" in f else
                    f"{f['name']}:{f['dtype']}:" + ",".join(ext(e) for e in f["shape"])
                    for f in schema)


def parse_spec(text: str) -> list:
    """PEER.md §7.2; raises ValueError on a grammar error (the peer's usage error)."""
    if text == "":
        return []
    out = []
    for part in text.split(";"):
        m = SPEC_FIELD.fullmatch(part)
        if not m or (m.group(3) is not None and m.group(3) not in DTYPE_CODE):
            raise ValueError(f"bad field {part!r}")
        if m.group(2) is not None:
            out.append({"name": m.group(1), "inplace": m.group(2)})
            continue
        shape = []
        for x in (m.group(4).split(",") if m.group(4) else []):
            var = x.startswith("<=")
            digits = x[2:] if var else x
            if not UINT.fullmatch(digits) or int(digits) > U64:
                raise ValueError(f"bad extent {x!r}")
            shape.append({"upto": int(digits)} if var else int(digits))
        out.append({"name": m.group(1), "dtype": m.group(3), "shape": shape})
    return out


# ---------------------------------------------------------------- building the files
def schemas_block(request, reply) -> dict:
    return {"request": request, "reply": reply,
            "spec": {"request": format_spec(request), "reply": format_spec(reply)}}


def build_headers() -> dict:
    from vectors_v2_cases import header_cases  # the case lists (they import this module)
    valid, invalid, decode_only = header_cases()
    ids: set = set()
    for v in valid + invalid + decode_only:
        assert v["id"] not in ids, v["id"]
        ids.add(v["id"])
    for v in valid:
        f = v["fields"]
        raw = encode(f)
        assert len(raw) == f["header_size"]
        assert decode(raw, v["mapping_size"]) == f, v["id"]
        s = v.get("schemas")
        if s is not None:
            for side in ("request", "reply"):
                assert parse_spec(s["spec"][side]) == s[side], (v["id"], side)
            req, rep = declare(s["request"], s["reply"])
            assert (req, rep) == (f["request_schema"], f["reply_schema"]), v["id"]
            tables = {side: initial_table(f[f"{side}_schema"]) for side in ("request", "reply")}
            v["initial_tables"] = {side: {"entries": t, "hex": encode_table(t).hex()}
                                   for side, t in tables.items()}
        v["hex"] = raw.hex()
    for v in invalid:
        try:
            decode(bytes.fromhex(v["hex"]), v["mapping_size"])
        except V2Error as e:
            assert (e.name, e.check) == (v["error"], v["check"]), (v["id"], e)
        else:
            raise AssertionError(f"{v['id']} decodes as valid")
    for v in decode_only:
        raw = bytes.fromhex(v["hex"])
        assert decode(raw, v["mapping_size"]) == v["fields"], v["id"]
        assert encode(v["fields"]) != raw, v["id"]
    return {"generator": GENERATOR, "protocol_version": 2, "valid": valid, "invalid": invalid,
            "decode_only": decode_only}


def build_messages() -> dict:
    from vectors_v2_cases import message_cases
    doc = message_cases()
    ids: set = set()
    schemas = {}
    for s in doc["schemas"]:
        assert s["id"] not in ids
        ids.add(s["id"])
        for side in ("request", "reply"):
            assert parse_spec(s["spec"][side]) == s[side], (s["id"], side)
        s["request_schema"], s["reply_schema"] = declare(s["request"], s["reply"])
        schemas[s["id"]] = s
    for group in ("valid", "invalid"):
        for v in doc["tables"][group]:
            assert v["id"] not in ids, v["id"]
            ids.add(v["id"])
            recs = schemas[v["schema"]][f"{v['side']}_schema"]
            raw = bytes.fromhex(v["hex"])
            if group == "valid":
                assert validate_table(recs, raw) == v["entries"], v["id"]
                assert encode_table(v["entries"]) == raw, v["id"]
                continue
            try:
                validate_table(recs, raw)
            except V2Error as e:
                got = (e.name, e.check, e.field)
                assert got == (v["error"], v["check"], v["field"]), (v["id"], got)
            else:
                raise AssertionError(f"{v['id']} validates")
    for v in doc["send"]:
        assert v["id"] not in ids, v["id"]
        ids.add(v["id"])
        try:
            shapes = check_send(v, schemas[v["schema"]])
        except V2Error as e:
            got = (e.name, e.check, e.field)
            assert got == (v["error"], v["check"], v["field"]), (v["id"], got)
        else:
            assert v["error"] == "ok" and shapes == v["shapes"], (v["id"], shapes)
    for v in doc["expect"]:
        assert v["id"] not in ids, v["id"]
        ids.add(v["id"])
        try:
            check_expect(schemas[v["schema"]], v["expected"])
        except V2Error as e:
            got = (e.name, e.check, e.field)
            assert got == (v["error"], v["check"], v["field"]), (v["id"], got)
        else:
            assert v["error"] == "ok", v["id"]
    for v in doc["declare"]:
        assert v["id"] not in ids, v["id"]
        ids.add(v["id"])
        try:
            declare(v["request"], v["reply"])
        except V2Error as e:
            got = (e.name, e.check, e.field)
            assert got == (v["error"], v["check"], v["field"]), (v["id"], got)
        else:
            raise AssertionError(f"{v['id']} declares fine")
    return {"generator": GENERATOR, "protocol_version": 2, **doc}


def render(obj) -> str:
    return json.dumps(obj, indent=1, sort_keys=False) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true",
                    help="exit 1 if the committed v2 vector files differ from what is generated")
    ap.add_argument("--out", default=VEC, help="output directory (default spec/vectors)")
    a = ap.parse_args(argv)
    files = {"headers_v2.json": render(build_headers()),
             "messages_v2.json": render(build_messages())}
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
                print(f"gen_vectors_v2 --check: {path} differs from the generated vectors "
                      f"(run spec/tools/gen_vectors_v2.py)", file=sys.stderr)
                bad = 1
        else:
            with open(path, "w", encoding="utf-8") as fh:
                fh.write(text)
    if a.check and not bad:
        print("gen_vectors_v2 --check: v2 vectors up to date")
    return bad


if __name__ == "__main__":
    # Run as the module gen_vectors_v2, the one vectors_v2_cases imports (one V2Error class).
    import gen_vectors_v2
    sys.exit(gen_vectors_v2.main())
