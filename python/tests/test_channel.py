"""Channel behaviour beyond the vectors: segments (R-SEG-*, R-STALE-*), attach checks
(R-LAYOUT-7), send checks (R-STATE-9), message validation (R-MSG-1/2), zero-copy view lifetime
(R-CLOSE-3), blocking waits, timeouts and Ctrl-C (R-WAIT-*, R-TIME-*), in-process liveness
(R-LIVE-3/4)."""

from __future__ import annotations

import _posixshmem
import contextlib
import mmap
import os
import resource
import signal
import stat
import struct
import threading
import time
import warnings

import numpy as np
import pytest
from conftest import map_raw, shm_path

import shmbridge as sb
from shmbridge import _native
from shmbridge.layout import HEADER_SIZE, OFF_MESSAGE, OFF_REPLY_CODE, OFF_WAITERS, OFF_WORD
from shmbridge.protocol import encode_word, seq_of

_raw = map_raw


# -- segments ------------------------------------------------------------------------------------


def test_r_seg_2_mode_0600_and_r_seg_1_size(segname: str) -> None:
    """R-SEG-1, R-SEG-2: created with mode 0600 and sized header + capacity."""
    with sb.Requester.create(segname, np.float32, (3, 5)):
        st = os.stat(shm_path(segname))
        assert stat.S_IMODE(st.st_mode) & ~0o600 == 0
        assert st.st_size == HEADER_SIZE + 60


def test_r_seg_3_creator_unlinks_attacher_does_not(segname: str) -> None:
    """R-SEG-3: only the creator unlinks (on close); an attacher closing or failing never does."""
    rsp = sb.Responder.create(segname, "int32", (4,))
    req = sb.Requester.attach(segname, "int32", (4,))
    req.close()
    assert shm_path(segname).exists()
    with pytest.raises(sb.ShapeMismatch):
        sb.Requester.attach(segname, "int32", (5,))
    assert shm_path(segname).exists()
    rsp.close()
    assert not shm_path(segname).exists()
    rsp.close()  # R-CLOSE-1 idempotent


def test_r_seg_3_keep_segment(segname: str) -> None:
    """R-SEG-3: a creator asked to keep the segment does not unlink it."""
    sb.Requester.create(segname, "uint8", (8,), keep_segment=True).close()
    assert shm_path(segname).exists()


def test_r_seg_4_not_found_and_already_exists(segname: str) -> None:
    """R-SEG-4: attach without an object is SEGMENT_NOT_FOUND; create over a live creator is
    ALREADY_EXISTS (and leaves it intact)."""
    with pytest.raises(sb.SegmentNotFound):
        sb.Responder.attach(segname, timeout=0)  # R-ATTACH-1: timeout 0 checks once
    with sb.Requester.create(segname, np.float32, (2,)) as req:
        with pytest.raises(sb.AlreadyExists):
            sb.Responder.create(segname, np.float32, (2,))
        assert req.phase() is sb.Phase.IDLE
        assert shm_path(segname).exists()


def test_r_stale_2_reclaim_and_no_reclaim(segname: str) -> None:
    """R-STALE-1/2: a segment whose creator is gone is reclaimed by default; with reclaiming off
    it is STALE_SEGMENT with a message naming the removal command."""
    sb.Requester.create(segname, np.float32, (2,), keep_segment=True).close()
    with pytest.raises(sb.StaleSegment) as info:
        sb.Requester.create(segname, np.float64, (3,), reclaim_stale=False)
    assert f"rm /dev/shm/{segname}" in str(info.value)
    with sb.Requester.create(segname, np.float64, (3,)) as req:
        assert req.dtype == np.float64 and req.shape == (3,)


def test_r_stale_2_corrupt_is_never_reclaimed(segname: str) -> None:
    """R-STALE-2: an existing object whose header cannot be validated is not touched."""
    fd = _posixshmem.shm_open("/" + segname, os.O_CREAT | os.O_RDWR, 0o600)
    os.ftruncate(fd, 4096)
    os.write(fd, b"NOTSHMBR" + bytes(600))
    os.close(fd)
    with pytest.raises(sb.CorruptHeader):
        sb.Requester.create(segname, np.float32, (2,))
    with pytest.raises(sb.CorruptHeader):
        sb.Responder.attach(segname)
    assert shm_path(segname).read_bytes()[:8] == b"NOTSHMBR"


