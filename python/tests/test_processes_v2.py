"""Protocol v2 across processes, with a Python peer in a child process (peer_child.py): rounds
verified field by field, and the peer killed with SIGKILL while it holds a request or waits
(R-VER-1: v2 inherits R-LIVE-2/3/4/5, R-REC-2 and R-TIME-1 unchanged; R-FIELD-10 for the error
replies they leave)."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import test_processes
from peer_child import CAMERA, detections
from test_processes import Child, spawn

import shmbridge as sb

children = test_processes.children  # the child-process fixture, shared


def frame(r: int) -> np.ndarray:  # type: ignore[type-arg]
    return ((np.arange(12 * 16 * 3) * 7 + r) % 251).astype(np.uint8).reshape(12, 16, 3)


def test_r_ver_1_rounds_across_processes_are_verified_field_by_field(
    segname: str, children: list[Child]
) -> None:
    """R-VER-1, R-FIELD-1, R-FIELD-8: 300 rounds with a responder process; variable extents from
    0 to the maximum (10) in the replies; every reply equals what the request promises."""
    with sb.MessageRequester.create(segname, *CAMERA, timeout=10) as req:
        server = spawn(children, "msg-responder-serve", segname)
        assert server.readline() == "ready"
        rows = set()
        for r in range(300):
            request = {"image": frame(r), "stamp": np.float64(r)}
            want = detections(sb.MessageView(request, 0))
            out = req.call(request)
            assert out["boxes"].shape == want["boxes"].shape
            np.testing.assert_array_equal(out["boxes"], want["boxes"])
            rows.add(out["boxes"].shape[0])
        assert rows == set(range(11))
    assert server.wait() == 0
    assert "served 300" in (server.p.stdout.read() if server.p.stdout else "")


def test_r_live_3_kill9_responder_holding_a_v2_request(segname: str, children: list[Child]) -> None:
    """R-LIVE-3, R-LIVE-5 on v2: the responder holding a request is killed with SIGKILL; the
    requester blocked in receive gets PEER_GONE, reason DIED, within 1 s, reclaims the areas
    (T7) and works with a new responder."""
    req = sb.MessageRequester.create(segname, *CAMERA)
    try:
        victim = spawn(children, "msg-responder-hold", segname)
        req.send(image=frame(1), stamp=np.float64(3))
        assert victim.readline() == "taken 1"
        killed_at: list[float] = []
        threading.Timer(0.3, lambda: killed_at.append(victim.kill9())).start()
        with pytest.raises(sb.PeerGone) as info:
            req.receive(timeout=10)
        gone_at = time.monotonic()
        assert info.value.reason is sb.PeerGoneReason.DIED and info.value.reply_code is None
        assert killed_at and gone_at - killed_at[0] < 1.0, gone_at - killed_at[0]
        assert req.phase() is sb.Phase.IDLE and req.pending() is None
        assert spawn(children, "msg-responder-serve", segname).readline() == "ready"
        out = req.call(image=frame(2), stamp=np.float64(4))
        assert out["boxes"].shape == (4, 6)
    finally:
        req.close()


def test_r_live_4_kill9_requester_gives_peer_gone_died_to_a_v2_responder(
    segname: str, children: list[Child]
) -> None:
    """R-LIVE-4, R-LIVE-5 on v2: the requester is killed while the responder waits; take (and
    serve) end with PEER_GONE, reason DIED, within 1 s: a crash, not an end of service."""
    rsp = sb.MessageResponder.create(segname, *CAMERA)
    try:
        victim = spawn(children, "msg-requester-hold", segname)
        assert victim.readline() == "ready"
        killed_at: list[float] = []
        threading.Timer(0.3, lambda: killed_at.append(victim.kill9())).start()
        with pytest.raises(sb.PeerGone) as info:
            rsp.serve(detections, timeout=10)
        assert info.value.reason is sb.PeerGoneReason.DIED
        assert killed_at and time.monotonic() - killed_at[0] < 1.0
    finally:
        rsp.close()


def test_r_rec_2_a_new_v2_responder_completes_a_dead_ones_round(
    segname: str, children: list[Child]
) -> None:
    """R-REC-2, R-FIELD-10 on v2: a responder killed holding; the next one completes that round
    at attach (T8) with reply_code PEER_GONE only; the requester gets PEER_GONE (DIED), then
    rounds work again."""
    req = sb.MessageRequester.create(segname, *CAMERA)
    try:
        victim = spawn(children, "msg-responder-hold", segname)
        req.send(image=frame(5), stamp=np.float64(7))
        assert victim.readline() == "taken 1"
        victim.kill9()
        victim.wait()
        assert spawn(children, "msg-responder-serve", segname).readline() == "ready"
        assert req.phase() is sb.Phase.REPLIED
        with pytest.raises(sb.PeerGone, match="rejected request #1") as info:
            req.receive(timeout=5)
        assert (info.value.reason, info.value.reply_code) == (sb.PeerGoneReason.DIED, 7)
        assert req.call(image=frame(6), stamp=np.float64(10))["boxes"].shape == (10, 6)
    finally:
        req.close()
