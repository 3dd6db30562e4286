"""PROTOCOL.md 1.1: the answers to the 13 points an independent implementer had to guess in 1.0
(issue 12), one test per answer, mirroring the C++ tests of the same ids (test_channel.cpp,
test_segment.cpp, test_liveness.cpp)."""

from __future__ import annotations

import os
import pickle
import struct
import threading
import time
from typing import Any

import numpy as np
import pytest
from conftest import load_spec_json, map_raw, reaped_pid

import shmbridge as sb
from shmbridge import PeerGoneReason
from shmbridge.channel import _options
from shmbridge.layout import (
    DESCRIPTOR_SIZE,
    OFF_CREATOR,
    OFF_DECLARED,
    OFF_MESSAGE,
    OFF_REPLY_CODE,
    OFF_REQUESTER,
    OFF_RESPONDER,
    OFF_WAITERS,
    OFF_WORD,
    SLOT_ATTACHED,
    SLOT_CLOSED,
    SLOT_EMPTY,
    SLOT_INCARNATION,
    SLOT_PID,
    SLOT_SIZE,
    SLOT_START_TIME,
    SLOT_STATE,
)
from shmbridge.liveness import (
    mark_slot_closed,
    own_start_time,
    peer_status,
    process_info_from_stat,
    release_slot,
)
from shmbridge.protocol import Peer, Phase, encode_word

pytestmark = pytest.mark.skipif(os.name != "posix", reason="raw POSIX mappings of the header")

U32 = struct.Struct("<I")
U64 = struct.Struct("<Q")
DESC_SHAPE0 = OFF_MESSAGE + 8
DESC_NBYTES = OFF_MESSAGE + 72


def _message_is_declared(raw: Any) -> bool:
    return bytes(raw[OFF_MESSAGE : OFF_MESSAGE + DESCRIPTOR_SIZE]) == bytes(
        raw[OFF_DECLARED : OFF_DECLARED + DESCRIPTOR_SIZE]
    )


def _reply_code(raw: Any) -> int:
    return int(U32.unpack_from(raw, OFF_REPLY_CODE)[0])


def _error_of(fn: Any) -> sb.Error:
    with pytest.raises(sb.Error) as info:
        fn()
    return info.value


def _write_slot(raw: Any, slot: int, pid: int, state: int, start: int = 0) -> None:
    U32.pack_into(raw, slot + SLOT_PID, pid)
    U32.pack_into(raw, slot + SLOT_STATE, state)
    U64.pack_into(raw, slot + SLOT_START_TIME, start)


# -- point 1: R-MSG-4, R-MSG-5 ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("poke", "error"),
    [
        ({DESC_SHAPE0: (U64, 2), DESC_NBYTES: (U64, 2)}, sb.ShapeMismatch),
        # int32 (1,): a valid descriptor (4 bytes fit) whose dtype (and shape) differ
        ({OFF_MESSAGE: (U32, 6), DESC_SHAPE0: (U64, 1), DESC_NBYTES: (U64, 4)}, sb.DtypeMismatch),
    ],
)
def test_r_msg_4_rejected_request_leaves_declared_descriptor(
    segname: str, poke: dict[int, tuple[struct.Struct, int]], error: type[sb.Error]
) -> None:
    """R-MSG-4, R-MSG-5: a request rejected at take is answered with message = declared and
    reply_code = the error; the requester consumes it (T4) and raises that error carrying
    reply_code."""
    with sb.Requester.create(segname, np.uint8, (4,)) as req, sb.Responder.attach(segname) as rsp:
        raw = map_raw(segname)
        req.send(np.zeros(4, np.uint8))
        for off, (fmt, value) in poke.items():
            fmt.pack_into(raw, off, value)
        with pytest.raises(error):
            rsp.take()
        assert req.phase() is Phase.REPLIED
        assert _message_is_declared(raw)
        assert _reply_code(raw) == error.code
        e = _error_of(req.receive)
        assert type(e) is error and e.reply_code == error.code
        assert req.phase() is Phase.IDLE  # consumed before raising (R-MSG-2)
        raw.close()


