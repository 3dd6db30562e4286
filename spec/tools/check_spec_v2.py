"""Part II (protocol v2) checks of check_spec.py (standard library only).

Checks that the Markdown tables of PROTOCOL.md Part II agree with the machine-readable files:
  - <!-- v2-header / v2-geometry / v2-record / v2-entry -->  <->  layout_v2.json (and the fields
    v2 shares with v1 <-> layout.json, the message table entry <-> the v1 descriptor)
  - <!-- v2-limits -->                                         <->  layout_v2.json limits
  - <!-- v2-example -->  (the camera case)                     <->  vectors/headers_v2.json
  - <!-- v2-*-checks --> (H, F, E, S, X, C check tables)       <->  errors.json and the `check` /
    `error` of every v2 vector
  - <!-- v2-inherit -->  lists every Part I id exactly once, with ids of Part II for what replaces
    or amends it
and that Part II defines only R-SCHEMA/R-FIELD/R-VER ids, that Part I defines none of them, and
that the v2 vectors cite known ids, errors, dtypes and schemas.
"""
from __future__ import annotations

import re
import struct

from check_spec import _layout_rows, marked_block, parse_table, strip_code, to_int

PART2 = re.compile(r"^# Part II\b", re.M)
REQ_DEF = re.compile(r"^\s*[-*]\s+\*\*(R-[A-Z]+-\d+)\*\*", re.M)
V2_AREAS = ("SCHEMA", "FIELD", "VER")
CHECK_TABLES = {"v2-declare-checks": "C", "v2-header-checks": "H", "v2-record-checks": "F",
                "v2-expect-checks": "X", "v2-send-checks": "S", "v2-entry-checks": "E"}
KINDS = ("inherited", "amended", "replaced")


def split_parts(text: str):
    """(Part I, Part II) of PROTOCOL.md, or (text, None) when there is no Part II."""
    m = PART2.search(text)
    return (text, None) if m is None else (text[:m.start()], text[m.start():])


def _block_rows(c, text: str, name: str) -> list[dict]:
    block = marked_block(text, name)
    if not c.check(block is not None, f"PROTOCOL.md Part II: <!-- {name}:begin/end --> missing"):
        return []
    rows = parse_table(block)
    c.check(bool(rows), f"PROTOCOL.md Part II: the {name} table is empty")
    return rows


