"""Rounds through a relay pair on loopback (spec/RELAY.md), with the conformance peers of
spec/PEER.md at both ends: the four pairings C++/Python requester -> relay -> C++/Python
responder, in protocol v1 and v2, verified by the peers themselves (PEER.md §3, §7.4); error
replies, timeouts, stale replies and declaration mismatches across the hop.

Each relay pair serves its four pairings one after the other: the far end creates the far segment
and the near end the near segment (as the far end declares it, R-RELAY-2), the peers attach."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("zmq", reason="the relay needs pyzmq (pip install 'shmbridge[relay]')")

from relay_harness import Pair, attached, ops, relay_pair, summary

ROUNDS = 20
PAIRINGS = [("py", "py"), ("cpp", "py"), ("py", "cpp"), ("cpp", "cpp")]
V1 = ("--create", "--dtype", "float32", "--shape", "64,3")
V2_REQ = "img:uint8:<=64,3;t:float64:"
V2_REP = "img:=img;n:int32:<=10"
V2 = ("--create", "--request-schema", V2_REQ, "--reply-schema", V2_REP)


def _pairings(pair: Pair, v2: bool) -> None:
    proto = ("--protocol", "2", "--op", "derive") if v2 else ("--op", "add1")
    for req_impl, rsp_impl in PAIRINGS:
        rsp = attached(pair.peer(rsp_impl, "responder", "--attach", "--rounds", str(ROUNDS),
                                 "--timeout", "20", *proto))  # fmt: skip
        req = pair.peer(req_impl, "requester", "--attach", "--rounds", str(ROUNDS),
                        "--timeout", "20", "--seed", "3", *proto)  # fmt: skip
        assert req.wait(60) == 0, f"{req_impl}->{rsp_impl}: {req.text()}"
        assert rsp.wait(30) == 0, f"{req_impl}->{rsp_impl}: {rsp.text()}"
        s = summary(req)
        # The peers verify every reply against the data they sent (PEER.md §3, §7.4).
        assert (s["rounds_ok"], s["verified"], s["mismatches"]) == (ROUNDS, ROUNDS, 0)
        # R-RELAY-10: every request the requester sent was taken exactly once at the far side.
        sent = [e["checksums"] if v2 else e["checksum"] for e in ops(req, "send")]
        taken = [e["checksums"] if v2 else e["checksum"] for e in ops(rsp, "take")]
        assert taken == sent


def test_r_relay_1_four_pairings_v1_through_a_relay_pair(tmp_path: Path) -> None:
    """R-RELAY-1, R-RELAY-2, R-RELAY-4, R-RELAY-9, R-RELAY-19: C++ and Python requesters and
    responders, unchanged, exchange v1 rounds through a relay pair; the near end creates its
    segment as the far end declares it; both ends outlive four requesters and four responders
    coming and going, and on SIGTERM log their counters."""
    with relay_pair(tmp_path, "v1") as pair:
        pair.start_far(*V1)
        pair.start_near("--create")
        pair.wait_up()
        _pairings(pair, v2=False)
        assert pair.near is not None
        pair.near.stop()
        st = pair.near.stats()
        assert st.get("rounds_ok") == ROUNDS * len(PAIRINGS)
        assert st.get("stale_replies", 0) == 0 and st.get("bad_frames", 0) == 0


def test_r_relay_1_four_pairings_v2_through_a_relay_pair(tmp_path: Path) -> None:
    """R-RELAY-1, R-RELAY-2, R-RELAY-4, R-RELAY-7: v2 messages (variable extents, a scalar, an
    in-place reply field) through a relay pair, all four pairings."""
    with relay_pair(tmp_path, "v2") as pair:
        pair.start_far(*V2)
        pair.start_near("--create")
        pair.wait_up()
        _pairings(pair, v2=True)


def test_r_relay_12_error_replies_keep_their_code_across_the_hop(tmp_path: Path) -> None:
    """R-RELAY-12, R-MSG-2/R-MSG-3 across the hop: a far responder whose handler fails answers
    HANDLER_FAILED; the near requester gets that code (exit 27), and the channel goes on."""
    with relay_pair(tmp_path, "err") as pair:
        pair.start_far(*V1)
        pair.start_near("--create")
        pair.wait_up()
        rsp = attached(pair.peer("py", "responder", "--attach", "--rounds", "1", "--op", "fail"))
        req = pair.peer("cpp", "requester", "--attach", "--rounds", "1", "--op", "add1")
        assert req.wait(30) == 27, req.text()  # HANDLER_FAILED
        rsp.wait(30)
        rcv = ops(req, "receive")[-1]
        assert rcv["result"] == "HANDLER_FAILED" and rcv["reply_code"] == 18
        # the round completed (R-MSG-2): the next requester and responder work at once
        rsp = attached(pair.peer("cpp", "responder", "--attach", "--rounds", "2"))
        req = pair.peer("py", "requester", "--attach", "--rounds", "2")
        assert req.wait(30) == 0, req.text()
        assert rsp.wait(30) == 0


def test_r_relay_11_requester_timeout_then_late_reply(tmp_path: Path) -> None:
    """R-RELAY-11, R-TIME-2, R-STATE-10 across the hop: a slow far responder makes the local
    requester time out while the near end holds its request; the requester then sends again,
    gets OUT_OF_TURN while the round is held, and receives the late reply of the timed-out round,
    which it verifies (PEER.md --retry-after-timeout)."""
    with relay_pair(tmp_path, "late") as pair:
        pair.start_far(*V1)
        pair.start_near("--create")
        pair.wait_up()
        rsp = pair.peer("py", "responder", "--attach", "--rounds", "2",
                        "--delay-before", "T3:800@1")  # fmt: skip
        req = pair.peer("py", "requester", "--attach", "--rounds", "2", "--timeout", "0.3",
                        "--retry-after-timeout")  # fmt: skip
        assert req.wait(30) == 0, req.text()
        assert rsp.wait(30) == 0, rsp.text()
        results = [e["result"] for e in ops(req, "receive")]
        assert "TIMEOUT" in results and results[-1] == "ok"
        assert summary(req)["mismatches"] == 0


def test_r_relay_9_round_timeout_and_stale_reply_dropped(tmp_path: Path) -> None:
    """R-RELAY-9, R-RELAY-11, R-RELAY-12: with --round-timeout the near end completes a round
    the far end is slow with by an error reply TIMEOUT; the far end's late reply is stale: it is
    dropped and counted, never given to the next round, whose own reply verifies.

    Timing, from round 1's send: the responder is attached first, so it takes round 1 at once
    and its reply leaves the far end at D = 1.4 s; the near end ends round 1 at R = 1.0 s;
    round 2 is sent at R + startup and usually is held when the stale reply comes (the path
    that must not hand it over). Round 2's own deadline, 2R + startup, lies after D whatever
    the startup takes (0.6 s to spare). Before, with R = 0.3 s, D = 0.7 s and a responder that
    could attach after round 1 was sent, round 2 timed out too when the responder started slow
    and the second requester fast (CI, 2026-12-03)."""
    with relay_pair(tmp_path, "stale") as pair:
        pair.start_far(*V1)
        pair.start_near("--create", "--round-timeout", "1.0")
        pair.wait_up()
        rsp = attached(pair.peer("py", "responder", "--attach", "--rounds", "2",
                                 "--delay-before", "T3:1400@1"))  # fmt: skip
        req1 = pair.peer("py", "requester", "--attach", "--rounds", "1", "--timeout", "5")
        assert req1.wait(30) == 15, req1.text()  # TIMEOUT, from the error reply
        assert ops(req1, "receive")[-1]["reply_code"] == 6
        req2 = pair.peer("py", "requester", "--attach", "--rounds", "1", "--seed", "9")
        assert req2.wait(30) == 0, req2.text()
        assert summary(req2)["verified"] == 1  # round 2's own reply, not round 1's
        assert rsp.wait(30) == 0
        assert pair.near is not None
        pair.near.stop()
        assert pair.near.stats().get("stale_replies", 0) >= 1


def test_r_relay_8_no_take_before_the_far_end_is_up(tmp_path: Path) -> None:
    """R-RELAY-8: before the far end said HELLO the near end takes nothing: the requester's
    timeout withdraws its request (T5; TIMEOUT, the channel IDLE), as with a responder that has
    not started."""
    with relay_pair(tmp_path, "early") as pair:
        near = pair.start_near("--create", "--dtype", "float32", "--shape", "4")
        near.wait_event(lambda e: e.get("event") == "created", 15, "near created")
        req = pair.peer("py", "requester", "--attach", "--rounds", "1", "--timeout", "0.5",
                        "--shape", "4")  # fmt: skip
        assert req.wait(30) == 15, req.text()
        rcv = ops(req, "receive")[-1]
        assert rcv["result"] == "TIMEOUT" and rcv["phase_after"] == "IDLE"
        assert not [e for e in near.events() if e.get("event") == "round"]


def test_r_relay_2_declaration_mismatch_stops_the_near_end(tmp_path: Path) -> None:
    """R-RELAY-2: a near segment declared differently from the far one: the near end exits
    with SHAPE_MISMATCH's code (12) and a message naming both, before any round."""
    with relay_pair(tmp_path, "mism") as pair:
        pair.start_far(*V1)
        near = pair.start_near("--create", "--dtype", "float32", "--shape", "65,3")
        assert near.wait(30) == 12
        ex = near.wait_event(lambda e: e.get("event") == "exit", 5, "exit event")
        assert ex["error"] == "SHAPE_MISMATCH" and "(65, 3)" in ex["message"]