def test_r_msg_4_recovered_round_leaves_declared_descriptor(segname: str) -> None:
    """R-MSG-4, R-REC-2, R-LIVE-5: T8 leaves message = declared with reply_code PEER_GONE; the
    requester reads reason DIED (a new responder completed the round of one that died)."""
    with sb.Requester.create(segname, np.uint8, (4,)) as req:
        raw = map_raw(segname)
        req.send(np.zeros(4, np.uint8))
        dying = sb.Responder.attach(segname)
        dying.take()
        U64.pack_into(raw, DESC_SHAPE0, 2)
        U64.pack_into(raw, DESC_NBYTES, 2)
        U32.pack_into(raw, OFF_RESPONDER + SLOT_PID, reaped_pid())  # it dies without closing
        with sb.Responder.attach(segname):  # R-REC-2: T8
            assert req.phase() is Phase.REPLIED
            assert _message_is_declared(raw)
            assert _reply_code(raw) == sb.ErrorCode.PEER_GONE
            e = _error_of(req.receive)
            assert isinstance(e, sb.PeerGone) and e.reason is PeerGoneReason.DIED, e
            assert e.reply_code == sb.ErrorCode.PEER_GONE
        dying._closed = True  # its slot was taken over; nothing of it is left to release
        raw.close()


def test_r_msg_5_reply_code_first_then_descriptor(segname: str) -> None:
    """R-MSG-5: an unknown reply_code is PROTOCOL_VIOLATION naming the code, after T4; a
    successful reply whose descriptor a rogue changed raises the descriptor error with reply_code
    0; an error that did not come from a reply has reply_code None."""
    with sb.Requester.create(segname, np.uint8, (4,)) as req, sb.Responder.attach(segname) as rsp:
        raw = map_raw(segname)
        req.send(np.zeros(4, np.uint8))
        rsp.take()
        rsp.reply_error(99)
        e = _error_of(req.receive)
        assert isinstance(e, sb.ProtocolViolation) and "99" in str(e) and e.reply_code == 99
        assert req.phase() is Phase.IDLE
        req.send(np.zeros(4, np.uint8))
        rsp.take().reply()
        U64.pack_into(raw, DESC_SHAPE0, 2)  # a rogue writes the descriptor after T3
        U64.pack_into(raw, DESC_NBYTES, 2)
        e = _error_of(req.receive)
        assert isinstance(e, sb.ShapeMismatch) and e.reply_code == 0
        assert req.phase() is Phase.IDLE
        e = _error_of(req.try_receive)
        assert isinstance(e, sb.OutOfTurn) and e.reply_code is None
        raw.close()


# -- point 13: R-LIVE-4, R-LIVE-5 -----------------------------------------------------------------


def test_r_live_5_responder_closed_while_holding_is_closed(segname: str) -> None:
    """R-LIVE-5, R-CLOSE-1/2: a responder that closes while holding stores CLOSED before its
    PEER_GONE reply: reason CLOSED; a requester waiting on a responder that closed: CLOSED too."""
    with sb.Requester.create(segname, np.uint8, (4,)) as req:
        rsp = sb.Responder.attach(segname)
        req.send(np.zeros(4, np.uint8))
        rsp.take()
        rsp.close()
        e = _error_of(req.receive)
        assert isinstance(e, sb.PeerGone) and e.reason is PeerGoneReason.CLOSED, e
        assert e.reply_code == sb.ErrorCode.PEER_GONE and "closed" in str(e)
        req.send(np.zeros(4, np.uint8))
        w = _error_of(lambda: req.receive(timeout=0.5))
        assert isinstance(w, sb.PeerGone) and w.reason is PeerGoneReason.CLOSED
        assert w.reply_code is None  # withdrawn (T5), not a reply
        assert PeerGoneReason.CLOSED.value == "CLOSED"


def test_r_live_5_dead_requester_is_died_and_serve_raises(segname: str) -> None:
    """R-LIVE-5, R-LIVE-4: a requester that died is PEER_GONE with reason DIED: take says so and
    serve raises it instead of returning (1.0 Python returned normally)."""
    with sb.Responder.create(segname, np.uint8, (4,), liveness_interval=0.02) as rsp:
        raw = map_raw(segname)
        _write_slot(raw, OFF_REQUESTER, reaped_pid(), SLOT_ATTACHED)
        e = _error_of(lambda: rsp.take(timeout=0.5))
        assert isinstance(e, sb.PeerGone) and e.reason is PeerGoneReason.DIED, e
        assert "died" in str(e)
        e = _error_of(lambda: rsp.serve(lambda a: a, timeout=0.5))
        assert isinstance(e, sb.PeerGone) and e.reason is PeerGoneReason.DIED
        raw.close()


