"""Unit tests of the kit's protocol v2 checks (conformance/v2spec.py, conformance/v2check.py):
the SPEC grammar of spec/PEER.md §7.2, the data rules of §7.3/§7.4 recomputed from the spec text,
and the checks the runner makes on v2 event logs (§7.5). Each check is shown to fail on a log
that breaks it. No build needed."""

from __future__ import annotations

import copy

import pytest

from conformance import peerkit as pk
from conformance import runner, v2check, v2spec

REQ = "image:uint8:4,5,3;stamp:float64:;ids:int64:<=9"
REP = "boxes:float32:<=10,6;t:=stamp"


# ---- §7.2 grammar and §7.3/§7.4 rules ---------------------------------------------------------


def test_parse_spec_grammar():
    f = v2spec.parse("t:float64:;ids:int64:<=1000;m:bool:0,<=7")
    assert [(x.name, x.dtype, x.extents) for x in f] == [
        ("t", "float64", ()), ("ids", "int64", ((1000, True),)),
        ("m", "bool", ((0, False), (7, True)))]
    assert v2spec.parse("") == []
    reply = v2spec.resolve(v2spec.parse(REQ), v2spec.parse(REP))
    assert reply[1] == v2spec.FieldSpec("t", "float64", (), "stamp")
    # PEER.md §7.2's usage errors
    for bad in ("stamp:float64", "a:float32:3,", "a:float32: 3", "a:float:3", "a:float32:<3",
                "a:float32:-1", "a:float32:03", "a:float32:3;", "a:float32:18446744073709551616"):
        with pytest.raises(v2spec.SpecError):
            v2spec.parse(bad)


def test_request_rule_is_pep_md_7_3():
    # field k, round r, seed s: variable extent d = (r + s + 3k + d) mod (M + 1); element i =
    # (7 i + 13 r + s + 29 k) mod 61
    fields = v2spec.request_fields(v2spec.parse(REQ), 4, 2, "rule")
    assert fields["image"][0] == (4, 5, 3) and fields["stamp"][0] == ()
    assert fields["ids"][0] == ((4 + 2 + 3 * 2) % 10,)
    ids = [(7 * i + 13 * 4 + 2 + 29 * 2) % 61 for i in range(12 % 10)]
    assert fields["ids"][1] == pk.hexsum(pk.np.array(ids, "<i8"))
    assert v2spec.request_fields(v2spec.parse(REQ), 1, 0, "max")["ids"][0] == (9,)
    assert v2spec.request_fields(v2spec.parse(REQ), 1, 0, "zero")["ids"] == ((0,), "0" * 16)


def test_derive_rule_is_pep_md_7_4():
    taken = {"image": ((4, 5, 3), "00000000000000ff"), "stamp": ((), "0" * 16)}
    c = 0xFF % 61
    assert v2spec.derive_base(taken) == c and v2spec.derive_base({}) == 0
    reply = v2spec.resolve(v2spec.parse(REQ), v2spec.parse(REP))
    got = v2spec.derive_fields(reply, c, "rule")
    assert got["boxes"][0] == (c % 11, 6)
    want = [(7 * i + 29 * 1 + c) % 61 for i in range(1)]
    assert got["t"] == ((), pk.hexsum(pk.np.array(want, "<f8")))


def test_a_zero_extent_field_needs_no_array():
    # NumPy cannot shape (2^64 - 1, 0); the field holds no byte, so its checksum is 0
    f = v2spec.parse("e:float32:<=18446744073709551615,0")
    assert v2spec.request_fields(f, 1, 0, "max") == {"e": ((2**64 - 1, 0), "0" * 16)}


# ---- the runner's checks on v2 logs -----------------------------------------------------------


def line(op, rnd, seq, fields, result="ok", **kw):
    e = {"peer": "x", "op": op, "round": rnd, "t_call": 10 * rnd, "t_return": 10 * rnd + 1,
         "result": result, "seq": seq, "phase_after": None, "checksum": None}
    if result == "ok":
        e["shapes"] = {k: list(s) for k, (s, _) in fields.items()}
        e["checksums"] = {k: c for k, (_, c) in fields.items()}
    e.update(kw)
    return e


