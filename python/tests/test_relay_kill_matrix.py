"""Issue 15: kill -9 of either relay, of the far responder and of the local requester at each
transition of a round through the relay (spec/RELAY.md §7, §8; the relay's points are the test
hook of §12, the peers' are `--crash-at` of PEER.md §1.1). In every cell the local requester ends
with the outcome of the table within the stated bound, no request is executed twice by the far
responders (counted by checksum over every responder's takes), no reply is received twice or for
another request (every `ok` receive verifies), and after the victim is restarted the next rounds
verify.

Why PEER_GONE and never TIMEOUT: the requester's timeout (10 s) is far above the bound and the
relays run without `--round-timeout` (R-RELAY-11), so a lost round is always reported by
liveness: a dead near relay is a dead local responder (R-LIVE-3); a dead or restarted far relay is
PEER_GONE from the near relay (R-RELAY-13, R-RELAY-14); a dead far responder is a far-side
PEER_GONE relayed as an error reply (R-RELAY-12). TIMEOUT would only come from a requester timeout
below the bound, or from `--round-timeout` (covered in test_relay_rounds.py).

Cost (2 shared cores): the default run is a subset, one cell per victim plus far-reply-taken
(`default=True` below; 5 cells + 4 hook checks: 17 s at load 2.7, 33 s at load 4);
SHMBRIDGE_RELAY_KILL_MATRIX=full runs all 16 cells (42-45 s at load 2.5-4.7, 80 s at load 6)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("zmq", reason="the relay needs pyzmq (pip install 'shmbridge[relay]')")

from relay_harness import GONE_BOUND, HB_MS, PY, Pair, Proc, attached, ops, relay_pair

from shmbridge.errors import ErrorCode, exit_code

V1 = ("--create", "--dtype", "float32", "--shape", "16")
SPEC_BOUND = 3 * HB_MS / 1000 + 0.05  # M x H + 50 ms of R-RELAY-13 with the tests' heartbeats
FULL = os.environ.get("SHMBRIDGE_RELAY_KILL_MATRIX", "") == "full"


@dataclass(frozen=True)
class Cell:
    """One kill: who dies, where, what the requester gets, how often round 1 may run."""

    victim: str  # near | far | responder | requester
    point: str  # a relay POINT (RELAY.md §12), a peer --crash-at value, or test:<moment>
    outcome: str  # PEER_GONE | ok | ok|PEER_GONE | - (the requester itself died)
    runs: tuple[int, ...]  # how many times the far responders may take round 1
    why: str  # the requirement that decides the cell
    default: bool = False  # in the cheap default subset


# Transitions of one round, in order: local T1 -> near T2 -> REQ -> far T1 -> far T2 -> far T3 ->
# far T4 -> REP -> near T3 -> local T4.
CELLS = {
    # -- the near relay: the requester's local responder (R-LIVE-3 on its segment) -----------
    "near-untaken": Cell("near", "test:T1-not-taken", "PEER_GONE", (0,),
                         "R-RELAY-8: not up, not taken; R-LIVE-3 responder died"),
    "near-taken": Cell("near", "near.taken", "PEER_GONE", (0,),
                       "R-RELAY-13: a near end killed holding a round is a responder death"),
    "near-req-sent": Cell("near", "near.req_sent", "PEER_GONE", (0, 1),
                          "R-RELAY-13; R-RELAY-16 at most once (the REQ may die in a buffer)",
                          True),
    "near-rep-received": Cell("near", "near.rep_received", "PEER_GONE", (1,),
                              "R-RELAY-13: the reply dies with the near end; run once"),
    "near-replied": Cell("near", "near.replied", "ok", (1,),
                         "R-RELAY-9: T3 was published; the requester consumes it"),
    # -- the far relay: the near relay sees it silent (R-RELAY-13) ----------------------------
    "far-before": Cell("far", "test:before-T1", "PEER_GONE", (0,),
                       "R-RELAY-13: gone, later requests PEER_GONE at once"),
    "far-req-received": Cell("far", "far.req_received", "PEER_GONE", (0,),
                             "R-RELAY-13, R-RELAY-16: the REQ dies unexecuted", True),
    "far-sent": Cell("far", "far.sent", "PEER_GONE", (0, 1),
                     "R-RELAY-13, R-RELAY-16: the responder may still take it, once"),
    "far-responder-holds": Cell("far", "test:far-T2", "PEER_GONE", (1,),
                                "R-RELAY-13, R-RELAY-14 (restart), R-RELAY-16"),
    "far-reply-taken": Cell("far", "far.reply_taken", "PEER_GONE", (1,),
                            "R-RELAY-16: executed once, reported PEER_GONE, not success", True),
    "far-rep-sent": Cell("far", "far.rep_sent", "ok|PEER_GONE", (1,),
                         "R-RELAY-16: the REP may die in the killed end's buffers"),
    # -- the far responder: the far relay's local peer (R-RELAY-12, R-LIVE-3) -----------------
    "responder-before-take": Cell("responder", "T2:before@1", "PEER_GONE", (0,),
                                  "R-RELAY-12, R-RELAY-13: far-side PEER_GONE relayed"),
    "responder-holds": Cell("responder", "T2@1", "PEER_GONE", (1,),
                            "R-RELAY-12: far-side PEER_GONE relayed", True),
    "responder-replied": Cell("responder", "T3@1", "ok", (1,),
                              "R-RELAY-12: a published reply is delivered (R-LIVE-3)"),
    # -- the local requester: the near relay's local peer (R-RELAY-19) -----------------------
    "requester-sent": Cell("requester", "T1@1", "-", (0, 1),
                           "R-RELAY-19: the near relay keeps serving; at most once", True),
    "requester-before-receive": Cell("requester", "T4:before@1", "-", (1,),
                                     "R-RELAY-19: the reply goes nowhere; run once"),
}  # fmt: skip

BEFORE_TAKE_MS = 2000  # responder-before-take: the requester's T1 comes well before (python start)
# the far responder makes a round last this long when the requester is the victim, so that the
# requester dies with its round in flight (the whole round takes about 3 ms otherwise)
IN_FLIGHT_MS = 300

DEFAULT = [k for k, c in CELLS.items() if c.default]
SELECTED = list(CELLS) if FULL else DEFAULT


def _relay_crash(c: Cell, end: str) -> str | None:
    return c.point if c.victim == end and c.point.startswith(end + ".") else None


def _peer_crash(c: Cell, role: str) -> list[str]:
    if c.victim != role:
        return []
    if c.point == "T2:before@1":  # dies once round 1's request waits on its segment (asserted)
        return ["--delay-before", f"T2:{BEFORE_TAKE_MS}@1", "--crash-at", c.point]
    return ["--crash-at", c.point]


def _ups(p: Proc) -> int:
    return sum(1 for e in p.events() if e.get("event") == "up")


def _wait_ups(p: Proc, n: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while _ups(p) < n and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _ups(p) >= n, f"near end up {_ups(p)} times, expected {n}:\n{p.text()}"


def _crash_time(victim: Proc, test_kill: int | None) -> int:
    """When the victim died: the test's kill, the relay's crash event or the peer's crash op."""
    if test_kill is not None:
        return test_kill
    for e in victim.events():
        if e.get("event") == "crash":
            return int(e["t"])
        if e.get("op") == "crash":
            return int(e["t_call"])
    pytest.fail(f"no crash logged by {victim.cmd[:5]}:\n{victim.text()}")


