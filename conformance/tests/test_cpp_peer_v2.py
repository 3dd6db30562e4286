"""Smoke tests of the C++ conformance peer in protocol v2 (spec/PEER.md §7), C++ with C++, until
the catalogue has v2 cases: rounds with add1 (in place and own storage) and derive, variable
extents at zero, at the maximum and one past it, and a kill at each transition of a v2 round
followed by a restart. The data rule of §7.3 and the derive rule of §7.4 are recomputed here from
the spec text (with the kit's §3 pattern and checksum) and compared with what the peers logged.

The peer is build/cpp/tools/shmbridge-peer (or $SHMBRIDGE_CPP_PEER); without it the tests skip.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from conformance import peerkit as pk

REPO = Path(__file__).resolve().parents[2]
PEER = Path(
    os.environ.get("SHMBRIDGE_CPP_PEER", REPO / "build" / "cpp" / "tools" / "shmbridge-peer")
)

pytestmark = pytest.mark.skipif(not PEER.exists(), reason=f"no C++ peer at {PEER}")

CAMERA_REQ = "image:uint8:48,64,3;stamp:float64:"
CAMERA_REP = "boxes:float32:<=100,6"
U64 = 2**64 - 1
EXIT = {"CAPACITY_EXCEEDED": 14, "PEER_GONE": 16, "SCHEMA_MISMATCH": 28, "USAGE": 2}


def name() -> str:
    return "sbv2" + uuid.uuid4().hex[:12]


class Proc:
    def __init__(self, *args: str):
        self.p = subprocess.Popen(
            [str(PEER), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )

    def wait(self, timeout: float = 20) -> Proc:
        self.out, self.err = self.p.communicate(timeout=timeout)
        self.rc = self.p.returncode
        self.events = [json.loads(line) for line in self.out.splitlines() if line.strip()]
        return self

    def ops(self, op: str, result: str | None = "ok") -> list[dict]:
        return [
            e
            for e in self.events
            if e.get("op") == op
            and not e.get("injected")
            and (result is None or e.get("result") == result)
        ]

    def summary(self) -> dict:
        return self.events[-1]

    def logged(self, op: str, timeout: float = 10) -> None:
        """Waits until the peer logged `op` (reads its stdout line by line)."""
        end = time.monotonic() + timeout
        lines = []
        while time.monotonic() < end:
            line = self.p.stdout.readline()
            if not line:
                break
            lines.append(line)
            if json.loads(line).get("op") == op:
                self._prefix = lines
                return
        raise AssertionError(f"{op} not logged: {lines}")

    def wait_after_logged(self, timeout: float = 20) -> Proc:
        self.wait(timeout)
        self.out = "".join(getattr(self, "_prefix", [])) + self.out
        self.events = [json.loads(line) for line in self.out.splitlines() if line.strip()]
        return self


def start(role: str, n: str, how: str, *args: str) -> Proc:
    """A peer of `role` on segment `n`; `how` is "--create" or "--attach"."""
    return Proc("--role", role, "--name", n, how, *args)


def pair(req_args: list[str], rsp_args: list[str], creator: str = "rsp") -> tuple[Proc, Proc]:
    n = name()
    how = (
        {"req": "--create", "rsp": "--attach"}
        if creator == "req"
        else {"req": "--attach", "rsp": "--create"}
    )
    procs = {
        r: start(role, n, how[r], *args)
        for r, role, args in (("rsp", "responder", rsp_args), ("req", "requester", req_args))
    }
    return procs["req"].wait(), procs["rsp"].wait()


# ---- PEER.md §7.3 / §7.4 in Python ---------------------------------------------------------------


def parse(spec: str) -> list[tuple[str, str, list[tuple[int, bool]]]]:
    out = []
    for part in spec.split(";") if spec else []:
        n, dtype, ext = part.split(":")
        out.append(
            (
                n,
                dtype,
                [
                    (int(e[2:]), True) if e.startswith("<=") else (int(e), False)
                    for e in ext.split(",")
                    if e
                ],
            )
        )
    return out


def extent(maximum: int, mode: str, base: int) -> int:
    return {"zero": 0, "max": maximum, "over": maximum + 1}.get(mode, base % (maximum + 1))


def request_of(spec: str, rnd: int, seed: int = 0, mode: str = "rule"):
    fields = []
    for k, (n, dtype, ext) in enumerate(parse(spec)):
        shape = tuple(
            extent(m, mode, rnd + seed + 3 * k + d) if var else m for d, (m, var) in enumerate(ext)
        )
        fields.append((n, shape, pk.pattern(dtype, shape, rnd, seed + 29 * k)))
    return fields


def derived_reply(request, reply_spec: str, mode: str = "rule"):
    c = pk.checksum(request[0][2]) % 61 if request else 0
    out = []
    for k, (n, dtype, ext) in enumerate(parse(reply_spec)):
        shape = tuple(
            extent(m, mode, c + 3 * k + d) if var else m for d, (m, var) in enumerate(ext)
        )
        out.append((n, shape, pk.pattern(dtype, shape, 0, 29 * k + c)))
    return out


def logged_fields(e: dict):
    return [(n, tuple(e["shapes"][n]), e["checksums"][n]) for n in e["shapes"]]


def as_logged(fields):
    return [(n, s, f"{pk.checksum(a):016x}") for n, s, a in fields]


def spec_args(*extra: str) -> list[str]:
    return ["--request-schema", CAMERA_REQ, "--reply-schema", CAMERA_REP, "--op", "derive", *extra]


# ---- rounds ---------------------------------------------------------------


def test_derive_camera_rounds_verify_and_follow_the_spec_rules():
    req, rsp = pair(
        ["--rounds", "6", "--seed", "5", "--op", "derive", "--request-schema", CAMERA_REQ],
        [
            "--rounds",
            "0",
            "--op",
            "derive",
            "--request-schema",
            CAMERA_REQ,
            "--reply-schema",
            CAMERA_REP,
        ],
    )
    assert req.rc == 0 and rsp.rc == 0, (req.err, rsp.err)
    assert req.summary()["verified"] == 6 and req.summary()["mismatches"] == 0
    assert [
        e["protocol"] for e in req.events if e.get("event") == "start" or e.get("op") == "attach"
    ] == [2, 2]
    for r, (send, recv) in enumerate(zip(req.ops("send"), req.ops("receive")), start=1):
        want = request_of(CAMERA_REQ, r, seed=5)
        assert logged_fields(send) == as_logged(want), r  # §7.3, recomputed
        assert logged_fields(recv) == as_logged(derived_reply(want, CAMERA_REP)), r  # §7.4
        assert send["checksum"] is None and recv["verified"] is True and recv["reply_code"] == 0
    # what was taken is what was sent; what was received is what was published
    assert [logged_fields(e) for e in rsp.ops("take")] == [
        logged_fields(e) for e in req.ops("send")
    ]
    assert [logged_fields(e) for e in rsp.ops("reply")] == [
        logged_fields(e) for e in req.ops("receive")
    ]


@pytest.mark.parametrize(
    "request_spec,reply_spec",
    [
        ("array:float32:16,16", "array:=array"),  # in place
        (
            "a:int16:<=8,3;s:float64:;z:complex64:<=2",
            "b:int16:<=8,3;t:float64:;w:=z",
        ),  # own + in place
        ("", ""),  # no fields
    ],
)
@pytest.mark.parametrize("op", ["add1", "echo", "checksum"])
def test_compatible_ops_round_trip(request_spec, reply_spec, op):
    req, rsp = pair(
        [
            "--rounds",
            "5",
            "--op",
            op,
            "--request-schema",
            request_spec,
            "--reply-schema",
            reply_spec,
        ],
        ["--protocol", "2", "--rounds", "5", "--op", op],
        creator="req",
    )
    assert req.rc == 0 and rsp.rc == 0, (req.err, rsp.err)
    assert req.summary()["verified"] == 5
    for r, send in enumerate(req.ops("send"), start=1):
        assert logged_fields(send) == as_logged(request_of(request_spec, r))


def test_incompatible_schemas_for_add1_are_a_usage_error():
    n = name()
    p = Proc(
        "--role",
        "requester",
        "--name",
        n,
        "--create",
        "--request-schema",
        CAMERA_REQ,
        "--reply-schema",
        CAMERA_REP,
        "--op",
        "add1",
    ).wait()
    assert p.rc == EXIT["USAGE"]
    assert [e["op"] for e in p.events if "op" in e] == ["create", "close"]


@pytest.mark.parametrize("mode,size", [("zero", 0), ("max", 100)])
def test_reply_extents_zero_and_max(mode, size):
    req, rsp = pair(
        ["--protocol", "2", "--rounds", "3", "--op", "derive", "--reply-extents", mode],
        [
            "--rounds",
            "3",
            "--op",
            "derive",
            "--reply-extents",
            mode,
            "--request-schema",
            CAMERA_REQ,
            "--reply-schema",
            CAMERA_REP,
        ],
    )
    assert req.rc == 0 and rsp.rc == 0
    assert req.summary()["verified"] == 3
    assert {tuple(e["shapes"]["boxes"]) for e in req.ops("receive")} == {(size, 6)}


@pytest.mark.parametrize("mode", ["zero", "max"])
def test_request_extents_zero_and_max(mode):
    spec = "t:float64:;ids:int64:<=1000;m:bool:0,<=7"
    req, rsp = pair(
        [
            "--rounds",
            "3",
            "--op",
            "echo",
            "--extents",
            mode,
            "--request-schema",
            spec,
            "--reply-schema",
            spec,
        ],
        ["--protocol", "2", "--rounds", "3", "--op", "echo"],
        creator="req",
    )
    assert req.rc == 0 and rsp.rc == 0
    want = {
        "zero": {"t": [], "ids": [0], "m": [0, 0]},
        "max": {"t": [], "ids": [1000], "m": [0, 7]},
    }[mode]
    assert all(e["shapes"] == want for e in req.ops("send"))


def test_request_extents_over_fails_the_send_naming_the_first_variable_field():
    spec = "t:float64:;ids:int64:<=1000;m:bool:0,<=7"
    n = name()
    req = Proc(
        "--role",
        "requester",
        "--name",
        n,
        "--create",
        "--request-schema",
        spec,
        "--reply-schema",
        spec,
        "--op",
        "echo",
        "--extents",
        "over",
    ).wait()
    assert req.rc == EXIT["CAPACITY_EXCEEDED"]
    (send,) = req.ops("send", None)
    assert send["result"] == "CAPACITY_EXCEEDED" and send["field"] == "ids"
    assert send["shapes"] is None and send["checksums"] is None


def test_reply_extents_over_is_an_error_reply():
    req, rsp = pair(
        ["--protocol", "2", "--rounds", "2", "--op", "derive", "--reply-extents", "over"],
        [
            "--rounds",
            "2",
            "--op",
            "derive",
            "--reply-extents",
            "over",
            "--request-schema",
            CAMERA_REQ,
            "--reply-schema",
            CAMERA_REP,
        ],
    )
    assert rsp.rc == EXIT["CAPACITY_EXCEEDED"], rsp.err
    (reply,) = rsp.ops("reply", None)
    assert reply["result"] == "CAPACITY_EXCEEDED" and reply["field"] == "boxes"
    assert req.rc == EXIT["CAPACITY_EXCEEDED"]
    (recv,) = req.ops("receive", None)
    assert recv["result"] == "CAPACITY_EXCEEDED" and recv["reply_code"] == 5
    assert recv["field"] is None  # from a reply_code: no field (R-FIELD-7)


def test_attach_with_another_schema_names_the_field():
    n = name()
    creator = Proc(
        "--role",
        "responder",
        "--name",
        n,
        "--create",
        *spec_args("--rounds", "0", "--timeout", "3"),
    )
    creator.logged("create")
    other = Proc(
        "--role",
        "requester",
        "--name",
        n,
        "--attach",
        "--timeout",
        "3",
        "--request-schema",
        "image:uint8:48,64,3;time:float64:",
    ).wait()
    assert other.rc == EXIT["SCHEMA_MISMATCH"]
    (att,) = other.ops("attach", None)
    assert att["field"] == "time" and att["protocol"] == 2
    v1 = Proc("--role", "requester", "--name", n, "--attach", "--timeout", "3").wait()  # v1 API
    assert v1.rc == 18  # VERSION_MISMATCH (R-VER-3)
    assert "MessageRequester/MessageResponder" in v1.ops("attach", None)[0]["message"]
    creator.p.kill()  # a killed creator leaves its segment (R-SEG-3): remove it
    creator.wait_after_logged()
    (Path("/dev/shm") / n).unlink(missing_ok=True)


# ---- a kill at each transition, then a restart ---------------------------------------------------


@pytest.mark.parametrize(
    "role,where",
    [("requester", "T1"), ("responder", "T2"), ("responder", "T3"), ("requester", "T4")],
)
def test_killed_at_transition_then_restarted(role, where):
    """The other role creates and retries through PEER_GONE; a peer of `role` dies right after
    `where` in round 1, a new one attaches (R-REC-1 / R-REC-2) and the rounds complete."""
    n = name()
    survivor_role = "responder" if role == "requester" else "requester"
    rounds = ("--rounds", "0", "--timeout", "2") if role == "requester" else ("--rounds", "3")
    survivor = start(survivor_role, n, "--create", *spec_args(*rounds, "--on-peer-gone", "retry"))
    survivor.logged("create")
    v2 = ("--protocol", "2", "--op", "derive")
    first = start(role, n, "--attach", *v2, "--rounds", "3", "--crash-at", where).wait()
    assert first.rc == -9 and first.ops("crash", None)
    again = (
        ("--rounds", "3", "--seed", "1")
        if role == "requester"
        else (
            "--rounds",
            "0",
        )
    )
    second = start(role, n, "--attach", *v2, *again).wait(30)
    survivor.wait_after_logged(30)
    req, rsp = (second, survivor) if role == "requester" else (survivor, second)
    assert req.rc == 0 and rsp.rc == 0, (req.out, rsp.out)
    assert req.summary()["verified"] == 3
    sent = [logged_fields(e) for e in req.ops("send")]
    taken = [logged_fields(e) for e in rsp.ops("take")]
    k = min(len(sent), len(taken))  # the last rounds are the surviving pair's: taken as sent
    assert k and sent[-k:] == taken[-k:]
    gone = req.ops("receive", "PEER_GONE")
    assert all(e["reason"] == "DIED" for e in gone)  # R-LIVE-5: a crash is never a close
    if where == "T2":
        # The round the dead responder held ends with PEER_GONE: the requester noticed the death
        # (T7) or the new responder completed it on attach (T8, reply_code 7), whichever first.
        assert gone
