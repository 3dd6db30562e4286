"""Faults across the hop (spec/RELAY.md §7, §8): kill -9 of the far relay, of the near relay and
of the far responder while a round is in flight; a far relay that restarts. The survivors report
PEER_GONE (or TIMEOUT) within the stated bound and nothing is executed twice."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

pytest.importorskip("zmq", reason="the relay needs pyzmq (pip install 'shmbridge[relay]')")

from relay_harness import GONE_BOUND, attached, ops, relay_pair

V1 = ("--create", "--dtype", "float32", "--shape", "16")


def test_r_relay_13_far_relay_killed_mid_round(tmp_path: Path) -> None:
    """R-RELAY-13, R-RELAY-16: kill -9 of the far relay while the far responder holds the
    request: the near requester gets PEER_GONE within the bound (3 x 100 ms heartbeats + checks);
    a later request fails at once with PEER_GONE (far end gone); the far responder, whose
    requester (the far relay) died, sees PEER_GONE reason DIED at its next take (R-LIVE-3)."""
    with relay_pair(tmp_path, "kfar") as pair:
        far = pair.start_far(*V1)
        pair.start_near("--create")
        pair.wait_up()
        rsp = attached(pair.peer("py", "responder", "--attach", "--rounds", "0",
                                 "--delay-before", "T3:1500@1"))  # fmt: skip
        req = pair.peer("py", "requester", "--attach", "--rounds", "2", "--timeout", "10")
        rsp.wait_event(lambda e: e.get("op") == "take" and e.get("result") == "ok", 15, "taken")
        far.kill(signal.SIGKILL)
        killed = time.monotonic_ns()
        assert req.wait(30) == 16, req.text()  # PEER_GONE
        rcv = ops(req, "receive")[0]
        assert rcv["result"] == "PEER_GONE" and rcv["reply_code"] == 7
        took = (rcv["t_return"] - killed) / 1e9
        print(f"far relay kill -9 -> requester PEER_GONE after {took:.3f} s")
        assert took < GONE_BOUND
        # the far responder: its requester died (R-LIVE-3), its serve ends with PEER_GONE DIED
        rsp.wait(30)  # --rounds 0: the peer ends on PEER_GONE from take (PEER.md §1)
        gone = ops(rsp, "take")[-1]
        assert gone["result"] == "PEER_GONE" and gone["reason"] == "DIED"
        # a new request while the far end is gone: PEER_GONE at once (R-RELAY-13)
        t0 = time.monotonic()
        req2 = pair.peer("py", "requester", "--attach", "--rounds", "1", "--timeout", "10")
        assert req2.wait(30) == 16
        assert time.monotonic() - t0 < 5
        assert ops(req2, "receive")[0]["reply_code"] == 7


def test_r_relay_14_far_relay_restarts_in_flight_request_not_rerun(tmp_path: Path) -> None:
    """R-RELAY-14, R-RELAY-16, R-RELAY-10: the far relay is killed while its responder holds
    round 1 and restarted at once (new epoch): the held round completes with PEER_GONE and is not
    sent to the new far relay; the link comes up again and the next rounds verify. The far
    responders took exactly the requests the requester sent (round 1 once, never twice)."""
    with relay_pair(tmp_path, "rest") as pair:
        far = pair.start_far(*V1)
        near = pair.start_near("--create")
        pair.wait_up()
        rsp = attached(pair.peer("py", "responder", "--attach", "--rounds", "0",
                                 "--delay-before", "T3:1500@1"))  # fmt: skip
        req = pair.peer("py", "requester", "--attach", "--rounds", "1", "--timeout", "10")
        rsp.wait_event(lambda e: e.get("op") == "take" and e.get("result") == "ok", 15, "taken")
        far.kill(signal.SIGKILL)
        far.wait(10)
        far2 = pair.start_far(*V1)  # the far segment is reclaimed (its creator died)
        assert req.wait(30) == 16, req.text()
        rsp.wait(30)
        ups = lambda: [e for e in near.events() if e.get("event") == "up"]  # noqa: E731
        deadline = time.monotonic() + 15
        while len(ups()) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(ups()) == 2, near.text()
        rsp2 = attached(pair.peer("cpp", "responder", "--attach", "--rounds", "3"))
        req2 = pair.peer("py", "requester", "--attach", "--rounds", "3", "--seed", "5")
        assert req2.wait(30) == 0, req2.text()
        assert rsp2.wait(30) == 0
        far2.stop()
        assert far2.stats().get("rounds_ok") == 3  # round 1 never reached the new far end
        taken = [e["checksum"] for e in ops(rsp, "take") + ops(rsp2, "take") if e["checksum"]]
        sent = [e["checksum"] for e in ops(req, "send") + ops(req2, "send")]
        assert sorted(taken) == sorted(sent) and len(set(taken)) == len(taken)


def test_r_relay_12_far_responder_killed_mid_round(tmp_path: Path) -> None:
    """R-RELAY-12, R-RELAY-13: kill -9 of the far responder holding the request: the far relay
    sees PEER_GONE by R-LIVE-3 (about 100 ms) and the near requester gets PEER_GONE one hop
    later; a new far responder then serves the next round through the same relays."""
    with relay_pair(tmp_path, "kpeer") as pair:
        pair.start_far(*V1)
        pair.start_near("--create")
        pair.wait_up()
        rsp = attached(pair.peer("py", "responder", "--attach", "--rounds", "0",
                                 "--crash-at", "T2@1"))  # fmt: skip
        req = pair.peer("cpp", "requester", "--attach", "--rounds", "1", "--timeout", "10")
        assert req.wait(30) == 16, req.text()
        crash = next(e for e in rsp.events() if e.get("op") == "crash")
        rcv = ops(req, "receive")[0]
        assert rcv["reply_code"] == 7
        took = (rcv["t_return"] - crash["t_call"]) / 1e9
        print(f"far responder kill -9 -> requester PEER_GONE after {took:.3f} s")
        assert took < GONE_BOUND
        rsp2 = attached(pair.peer("cpp", "responder", "--attach", "--rounds", "1"))
        req2 = pair.peer("py", "requester", "--attach", "--rounds", "1")
        assert req2.wait(30) == 0, req2.text()
        assert rsp2.wait(30) == 0


def test_r_relay_13_near_relay_killed_mid_round(tmp_path: Path) -> None:
    """R-RELAY-13: kill -9 of the near relay holding the request: the local requester sees its
    responder dead (R-LIVE-3) and gets PEER_GONE DIED within the bound; the far relay logs the
    session gone after 3 heartbeats; a new near relay takes over (R-REC-2 completes nothing: the
    requester withdrew the round by T7) and the next round verifies."""
    with relay_pair(tmp_path, "knear") as pair:
        far = pair.start_far(*V1)
        near = pair.start_near("--create", "--dtype", "float32", "--shape", "16")
        pair.wait_up()
        rsp = attached(pair.peer("py", "responder", "--attach", "--rounds", "0",
                                 "--delay-before", "T3:1500@1"))  # fmt: skip
        req = pair.peer("py", "requester", "--attach", "--rounds", "1", "--timeout", "10")
        rsp.wait_event(lambda e: e.get("op") == "take" and e.get("result") == "ok", 15, "taken")
        near.kill(signal.SIGKILL)
        killed = time.monotonic_ns()
        assert req.wait(30) == 16, req.text()
        rcv = ops(req, "receive")[0]
        assert rcv["result"] == "PEER_GONE" and rcv["reason"] == "DIED"
        took = (rcv["t_return"] - killed) / 1e9
        print(f"near relay kill -9 -> requester PEER_GONE after {took:.3f} s")
        assert took < GONE_BOUND
        far.wait_event(lambda e: e.get("event") == "session_gone", 10, "far: session gone")
        # the far side still completes round 1 once; its reply goes nowhere
        pair.start_near("--create", "--dtype", "float32", "--shape", "16")
        pair.wait_up()
        req2 = pair.peer("py", "requester", "--attach", "--rounds", "2", "--seed", "4")
        assert req2.wait(30) == 0, req2.text()
        taken = [e["checksum"] for e in ops(rsp, "take") if e["checksum"]]
        assert len(taken) == 3 and len(set(taken)) == 3  # round 1 once, then the two new ones