def _taken(responders: list[Proc]) -> list[str]:
    return [e["checksum"] for r in responders for e in ops(r, "take") if e["result"] == "ok"]


def _check_replies(requesters: list[Proc]) -> None:
    """No reply twice and none for another request: every ok receive verifies (add1 of its own
    round's data, PEER.md §3) and there are no more ok receives than sends."""
    for q in requesters:
        got = [e for e in ops(q, "receive") if e["result"] == "ok"]
        assert all(e.get("verified") for e in got), q.text()
        assert len(got) <= len([e for e in ops(q, "send") if e["result"] == "ok"])


@pytest.mark.parametrize("cell_id", SELECTED)
def test_r_relay_13_kill_9_matrix(tmp_path: Path, cell_id: str) -> None:
    """R-RELAY-13, R-RELAY-14, R-RELAY-16, R-RELAY-10, R-RELAY-12, R-RELAY-9: kill -9 of one
    process at one transition (CELLS): the requester's outcome and its bound (GONE_BOUND, the
    R-RELAY-13 bound with 100 ms heartbeats plus start-up slack), round 1 executed as CELLS
    allows and never twice, no reply twice, and verified rounds after the restart."""
    c = CELLS[cell_id]
    with relay_pair(tmp_path, cell_id[:6]) as pair:
        _run_cell(pair, cell_id, c)