def test_r_seg_6_attach_retries_while_magic_zero(segname: str) -> None:
    """R-SEG-6: an attacher that sees magic == 0 retries until its deadline (then
    SEGMENT_NOT_FOUND); once the creator publishes the magic, attach succeeds."""
    req = sb.Requester.create(segname, np.float32, (2,))
    raw = _raw(segname)
    magic = bytes(raw[:8])
    raw[:8] = bytes(8)
    t = time.monotonic()
    with pytest.raises(sb.SegmentNotFound):
        sb.Responder.attach(segname, timeout=0.1)
    assert time.monotonic() - t >= 0.09

    def publish() -> None:
        time.sleep(0.1)
        raw[:8] = magic

    th = threading.Thread(target=publish)
    th.start()
    with sb.Responder.attach(segname, timeout=2.0) as rsp:
        assert rsp.shape == (2,)
    th.join()
    raw.close()
    req.close()


def test_r_layout_7_expected_dtype_shape(segname: str) -> None:
    """R-LAYOUT-7: attach with a different expected dtype / shape fails with DTYPE_MISMATCH /
    SHAPE_MISMATCH (expected vs found) and does not change the segment."""
    with sb.Requester.create(segname, np.float32, (512, 512)):
        before = shm_path(segname).read_bytes()[:HEADER_SIZE]
        with pytest.raises(sb.DtypeMismatch, match="float64"):
            sb.Responder.attach(segname, dtype=np.float64)
        with pytest.raises(sb.ShapeMismatch, match=r"\(512, 511\)"):
            sb.Responder.attach(segname, dtype=np.float32, shape=(512, 511))
        assert shm_path(segname).read_bytes()[:HEADER_SIZE] == before
        with sb.Responder.attach(segname, dtype="float32", shape=[512, 512]) as rsp:
            assert rsp.dtype == np.float32


def test_r_state_5_role_taken(segname: str) -> None:
    """R-STATE-5, R-LIVE-1: a second handle for a held role is ROLE_TAKEN."""
    with sb.Requester.create(segname, np.int8, ()), sb.Responder.attach(segname):
        with pytest.raises(sb.RoleTaken):
            sb.Responder.attach(segname)
        with pytest.raises(sb.RoleTaken):
            sb.Requester.attach(segname)


def test_r_time_invalid_arguments(segname: str) -> None:
    """INVALID_ARGUMENT for a negative / NaN timeout, before anything changes."""
    with sb.Requester.create(segname, np.int8, (1,)) as req, sb.Responder.attach(segname) as rsp:
        with pytest.raises(sb.InvalidArgument):
            rsp.take(timeout=-1)
        with pytest.raises(sb.InvalidArgument):
            rsp.take(timeout=float("nan"))
        req.send(np.zeros(1, np.int8))
        with pytest.raises(sb.InvalidArgument):
            req.receive(timeout=-0.5)
        assert req.pending() == 1 and req.phase() is sb.Phase.REQUESTED
    with pytest.raises(sb.InvalidArgument):
        sb.Requester.create(segname, np.int8, (1,), timeout=-1)


# -- send / receive / take / reply ------------------------------------------------------------


def test_r_state_9_send_checks_before_writing(segname: str) -> None:
    """R-STATE-9: send checks dtype / shape (typed errors) and the phase before writing anything:
    a rejected send leaves the payload and the word untouched."""
    with sb.Requester.create(segname, np.float32, (4,)) as req, sb.Responder.attach(segname) as rsp:
        raw = _raw(segname, HEADER_SIZE + 16)
        snapshot = bytes(raw[:])
        with pytest.raises(sb.DtypeMismatch):
            req.send(np.zeros(4, np.float64))
        with pytest.raises(sb.ShapeMismatch):
            req.send(np.zeros((2, 2), np.float32))
        with pytest.raises(sb.DtypeMismatch):
            req.send(np.zeros(4, ">f4"))
        assert bytes(raw[:]) == snapshot
        req.send(np.arange(4, dtype=np.float32))
        snapshot = bytes(raw[:])
        with pytest.raises(sb.OutOfTurn):
            req.send(np.full(4, 9, np.float32))  # R-STATE-7
        assert bytes(raw[:]) == snapshot
        # 1.1 errata: the array checks come first, also while a request is pending.
        with pytest.raises(sb.DtypeMismatch):
            req.send(np.zeros(4, np.float64))
        with pytest.raises(sb.ShapeMismatch):
            req.send(np.zeros(5, np.float32))
        assert bytes(raw[:]) == snapshot and req.pending() == 1
        with rsp.take() as r:
            np.testing.assert_array_equal(r.array, [0, 1, 2, 3])
        raw.close()


