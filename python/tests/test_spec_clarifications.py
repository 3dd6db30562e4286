"""The clarifications of spec commit 50d62aa, on real handles and on the model: R-STATE-8 (the
cases spec/vectors D15 used to leave open), R-STATE-11 (attach over an invalid phase), R-LIVE-3
(a slot being claimed is judged by its pid), R-STALE-1 (a kept segment is stale, a sub-header
object is not), R-STALE-3 (reclaim by CAS on the dead creator pid)."""

from __future__ import annotations

import mmap
import os
import struct
from typing import Callable

import numpy as np
import pytest
from conftest import map_raw, reaped_pid

import shmbridge as sb
from shmbridge import _native, protocol
from shmbridge import segment as segment_mod
from shmbridge.errors import ErrorCode
from shmbridge.layout import (
    HEADER_SIZE,
    OFF_CREATOR,
    OFF_RESPONDER,
    OFF_WORD,
    SLOT_ATTACHED,
    SLOT_CLOSED,
    SLOT_EMPTY,
    SLOT_PID,
    SLOT_START_TIME,
    SLOT_STATE,
)
from shmbridge.liveness import claim_slot, own_start_time, peer_status, process_alive
from shmbridge.protocol import Failure, ModelState, Peer, Phase, Transition, encode_word

if os.name == "posix":
    import _posixshmem


_raw = map_raw


def _rogue_store(raw: mmap.mmap, word: int) -> None:
    """A rogue/naive writer: a plain store to the control word (what R-STATE-8 guards against)."""
    _native.store_release(raw, OFF_WORD, word)


def _word(raw: mmap.mmap) -> int:
    return _native.load_acquire(raw, OFF_WORD)


# -- R-STATE-8 ---------------------------------------------------------------------------------


def test_r_state_8_decided_violations_on_real_handles(segname: str) -> None:
    """R-STATE-8 (spec/vectors D15): a requester with nothing pending whose IDLE word became
    another phase (send), a requester with a request pending that finds IDLE (receive), a
    responder holding nothing whose take finds TAKEN, and a reply whose seq changed are each
    PROTOCOL_VIOLATION and leave the word and the handle unchanged."""
    a = np.arange(4, dtype=np.uint8)
    with (
        sb.Requester.create(segname, "uint8", (4,), timeout=0.0) as req,
        sb.Responder.attach(segname, timeout=0.0) as rsp,
    ):
        raw = _raw(segname)
        try:
            for ph in (Phase.REQUESTED, Phase.TAKEN, Phase.REPLIED):
                _rogue_store(raw, encode_word(ph, 0))
                with pytest.raises(sb.ProtocolViolation):
                    req.send(a)
                assert _word(raw) == encode_word(ph, 0) and req.pending() is None
            _rogue_store(raw, encode_word(Phase.IDLE, 0))
            assert req.send(a) == 1
            _rogue_store(raw, encode_word(Phase.IDLE, 1))
            with pytest.raises(sb.ProtocolViolation):
                req.try_receive()
            assert _word(raw) == encode_word(Phase.IDLE, 1) and req.pending() == 1
            _rogue_store(raw, encode_word(Phase.TAKEN, 1))
            with pytest.raises(sb.ProtocolViolation):
                rsp.try_take()
            assert _word(raw) == encode_word(Phase.TAKEN, 1) and rsp.held() is None
            _rogue_store(raw, encode_word(Phase.REQUESTED, 1))
            r = rsp.try_take()
            _rogue_store(raw, encode_word(Phase.TAKEN, 2))
            with pytest.raises(sb.ProtocolViolation):
                r.reply()
            assert rsp.held() == 1
            _rogue_store(raw, encode_word(Phase.TAKEN, 1))
            r.array[...] += 1
            r.reply()
            assert np.array_equal(req.receive_copy(), a + 1)
        finally:
            raw.close()


def test_r_state_8_decided_violations_on_model() -> None:
    """R-STATE-8 in the pure model (shmbridge.protocol), the same four cases."""
    for ph in (Phase.REQUESTED, Phase.TAKEN, Phase.REPLIED):
        out = protocol.step(ModelState(word=encode_word(ph, 3), seen=3), "requester", "send")
        assert isinstance(out, Failure) and out.code is ErrorCode.PROTOCOL_VIOLATION
    s = ModelState(word=encode_word(Phase.IDLE, 4), pending=4, seen=3)
    out = protocol.step(s, "requester", "receive")
    assert isinstance(out, Failure) and out.code is ErrorCode.PROTOCOL_VIOLATION
    out = protocol.step(ModelState(word=encode_word(Phase.TAKEN, 4)), "responder", "take")
    assert isinstance(out, Failure) and out.code is ErrorCode.PROTOCOL_VIOLATION
    s = ModelState(word=encode_word(Phase.TAKEN, 5), held=4)
    out = protocol.step(s, "responder", "reply")
    assert isinstance(out, Failure) and out.code is ErrorCode.PROTOCOL_VIOLATION
    # The precondition still comes first (R-STATE-7).
    s = ModelState(word=encode_word(Phase.TAKEN, 4), held=4)
    out = protocol.step(s, "responder", "take")
    assert isinstance(out, Failure) and out.code is ErrorCode.OUT_OF_TURN