def _run_cell(pair: Pair, cell_id: str, c: Cell) -> None:
    responders: list[Proc] = []
    requesters: list[Proc] = []
    untaken = c.point == "test:T1-not-taken"

    def responder(*crash: str) -> Proc:
        r = attached(pair.peer("py", "responder", "--attach", "--rounds", "0", *crash))
        responders.append(r)
        return r

    far: Proc | None = None
    if not untaken:  # near-untaken: no far end yet, so the near end never takes (R-RELAY-8)
        far = pair.start_far(*V1, crash_at=_relay_crash(c, "far"))
    near = pair.start_near(*V1, crash_at=_relay_crash(c, "near"))
    if untaken:
        near.wait_event(lambda e: e.get("event") == "ready", 15, "near end ready")
    else:
        pair.wait_up()
        hold = ["--delay-before", "T3:1500@1"] if c.point == "test:far-T2" else []
        if c.victim == "requester":
            hold = ["--delay-before", f"T3:{IN_FLIGHT_MS}@1"]
        responder(*hold, *_peer_crash(c, "responder"))
    test_kill: int | None = None
    if c.point == "test:before-T1":
        assert far is not None
        far.kill(signal.SIGKILL)
        test_kill = time.monotonic_ns()
    req = pair.peer("py", "requester", "--attach", "--rounds", "1", "--timeout", "10",
                    *_peer_crash(c, "requester"))  # fmt: skip
    requesters.append(req)
    if untaken:
        req.wait_event(lambda e: e.get("op") == "send" and e.get("result") == "ok", 15, "sent")
        near.kill(signal.SIGKILL)
        test_kill = time.monotonic_ns()
    elif c.point == "test:far-T2":
        assert far is not None
        responders[0].wait_event(lambda e: e.get("op") == "take" and e.get("result") == "ok",
                                 15, "far responder took round 1")  # fmt: skip
        far.kill(signal.SIGKILL)
        test_kill = time.monotonic_ns()

    victim = {"near": near, "far": far, "responder": responders[0] if responders else None,
              "requester": req}[c.victim]  # fmt: skip
    assert victim is not None
    code = req.wait(30)
    killed = _crash_time(victim, test_kill)
    if c.point == "T2:before@1":  # the transition was the one named: round 1 was published
        assert int(ops(req, "send")[0]["t_return"]) < killed, "T1 after the responder died"
    if c.victim == "requester":  # it died with its round in flight, not after the round
        assert ops(req, "send")[0]["phase_after"] != "REPLIED", req.text()
    _check_outcome(cell_id, c, req, code, killed)
    _check_far_survivors(cell_id, c, far, responders, killed)

    # -- the survivors go on: restart the victim, then two verified rounds --------------------
    if c.victim == "near":
        assert near.wait(10) == -signal.SIGKILL
        if untaken:
            pair.start_far(*V1)
        near = pair.start_near(*V1)
        pair.wait_up()
    elif c.victim == "far":
        assert far is not None and far.wait(10) == -signal.SIGKILL
        pair.start_far(*V1)  # a new epoch (R-RELAY-14); the far segment is reclaimed
        _wait_ups(near, 2)
    if c.victim in ("far", "responder") or untaken:
        for r in responders:  # a far responder whose far relay died ends (R-LIVE-3)
            r.wait(30)
        responder()
    req2 = pair.peer("py", "requester", "--attach", "--rounds", "2", "--seed", "7",
                     "--timeout", "10")  # fmt: skip
    requesters.append(req2)
    assert req2.wait(60) == 0, req2.text()

    # -- nothing twice ------------------------------------------------------------------------
    taken = _taken(responders)
    assert len(set(taken)) == len(taken), f"a request was executed twice: {taken}"
    sent1 = [e["checksum"] for e in ops(req, "send") if e["result"] == "ok"]
    assert len(sent1) == 1, req.text()
    runs = taken.count(sent1[0])
    print(f"{cell_id}: round 1 taken {runs} time(s) by the far responders")
    assert runs in c.runs, f"{cell_id}: round 1 taken {runs} times, allowed {c.runs}"
    for e in ops(req2, "send"):
        assert taken.count(e["checksum"]) == 1  # the verified rounds ran exactly once
    _check_replies(requesters)


