"""The clarifications of spec commit 50d62aa, on real handles and on the model: R-STATE-8 (the
cases spec/vectors D15 used to leave open), R-STATE-11 (attach over an invalid phase)."""

from __future__ import annotations

import _posixshmem
import mmap
import os

import numpy as np
import pytest

import shmbridge as sb
from shmbridge import _native, protocol
from shmbridge.errors import ErrorCode
from shmbridge.layout import HEADER_SIZE, OFF_WORD
from shmbridge.protocol import Failure, ModelState, Phase, Transition, encode_word


def _raw(name: str, size: int = HEADER_SIZE) -> mmap.mmap:
    fd = _posixshmem.shm_open("/" + name, os.O_RDWR, 0)
    try:
        return mmap.mmap(fd, size)
    finally:
        os.close(fd)


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