def test_r_state_9_wrong_array_does_not_consume_a_late_reply(segname: str) -> None:
    """R-STATE-9 before R-STATE-10 (1.1 errata): a wrong array is rejected before send would
    consume the late reply of a timed-out request: the reply stays REPLIED and pending."""
    with sb.Requester.create(segname, "uint8", (4,)) as req, sb.Responder.attach(segname) as rsp:
        req.send(np.arange(4, dtype=np.uint8))
        r = rsp.take()
        with pytest.raises(sb.Timeout):
            req.receive(timeout=0)
        r.reply()
        with pytest.raises(sb.DtypeMismatch):
            req.send(np.zeros(4, np.uint16))
        assert req.phase() is sb.Phase.REPLIED and req.pending() == 1
        req.send(np.arange(4, dtype=np.uint8))  # now R-STATE-10 consumes it and sends #2
        assert req.phase() is sb.Phase.REQUESTED and req.pending() == 2


def test_r_seg_1_stated_capacity(segname: str) -> None:
    """R-SEG-1 (1.1 errata): capacity is nbytes unless stated; a stated one sizes the segment
    and the header; one below the array is CAPACITY_EXCEEDED before any OS object."""
    with sb.Requester.create(segname, np.float32, (3, 4), capacity=4096) as req:
        assert req.capacity == 4096
        assert os.stat(shm_path(segname)).st_size == HEADER_SIZE + 4096
        with sb.Responder.attach(segname, np.float32, (3, 4)) as rsp:
            req.send(np.ones((3, 4), np.float32))
            rsp.take().reply()
            np.testing.assert_array_equal(req.receive_copy(), np.ones((3, 4), np.float32))
    with pytest.raises(sb.CapacityExceeded, match="48"):
        sb.Responder.create(segname, np.float32, (3, 4), capacity=47)
    assert not shm_path(segname).exists()
    with sb.Responder.create(segname, np.float32, (3, 4), capacity=48) as rsp:
        assert rsp.capacity == 48


def test_r_state_3_reply_code_is_responder_only(segname: str) -> None:
    """R-STATE-3: reply_code belongs to the responder: send never writes it (the T7/T8 race SPIN
    found in the draft), and a successful reply (T3) writes 0."""
    with sb.Requester.create(segname, np.uint8, (4,)) as req, sb.Responder.attach(segname) as rsp:
        raw = _raw(segname)
        struct.pack_into("<I", raw, OFF_REPLY_CODE, 0xDEADBEEF)
        req.send(np.arange(4, dtype=np.uint8))
        assert struct.unpack_from("<I", raw, OFF_REPLY_CODE)[0] == 0xDEADBEEF
        with rsp.take() as r:
            r.reply()
        assert struct.unpack_from("<I", raw, OFF_REPLY_CODE)[0] == 0
        req.receive_copy()
        raw.close()