# -- R-STATE-11 --------------------------------------------------------------------------------


def test_r_state_11_attach_over_invalid_phase(segname: str) -> None:
    """R-STATE-11: attach does not judge the control word: a requester and a responder attach
    over phase 3; the first operation that reads it reports PROTOCOL_VIOLATION."""
    sb.Requester.create(segname, "uint8", (4,), keep_segment=True).close()
    raw = _raw(segname)
    try:
        _rogue_store(raw, 0x13)
        with (
            sb.Requester.attach(segname, timeout=0.0) as req,
            sb.Responder.attach(segname, timeout=0.0) as rsp,
        ):
            assert _word(raw) == 0x13
            a = np.full(4, 7, dtype=np.uint8)
            with pytest.raises(sb.ProtocolViolation):
                req.send(a)
            with pytest.raises(sb.ProtocolViolation):
                rsp.try_take()
            assert _word(raw) == 0x13
            _rogue_store(raw, encode_word(Phase.IDLE, 1))
            req.send(a)
            rsp.try_take().reply()
            assert np.array_equal(req.receive_copy(), a)
    finally:
        raw.close()


def test_r_state_11_model_attach_over_invalid_phase() -> None:
    """R-STATE-11 in the model: both roles attach over phase 3 without touching the word."""
    s = ModelState(word=0x13, requester=protocol.Peer.GONE, responder=protocol.Peer.GONE)
    for role in ("requester", "responder"):
        out = protocol.attach(s, role)
        assert isinstance(out, Transition) and out.rules == () and out.state.word == 0x13
        s = out.state
    out2 = protocol.step(s, "requester", "send")
    assert isinstance(out2, Failure) and out2.code is ErrorCode.PROTOCOL_VIOLATION


# -- R-LIVE-3 ----------------------------------------------------------------------------------


def _write_slot(raw: mmap.mmap, slot: int, pid: int, state: int, start: int) -> None:
    _native.store_release(raw, slot + SLOT_PID, pid)
    _native.store_release(raw, slot + SLOT_STATE, state)
    struct.pack_into("<Q", raw, slot + SLOT_START_TIME, start)


def test_r_live_3_slot_being_claimed_is_judged_by_pid(segname: str) -> None:
    """R-LIVE-3 (last sentence): a slot with pid != 0 that is not yet ATTACHED is being claimed
    and is judged by its pid alone (CLOSED with a live pid is not gone); gone is ATTACHED with a
    dead process, or CLOSED with pid 0."""
    with sb.Requester.create(segname, "uint8", (4,), timeout=0.0) as req:
        raw = _raw(segname)
        try:
            own = os.getpid()
            # CLOSED, live pid (this process), a start_time that is the previous owner's.
            _write_slot(raw, OFF_RESPONDER, own, SLOT_CLOSED, own_start_time() + 12345)
            assert peer_status(raw, OFF_RESPONDER) is Peer.ATTACHED
            a = np.zeros(4, dtype=np.uint8)
            req.send(a)
            with pytest.raises(sb.Timeout):  # not PeerGone: withdrawn on the deadline
                req.try_receive()
            _write_slot(raw, OFF_RESPONDER, own, SLOT_EMPTY, 0)  # first claim in progress
            assert peer_status(raw, OFF_RESPONDER) is Peer.ATTACHED
            dead = reaped_pid()
            _write_slot(raw, OFF_RESPONDER, dead, SLOT_CLOSED, 0)  # the claimer died
            assert peer_status(raw, OFF_RESPONDER) is Peer.GONE
            _write_slot(raw, OFF_RESPONDER, 0, SLOT_CLOSED, 0)  # CLOSED with pid 0: gone
            assert peer_status(raw, OFF_RESPONDER) is Peer.GONE
            req.send(a)
            with pytest.raises(sb.PeerGone):
                req.try_receive()
            _write_slot(raw, OFF_RESPONDER, dead, SLOT_ATTACHED, 0)  # ATTACHED, dead: gone
            assert peer_status(raw, OFF_RESPONDER) is Peer.GONE
            _write_slot(raw, OFF_RESPONDER, 0, SLOT_EMPTY, 0)  # EMPTY: no peer yet
            assert peer_status(raw, OFF_RESPONDER) is Peer.EMPTY
        finally:
            raw.close()