def good_run(rounds=3, op="derive", rmode="rule"):
    request = v2spec.parse(REQ)
    reply = v2spec.resolve(request, v2spec.parse(REP))
    req_argv = ["peer", "--role", "requester", "--create", "--request-schema", REQ,
                "--reply-schema", REP, "--op", op, "--seed", "5", f"--reply-extents={rmode}"]
    rsp_argv = ["peer", "--role", "responder", "--attach", "--protocol", "2", "--op", op,
                "--reply-extents", rmode]
    req = [{"peer": "req", "op": "create", "round": 0, "t_call": 0, "t_return": 1,
            "result": "ok", "seq": 0, "phase_after": "IDLE", "checksum": None, "protocol": 2}]
    rsp = [{"peer": "rsp", "op": "attach", "round": 0, "t_call": 2, "t_return": 3,
            "result": "ok", "seq": 0, "phase_after": "IDLE", "checksum": None, "protocol": 2}]
    for r in range(1, rounds + 1):
        sent = v2spec.request_fields(request, r, 5, "rule")
        published = v2spec.derive_fields(reply, v2spec.derive_base(sent), rmode)
        req.append(line("send", r, r, sent))
        rsp.append(line("take", r, r, sent))
        rsp.append(line("reply", r, r, published))
        req.append(line("receive", r, r, published, verified=True, reply_code=0))
    return [v2check.V2Proc("req", "requester", req_argv, req),
            v2check.V2Proc("rsp", "responder", rsp_argv, rsp)]


def findings(procs):
    return [(f.name, tuple(f.requirements)) for f in v2check.check(procs)]


def test_a_good_v2_run_has_no_finding():
    assert findings(good_run()) == []
    assert findings(good_run(rmode="max")) == []


def edit(procs, who, op, rnd, fn):
    procs = copy.deepcopy(procs)
    p = next(p for p in procs if p.name == who)
    fn(next(e for e in p.events if e.get("op") == op and e.get("round") == rnd))
    return procs


def test_taken_is_not_sent_is_found():
    def tamper(e):  # the responder logs another checksum for one field than was sent
        e["checksums"]["stamp"] = "0123456789abcdef"
    names = [n for n, _ in findings(edit(good_run(), "rsp", "take", 2, tamper))]
    assert "v2 fields" in names


def test_received_is_not_published_is_found():
    def tamper(e):  # another shape received than published
        e["shapes"]["boxes"] = [e["shapes"]["boxes"][0] + 1, 6]
    names = [n for n, _ in findings(edit(good_run(), "req", "receive", 1, tamper))]
    assert "v2 fields" in names


def test_a_request_off_the_rule_is_found():
    # a requester that ignores --extents max and sends the rule's extents is caught
    procs = good_run()
    procs[0].argv += ["--extents", "max"]
    assert ("v2 request data", ("R-FIELD-4", "R-FIELD-1")) in findings(procs)


def test_a_reply_off_the_derive_rule_is_found():
    # the responder publishes (and the requester receives) extents other than --reply-extents
    procs = good_run()
    procs[1].argv += ["--reply-extents", "zero"]
    assert ("v2 reply data", ("R-FIELD-6",)) in findings(procs)


def test_echo_reply_must_equal_the_request():
    procs = good_run(op="echo")
    # good_run publishes derived replies: not the request's shapes and data
    assert ("v2 reply data", ("R-FIELD-6",)) in findings(procs)


@pytest.mark.parametrize("key,value,req", [
    ("checksum", "0000000000000000", "R-FIELD-1"),
    ("shapes", None, "R-FIELD-1"),
    ("message_desc", "00" * 80, "R-SCHEMA-5"),
])
def test_log_fields_of_a_message_line(key, value, req):
    def tamper(e):
        e[key] = value
    got = findings(edit(good_run(), "req", "receive", 1, tamper))
    assert ("v2 log fields", (req,)) in got


def test_failed_lines_need_field_and_null_shapes():
    procs = good_run()
    procs[0].events.append(line("send", 4, None, {}, result="CAPACITY_EXCEEDED"))
    assert ("v2 log fields", ("R-FIELD-7",)) in findings(procs)
    procs[0].events[-1].update(shapes=None, checksums=None, field="ids")
    assert findings(procs) == []