def test_r_msg_1_send_after_a_reply_that_left_a_bad_message_rewrites_it(segname: str) -> None:
    """R-MSG-1 for the requester's own requests: a send after a successful round may skip the
    message store (that reply left it declared), but not after a reply that left something else:
    here a non-conforming responder (raw writes) answers round 2 with SHAPE_MISMATCH and leaves a
    wrong descriptor (breaking R-MSG-4); the next send publishes ``declared`` again."""
    with sb.Requester.create(segname, np.float32, (4,)) as req, sb.Responder.attach(segname) as rsp:
        raw = _raw(segname)
        declared = bytes(raw[OFF_MESSAGE : OFF_MESSAGE + 80])
        req.send(np.zeros(4, np.float32))
        with rsp.take() as r:
            r.array += 1
        req.receive_copy()  # a successful round: message = declared, reply_code 0
        seq = req.send(np.zeros(4, np.float32))
        w = encode_word(sb.Phase.REQUESTED, seq)
        taken = encode_word(sb.Phase.TAKEN, seq)
        assert _native.cas_wake(raw, OFF_WORD, OFF_WAITERS, w, taken, None) == w
        struct.pack_into("<Q", raw, OFF_MESSAGE + 8, 3)  # shape[0] = 3, left behind
        struct.pack_into("<Q", raw, OFF_MESSAGE + 72, 12)
        struct.pack_into("<I", raw, OFF_REPLY_CODE, int(sb.ErrorCode.SHAPE_MISMATCH))
        replied = encode_word(sb.Phase.REPLIED, seq)
        assert _native.cas_wake(raw, OFF_WORD, OFF_WAITERS, taken, replied, None) == taken
        with pytest.raises(sb.ShapeMismatch):
            req.receive()
        req.send(np.ones(4, np.float32))
        assert bytes(raw[OFF_MESSAGE : OFF_MESSAGE + 80]) == declared
        raw.close()


def test_r_state_7_a_send_inside_a_request_buffer_block_is_out_of_turn(segname: str) -> None:
    """R-STATE-7 for the zero-copy send: a request sent inside ``with req.request_buffer()``
    (misuse) makes leaving the block raise OUT_OF_TURN instead of publishing a second request;
    the request that was sent stays the one outstanding, and its round completes."""
    with sb.Requester.create(segname, np.float32, (4,)) as req, sb.Responder.attach(segname) as rsp:
        seq = None
        with (
            pytest.raises(sb.OutOfTurn, match="sent inside the block"),
            req.request_buffer() as buf,
        ):
            buf[...] = 7
            seq = req.send(np.full(4, 2, np.float32))
        assert seq is not None and req.pending() == seq and req.phase() is sb.Phase.REQUESTED
        with rsp.take() as r:
            np.testing.assert_array_equal(r.array, 2)
            r.array += 1
        np.testing.assert_array_equal(req.receive_copy(), 3)


def test_r_msg_1_bad_message_rejected_round_completed(segname: str) -> None:
    """R-MSG-1/R-MSG-2: a request whose message descriptor differs from `declared` is rejected by
    take (SHAPE_MISMATCH) which still completes the round; the requester gets the error after
    consuming the reply (channel IDLE)."""
    with sb.Requester.create(segname, np.float32, (4,)) as req, sb.Responder.attach(segname) as rsp:
        raw = _raw(segname)
        req.send(np.zeros(4, np.float32))
        struct.pack_into("<Q", raw, OFF_MESSAGE + 8, 3)  # shape[0] = 3 (valid, but differs)
        struct.pack_into("<Q", raw, OFF_MESSAGE + 72, 12)
        with pytest.raises(sb.ShapeMismatch):
            rsp.take()
        assert rsp.held() is None and rsp.phase() is sb.Phase.REPLIED
        with pytest.raises(sb.ShapeMismatch, match="rejected request #1"):
            req.receive()
        assert req.phase() is sb.Phase.IDLE and req.pending() is None
        req.send(np.ones(4, np.float32))  # message is rewritten by every send
        with rsp.take() as r:
            r.array += 1
        with req.receive() as out:
            np.testing.assert_array_equal(out, 2)
        raw.close()


def test_api_round_trips_zero_copy(segname: str) -> None:
    """API.md: send/receive, request_buffer (zero-copy send), receive_copy, call, reply(arr),
    fail(code) (R-MSG-2) on one channel, with threads and real blocking waits (R-WAIT-1/3)."""
    with (
        sb.Requester.create(segname, np.float64, (3, 2)) as req,
        sb.Responder.attach(segname, np.float64, (3, 2)) as rsp,
    ):
        done = threading.Event()

        def responder() -> None:
            with rsp.take(timeout=5) as r:  # in place
                r.array *= 2
            with rsp.take(timeout=5) as r:  # reply(new array)
                r.reply(np.full((3, 2), 7.0))
            with rsp.take(timeout=5) as r:  # error reply
                r.fail(sb.ErrorCode.INVALID_ARGUMENT)
            with pytest.raises(ValueError), rsp.take(timeout=5):
                raise ValueError("handler bug")  # fails the round with HANDLER_FAILED (R-MSG-3)
            with rsp.take(timeout=5) as r:
                r.reply()
            done.set()

        th = threading.Thread(target=responder)
        th.start()
        with req.request_buffer() as buf:
            buf[...] = np.arange(6).reshape(3, 2)
        assert not buf.flags.writeable  # the lease ended
        with req.receive(timeout=5) as out:
            np.testing.assert_array_equal(out, np.arange(6).reshape(3, 2) * 2)
            assert not out.flags.writeable
        np.testing.assert_array_equal(req.call(np.ones((3, 2)), timeout=5), 7.0)
        with pytest.raises(sb.InvalidArgument, match="rejected request #3"):
            req.call(np.ones((3, 2)), timeout=5)
        with pytest.raises(sb.HandlerFailed):  # R-MSG-3
            req.call(np.ones((3, 2)), timeout=5)
        out = np.empty((3, 2))
        req.send(np.full((3, 2), 4.0))
        assert req.receive_copy(timeout=5, out=out) is out
        np.testing.assert_array_equal(out, 4.0)
        th.join(5)
        assert done.is_set()


