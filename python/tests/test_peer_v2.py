"""Smoke tests of the Python conformance peer speaking protocol v2 (spec/PEER.md §7), py-py: two
peers run in child processes and their event logs are checked: rounds of add1 (in place and own
storage) and derive, variable extents zero / max / over on both sides, a peer killed at each
transition (T1-T4), --corrupt of v2 header and table fields, mismatches at attach, and the SPEC
grammar's usage errors. (The conformance cases proper live in conformance/.)"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from typing import Any

import pytest
from conftest import _cleanup, unique_name
from test_processes import child_env

from shmbridge.peer import parse_spec
from shmbridge.schema import Upto

CAMERA = ["--request-schema", "image:uint8:6,8,3;stamp:float64:",
          "--reply-schema", "boxes:float32:<=7,6"]  # fmt: skip
INPLACE = ["--request-schema", "array:float32:5,4", "--reply-schema", "array:=array"]
MIXED = ["--request-schema", "t:float64:;ids:int64:<=9;m:bool:0,<=7",
         "--reply-schema", "u:float64:;ids:=ids;n:bool:0,<=7"]  # fmt: skip


def peer_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "shmbridge.peer", *args]


class Run:
    """One peer process: its exit code and its event log (one JSON object per line)."""

    def __init__(self, args: list[str]) -> None:
        self.args = args
        self.p = subprocess.Popen(
            peer_cmd(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env=child_env(),
        )  # fmt: skip
        self.code: int | None = None
        self.log: list[dict[str, Any]] = []
        self.err = ""

    def wait(self, timeout: float = 60) -> Run:
        out, self.err = self.p.communicate(timeout=timeout)
        self.code = self.p.returncode
        self.log = [json.loads(line) for line in out.splitlines() if line.strip()]
        return self

    def ops(self, op: str, result: str | None = "ok") -> list[dict[str, Any]]:
        return [e for e in self.log if e.get("op") == op and result in (None, e["result"])]

    @property
    def summary(self) -> dict[str, Any]:
        return self.log[-1]

    def __repr__(self) -> str:
        return f"peer {self.args} exit {self.code}\n{self.log}\n{self.err}"


def pair(
    creator: list[str], attacher: list[str], *, create_role: str = "responder"
) -> tuple[Run, Run]:
    """The creator (a responder by default) and an attacher of the other role, on one name."""
    name = unique_name("pv2")
    other = "requester" if create_role == "responder" else "responder"
    c = Run(["--role", create_role, "--name", name, "--create", "--timeout", "5", *creator])
    deadline = time.monotonic() + 20  # the runner's rule: attach after the create (PEER.md §5)
    while time.monotonic() < deadline and c.p.poll() is None:
        time.sleep(0.02)
        try:
            with open(f"/dev/shm/{name}", "rb") as f:
                if f.read(8) == b"SHMBRIDG":
                    break
        except OSError:
            continue
    a = Run(["--role", other, "--name", name, "--attach", "--timeout", "5", *attacher])
    a.wait()
    c.wait()
    return c, a


def attach_to_kept(creator: list[str], attacher: list[str]) -> Run:
    """A requester creates the segment (with its --corrupt at ready) and exits, keeping it
    (--keep); then a responder attaches with ``attacher``, and the test unlinks the name. For
    attaches that must fail at the header or schema checks: the segment outlives the creator,
    so the attacher's start-up time does not matter (an attacher racing a creator's take
    timeout of 1 s lost on a loaded machine)."""
    name = unique_name("pv2")
    c = Run(["--role", "requester", "--name", name, "--create", "--keep", "--rounds", "0",
             *creator]).wait()  # fmt: skip
    try:
        assert c.code == 0, c
        return Run(["--role", "responder", "--name", name, "--attach", "--timeout", "5",
                    *attacher]).wait()  # fmt: skip
    finally:
        _cleanup(name)


def requester_of(c: Run, a: Run) -> tuple[Run, Run]:
    """(requester, responder) of a pair."""
    return (c, a) if c.args[1] == "requester" else (a, c)


def test_r_field_1_add1_in_place_rounds_match_field_by_field() -> None:
    """add1 with the in-place reply (the v1 case in v2): every round verified; what the responder
    took is what the requester sent, field by field (shapes and checksums, §7.5)."""
    c, a = pair([*INPLACE, "--rounds", "0"], ["--rounds", "6", "--protocol", "2"])
    req, rsp = requester_of(c, a)
    assert (req.code, rsp.code) == (0, 0), (req, rsp)
    assert req.summary["verified"] == 6 and rsp.summary["rounds_ok"] == 6
    assert req.log[0]["protocol"] == 2 and req.ops("attach")[0]["protocol"] == 2
    for s, t in zip(req.ops("send"), rsp.ops("take")):
        assert (s["seq"], s["shapes"], s["checksums"]) == (t["seq"], t["shapes"], t["checksums"])
        assert s["checksum"] is None and s["shapes"] == {"array": [5, 4]}
    for r, v in zip(rsp.ops("reply"), req.ops("receive")):
        assert (r["shapes"], r["checksums"]) == (v["shapes"], v["checksums"]) and v["verified"]
        assert v["reply_code"] == 0 and "message_desc" not in v


@pytest.mark.parametrize("extents", ["rule", "zero", "max"])
def test_r_field_4_variable_extents_rule_zero_max(extents: str) -> None:
    """§7.3: add1 over variable extents (a scalar, a variable vector, an empty-or-variable
    matrix, an in-place variable field) and derive with variable reply extents, by the rule,
    at 0 and at the maximum, on both sides."""
    c, a = pair(
        [*MIXED, "--rounds", "0", "--op", "add1"],
        [*MIXED, "--rounds", "5", "--op", "add1", "--extents", extents],
    )
    req, _rsp = requester_of(c, a)
    assert (c.code, a.code) == (0, 0), (c, a)
    shapes = [s["shapes"]["ids"][0] for s in req.ops("send")]
    want = {"zero": [0] * 5, "max": [9] * 5, "rule": [(r + 0 + 3 + 0) % 10 for r in range(1, 6)]}
    assert shapes == want[extents]
    c, a = pair(
        [*CAMERA, "--rounds", "0", "--op", "derive", "--reply-extents", extents],
        ["--rounds", "8", "--op", "derive", "--protocol", "2", "--reply-extents", extents],
    )
    req, _rsp = requester_of(c, a)
    assert (c.code, a.code) == (0, 0) and req.summary["verified"] == 8, (c, a)
    rows = {v["shapes"]["boxes"][0] for v in req.ops("receive")}
    assert rows <= ({0} if extents == "zero" else {7} if extents == "max" else set(range(8)))


def test_r_field_4_extents_over_on_send() -> None:
    """§7.3 ``over``: the send fails with CAPACITY_EXCEEDED naming the first field with a
    variable extent (S7); the requester ends with it (exit 14)."""
    c, a = pair([*MIXED, "--rounds", "0"], ["--rounds", "3", "--protocol", "2", "--extents",
                                            "over"])  # fmt: skip
    req, rsp = requester_of(c, a)
    (bad,) = req.ops("send", "CAPACITY_EXCEEDED")
    assert (bad["field"], bad["shapes"], bad["checksums"]) == ("ids", None, None)
    assert (req.code, req.summary["error"]) == (14, "CAPACITY_EXCEEDED")
    assert rsp.code == 0 and rsp.ops("take") == []


def test_r_field_6_reply_extents_over() -> None:
    """§7.4 derive with --reply-extents over: the responder's reply fails (S7, naming the
    field), it completes the round with that error (R-MSG-2) and ends with it; the requester's
    receive fails with CAPACITY_EXCEEDED from reply_code (no field, R-FIELD-7)."""
    c, a = pair(
        [*CAMERA, "--rounds", "0", "--op", "derive", "--reply-extents", "over"],
        ["--rounds", "2", "--op", "derive", "--protocol", "2", "--reply-extents", "over"],
    )
    req, rsp = requester_of(c, a)
    (bad,) = rsp.ops("reply", "CAPACITY_EXCEEDED")
    assert bad["field"] == "boxes" and rsp.code == 14
    (got,) = req.ops("receive", "CAPACITY_EXCEEDED")
    assert (got["field"], got["reply_code"], req.code) == (None, 5, 14)


@pytest.mark.parametrize(
    ("who", "where", "survivor_result"),
    [
        ("requester", "T1", None),  # the request lands; the responder's next take: PEER_GONE
        ("responder", "T2", "PEER_GONE"),  # held: the requester reclaims (T7)
        ("responder", "T3", "PEER_GONE"),  # replied: round 1 received, round 2 withdrawn (T5)
        ("requester", "T4", None),
    ],
)
def test_r_ver_1_a_peer_killed_at_each_transition(
    who: str, where: str, survivor_result: str | None
) -> None:
    """R-VER-1 (R-LIVE-3/5): a v2 peer SIGKILLed right after T1, T2, T3 or T4 of round 1: the
    other peer sees PEER_GONE with reason DIED (a responder serving with --rounds 0 ends there,
    exit 0); whatever was published before the death is consumed first."""
    crash = ["--crash-at", where]
    if who == "requester":
        c, a = pair([*CAMERA, "--rounds", "0", "--op", "derive"],
                    ["--rounds", "3", "--op", "derive", "--protocol", "2", *crash])  # fmt: skip
    else:
        c, a = pair([*CAMERA, "--rounds", "3", "--op", "derive"],
                    ["--rounds", "0", "--op", "derive", "--protocol", "2", *crash],
                    create_role="requester")  # fmt: skip
    req, rsp = requester_of(c, a)
    victim, survivor = (req, rsp) if who == "requester" else (rsp, req)
    assert victim.code == -9 and victim.ops("crash"), victim
    gone = survivor.ops("take" if who == "requester" else "receive", "PEER_GONE")
    assert gone and gone[-1]["reason"] == "DIED", survivor
    if who == "requester":
        assert survivor.code == 0  # --rounds 0: the end of service
        assert len(survivor.ops("take")) == 1  # the request sent before the death was served
    else:
        assert survivor.code == 16 and survivor.summary["error"] == survivor_result
        assert len(survivor.ops("receive")) == (1 if where == "T3" else 0)


@pytest.mark.parametrize(
    ("field", "where", "on", "error", "check_field"),
    [
        ("request_table_nbytes", "T1", "requester", "CORRUPT_HEADER", "image"),  # E4
        ("request_table_shape0", "T1", "requester", "CORRUPT_HEADER", "image"),  # E4
        ("reply_table_dtype", "T3", "responder", "DTYPE_MISMATCH", "boxes"),  # E5
        ("reply_table_shape0", "T3", "responder", "CORRUPT_HEADER", "boxes"),  # E4
    ],
)
def test_r_field_9_corrupt_a_message_table(
    field: str, where: str, on: str, error: str, check_field: str
) -> None:
    """§7.5 --corrupt of a table entry after the transition that wrote it: the receiver's E1-E8
    (R-FIELD-8) names the field; a bad request table is answered with an error reply
    (R-FIELD-9), a bad reply table is the requester's error after T4."""
    corrupt = ["--corrupt", f"{field}@{where}"]
    if on == "requester":  # it creates, sends and corrupts before the responder attaches
        c, a = pair([*CAMERA, "--rounds", "2", "--op", "derive", *corrupt],
                    ["--rounds", "0", "--op", "derive", "--protocol", "2"],
                    create_role="requester")  # fmt: skip
    else:  # the requester waits before T4 until the responder corrupted its reply
        c, a = pair([*CAMERA, "--rounds", "0", "--op", "derive", *corrupt],
                    ["--rounds", "2", "--op", "derive", "--protocol", "2",
                     "--delay-before", "T4:1000"])  # fmt: skip
    req, rsp = requester_of(c, a)
    if on == "requester":
        (bad,) = rsp.ops("take", error)
        assert bad["field"] == check_field and rsp.code == int(ERRORS[error])
        (got,) = req.ops("receive", error)
        assert got["field"] is None and got["reply_code"] == CODES[error]
    else:
        (got,) = req.ops("receive", error)
        assert got["field"] == check_field and got["reply_code"] == 0
    assert req.code == int(ERRORS[error])