# ------------------------------------------------------------------ layout
def check_layout_v2(c, part2: str, l2, lj) -> None:
    if l2 is None:
        return
    hdr = l2.get("header", {})
    rows = _block_rows(c, part2, "v2-header")
    special = {strip_code(r.get("field", "")): r for r in rows
               if strip_code(r.get("field", "")) in ("schema table", "payload")}
    rows = [r for r in rows if strip_code(r.get("field", "")) not in ("schema table", "payload")]
    _layout_rows(c, rows, hdr.get("fields", []), "v2 header")
    c.check(sum(f.get("size", 0) for f in hdr.get("fields", [])) == hdr.get("size") == 512,
            "layout_v2.json: the fixed header fields do not add up to 512 bytes")
    st = special.get("schema table")
    if c.check(st is not None, "v2 header table: 'schema table' row missing"):
        c.eq(to_int(st.get("offset", "")), hdr.get("schema_table", {}).get("offset"),
             "v2 schema table offset")
        c.eq(st.get("size"), hdr.get("schema_table", {}).get("size"), "v2 schema table size")
    pl = special.get("payload")
    if c.check(pl is not None, "v2 header table: 'payload' row missing"):
        c.eq(pl.get("offset"), hdr.get("payload", {}).get("offset"), "v2 payload offset")
        c.eq(pl.get("size"), hdr.get("payload", {}).get("size"), "v2 payload size")
    version = {strip_code(r.get("field", "")): r.get("meaning") for r in rows}
    c.eq(to_int(version.get("version_major", "")), l2.get("version_major"), "v2 version_major")
    c.eq(to_int(version.get("version_minor", "")), l2.get("version_minor"), "v2 version_minor")
    # the fields v2 keeps from v1 are at v1's offsets, with v1's size, type and atomicity
    if lj is not None:
        v1 = {f["field"]: f for f in lj.get("header", {}).get("fields", [])
              if f.get("field") != "reserved"}
        for f in hdr.get("fields", []):
            if f.get("field") in v1:
                c.eq(f, v1[f["field"]], f"v2 header field {f['field']} vs layout.json (v1)")
        c.eq(l2.get("message_table_entry", {}).get("fields"),
             lj.get("descriptor", {}).get("fields"), "v2 message table entry vs v1 descriptor")
    for block, key, what in (("v2-geometry", "geometry", "v2 geometry"),
                             ("v2-record", "schema_record", "v2 schema record"),
                             ("v2-entry", "message_table_entry", "v2 message table entry")):
        t = l2.get(key, {})
        _layout_rows(c, _block_rows(c, part2, block), t.get("fields", []), what)
        c.check(sum(f.get("size", 0) for f in t.get("fields", [])) == t.get("size"),
                f"layout_v2.json {key}: field sizes do not add up to size")
        try:
            c.eq(struct.calcsize(t.get("struct", "")), t.get("size"),
                 f"layout_v2.json {key}.struct")
        except struct.error as e:
            c.check(False, f"layout_v2.json {key}.struct: {e}")
    geo = {f["field"]: f for f in hdr.get("fields", [])}.get("geometry", {})
    c.eq((geo.get("offset"), geo.get("size")),
         (l2.get("geometry", {}).get("offset"), l2.get("geometry", {}).get("size")),
         "v2 geometry block offset/size in the header vs geometry")
    for heading, key in ((r"### II\.3\.1 Geometry block \((\d+) bytes, at (0x[0-9A-Fa-f]+)\)",
                          "geometry"), (r"### II\.3\.2 Schema record \((\d+) bytes\)",
                                        "schema_record")):
        m = re.search(heading, part2)
        if c.check(m is not None, f"Part II heading for {key} not found"):
            c.eq(int(m.group(1)), l2.get(key, {}).get("size"), f"{key} size in its heading")
            if m.lastindex == 2:
                c.eq(to_int(m.group(2)), l2.get(key, {}).get("offset"), f"{key} offset in heading")
    # limits
    lim = l2.get("limits", {})
    rows = _block_rows(c, part2, "v2-limits")
    md = {strip_code(r.get("limit", "")): strip_code(r.get("value", "")) for r in rows}
    c.eq(sorted(md), sorted(lim), "v2 limit names")
    for k, v in lim.items():
        c.eq(to_int(md.get(k, "")), v, f"limit {k}")
    name = {f["field"]: f for f in l2.get("schema_record", {}).get("fields", [])}.get("name", {})
    for k, want in (("record_size", l2.get("schema_record", {}).get("size")),
                    ("table_entry_size", l2.get("message_table_entry", {}).get("size")),
                    ("fixed_header_size", hdr.get("size")), ("max_dims", l2.get("max_dims")),
                    ("name_size", name.get("size")), ("name_max_length", name.get("size", 0) - 1)):
        c.eq(lim.get(k), want, f"layout_v2.json limits.{k} vs the layout")
    m = re.search(r"`header_size = (\d+) \+ (\d+) × \(request_fields \+ reply_fields\)`", part2)
    if c.check(m is not None, "R-SCHEMA-5: 'header_size = A + B × (...)' not found"):
        c.eq((int(m.group(1)), int(m.group(2))),
             (lim.get("fixed_header_size"), lim.get("record_size")), "R-SCHEMA-5 header_size")
    m = re.search(r"\*\*R-SCHEMA-1\*\* A schema is an ordered list of 0 to (\d+) fields", part2)
    if c.check(m is not None, "R-SCHEMA-1: 'list of 0 to N fields' not found"):
        c.eq(int(m.group(1)), lim.get("max_fields"), "R-SCHEMA-1 max fields")
    m = re.search(r"\*\*R-SCHEMA-2\*\* A field name MUST be 1 to (\d+) ASCII characters matching "
                  r"`([^`]+)`", part2)
    if c.check(m is not None, "R-SCHEMA-2: name rule not found"):
        c.eq((int(m.group(1)), m.group(2)), (lim.get("name_max_length"), lim.get("name_pattern")),
             "R-SCHEMA-2 name rule")