def test_serve_until_requester_closes(segname: str) -> None:
    """R-LIVE-4: serve() returns normally when the requester closes (PEER_GONE)."""
    req = sb.Requester.create(segname, np.int32, (5,))
    rsp = sb.Responder.attach(segname, np.int32, (5,))
    served: list[int] = []

    def run() -> None:
        served.append(rsp.serve(lambda a: a + 10))

    th = threading.Thread(target=run)
    th.start()
    for i in range(20):
        np.testing.assert_array_equal(req.call(np.full(5, i, np.int32), timeout=5), i + 10)
    req.close()
    th.join(5)
    assert served == [20]
    rsp.close()


def test_r_live_3_peer_closes_during_blocking_receive(segname: str) -> None:
    """R-LIVE-3, R-CLOSE-2: a responder that closes while holding completes the round with
    PEER_GONE; the blocked requester gets PEER_GONE promptly and is IDLE again."""
    with sb.Requester.create(segname, np.float32, (2,)) as req:
        rsp = sb.Responder.attach(segname)
        req.send(np.zeros(2, np.float32))
        rsp.take()
        threading.Timer(0.1, rsp.close).start()
        t = time.monotonic()
        with pytest.raises(sb.PeerGone):
            req.receive(timeout=5)
        assert time.monotonic() - t < 1.0
        assert req.phase() is sb.Phase.IDLE and req.pending() is None


def test_r_time_2_blocking_timeout_withdraws(segname: str) -> None:
    """R-TIME-2, R-WAIT-2: receive with a deadline and nobody taking the request withdraws it
    (T5) and raises TIMEOUT no later than deadline + wake-up latency."""
    with sb.Requester.create(segname, np.float32, (2,)) as req:
        req.send(np.zeros(2, np.float32))
        t = time.monotonic()
        with pytest.raises(sb.Timeout):
            req.receive(timeout=0.2)
        dt = time.monotonic() - t
        assert 0.19 <= dt < 0.4
        assert req.phase() is sb.Phase.IDLE and req.pending() is None


def test_r_time_3_take_timeout_leaves_word(segname: str) -> None:
    """R-TIME-3: a responder's take that times out raises TIMEOUT and leaves the word."""
    with sb.Requester.create(segname, np.float32, (2,)) as req, sb.Responder.attach(segname) as rsp:
        w = req.word()
        t = time.monotonic()
        with pytest.raises(sb.Timeout):
            rsp.take(timeout=0.15)
        assert 0.14 <= time.monotonic() - t < 0.4
        assert req.word() == w


def test_r_wait_4_ctrl_c_interrupts_blocking_take(segname: str) -> None:
    """R-WAIT-4: Ctrl-C (SIGINT) interrupts a blocked take promptly with KeyboardInterrupt."""
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signals need the main thread")
    with sb.Requester.create(segname, np.float32, (2,)), sb.Responder.attach(segname) as rsp:
        old = signal.signal(signal.SIGINT, signal.default_int_handler)
        try:
            threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGINT)).start()
            t = time.monotonic()
            with pytest.raises(KeyboardInterrupt):
                rsp.take(timeout=10)
            assert time.monotonic() - t < 0.5
        finally:
            signal.signal(signal.SIGINT, old)
        assert rsp.phase() is sb.Phase.IDLE