def test_r_live_5_serve_returns_when_the_requester_closed(segname: str) -> None:
    """R-LIVE-4: serve ends normally (returning the rounds) only on reason CLOSED."""
    req = sb.Requester.create(segname, np.float64, (3,), keep_segment=True)
    rsp = sb.Responder.attach(segname)
    served: list[int] = []
    th = threading.Thread(target=lambda: served.append(rsp.serve(lambda a: a + 1)))
    th.start()
    for _ in range(5):
        req.call(np.ones(3))
    req.close()
    th.join(5)
    assert served == [5]
    rsp.close()


def test_r_live_5_reason_survives_pickling() -> None:
    """The reason and reply_code are part of the error, also across processes (pickle)."""
    e = sb.PeerGone("x", reason=PeerGoneReason.CLOSED, reply_code=7)
    f = pickle.loads(pickle.dumps(e))
    assert isinstance(f, sb.PeerGone) and f.reason is PeerGoneReason.CLOSED
    assert f.reply_code == 7 and str(f) == str(e)


# -- point 6: R-LIVE-3 (the peer timeout is a bound, not a setting) ------------------------------


def test_r_live_3_peer_timeout_is_not_an_option() -> None:
    """R-LIVE-3: 1.0's "peer timeout" is a bound; the setting is liveness_interval. The option
    peer_timeout (which did nothing) is gone, as in C++."""
    with pytest.raises(sb.InvalidArgument):
        _options(None, {"peer_timeout": 1.0})
    assert not hasattr(sb.Options(), "peer_timeout")


# -- point 12: R-WAIT-6 --------------------------------------------------------------------------


def test_r_wait_6_waiters_over_count_is_harmless(segname: str) -> None:
    """R-WAIT-6: an over-counted waiters costs wake calls only; nobody repairs or resets it."""
    with sb.Requester.create(segname, np.uint32, (1,), spin=0.0) as req:
        rsp = sb.Responder.attach(segname, spin=0.0)
        raw = map_raw(segname)
        U32.pack_into(raw, OFF_WAITERS, 3)  # three dead waiters
        th = threading.Thread(target=lambda: [rsp.take().reply() for _ in range(20)])
        th.start()
        for i in range(20):
            assert req.call(np.array([i], np.uint32))[0] == i
        th.join(5)
        assert U32.unpack_from(raw, OFF_WAITERS)[0] == 3
        rsp.close()
        raw.close()


# -- point 9: R-LAYOUT-7 -------------------------------------------------------------------------


def test_r_layout_7_dtype_is_compared_before_shape(segname: str) -> None:
    """R-LAYOUT-7, R-STATE-9, R-MSG-1: when dtype and shape both differ, DTYPE_MISMATCH."""
    with sb.Requester.create(segname, np.uint8, (4,)) as req:
        with pytest.raises(sb.DtypeMismatch):
            sb.Responder.attach(segname, np.int32, (5,))
        with sb.Responder.attach(segname) as rsp:
            with pytest.raises(sb.DtypeMismatch):
                req.send(np.zeros(5, np.int32))
            raw = map_raw(segname)
            req.send(np.zeros(4, np.uint8))
            U32.pack_into(raw, OFF_MESSAGE, 6)  # int32 (1,): valid, both differ
            U64.pack_into(raw, DESC_SHAPE0, 1)
            U64.pack_into(raw, DESC_NBYTES, 4)
            with pytest.raises(sb.DtypeMismatch):
                rsp.take()
            with pytest.raises(sb.DtypeMismatch):
                req.receive()
            raw.close()


# -- point 2: R-SEG-4, R-ATTACH-1, R-ATTACH-2 ----------------------------------------------------


def test_r_seg_4_attach_missing_waits_until_the_deadline(segname: str) -> None:
    """R-SEG-4, R-ATTACH-1: SEGMENT_NOT_FOUND once the deadline has passed; timeout 0 checks
    once; the message says how long attach waited."""
    e = _error_of(lambda: sb.Responder.attach(segname, timeout=0))
    assert isinstance(e, sb.SegmentNotFound) and "one check (timeout 0)" in str(e)
    t0 = time.monotonic()
    e = _error_of(lambda: sb.Requester.attach(segname, timeout=0.15))
    assert time.monotonic() - t0 >= 0.15
    assert isinstance(e, sb.SegmentNotFound) and "after waiting 0.1" in str(e), e
    assert not os.path.exists(f"/dev/shm/{segname}")