def test_create_attach_lines_carry_protocol_2_and_no_declared_desc():
    procs = good_run()
    del procs[1].events[0]["protocol"]
    assert ("v2 log fields", ("R-VER-1",)) in findings(procs)
    procs = good_run()
    procs[0].events[0]["declared_desc"] = "00" * 80
    assert ("v2 log fields", ("R-SCHEMA-5",)) in findings(procs)


def test_is_v2_reads_the_start_line():
    assert v2check.is_v2([{"event": "start", "protocol": 2}])
    assert not v2check.is_v2([{"event": "start"}])
    assert not v2check.is_v2([{"event": "start", "protocol": 1}])


def test_flag_values():
    argv = ["--op", "derive", "--extents=max", "--seed", "3"]
    assert v2check.flag(argv, "--op") == "derive" and v2check.flag(argv, "--extents") == "max"
    assert v2check.flag(argv, "--reply-extents", "rule") == "rule"


# ---- catalogue patterns used by the v2 cases ---------------------------------------------------


def test_match_null_and_message_has():
    e = {"op": "attach", "field": None, "message": "use MessageRequester/MessageResponder"}
    assert runner._match(e, {"field": "null", "message_has": "MessageRequester"})
    assert not runner._match({"op": "attach"}, {"field": "null"})  # absent is not null
    assert not runner._match({"field": "ids"}, {"field": "null"})
    assert not runner._match(e, {"message_has": "Requester/Responder attach"})


def test_whole_variable_keeps_its_type(tmp_path):
    (tmp_path / "m.toml").write_text('''
[[matrix]]
[matrix.vars]
x = [{code = 4, name = "a"}]
[matrix.case]
id = "m/{name}"
requirements = ["R-FIELD-9"]
purpose = "p"
[[matrix.case.proc]]
name = "req"
role = "requester"
args = "--rounds 1"
expect = {exit = "OK", events = [{op = "receive", reply_code = "{code}", note = "c{code}"}]}
''')
    from conformance import catalogue
    (case,) = catalogue.load(tmp_path)
    assert case.procs[0].expect["events"] == [{"op": "receive", "reply_code": 4, "note": "c4"}]


def test_python_peer_follows_the_same_rules():
    """The Python peer (an independent implementation of §7.3 on the shmbridge package) agrees
    with the kit's recomputation."""
    peer = pytest.importorskip("shmbridge.peer")
    from shmbridge.schema import declare

    records = declare(peer.parse_spec(REQ), peer.parse_spec("")).request
    for rnd, seed in ((1, 0), (3, 1), (7, 12)):
        want = v2spec.request_fields(v2spec.parse(REQ), rnd, seed, "rule")
        got = {}
        for k, r in enumerate(records):
            a = peer.field_array(r, k, "rule", rnd + seed, 13 * rnd + seed)
            got[r.name] = (tuple(a.shape), peer.hexsum(a))
        assert got == want


def test_unchanged_after_reports_the_first_changed_byte(tmp_path):
    (tmp_path / "u.toml").write_text('''
[[case]]
id = "u/one"
requirements = ["R-SCHEMA-10"]
purpose = "p"
unchanged_after = "creator"
[[case.proc]]
name = "creator"
role = "requester"
args = "--create"
''')
    from conformance import catalogue
    (case,) = catalogue.load(tmp_path)
    assert case.unchanged_after == "creator"
    res = runner.RunResult(case, "py-py", "PASS")
    before = bytes(512)
    runner._check_unchanged(res, case, before, before)
    assert res.checks == []
    after = bytearray(before)
    after[0x164] = 2  # the responder slot's state: a claim
    runner._check_unchanged(res, case, before, bytes(after))
    (c,) = res.checks
    assert not c.ok and "0x164" in c.actual and "R-LIVE-1" in c.requirements
    runner._check_unchanged(res, case, None, before)
    assert not res.checks[-1].ok
    (tmp_path / "u.toml").write_text((tmp_path / "u.toml").read_text().replace(
        'unchanged_after = "creator"', 'unchanged_after = "nobody"'))
    with pytest.raises(catalogue.CatalogueError):
        catalogue.load(tmp_path)