# -- zero-copy view lifetime (R-CLOSE-3) --------------------------------------------------------


def test_r_close_3_views_read_only_after_lease(segname: str) -> None:
    """R-CLOSE-3: a request view is writable only until reply; afterwards it is read-only."""
    with sb.Requester.create(segname, np.float32, (4,)) as req, sb.Responder.attach(segname) as rsp:
        req.send(np.zeros(4, np.float32))
        with rsp.take() as r:
            view = r.array
            view += 1
        assert not view.flags.writeable
        with pytest.raises(ValueError):
            view[0] = 5


def test_r_close_3_request_buffer_view_writable_only_inside_a_block(segname: str) -> None:
    """R-CLOSE-3 for the zero-copy send: the request buffer's view is writable only while the
    requester owns the payload and is inside a block. A ``buf`` kept after its block cannot
    write while the responder owns the payload; in a later block it can (the requester owns the
    payload again); a block nested in another sends on its exit, which ends the outer block's
    writes too, and the outer exit is OUT_OF_TURN."""
    with sb.Requester.create(segname, np.float32, (4,)) as req, sb.Responder.attach(segname) as rsp:
        with req.request_buffer() as kept:
            kept[...] = 1
        assert not kept.flags.writeable
        with pytest.raises(ValueError):
            kept[0] = 9  # the responder owns the payload now
        with rsp.take() as r:
            np.testing.assert_array_equal(r.array, 1)
            r.array += 1
        np.testing.assert_array_equal(req.receive_copy(), 2)
        with req.request_buffer() as buf:
            kept[0] = 5  # inside a block the requester owns the payload: any of its views write
            buf[1:] = 6
        assert not buf.flags.writeable and not kept.flags.writeable
        with rsp.take() as r:
            np.testing.assert_array_equal(r.array, [5, 6, 6, 6])
        req.receive()
        with (
            pytest.raises(sb.OutOfTurn, match="sent inside the block"),
            req.request_buffer() as outer,
        ):
            outer[...] = 3
            with req.request_buffer() as inner:
                inner[0] = 4
            with pytest.raises(ValueError):
                outer[1] = 7  # the inner exit sent the request
        with rsp.take() as r:
            np.testing.assert_array_equal(r.array, [4, 3, 3, 3])


def test_r_close_3_a_kept_reply_keeps_its_seq(segname: str) -> None:
    """A Reply the caller keeps stays the reply it was (its seq), while receive may reuse a
    Reply nobody kept; its array, like every reply view, shows the payload (valid until the
    next send, R-CLOSE-3)."""
    with sb.Requester.create(segname, np.float32, (4,)) as req, sb.Responder.attach(segname) as rsp:
        seqs = []
        for _ in range(3):
            req.send(np.zeros(4, np.float32))
            with rsp.take():
                pass
            with req.receive() as reply_view:
                assert not reply_view.flags.writeable
            seqs.append(req.seq())
        req.send(np.zeros(4, np.float32))
        rsp.take().reply()
        first = req.receive()
        assert first.seq == seqs[-1] + 1
        req.send(np.zeros(4, np.float32))
        rsp.take().reply()
        second = req.receive()
        assert second is not first
        assert (first.seq, second.seq) == (seqs[-1] + 1, seqs[-1] + 2)


def test_r_close_3_closing_after_request_buffer_blocks_warns_only_for_kept_views(
    segname: str,
) -> None:
    """R-CLOSE-3: the requester's own request buffer is not a view the caller kept: closing
    after blocks whose ``buf`` is gone warns nothing; a ``buf`` still referenced is reported."""
    req = sb.Requester.create(segname, np.float32, (4,))
    rsp = sb.Responder.attach(segname)
    for _ in range(2):
        with req.request_buffer() as buf:
            buf[...] = 2
        rsp.take().reply()
        req.receive_copy()
    del buf
    with warnings.catch_warnings():
        warnings.simplefilter("error", sb.ViewEscapedWarning)
        rsp.close()
        req.close()
    with pytest.raises(sb.InvalidArgument, match="closed"):
        req.request_buffer()
    req2 = sb.Requester.create(segname, np.float32, (4,))
    with req2.request_buffer() as kept:
        kept[...] = 1
    with pytest.warns(sb.ViewEscapedWarning):
        req2.close()
    assert not kept.flags.writeable and float(kept.sum()) == 4.0