def _check_far_survivors(
    cell_id: str, c: Cell, far: Proc | None, responders: list[Proc], killed: int
) -> None:
    """The far side's survivors report the death too (R-RELAY-13): the far relay logs the near
    end's session gone after M x H; a far responder whose far relay died gets PEER_GONE DIED from
    its next take (R-LIVE-3)."""
    if c.victim == "near" and far is not None:
        gone = far.wait_event(lambda e: e.get("event") == "session_gone", 10, "session gone")
        took = (int(gone["t"]) - killed) / 1e9
        print(f"{cell_id}: far relay: session gone {took:.3f} s after the kill")
        assert took < GONE_BOUND
    if c.victim == "far":
        for r in responders:
            r.wait(30)
            last = ops(r, "take")[-1]
            assert last["result"] == "PEER_GONE" and last["reason"] == "DIED", r.text()
            took = (int(last["t_return"]) - max(killed, int(last["t_call"]))) / 1e9
            print(f"{cell_id}: far responder: PEER_GONE DIED {took:.3f} s after the kill")
            assert took < GONE_BOUND


def _check_outcome(cell_id: str, c: Cell, req: Proc, code: int, killed_ns: int) -> None:
    """The requester's result for round 1 and how long after the kill it came."""
    if c.outcome == "-":
        assert code == -signal.SIGKILL, req.text()
        print(f"{cell_id}: the requester died as planned")
        return
    rcv: dict[str, Any] = ops(req, "receive")[0]
    send = ops(req, "send")[0]
    start = max(killed_ns, int(send["t_return"]))  # a kill before the request counts from T1
    took = (int(rcv["t_return"]) - start) / 1e9
    allowed = c.outcome.split("|")
    print(f"{cell_id}: requester {rcv['result']} {took:.3f} s after the kill (or its T1); "
          f"R-RELAY-13 bound {SPEC_BOUND:.2f} s + a wake-up, allowed {GONE_BOUND} s")  # fmt: skip
    assert rcv["result"] in allowed, f"{cell_id}: expected {c.outcome}:\n{req.text()}"
    if rcv["result"] == "ok":
        assert code == 0 and rcv["verified"], req.text()
        return
    assert code == 16, req.text()  # PEER_GONE's exit code
    assert rcv.get("reason") == "DIED", rcv  # R-LIVE-5: an error reply or a dead responder
    assert took < GONE_BOUND, f"{cell_id}: PEER_GONE after {took:.3f} s > {GONE_BOUND} s"


@pytest.mark.parametrize("value", ["near.nowhere", "near.taken@0", "far.sent@x", "@1"])
def test_r_relay_19_crash_hook_refuses_bad_values(value: str) -> None:
    """R-RELAY-19 (a configuration error exits with its code after one line on stderr): the test
    hook of RELAY.md §12 refuses an unknown point or round with INVALID_ARGUMENT before any
    socket exists, naming what it expected."""
    env = {**os.environ, "SHMBRIDGE_RELAY_CRASH_AT": value}
    cmd = [PY, "-m", "shmbridge", "relay", "near", "nohook", "--connect", "tcp://127.0.0.1:9"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == exit_code(ErrorCode.INVALID_ARGUMENT), done.stderr
    assert "SHMBRIDGE_RELAY_CRASH_AT" in done.stderr and "expected" in done.stderr