# ------------------------------------------------------------------ worked example
def check_example(c, part2: str, h2) -> None:
    rows = _block_rows(c, part2, "v2-example")
    if h2 is None:
        return
    cam = next((v for v in h2.get("valid", []) if v.get("id") == "H2-VALID-CAMERA"), None)
    if not c.check(cam is not None, "headers_v2.json: H2-VALID-CAMERA missing"):
        return
    f = cam.get("fields", {})
    recs = f.get("request_schema", []) + f.get("reply_schema", [])
    known = {k: v for k, v in f.get("geometry", {}).items()}
    known.update({k: f.get(k) for k in ("header_size", "capacity", "segment_size")})
    for i, r in enumerate(recs):
        known[f"{r.get('name')}.record"] = 512 + 128 * i
        for k in ("dtype", "ndim", "variable_mask", "alias", "offset", "max_nbytes"):
            known[f"{r.get('name')}.{k}"] = r.get(k)
        known[f"{r.get('name')}.max_shape"] = ",".join(str(e) for e in r.get("max_shape", []))
    md = {strip_code(r.get("quantity", "")): r.get("value", "") for r in rows}
    c.eq(sorted(md), sorted(known), "example quantities vs H2-VALID-CAMERA")
    for k, v in md.items():
        if k in known:
            c.eq(v if k.endswith(".max_shape") else to_int(v), known[k], f"example {k}")


# ------------------------------------------------------------------ check tables and vectors
def check_tables(c, part2: str, ej) -> dict:
    """{label: error} of the Part II check tables."""
    names = {e.get("name") for e in (ej or {}).get("errors", [])}
    out = {}
    for block, letter in CHECK_TABLES.items():
        rows = _block_rows(c, part2, block)
        labels = [strip_code(r.get("check", "")) for r in rows]
        c.eq(labels, [f"{letter}{i}" for i in range(1, len(rows) + 1)], f"{block} labels")
        for r in rows:
            lab, err = strip_code(r.get("check", "")), strip_code(r.get("error", ""))
            c.check(err in names, f"{block} {lab}: error {err!r} not in errors.json")
            out[lab] = err
    for lab in sorted(set(re.findall(r"\b([CHFXSE]\d{1,2})\b", part2))):
        c.check(lab in out, f"Part II mentions check {lab}, which no check table defines")
    return out


def _structured_dtypes(fields, allowed) -> list[str]:
    return [f.get("dtype") for f in fields or [] if "inplace" not in f
            and f.get("dtype") not in allowed]


def check_vectors_v2(c, labels: dict, ej, dj, h2, m2, ids_defined: set) -> None:
    names = {e.get("name") for e in (ej or {}).get("errors", [])}
    dtypes = {d.get("name") for d in (dj or {}).get("dtypes", [])}
    bad, ids, cited = [], [], []

    def vec(v, where, family):
        ids.append(v.get("id"))
        cited.extend((f"{where} {v.get('id')}", r) for r in v.get("requirements", []))
        err, lab = v.get("error"), v.get("check")
        if err is None:
            return
        if err == "ok":
            if lab is not None:
                bad.append(f"{v.get('id')}: check {lab} on a case that succeeds")
            return
        if err not in names:
            bad.append(f"{v.get('id')}: error {err!r}")
        if lab is None or lab[0] not in family:
            bad.append(f"{v.get('id')}: check {lab!r} is not one of {family}")
        elif labels.get(lab) != err:
            bad.append(f"{v.get('id')}: check {lab} gives {labels.get(lab)!r} in PROTOCOL.md, "
                       f"the vector expects {err!r}")

    if h2 is not None:
        for group in ("valid", "invalid", "decode_only"):
            for v in h2.get(group, []):
                vec(v, "headers_v2.json", "HF")
                raw = len(v.get("hex", "")) // 2
                if group == "invalid":
                    if raw < 512 or (raw - 512) % 128 or len(v.get("hex", "")) % 2:
                        bad.append(f"{v.get('id')}: hex is not 512 + 128 x n bytes")
                    continue
                if raw != v.get("fields", {}).get("header_size"):
                    bad.append(f"{v.get('id')}: hex is not header_size bytes")
                s = v.get("schemas")
                if s is not None:
                    for side in ("request", "reply"):
                        bad += [f"{v.get('id')}: dtype {d!r}"
                                for d in _structured_dtypes(s.get(side), dtypes)]
    if m2 is not None:
        schemas = {s.get("id"): s for s in m2.get("schemas", [])}
        ids += list(schemas)
        for s in schemas.values():
            for side in ("request", "reply"):
                bad += [f"{s.get('id')}: dtype {d!r}"
                        for d in _structured_dtypes(s.get(side), dtypes)]
        for group in ("valid", "invalid"):
            for v in m2.get("tables", {}).get(group, []):
                vec(v, "messages_v2.json", "E")
                s = schemas.get(v.get("schema"))
                if s is None:
                    bad.append(f"{v.get('id')}: unknown schema {v.get('schema')!r}")
                elif len(v.get("hex", "")) != 160 * len(s.get(v.get("side"), [])):
                    bad.append(f"{v.get('id')}: hex is not 80 bytes per {v.get('side')} field")
        for group, family in (("send", "S"), ("expect", "XC"), ("declare", "C")):
            for v in m2.get(group, []):
                vec(v, "messages_v2.json", family)
                if group != "declare" and v.get("schema") not in schemas:
                    bad.append(f"{v.get('id')}: unknown schema {v.get('schema')!r}")
                for x in v.get("given", []):
                    if "dtype" in x and x["dtype"] not in dtypes | {"object"}:
                        bad.append(f"{v.get('id')}: dtype {x['dtype']!r}")
    c.check(not bad, "v2 vectors: " + "; ".join(bad))
    dup = sorted({i for i in ids if ids.count(i) > 1})
    c.check(not dup, f"duplicate v2 vector ids: {dup}")
    unknown = sorted({f"{w}: {r}" for w, r in cited if r not in ids_defined})
    c.check(not unknown, "unknown requirement ids cited by v2 vectors: " + "; ".join(unknown))