def test_r_close_3_close_with_live_views_is_safe(segname: str) -> None:
    """R-CLOSE-3 (numpy #23305, BufferError): closing a channel while zero-copy views are alive
    neither raises nor leaves a view into unmapped memory: the mapping lives until the views die;
    a warning says the views escaped."""
    req = sb.Requester.create(segname, np.float32, (256, 256))
    rsp = sb.Responder.attach(segname)
    req.send(np.full((256, 256), 3, np.float32))
    request = rsp.take()
    escaped = request.array
    escaped += 1
    request.reply()
    reply = req.receive()
    kept = reply.array
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rsp.close()
        req.close()  # creator: unlinks; the mapping stays for the views
    assert any(issubclass(w.category, sb.ViewEscapedWarning) for w in caught)
    assert not shm_path(segname).exists()
    assert float(kept.sum()) == 4.0 * 256 * 256  # still readable, no segfault
    assert float(escaped[0, 0]) == 4.0
    assert not kept.flags.writeable and not escaped.flags.writeable
    del kept, escaped, reply, request
    req.close()  # idempotent


def test_r_close_3_close_inside_with_block(segname: str) -> None:
    """R-CLOSE-3: closing the responder inside the request block completes the round with
    PEER_GONE (R-CLOSE-2) and does not raise BufferError."""
    req = sb.Requester.create(segname, np.uint16, (8,))
    rsp = sb.Responder.attach(segname)
    req.send(np.arange(8, dtype=np.uint16))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with rsp.take() as r:
            a = r.array
            rsp.close()
        assert int(a[3]) == 3
    with pytest.raises(sb.PeerGone):
        req.receive()
    req.close()


def test_word_is_only_changed_by_cas(segname: str) -> None:
    """R-STATE-2: after a full round the word is REPLIED->IDLE with the same seq (no plain
    stores)."""
    with sb.Requester.create(segname, np.int64, (2,)) as req, sb.Responder.attach(segname) as rsp:
        raw = _raw(segname)
        words = []
        req.send(np.zeros(2, np.int64))
        words.append(_native.load_acquire(raw, OFF_WORD))
        r = rsp.take()
        words.append(_native.load_acquire(raw, OFF_WORD))
        r.reply()
        words.append(_native.load_acquire(raw, OFF_WORD))
        req.receive()
        words.append(_native.load_acquire(raw, OFF_WORD))
        assert words == [0x11, 0x14, 0x12, 0x10]
        assert [w & 3 for w in [0, *words]] == [0, 1, 0, 2, 0]
        raw.close()


def test_r_wait_1_spin_budget_spans_the_whole_operation(segname: str) -> None:
    """R-WAIT-1: the spin budget counts from the start of the blocking operation; a change it
    does not wait for (REQUESTED -> TAKEN while receiving) does not end the spin. With a budget
    longer than the round the requester never blocks in the OS: the responder, about to reply
    50 ms after taking, finds nobody counted in `waiters`."""
    opts = sb.Options(spin=2.0)
    seen: list[int] = []
    with (
        sb.Requester.create(segname, np.float32, (4,), options=opts) as req,
        sb.Responder.attach(segname, options=opts) as rsp,
    ):

        def responder() -> None:
            with rsp.take(timeout=5):
                time.sleep(0.05)  # the requester has seen TAKEN and goes on waiting
                seen.append(_native.load_acquire(rsp._mm, OFF_WAITERS))

        th = threading.Thread(target=responder)
        th.start()
        req.call(np.zeros(4, np.float32), timeout=5)
        th.join()
    assert seen == [0]


@pytest.mark.skipif(not hasattr(mmap, "MAP_POPULATE"), reason="MAP_POPULATE is Linux-only")
def test_mapping_is_prefaulted(segname: str) -> None:
    """Pre-touched mappings (issue 5, as C++ test_segment MappingIsPrefaulted): a peer that maps a
    4 MiB segment and writes every page of it takes (almost) no page faults, so its first round
    does not pay them; without MAP_POPULATE it is one fault per 4 KiB page (1,024)."""
    n = 4 << 20
    with (
        sb.Requester.create(segname, np.uint8, (n,)),
        sb.Responder.attach(segname) as rsp,
    ):
        mm = rsp._mm
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for off in range(HEADER_SIZE, HEADER_SIZE + n, 4096):
            mm[off] = 1
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    assert faults < 64, f"{faults} page faults on first touch"