ERRORS = {"CORRUPT_HEADER": 19, "DTYPE_MISMATCH": 13, "SCHEMA_MISMATCH": 28, "SHAPE_MISMATCH": 12}
CODES = {"CORRUPT_HEADER": 10, "DTYPE_MISMATCH": 4}


@pytest.mark.parametrize(
    ("corrupt", "error"),
    [("request_fields", "CORRUPT_HEADER"), ("schema0_dtype", "CORRUPT_HEADER"),
     ("schema0_offset", "CORRUPT_HEADER"), ("version_major=1", "VERSION_MISMATCH")],
)  # fmt: skip
def test_r_schema_9_corrupt_a_v2_header_field(corrupt: str, error: str) -> None:
    """§7.5 --corrupt of the geometry and the schema table at ready: the attacher's header
    validation (R-SCHEMA-9; version_major 1: R-VER-4) fails, naming no field."""
    a = attach_to_kept(
        [*CAMERA, "--op", "derive", "--corrupt", corrupt], ["--rounds", "1", "--protocol", "2"]
    )
    (att,) = a.ops("attach", error)
    assert att["field"] is None and a.summary["error"] == error, a


@pytest.mark.parametrize(
    ("spec", "error", "field"),
    [
        ("image:uint8:6,8,3;time:float64:", "SCHEMA_MISMATCH", "time"),  # X1
        ("image:uint16:6,8,3;stamp:float64:", "DTYPE_MISMATCH", "image"),  # X2
        ("image:uint8:6,8,4;stamp:float64:", "SHAPE_MISMATCH", "image"),  # X4
        ("image:uint8:<=6,8,3;stamp:float64:", "SHAPE_MISMATCH", "image"),  # X5
    ],
)
def test_r_schema_10_mismatch_at_attach_names_the_field(spec: str, error: str, field: str) -> None:
    """R-SCHEMA-10 through the peer: an attacher given another SPEC fails at attach with the
    error of X1-X6, naming the field, and the exit code of that error."""
    a = attach_to_kept([*CAMERA, "--op", "derive"], ["--request-schema", spec, "--rounds", "1"])
    (att,) = a.ops("attach", error)
    assert att["field"] == field and a.code == ERRORS[error], a