# ------------------------------------------------------------------ ids and the inheritance table
def check_ids_v2(c, part1: str, part2: str) -> set:
    ids1 = REQ_DEF.findall(part1)
    ids2 = REQ_DEF.findall(part2)
    c.check(all(i.split("-")[1] in V2_AREAS for i in ids2),
            "Part II defines ids outside R-SCHEMA/R-FIELD/R-VER: "
            f"{sorted(i for i in ids2 if i.split('-')[1] not in V2_AREAS)}")
    c.check(not any(i.split("-")[1] in V2_AREAS for i in ids1),
            "Part I defines R-SCHEMA/R-FIELD/R-VER ids")
    c.check("R-V2-" not in part1 + part2, "an id 'R-V2-...' is used (V2-DESIGN: never R-V2-)")
    rows = _block_rows(c, part2, "v2-inherit")
    listed = [strip_code(r.get("v1 id", "")) for r in rows]
    missing = [i for i in ids1 if i not in listed]
    extra = [i for i in listed if i not in ids1]
    twice = sorted({i for i in listed if listed.count(i) > 1})
    c.check(not missing and not extra and not twice,
            f"inheritance table must list every Part I id once: missing {missing}, not in Part I "
            f"{extra}, twice {twice}")
    for r in rows:
        rid, kind = strip_code(r.get("v1 id", "")), strip_code(r.get("in v2", ""))
        by = [b.strip() for b in strip_code(r.get("by", "")).split(",")]
        if not c.check(kind in KINDS, f"inheritance table {rid}: kind {kind!r} not in {KINDS}"):
            continue
        if kind == "inherited":
            c.eq(by, ["—"], f"inheritance table {rid}: 'by' of an inherited id")
        else:
            c.check(by != ["—"] and all(b in ids2 for b in by),
                    f"inheritance table {rid} ({kind}): 'by' {by} must name Part II ids")
    return set(ids2)


def check_part2(c, text: str, load) -> None:
    """Entry point, called by check_spec.run(); `load` loads a JSON file of the spec dir."""
    part1, part2 = split_parts(text)
    if not c.check(part2 is not None, "PROTOCOL.md: '# Part II' (protocol v2) not found"):
        return
    l2, lj, ej, dj = (load(n) for n in ("layout_v2.json", "layout.json", "errors.json",
                                        "dtypes.json"))
    h2, m2 = load("vectors/headers_v2.json"), load("vectors/messages_v2.json")
    ids2 = check_ids_v2(c, part1, part2)
    check_layout_v2(c, part2, l2, lj)
    check_example(c, part2, h2)
    labels = check_tables(c, part2, ej)
    check_vectors_v2(c, labels, ej, dj, h2, m2, set(REQ_DEF.findall(part1)) | ids2)