def test_serve_later_rounds_hold_their_request_and_reset_a_planted_reply_code(
    segname: str,
) -> None:
    """serve's rounds after the first (taken and answered without the take/reply calls): the
    handler sees held() == the request's seq (R-STATE-7's bookkeeping), and a reply_code planted
    while the channel is IDLE (R-STATE-3: only the responder writes it; a successful T3 writes 0)
    is reset by the next in-place reply, so the requester gets that round's result, not an
    error."""
    held: list[int | None] = []

    def handler(a: np.ndarray) -> None:
        held.append(rsp.held())
        a += 1.0

    req = sb.Requester.create(segname, np.float32, (8,))
    rsp = sb.Responder.attach(segname)
    raw = _raw(segname)
    th = threading.Thread(target=lambda: rsp.serve(handler, timeout=10))
    th.start()
    sent: list[int | None] = []
    for i in range(10):
        if i in (4, 7):  # IDLE: the responder waits for the next request
            struct.pack_into("<I", raw, OFF_REPLY_CODE, 0xDEAD)
        req.send(np.full(8, i, np.float32))
        sent.append(req.pending())
        out = req.receive_copy(timeout=10)
        assert (out == i + 1).all(), i
        assert struct.unpack_from("<I", raw, OFF_REPLY_CODE)[0] == 0
    req.close()
    th.join(10)
    assert held == sent
    raw.close()
    rsp.close()


def test_r_state_2_serve_reply_after_a_rogue_word_change_raises(segname: str) -> None:
    """R-STATE-2 in serve's later rounds: when a rogue writer changes the word while the handler
    runs (here TAKEN #3 -> REPLIED #3), the in-place reply's CAS fails and serve raises the error
    for the word it found instead of reporting the round as answered."""
    req = sb.Requester.create(segname, np.float32, (4,))
    rsp = sb.Responder.attach(segname)
    raw = _raw(segname)

    def handler(a: np.ndarray) -> None:
        a += 1.0
        w = _native.load_acquire(raw, OFF_WORD)
        if seq_of(w) == 3:  # the third request: jump it to REPLIED behind the responder's back
            replied = encode_word(sb.Phase.REPLIED, 3)
            assert _native.cas_wake(raw, OFF_WORD, OFF_WAITERS, w, replied, None) == w

    def requester() -> None:
        for i in range(3):
            req.send(np.full(4, i, np.float32))
            with contextlib.suppress(sb.Error):
                req.receive_copy(timeout=5)

    th = threading.Thread(target=requester)
    th.start()
    with pytest.raises((sb.OutOfTurn, sb.ProtocolViolation), match="expected TAKEN #3"):
        rsp.serve(handler, timeout=5)
    th.join(10)
    req.close()
    rsp.close()
    raw.close()


def test_r_close_3_serve_views_kept_by_the_handler_are_read_only(segname: str) -> None:
    """R-CLOSE-3 in serve: a view the handler keeps is read-only once its round is answered
    (serve reuses only a view nobody else holds); views it did not keep are not reported as
    escaped when the channel closes, and every round replies to its own request."""
    kept: list[np.ndarray] = []

    def handler(a: np.ndarray) -> None:
        a += 1.0
        if int(a[0]) % 3 == 0:  # keeps the views of some rounds only
            kept.append(a)

    req = sb.Requester.create(segname, np.float32, (8,))
    rsp = sb.Responder.attach(segname)
    served: list[int] = []
    th = threading.Thread(target=lambda: served.append(rsp.serve(handler, timeout=10)))
    th.start()
    for i in range(12):
        out = req.call(np.full(8, i, np.float32), timeout=10)
        assert (out == i + 1).all()
    req.close()
    th.join(10)
    assert served == [12]
    assert kept and all(not v.flags.writeable for v in kept)
    with pytest.raises(ValueError):
        kept[-1][0] = 5
    kept.clear()
    with warnings.catch_warnings():
        warnings.simplefilter("error", sb.ViewEscapedWarning)
        rsp.close()  # nothing escaped: the kept views are gone
