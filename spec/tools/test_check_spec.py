"""pytest: check_spec.py passes on the real spec and fails on mutated copies."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

TOOLS = os.path.dirname(os.path.abspath(__file__))
SPEC = os.path.dirname(TOOLS)
sys.path.insert(0, TOOLS)
import check_spec  # noqa: E402
import gen_vectors  # noqa: E402


@pytest.fixture
def spec_copy(tmp_path):
    dst = tmp_path / "spec"
    os.makedirs(dst / "vectors")
    for name in ("PROTOCOL.md", "transitions.json", "errors.json", "dtypes.json", "layout.json",
                 "layout_v2.json"):
        shutil.copy(os.path.join(SPEC, name), dst / name)
    for name in ("headers.json", "sequences.json", "headers_v2.json", "messages_v2.json"):
        shutil.copy(os.path.join(SPEC, "vectors", name), dst / "vectors" / name)
    return dst


def edit_text(path, old, new, count=1):
    text = path.read_text(encoding="utf-8")
    assert old in text, f"mutation anchor {old!r} not found in {path.name}"
    path.write_text(text.replace(old, new, count), encoding="utf-8")


def edit_json(path, fn):
    doc = json.loads(path.read_text(encoding="utf-8"))
    fn(doc)
    path.write_text(json.dumps(doc, indent=2), encoding="utf-8")


def failures(spec_dir):
    c = check_spec.run(str(spec_dir))
    return c.failures


def test_real_spec_passes():
    c = check_spec.run(SPEC)
    assert c.failures == []
    assert c.passed > 300


def test_cli_summary_line():
    out = subprocess.run([sys.executable, os.path.join(TOOLS, "check_spec.py")],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().startswith("spec consistency: ")
    assert out.stdout.strip().endswith(" checks passed")


def test_copy_passes(spec_copy):
    assert failures(spec_copy) == []


MD_MUTATIONS = [
    # (anchor, replacement, expected substring of a failure)
    ("| T5 | requester | cancel | REQUESTED | own |", "| T5 | requester | cancel | TAKEN | own |",
     "transition T5.from"),
    ("| T2 | responder | take | REQUESTED | none | IDLE, REPLIED |",
     "| T2 | responder | take | REQUESTED | none | IDLE |", "transition T2.waits_in"),
    ("| T1 | requester | send | IDLE | none pending | — | REQUESTED | +1 |",
     "| T1 | requester | send | IDLE | none pending | — | REQUESTED | = |", "transition T1.seq"),
    ("| T8 | responder | recover | TAKEN | not held | — | REPLIED | = | release | R-REC-2 |\n",
     "", "transition ids"),
    ("| `TAKEN`     | `0x4`", "| `TAKEN`     | `0x8`", "phase TAKEN.bits"),
    ("| 7 | PEER_GONE | 16 |", "| 7 | PEER_GONE | 17 |", "error 7.exit"),
    ("| 14 | complex128 | 16 |", "| 14 | complex128 | 8 |", "dtype 14.itemsize"),
    ("| 0x104  | 4    | u32 atomic| `waiters`", "| 0x104  | 4    | u32       | `waiters`",
     "waiters: atomic"),
    ("| 0x0E0  | 4    | u32       | `reply_code`", "| 0x0E0  | 8    | u32       | `reply_code`",
     "reply_code: size"),
    ("| +72    | 8    | u64    | `nbytes` |", "| +64    | 8    | u64    | `nbytes` |",
     "nbytes: offset"),
    ("| +16    | 8    | u64        | `incarnation` |", "| +16    | 8    | u64        | `epoch` |",
     "field"),
    ("- **R-STATE-9**", "- **R-STATE-8**", "defined more than once"),
    ("- **R-MSG-2**", "- **R-MSG-9**", "unknown requirement ids"),
    ("<!-- errors:end -->", "", "errors:begin/end"),
    ("`header_size = 512`", "`header_size = 256`", "R-LAYOUT-2 header_size"),
]


@pytest.mark.parametrize("old,new,expect", MD_MUTATIONS, ids=[m[2] for m in MD_MUTATIONS])
def test_markdown_mutation_detected(spec_copy, old, new, expect):
    edit_text(spec_copy / "PROTOCOL.md", old, new)
    f = failures(spec_copy)
    assert f, "checker passed a mutated PROTOCOL.md"
    assert any(expect in x for x in f), f


def _set_transition(doc, tid, key, value):
    for t in doc["transitions"]:
        if t["id"] == tid:
            t[key] = value


JSON_MUTATIONS = [
    ("transitions.json", lambda d: _set_transition(d, "T3", "order", "acq_rel"),
     "transition T3.order"),
    ("transitions.json", lambda d: _set_transition(d, "T4", "requirement", "R-STATE-99"),
     "transition T4.requirement"),
    ("errors.json", lambda d: d["errors"][7].update(name="OUT_OF_ORDER"), "error 8.name"),
    ("dtypes.json", lambda d: d["dtypes"].pop(), "dtype codes"),
    ("layout.json", lambda d: d["header"]["fields"][3].update(offset=13), "header_size: offset"),
    ("layout.json", lambda d: d["slot"]["fields"][1].update(atomic=False), "state: atomic"),
    ("vectors/headers.json", lambda d: d["invalid"][0].update(requirements=["R-LAYOUT-42"]),
     "unknown requirement ids"),
    ("vectors/sequences.json", lambda d: d["sequences"][0].update(requirements=["R-FOO-1"]),
     "unknown requirement ids"),
    ("vectors/headers.json", lambda d: d["invalid"][0].update(error="BAD_MAGIC"),
     "unknown error"),
]


@pytest.mark.parametrize("rel,fn,expect", JSON_MUTATIONS, ids=[m[2] + " " + m[0]
                                                             for m in JSON_MUTATIONS])
def test_json_mutation_detected(spec_copy, rel, fn, expect):
    edit_json(spec_copy / rel, fn)
    f = failures(spec_copy)
    assert f, f"checker passed a mutated {rel}"
    assert any(expect in x for x in f), f


def test_cli_exit_code_on_mutation(spec_copy):
    edit_text(spec_copy / "PROTOCOL.md", "| 1 | SEGMENT_NOT_FOUND | 10 |", "| 1 | NOT_FOUND | 10 |")
    out = subprocess.run([sys.executable, os.path.join(TOOLS, "check_spec.py"),
                          "--spec-dir", str(spec_copy)], capture_output=True, text=True)
    assert out.returncode == 1
    assert "error 1.name" in out.stderr


def test_vectors_up_to_date():
    assert gen_vectors.main(["--check"]) == 0


def test_header_vectors_roundtrip():
    doc = json.load(open(os.path.join(SPEC, "vectors", "headers.json"), encoding="utf-8"))
    for v in doc["valid"]:
        assert gen_vectors.encode(v["fields"]).hex() == v["hex"]
        assert gen_vectors.decode(bytes.fromhex(v["hex"]), v["mapping_size"]) == v["fields"]
    for v in doc["invalid"]:
        with pytest.raises(gen_vectors.HeaderError) as e:
            gen_vectors.decode(bytes.fromhex(v["hex"]), v["mapping_size"])
        assert e.value.name == v["error"], v["id"]


# ------------------------------------------------------------------ Part II (protocol v2)
def test_real_spec_checks_part2():
    c = check_spec.run(SPEC)
    assert c.failures == []
    assert c.passed > 900          # the v2 tables, example, check labels and vectors add ~600


V2_MD_MUTATIONS = [
    ("| 0x040  | 80   | geometry  | `geometry`", "| 0x048  | 80   | geometry  | `geometry`",
     "v2 header row 0x048 geometry: offset"),
    ("| 0x0E0  | 4    | u32       | `reply_code`     | as v1", "| 0x0E0  | 8    | u32       "
     "| `reply_code`     | as v1", "v2 header row 0x0E0 reply_code: size"),
    ("| +16    | 8    | u64  | `request_area_size`", "| +24    | 8    | u64  | `request_area_size`",
     "v2 geometry row +24 request_area_size: offset"),
    ("| +112   | 8    | u64      | `offset`", "| +104   | 8    | u64      | `offset`",
     "v2 schema record row +104 offset: offset"),
    ("| +72    | 8    | u64    | `nbytes` | `itemsize × product(shape)` |",
     "| +64    | 8    | u64    | `nbytes` | `itemsize × product(shape)` |",
     "v2 message table entry row +64 nbytes: offset"),
    ("### II.3.2 Schema record (128 bytes)", "### II.3.2 Schema record (120 bytes)",
     "schema_record size in its heading"),
    ("| `image.offset` | 1088 |", "| `image.offset` | 1152 |", "example image.offset"),
    ("| `segment_size` | 925312 |", "| `segment_size` | 925376 |", "example segment_size"),
    ("| `max_fields` | 16 |", "| `max_fields` | 15 |", "limit max_fields"),
    ("`header_size = 512 + 128 × (request_fields + reply_fields)`",
     "`header_size = 512 + 64 × (request_fields + reply_fields)`", "R-SCHEMA-5 header_size"),
    ("| R-WAIT-3 | inherited | — | |\n", "", "inheritance table must list every Part I id"),
    ("| R-MSG-1 | replaced | R-FIELD-8, R-FIELD-9 |", "| R-MSG-1 | replaced | R-FIELD-99 |",
     "inheritance table R-MSG-1 (replaced)"),
    ("| R-STATE-2 | inherited | — |", "| R-STATE-2 | kept | — |",
     "inheritance table R-STATE-2"),
    ("| E8 | every variable extent ≤ its maximum | CORRUPT_HEADER |",
     "| E8 | every variable extent ≤ its maximum | CAPACITY_EXCEEDED |", "check E8 gives"),
    ("| F9 | `offset` =", "| F10 | `offset` =", "v2-record-checks labels"),
    ("| 19 | SCHEMA_MISMATCH | 28 |", "| 19 | SCHEMA_MISMATCH | 29 |", "error 19.exit"),
    ("- **R-SCHEMA-5** A v2 header", "- **R-V2-5** A v2 header", "R-V2"),
    ("- **R-VER-7** A creator", "- **R-LAYOUT-8** A creator", "Part II defines ids outside"),
    ("# Part II — protocol version 2", "# Protocol version 2", "'# Part II' (protocol v2) not found"),
]


@pytest.mark.parametrize("old,new,expect", V2_MD_MUTATIONS, ids=[m[2] for m in V2_MD_MUTATIONS])
def test_part2_markdown_mutation_detected(spec_copy, old, new, expect):
    edit_text(spec_copy / "PROTOCOL.md", old, new)
    f = failures(spec_copy)
    assert f, "checker passed a mutated PROTOCOL.md Part II"
    assert any(expect in x for x in f), f


def _field(doc, table, name):
    return next(f for f in doc[table]["fields"] if f["field"] == name)


def _vector(doc, group, vid):
    return next(v for v in doc[group] if v["id"] == vid)


V2_JSON_MUTATIONS = [
    ("layout_v2.json", lambda d: _field(d, "header", "geometry").update(offset=72),
     "v2 header row 0x040 geometry: offset"),
    ("layout_v2.json", lambda d: _field(d, "schema_record", "offset").update(offset=104),
     "v2 schema record row +112 offset: offset"),
    ("layout_v2.json", lambda d: _field(d, "header", "word").update(atomic=False),
     "word: atomic"),
    ("layout_v2.json", lambda d: d["limits"].update(max_fields=17), "limit max_fields"),
    ("layout_v2.json", lambda d: d["geometry"].update(struct="<IIQQQQ32x"), "geometry.struct"),
    ("layout.json", lambda d: _field(d, "header", "reply_code").update(offset=228),
     "v2 header field reply_code vs layout.json"),
    ("vectors/headers_v2.json",
     lambda d: _vector(d, "valid", "H2-VALID-CAMERA")["fields"]["reply_schema"][0]
     .update(offset=922944), "example boxes.offset"),
    ("vectors/headers_v2.json", lambda d: _vector(d, "invalid", "H2-BAD-FLAGS").update(check="H2"),
     "check H2 gives 'SEGMENT_NOT_FOUND'"),
    ("vectors/headers_v2.json",
     lambda d: _vector(d, "invalid", "H2-BAD-FLAGS").update(requirements=["R-SCHEMA-99"]),
     "unknown requirement ids cited by v2 vectors"),
    ("vectors/headers_v2.json", lambda d: _vector(d, "invalid", "H2-BAD-FLAGS").update(check="E1"),
     "is not one of HF"),
    ("vectors/messages_v2.json",
     lambda d: d["tables"]["invalid"][0].update(error="BAD_DTYPE"), "error 'BAD_DTYPE'"),
    ("vectors/messages_v2.json", lambda d: d["send"][0].update(schema="SCH-NONE"),
     "unknown schema"),
    ("vectors/messages_v2.json", lambda d: d["send"].append(dict(d["send"][0])),
     "duplicate v2 vector ids"),
    ("vectors/messages_v2.json",
     lambda d: d["tables"]["valid"][0].update(hex=d["tables"]["valid"][0]["hex"][:-2]),
     "hex is not 80 bytes per request field"),
]


@pytest.mark.parametrize("rel,fn,expect", V2_JSON_MUTATIONS,
                         ids=[m[2] + " " + m[0] for m in V2_JSON_MUTATIONS])
def test_part2_json_mutation_detected(spec_copy, rel, fn, expect):
    edit_json(spec_copy / rel, fn)
    f = failures(spec_copy)
    assert f, f"checker passed a mutated {rel}"
    assert any(expect in x for x in f), f


def test_part2_needs_v2_files(spec_copy):
    os.remove(spec_copy / "layout_v2.json")
    assert any("cannot load layout_v2.json" in x for x in failures(spec_copy))