SOAK = int(os.environ.get("SHMBRIDGE_RELAY_SOAK", "2000"))


def test_r_relay_10_soak_checksummed_rounds(tmp_path: Path) -> None:
    """R-RELAY-9, R-RELAY-10: SOAK checksummed rounds (default 2000; SHMBRIDGE_RELAY_SOAK=100000
    for the full soak) C++ -> relay -> C++, 4 KiB arrays: every reply verifies, the far side
    takes exactly as many requests as were sent, nothing is stale, duplicated or dropped."""
    with relay_pair(tmp_path, "soak") as pair:
        pair.start_far("--create", "--dtype", "uint8", "--shape", "4096")
        pair.start_near("--create")
        pair.wait_up()
        rsp = pair.peer("cpp", "responder", "--attach", "--rounds", str(SOAK), "--op", "checksum")
        req = pair.peer("cpp", "requester", "--attach", "--rounds", str(SOAK), "--op", "checksum")
        assert req.wait(max(120, SOAK / 200)) == 0, req.text()
        assert rsp.wait(30) == 0
        s = summary(req)
        assert (s["rounds_ok"], s["verified"], s["mismatches"]) == (SOAK, SOAK, 0)
        assert summary(rsp)["rounds_ok"] == SOAK
        assert pair.far is not None and pair.near is not None
        pair.near.stop()
        pair.far.stop()
        for st in (pair.near.stats(), pair.far.stats()):
            assert st.get("rounds_ok") == SOAK, st
            for bad in ("stale_replies", "duplicates", "bad_frames", "rounds_failed"):
                assert st.get(bad, 0) == 0, (bad, st)