def test_r_ver_4_a_v2_peer_on_a_v1_segment_and_back() -> None:
    """R-VER-3, R-VER-4 through the peer: --protocol 2 on a v1 segment and --protocol 1 on a v2
    segment fail with VERSION_MISMATCH (exit 18) and say which API to use."""
    a = attach_to_kept([], ["--protocol", "2", "--rounds", "1"])
    (att,) = a.ops("attach", "VERSION_MISMATCH")
    assert "Requester/Responder" in att["message"] and a.code == 18
    a = attach_to_kept([*CAMERA, "--op", "derive"], ["--rounds", "1"])
    (att,) = a.ops("attach", "VERSION_MISMATCH")
    assert "MessageRequester/MessageResponder" in att["message"] and a.code == 18


@pytest.mark.parametrize(
    "spec",
    ["stamp:float64", "a:float32:3,", "a:float32: 3", "a:float:3", "a:float32:<3",
     "a:float32:-1", "a:float32:03", "a:float32:3;", "a:float32:18446744073709551616"],
)  # fmt: skip
def test_peer_spec_usage_errors(spec: str) -> None:
    """PEER.md §7.2: a SPEC outside the grammar (or an extent above 2^64 - 1) is a usage
    error, exit 2, before anything is created."""
    name = unique_name("usage")
    p = subprocess.run(
        peer_cmd("--role", "requester", "--name", name, "--create", "--request-schema", spec,
                 "--reply-schema", ""),
        capture_output=True, text=True, env=child_env(), timeout=60, check=False,
    )  # fmt: skip
    assert p.returncode == 2, p.stderr


