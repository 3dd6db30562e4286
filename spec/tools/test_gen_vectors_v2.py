"""pytest: the v2 reference encoder (gen_vectors_v2.py) and the committed v2 vectors agree."""
from __future__ import annotations

import json
import os
import struct
import sys

import pytest

TOOLS = os.path.dirname(os.path.abspath(__file__))
SPEC = os.path.dirname(TOOLS)
sys.path.insert(0, TOOLS)
import gen_vectors_v2 as g2  # noqa: E402


def load(name):
    with open(os.path.join(SPEC, "vectors", name), encoding="utf-8") as fh:
        return json.load(fh)


HEADERS = load("headers_v2.json")
MESSAGES = load("messages_v2.json")
SCHEMAS = {s["id"]: s for s in MESSAGES["schemas"]}


def test_v2_vectors_up_to_date():
    assert g2.main(["--check"]) == 0


@pytest.mark.parametrize("v", HEADERS["valid"], ids=lambda v: v["id"])
def test_valid_header_four_directions(v):
    raw = bytes.fromhex(v["hex"])
    assert g2.encode(v["fields"]) == raw
    assert g2.decode(raw, v["mapping_size"]) == v["fields"]
    req, rep = g2.declare(v["schemas"]["request"], v["schemas"]["reply"])
    assert (req, rep) == (v["fields"]["request_schema"], v["fields"]["reply_schema"])
    for side in ("request", "reply"):
        assert g2.parse_spec(v["schemas"]["spec"][side]) == v["schemas"][side]
        t = v["initial_tables"][side]
        assert g2.encode_table(t["entries"]).hex() == t["hex"]
        assert g2.validate_table(v["fields"][f"{side}_schema"], bytes.fromhex(t["hex"])) \
            == t["entries"]


@pytest.mark.parametrize("v", HEADERS["invalid"], ids=lambda v: v["id"])
def test_invalid_header_fails_at_its_check(v):
    with pytest.raises(g2.V2Error) as e:
        g2.decode(bytes.fromhex(v["hex"]), v["mapping_size"])
    assert (e.value.name, e.value.check, e.value.field) == (v["error"], v["check"], None)


@pytest.mark.parametrize("v", HEADERS["decode_only"], ids=lambda v: v["id"])
def test_reserved_bytes_ignored(v):
    raw = bytes.fromhex(v["hex"])
    assert g2.decode(raw, v["mapping_size"]) == v["fields"]
    assert g2.encode(v["fields"]) != raw


def test_camera_geometry_by_hand():
    """The worked example of PROTOCOL.md §II.4, recomputed here without place()."""
    f = next(v for v in HEADERS["valid"] if v["id"] == "H2-VALID-CAMERA")["fields"]
    assert f["header_size"] == 512 + 128 * 3 == 896
    image, stamp = f["request_schema"]
    (boxes,) = f["reply_schema"]
    assert image["offset"] == 896 + 192 == 1088
    assert stamp["offset"] == 1088 + 921600 == 922688
    assert f["geometry"]["reply_area_offset"] == 922752
    assert boxes["offset"] == 922752 + 128 == 922880
    assert f["segment_size"] == 922880 + 2432 == 925312


def test_validator_never_reads_past_hex():
    """Every invalid vector validates with exactly the bytes given (the Reader asserts it); a
    shorter prefix of a valid header is refused by the Reader, not silently read as zero."""
    v = next(v for v in HEADERS["valid"] if v["id"] == "H2-VALID-CAMERA")
    with pytest.raises(AssertionError, match="beyond the bytes given"):
        g2.decode(bytes.fromhex(v["hex"])[:700], v["mapping_size"])


@pytest.mark.parametrize("v", MESSAGES["tables"]["invalid"], ids=lambda v: v["id"])
def test_invalid_table(v):
    recs = SCHEMAS[v["schema"]][f"{v['side']}_schema"]
    with pytest.raises(g2.V2Error) as e:
        g2.validate_table(recs, bytes.fromhex(v["hex"]))
    assert (e.value.name, e.value.check, e.value.field) == (v["error"], v["check"], v["field"])