def test_r_attach_1_attach_waits_for_the_creator(segname: str) -> None:
    """R-ATTACH-1: either side may start first: attach waits for a creator that comes later."""
    made: list[sb.Requester] = []

    def create() -> None:
        time.sleep(0.12)
        made.append(sb.Requester.create(segname, np.uint8, (4,)))

    th = threading.Thread(target=create)
    th.start()
    t0 = time.monotonic()
    with sb.Responder.attach(segname, np.uint8, (4,), timeout=5.0) as rsp:
        assert time.monotonic() - t0 >= 0.1
        th.join()
        req = made[0]
        req.send(np.arange(4, dtype=np.uint8))
        with rsp.take() as r:
            r.array += 1
        assert list(req.receive_copy()) == [1, 2, 3, 4]
        req.close()


def test_r_attach_2_one_deadline_for_segment_and_recovery(segname: str) -> None:
    """R-ATTACH-2: the wait for the segment and the requester's recovery (a late reply of a live
    responder that never comes) share one deadline."""
    made: list[sb.Responder] = []

    def create() -> None:
        time.sleep(0.8)
        made.append(sb.Responder.create(segname, np.uint8, (4,)))
        raw = map_raw(segname)
        U32.pack_into(raw, OFF_WORD, encode_word(Phase.TAKEN, 1))  # held by this live responder
        raw.close()

    th = threading.Thread(target=create)
    th.start()
    t0 = time.monotonic()
    with pytest.raises(sb.Timeout):
        sb.Requester.attach(segname, timeout=1.5)  # the segment comes at 0.8 s: 0.7 s of margin
    took = time.monotonic() - t0
    th.join()
    made[0].close()
    assert took < 2.0  # one deadline: 1.5 s; a fresh one after the segment came: 2.3 s


# -- point 5: R-SEG-6, R-STALE-1 -----------------------------------------------------------------


def test_r_seg_6_slots_are_written_before_magic(segname: str) -> None:
    """R-SEG-6: a published segment shows the creator slot and the creator's role slot claimed
    (incarnation 1, ATTACHED) and the other role's slot EMPTY."""
    with sb.Responder.create(segname, np.uint8, (4,)):
        raw = map_raw(segname)
        for slot in (OFF_CREATOR, OFF_RESPONDER):
            pid, state, start, inc = struct.unpack_from("<IIQQ", raw, slot)
            assert (pid, state, start, inc) == (os.getpid(), SLOT_ATTACHED, own_start_time(), 1)
        assert struct.unpack_from("<II", raw, OFF_REQUESTER) == (0, SLOT_EMPTY)
        raw.close()


def test_r_stale_1_empty_creator_slot_is_stale(segname: str) -> None:
    """R-STALE-1: an EMPTY creator slot in a published segment is stale: STALE_SEGMENT with
    reclaiming off, reclaimed by default (never ALREADY_EXISTS or a wait)."""
    sb.Requester.create(segname, np.uint8, (16,), keep_segment=True).close()
    raw = map_raw(segname)
    raw[OFF_CREATOR : OFF_CREATOR + SLOT_SIZE] = bytes(SLOT_SIZE)
    raw.close()
    with pytest.raises(sb.StaleSegment):
        sb.Requester.create(segname, np.float64, (2,), reclaim_stale=False, timeout=1.0)
    with sb.Requester.create(segname, np.float64, (2,)) as req:
        assert req.dtype == np.float64


# -- point 7: R-LIVE-7, R-LIVE-2; point 13: R-LIVE-6; point 4: R-CLOSE-1 -------------------------


def test_r_live_7_procstat_vectors() -> None:
    """R-LIVE-7: every case of spec/vectors/procstat.json."""
    cases = load_spec_json("vectors/procstat.json")["cases"]
    assert len(cases) >= 10
    for c in cases:
        got = process_info_from_stat(c["text"].encode())
        assert got == (c["expect"]["exists"], c["expect"]["start_stamp"]), c["id"]