@pytest.mark.parametrize(
    "flags",
    [["--protocol", "1", "--request-schema", "a:int8:"], ["--dtype", "int8", "--protocol", "2"],
     ["--request-schema", "a:int8:", "--reply-schema", "", "--shape", "3"],
     ["--request-schema", "a:int8:", "--reply-schema", "", "--wrong-dtype"],
     ["--op", "derive"], ["--request-schema", "a:int8:"]],
)  # fmt: skip
def test_peer_protocol_flag_usage_errors(flags: list[str]) -> None:
    """PEER.md §7.1: v1 flags with protocol 2, schemas with protocol 1, derive with protocol 1
    and a v2 create without both schemas are usage errors (exit 2)."""
    p = subprocess.run(
        peer_cmd("--role", "requester", "--name", unique_name("usage"), "--create", *flags),
        capture_output=True, text=True, env=child_env(), timeout=60, check=False,
    )  # fmt: skip
    assert p.returncode == 2, p.stderr


def test_peer_spec_grammar_examples() -> None:
    """PEER.md §7.2 examples parse to the schemas the table gives (the library judges names)."""
    s = parse_spec("t:float64:;ids:int64:<=1000;m:bool:0,<=7")
    assert [(f.name, f.dtype.name, f.shape) for f in s] == [
        ("t", "float64", ()), ("ids", "int64", (Upto(1000),)), ("m", "bool", (0, Upto(7))),
    ]  # fmt: skip
    assert len(parse_spec("")) == 0
    assert parse_spec("array:=array").fields[0].target == "array"
    assert parse_spec("9x:int8:").names == ("9x",)  # the library refuses it (C2)