@pytest.mark.parametrize("v", MESSAGES["send"], ids=lambda v: v["id"])
def test_send_case(v):
    if v["error"] == "ok":
        assert g2.check_send(v, SCHEMAS[v["schema"]]) == v["shapes"]
        return
    with pytest.raises(g2.V2Error) as e:
        g2.check_send(v, SCHEMAS[v["schema"]])
    assert (e.value.name, e.value.check, e.value.field) == (v["error"], v["check"], v["field"])


@pytest.mark.parametrize("v", MESSAGES["expect"] + MESSAGES["declare"], ids=lambda v: v["id"])
def test_expect_and_declare_cases(v):
    if "expected" in v:
        def run():
            g2.check_expect(SCHEMAS[v["schema"]], v["expected"])
    else:
        def run():
            g2.declare(v["request"], v["reply"])
    if v["error"] == "ok":
        run()
        return
    with pytest.raises(g2.V2Error) as e:
        run()
    assert (e.value.name, e.value.check, e.value.field) == (v["error"], v["check"], v["field"])


@pytest.mark.parametrize("text", ["stamp:float64", "a:float32:3,", "a:float32: 3", "a:float:3",
                                  "a:float32:<3", "a:float32:-1", "a:float32:03", ";",
                                  "a:float32:3;", "a:=", "a:float32:<=18446744073709551616"])
def test_spec_grammar_rejects(text):
    with pytest.raises(ValueError):
        g2.parse_spec(text)


def test_spec_grammar_examples():
    assert g2.parse_spec("") == []
    assert g2.parse_spec("array:=array") == [{"name": "array", "inplace": "array"}]
    assert g2.parse_spec("t:float64:;b:bool:0,<=7") == [
        {"name": "t", "dtype": "float64", "shape": []},
        {"name": "b", "dtype": "bool", "shape": [0, {"upto": 7}]}]
    # names the library must reject still parse (they reach it, as --name does)
    assert g2.parse_spec("1x:int8:")[0]["name"] == "1x"


def test_mutated_offset_is_caught():
    """Mutation check of the validator itself: moving a field by 64 bytes is F9."""
    v = next(v for v in HEADERS["valid"] if v["id"] == "H2-VALID-CAMERA")
    raw = bytearray(bytes.fromhex(v["hex"]))
    struct.pack_into("<Q", raw, 0x200 + 128 + 112, 922688 + 64)
    with pytest.raises(g2.V2Error) as e:
        g2.decode(bytes(raw), v["mapping_size"])
    assert e.value.check == "F9"


def test_readme_counts():
    """spec/vectors/README.md states the v2 vector counts; they must match the files."""
    import re
    with open(os.path.join(SPEC, "vectors", "README.md"), encoding="utf-8") as fh:
        text = " ".join(fh.read().split())
    h = re.search(r"`headers_v2.json` has (\d+) valid, (\d+) invalid and (\d+) decode-only", text)
    assert h and [int(x) for x in h.groups()] == [
        len(HEADERS[k]) for k in ("valid", "invalid", "decode_only")]
    m = re.search(r"`messages_v2.json` has (\d+) schemas, (\d+) valid and (\d+) invalid message "
                  r"tables, (\d+) send/reply cases \((\d+) succeed\), (\d+) attach expectation "
                  r"cases \((\d+) succeed\) and (\d+) declaration cases", text)
    ok = [len([v for v in MESSAGES[g] if v["error"] == "ok"]) for g in ("send", "expect")]
    assert m and [int(x) for x in m.groups()] == [
        len(MESSAGES["schemas"]), len(MESSAGES["tables"]["valid"]),
        len(MESSAGES["tables"]["invalid"]), len(MESSAGES["send"]), ok[0],
        len(MESSAGES["expect"]), ok[1], len(MESSAGES["declare"])]