def _no_up(near: Any, seconds: float) -> None:
    time.sleep(seconds)
    assert not [e for e in near.events() if e.get("event") == "up"], near.text()


def test_r_relay_18_curve_with_a_pinned_server_key(tmp_path: Path) -> None:
    """R-RELAY-18: a CURVE far end that admits one client key: the near end with that key and
    the far end's public key pinned comes up and relays verified rounds; a near end pinning
    another server key, or holding a key the far end does not admit, never comes up."""
    from shmbridge.relay.link import keygen

    keys = tmp_path / "keys"
    far_pub, far_sec = keygen(str(keys / "far"))
    near_pub, near_sec = keygen(str(keys / "near"))
    other_pub, other_sec = keygen(str(keys / "other"))
    admitted = tmp_path / "admitted"
    admitted.mkdir()
    (admitted / "near.key").write_text(near_pub.read_text())
    with relay_pair(tmp_path, "curve") as pair:
        pair.start_far(*V1, "--curve-secret", str(far_sec), "--curve-clients", str(admitted))
        near = pair.start_near("--create", "--curve-server", str(far_pub),
                               "--curve-secret", str(near_sec))  # fmt: skip
        pair.wait_up()
        rsp = attached(pair.peer("py", "responder", "--attach", "--rounds", "3"))
        req = pair.peer("py", "requester", "--attach", "--rounds", "3")
        assert req.wait(30) == 0, req.text()
        assert rsp.wait(30) == 0
        near.stop()
        wrong = pair.start_near("--create", "--curve-server", str(other_pub),
                                "--curve-secret", str(near_sec))  # fmt: skip
        unadmitted = None
        try:
            _no_up(wrong, 1.5)
        finally:
            wrong.stop()
        unadmitted = pair.start_near("--create", "--curve-server", str(far_pub),
                                     "--curve-secret", str(other_sec))  # fmt: skip
        _no_up(unadmitted, 1.5)