def test_r_live_6_slot_reading_table(segname: str) -> None:
    """R-LIVE-6: pid is read first; pid 0 is CLOSED (gone) or nobody (no peer yet, also for
    ATTACHED); a pid that is not ATTACHED is judged by the pid alone."""
    with sb.Requester.create(segname, np.uint8, (4,)):
        raw = map_raw(segname)
        dead = reaped_pid()
        me, stamp = os.getpid(), own_start_time()
        table = [
            ((0, SLOT_CLOSED, 0), Peer.GONE),
            ((0, SLOT_ATTACHED, stamp), Peer.EMPTY),
            ((0, SLOT_EMPTY, 0), Peer.EMPTY),
            ((0, 7, 0), Peer.EMPTY),
            ((me, SLOT_CLOSED, stamp + 1), Peer.ATTACHED),  # closing: judged by the pid
            ((dead, SLOT_CLOSED, 0), Peer.GONE),
            ((me, SLOT_ATTACHED, stamp + 1), Peer.GONE),  # pid reused by another process
        ]
        for (pid, state, start), want in table:
            _write_slot(raw, OFF_RESPONDER, pid, state, start)
            assert peer_status(raw, OFF_RESPONDER) is want, (pid, state, start)
        raw.close()


def test_r_close_1_release_keeps_stamp_and_incarnation(segname: str) -> None:
    """R-CLOSE-1: CLOSED first (the pid still set: alive), then pid 0; start_time and
    incarnation are kept."""
    with sb.Responder.create(segname, np.uint8, (4,)) as rsp:
        raw = map_raw(segname)
        assert mark_slot_closed(raw, OFF_RESPONDER)
        assert peer_status(raw, OFF_RESPONDER) is Peer.ATTACHED
        release_slot(raw, OFF_RESPONDER)
        assert peer_status(raw, OFF_RESPONDER) is Peer.GONE
        assert U64.unpack_from(raw, OFF_RESPONDER + SLOT_START_TIME)[0] == own_start_time()
        assert U64.unpack_from(raw, OFF_RESPONDER + SLOT_INCARNATION)[0] == 1
        rsp._closed = True  # released by hand above
        raw.close()


def test_r_close_1_closed_is_stored_before_the_held_round_is_completed(
    segname: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """R-CLOSE-1/2 order: a responder closing while it holds a request stores CLOSED (pid still
    set) before its PEER_GONE reply (T3) and pid 0 after it, so a requester that reads the slot
    right after its T4 sees CLOSED (R-LIVE-5). Observed at the moment of the T3."""
    seen: list[tuple[int, int]] = []
    original = sb.Responder._reply

    def spy(self: sb.Responder, seq: int, code: int) -> None:
        pid, state, _start = struct.unpack_from("<IIQ", self._mm, OFF_RESPONDER)
        seen.append((pid, state))
        original(self, seq, code)

    monkeypatch.setattr(sb.Responder, "_reply", spy)
    with sb.Requester.create(segname, np.uint8, (4,)) as req:
        rsp = sb.Responder.attach(segname)
        req.send(np.zeros(4, np.uint8))
        rsp.take()
        rsp.close()
        assert seen == [(os.getpid(), SLOT_CLOSED)]
        raw = map_raw(segname)
        assert struct.unpack_from("<II", raw, OFF_RESPONDER) == (0, SLOT_CLOSED)
        raw.close()
        e = _error_of(req.receive)
        assert isinstance(e, sb.PeerGone) and e.reason is PeerGoneReason.CLOSED


# -- point 3: R-LAYOUT-8 -------------------------------------------------------------------------


def test_r_layout_8_atomic_fields_are_naturally_aligned() -> None:
    """R-LAYOUT-8: layout.json marks atomic exactly the fields this package accesses through the
    native atomics (magic as one u64, word, waiters, each slot's pid, state and start_time), each
    naturally aligned in every slot."""
    lj = load_spec_json("layout.json")
    atomic = set()
    for part in ("header", "slot"):
        for f in lj[part]["fields"]:
            if f.get("atomic"):
                atomic.add(f"{part}.{f['field']}")
                assert f["offset"] % f["size"] == 0, f
    assert atomic == {
        "header.magic",
        "header.word",
        "header.waiters",
        "slot.pid",
        "slot.state",
        "slot.start_time",
    }
    for slot in (OFF_REQUESTER, OFF_RESPONDER, OFF_CREATOR):
        assert (slot + SLOT_PID) % 4 == (slot + SLOT_STATE) % 4 == (slot + SLOT_START_TIME) % 8 == 0
    assert OFF_WORD % 4 == OFF_WAITERS % 4 == 0