@pytest.mark.parametrize("op", ["echo", "checksum"])
def test_r_field_6_echo_and_checksum_with_own_and_inplace_reply_fields(op: str) -> None:
    """§7.4: echo and checksum on compatible schemas (an in-place field left as taken, an own
    field copied): every round verified."""
    c, a = pair([*MIXED, "--rounds", "0", "--op", op],
                ["--rounds", "4", "--op", op, "--protocol", "2"])  # fmt: skip
    req, _rsp = requester_of(c, a)
    assert (c.code, a.code) == (0, 0) and req.summary["verified"] == 4, (c, a)


def test_r_field_10_op_fail_and_out_of_turn_injections() -> None:
    """§7.4 fail: the handler fails inside the library's request scope, the reply is
    HANDLER_FAILED (R-MSG-3) and both peers end with it; --out-of-turn calls on v2 handles are
    OUT_OF_TURN and do not end the peer (§1.1)."""
    c, a = pair([*INPLACE, "--rounds", "0", "--op", "fail", "--out-of-turn", "reply"],
                ["--rounds", "1", "--protocol", "2", "--out-of-turn", "send"])  # fmt: skip
    req, rsp = requester_of(c, a)
    assert rsp.ops("reply", "OUT_OF_TURN")[0]["injected"] is True
    assert req.ops("send", "OUT_OF_TURN")[0]["field"] is None
    assert rsp.ops("reply", "HANDLER_FAILED") and rsp.code == 27
    (got,) = req.ops("receive", "HANDLER_FAILED")
    assert got["reply_code"] == 18 and req.code == 27