# -- R-STALE-1, R-STALE-3 ----------------------------------------------------------------------


def test_r_stale_1_kept_segment_is_stale_tiny_object_is_not(
    segname: str, make_name: Callable[[], str]
) -> None:
    """R-STALE-1: a creator slot that is CLOSED (the creator kept the segment and detached) is
    stale: STALE_SEGMENT with reclaiming off, reclaimed by default. An OS object smaller than the
    512-byte header is CORRUPT_HEADER and never reclaimed."""
    sb.Requester.create(segname, "uint8", (16,), keep_segment=True).close()
    raw = _raw(segname)
    try:
        assert _native.load_acquire(raw, OFF_CREATOR + SLOT_STATE) == SLOT_CLOSED
        assert _native.load_acquire(raw, OFF_CREATOR + SLOT_PID) == 0
    finally:
        raw.close()
    with pytest.raises(sb.StaleSegment):
        sb.Requester.create(segname, "float64", (2,), reclaim_stale=False)
    with sb.Requester.create(segname, "float64", (2,)) as req:
        assert req.dtype == np.float64 and req.created
    tiny = make_name()
    fd = _posixshmem.shm_open("/" + tiny, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
    try:
        os.ftruncate(fd, HEADER_SIZE - 1)
    finally:
        os.close(fd)
    with pytest.raises(sb.CorruptHeader):
        sb.Requester.create(tiny, "uint8", (16,))
    assert os.stat(f"/dev/shm/{tiny}").st_size == HEADER_SIZE - 1  # never reclaimed


def test_r_stale_3_no_unlink_when_the_dead_pid_changed(
    segname: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """R-STALE-3: a reclaimer CASes the creator pid it read as dead to its own pid and unlinks only
    if that CAS succeeded. Here another reclaimer (simulated: this process's pid) claims the slot
    between the inspection and the CAS: the stale segment is not unlinked, and the create then
    finds a live creator (ALREADY_EXISTS)."""
    sb.Requester.create(segname, "uint8", (16,), keep_segment=True).close()
    raw = _raw(segname)
    real_alive = segment_mod.process_alive
    calls: list[int] = []

    def racing_alive(pid: int, start: int) -> bool:
        calls.append(pid)
        if len(calls) == 1:  # inspected as dead; then another reclaimer's CAS wins
            _native.store_release(raw, OFF_CREATOR + SLOT_PID, os.getpid())
            return False
        return real_alive(pid, start)

    monkeypatch.setattr(segment_mod, "process_alive", racing_alive)
    try:
        with pytest.raises(sb.AlreadyExists):
            sb.Requester.create(segname, "float64", (2,))
        assert calls[0] == 0 and os.getpid() in calls[1:]
        assert os.path.exists(f"/dev/shm/{segname}")  # not unlinked
        assert _native.load_acquire(raw, OFF_CREATOR + SLOT_PID) == os.getpid()
        # The CAS-guarded path unlinks when the pid is still the one read as dead.
        calls.clear()
        monkeypatch.setattr(segment_mod, "process_alive", lambda pid, start: False)
        with sb.Requester.create(segname, "float64", (2,)) as req:
            assert req.dtype == np.float64
    finally:
        raw.close()


def test_r_live_1_r_stale_3_live_pid_with_zero_start_time_is_alive(segname: str) -> None:
    """R-LIVE-1, R-STALE-3: a claimer stores start_time = 0 before its pid CAS and its own stamp
    after; checkers load pid before start_time. A slot with a live pid and start_time 0 is a claim
    in progress and is judged alive (R-LIVE-2 compares the stamp only when non-zero): a second
    claimer gets RoleTaken, and the reclaim path refuses such a creator slot (ALREADY_EXISTS)
    without unlinking. A dead creator pid is reclaimed and ends with the reclaimer's own stamp."""
    sb.Requester.create(segname, "uint8", (16,), keep_segment=True).close()
    raw = _raw(segname)
    try:
        own = os.getpid()
        assert process_alive(own, 0)
        # A live reclaimer between its pid CAS and its stamp.
        _write_slot(raw, OFF_CREATOR, own, SLOT_ATTACHED, 0)
        assert peer_status(raw, OFF_CREATOR) is Peer.ATTACHED
        with pytest.raises(sb.AlreadyExists):
            sb.Requester.create(segname, "float64", (2,))
        assert os.path.exists(f"/dev/shm/{segname}")  # not unlinked
        assert _native.load_acquire(raw, OFF_CREATOR + SLOT_PID) == own
        assert _native.load_acquire64(raw, OFF_CREATOR + SLOT_START_TIME) == 0
        # The same for a role slot claim (R-LIVE-1).
        _write_slot(raw, OFF_RESPONDER, own, SLOT_ATTACHED, 0)
        with pytest.raises(sb.RoleTaken):
            claim_slot(raw, OFF_RESPONDER, "responder")
        assert _native.load_acquire(raw, OFF_RESPONDER + SLOT_PID) == own
        # A dead creator with a stale stamp: reclaimed; the old object's slot shows our claim.
        dead = reaped_pid()
        _write_slot(raw, OFF_CREATOR, dead, SLOT_ATTACHED, 12345)
        with sb.Requester.create(segname, "float64", (2,)) as req:
            assert req.dtype == np.float64 and req.created
        assert _native.load_acquire(raw, OFF_CREATOR + SLOT_PID) == own
        assert _native.load_acquire64(raw, OFF_CREATOR + SLOT_START_TIME) == own_start_time()
    finally:
        raw.close()


# -- R-SEG-6 -----------------------------------------------------------------------------------


def test_r_seg_6_magic_is_one_64bit_release_store_and_acquire_load(
    segname: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """R-SEG-6: the creator writes every header field before the magic and publishes the magic
    with one 64-bit release store (_native.store_release64, never two 32-bit halves or a
    memoryview copy); attach reads it with one 64-bit acquire load (_native.load_acquire64)."""
    stores: list[tuple[int, int, bytes]] = []
    loads: list[int] = []
    real_store, real_load = _native.store_release64, _native.load_acquire64

    def store64(buf: mmap.mmap, off: int, value: int) -> None:
        stores.append((off, value, bytes(buf[:HEADER_SIZE])))
        real_store(buf, off, value)

    def load64(buf: mmap.mmap, off: int) -> int:
        loads.append(off)
        return int(real_load(buf, off))

    monkeypatch.setattr(_native, "store_release64", store64)
    monkeypatch.setattr(_native, "load_acquire64", load64)
    with sb.Requester.create(segname, "float32", (3,)) as req:
        assert [(off, value) for off, value, _ in stores] == [(0, segment_mod.MAGIC_U64)]
        before = stores[0][2]
        assert before[:8] == bytes(8)  # magic still zero when published ...
        raw = _raw(segname)
        try:
            after = bytes(raw[:HEADER_SIZE])
        finally:
            raw.close()
        assert after[:8] == b"SHMBRIDG"
        assert before[8:0x100] == after[8:0x100]  # ... all fields before the word already written
        assert before[0x140:] == after[0x140:]
        loads.clear()
        with sb.Responder.attach(segname):
            assert 0 in loads
        assert req.created


# -- R-MSG-3 -----------------------------------------------------------------------------------


def test_r_msg_3_handler_failed_reaches_requester_with_exit_code_27(segname: str) -> None:
    """R-MSG-3, R-ERR-1: an error reply HANDLER_FAILED (18) is raised in the requester as
    HandlerFailed, named in the message, with exit code 27 (what the peers exit with through
    their generic error-to-exit mapping)."""
    with (
        sb.Requester.create(segname, "uint8", (2,), timeout=0.0) as req,
        sb.Responder.attach(segname, timeout=0.0) as rsp,
    ):
        req.send(np.ones(2, dtype=np.uint8))
        rsp.try_take().fail(ErrorCode.HANDLER_FAILED)
        with pytest.raises(sb.HandlerFailed) as info:
            req.try_receive()
        assert info.value.exit_code == 27
        assert "HANDLER_FAILED" in str(info.value.message)


# -- ids no other Python test cited: R-STATE-6, R-ERR-3, R-SEG-5 ---------------------------------


def test_r_state_6_reply_with_another_seq_is_never_returned(segname: str) -> None:
    """R-STATE-6: a requester accepts only the reply to its own outstanding seq; a REPLIED word
    with another seq is PROTOCOL_VIOLATION and the request stays outstanding."""
    with (
        sb.Requester.create(segname, "uint8", (4,), timeout=0.0) as req,
        sb.Responder.attach(segname, timeout=0.0) as rsp,
    ):
        raw = _raw(segname)
        try:
            a = np.full(4, 3, dtype=np.uint8)
            assert req.send(a) == 1
            _rogue_store(raw, encode_word(Phase.REPLIED, 2))
            with pytest.raises(sb.ProtocolViolation):
                req.try_receive()
            assert req.pending() == 1 and _word(raw) == encode_word(Phase.REPLIED, 2)
            _rogue_store(raw, encode_word(Phase.REQUESTED, 1))
            r = rsp.try_take()
            r.array[...] += 1
            r.reply()
            with req.try_receive() as out:
                assert np.array_equal(out, a + 1)
        finally:
            raw.close()


def test_r_err_3_errors_lose_nothing(segname: str) -> None:
    """R-ERR-3: an error loses nothing: a rejected send, a take timeout and failed attaches leave
    the header and payload byte for byte; a violation leaves the rogue word; nothing is unlinked."""
    with (
        sb.Requester.create(segname, "uint8", (4,), timeout=0.0) as req,
        sb.Responder.attach(segname, timeout=0.0) as rsp,
    ):
        raw = _raw(segname, HEADER_SIZE + 4)
        try:
            req.send(np.full(4, 9, dtype=np.uint8))
            rsp.try_take().reply()
            req.receive_copy()
            before = bytes(raw[: HEADER_SIZE + 4])
            with pytest.raises(sb.ShapeMismatch):
                req.send(np.zeros(8, dtype=np.uint8))
            with pytest.raises(sb.Timeout):
                rsp.try_take()
            with pytest.raises(sb.RoleTaken):
                sb.Requester.attach(segname, timeout=0.0)
            with pytest.raises(sb.DtypeMismatch):
                sb.Responder.attach(segname, "float32", (4,), timeout=0.0)
            assert bytes(raw[: HEADER_SIZE + 4]) == before
            assert os.path.exists(f"/dev/shm/{segname}")
            _rogue_store(raw, 0x17)
            with pytest.raises(sb.ProtocolViolation):
                req.send(np.zeros(4, dtype=np.uint8))
            assert _word(raw) == 0x17
            assert bytes(raw[HEADER_SIZE : HEADER_SIZE + 4]) == before[HEADER_SIZE:]
        finally:
            raw.close()


@pytest.mark.skipif(os.name != "nt", reason="R-SEG-5 is about Windows file mappings")
def test_r_seg_5_windows_leaves_no_stale_segment(segname: str) -> None:  # pragma: no cover
    """R-SEG-5: Windows has no unlink; the mapping lives while a handle is open, so a closed
    creator leaves nothing behind: creating the name again succeeds even with reclaiming off."""
    sb.Requester.create(segname, "uint8", (4,)).close()
    with sb.Requester.create(segname, "uint8", (4,), reclaim_stale=False) as req:
        assert req.created


@pytest.mark.skipif(os.name != "nt", reason="R-SEG-7 is about Windows file mappings")
def test_r_seg_7_windows_held_mapping_of_gone_creator_is_stale(
    segname: str,
) -> None:  # pragma: no cover
    """R-SEG-7: on Windows a mapping whose creator closed but that another process (here: a
    responder handle) still holds is stale: create fails with STALE_SEGMENT whatever its reclaim
    setting; attaching to it is allowed."""
    req = sb.Requester.create(segname, "uint8", (4,))
    rsp = sb.Responder.attach(segname)
    req.close()
    try:
        with pytest.raises(sb.StaleSegment):
            sb.Requester.create(segname, "uint8", (4,))
        with pytest.raises(sb.StaleSegment):
            sb.Requester.create(segname, "uint8", (4,), reclaim_stale=False)
        sb.Requester.attach(segname, timeout=0.0).close()
    finally:
        rsp.close()


@pytest.mark.skipif(os.name != "posix", reason="POSIX ftruncate")
def test_r_seg_8_attach_takes_the_size_from_the_os(segname: str) -> None:
    """R-SEG-8: an attacher takes the mapping size from the OS (fstat) and does not require it to
    equal segment_size: an object rounded up to whole pages (as macOS does) attaches, and the
    header alone decides the usable sizes."""
    with sb.Requester.create(segname, "uint8", (100,), keep_segment=True, timeout=0.0) as req:
        fd = _posixshmem.shm_open("/" + segname, os.O_RDWR, 0)
        try:
            os.ftruncate(fd, 2 * mmap.PAGESIZE)  # larger than segment_size = 612
        finally:
            os.close(fd)
        with sb.Responder.attach(segname, "uint8", (100,), timeout=0.0) as rsp:
            assert rsp.capacity == 100 and rsp._seg is not None
            assert rsp._seg.size == 2 * mmap.PAGESIZE
            req.send(np.arange(100, dtype=np.uint8))
            rsp.try_take().reply()
            assert np.array_equal(req.receive_copy(), np.arange(100, dtype=np.uint8))
