"""Test harness: one fresh segment with a requester and a responder handle in this process, the
operations of spec/vectors/README.md applied with timeout 0, and the same steps on the model."""

from __future__ import annotations

import _posixshmem
import contextlib
import mmap
import os
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

import shmbridge
from shmbridge import _native, protocol
from shmbridge.errors import Error, ErrorCode
from shmbridge.layout import OFF_WORD
from shmbridge.protocol import ModelState, Phase, Transition, encode_word, phase_of, seq_of


@dataclass
class Outcome:
    result: str  # "ok" or an error name
    word: int
    pending: int | None = None
    held: int | None = None
    has_req: bool = True
    has_rsp: bool = True


class RealPair:
    """Real handles on one segment (created by the requester with keep_segment, D9)."""

    def __init__(self, name: str, dtype: str, shape: list[int], initial_seq: int = 0) -> None:
        self.name = name
        self.dtype = np.dtype(dtype)
        self.shape = tuple(shape)
        opts = dict(timeout=0.0, keep_segment=True, spin=0.0)
        self.req: shmbridge.Requester | None = shmbridge.Requester.create(
            name, dtype, shape, **opts
        )
        fd = _posixshmem.shm_open("/" + name, os.O_RDWR, 0)
        try:
            self.raw = mmap.mmap(fd, 4096 if self.req.capacity + 512 > 4096 else 512)
        finally:
            os.close(fd)
        if initial_seq:
            _native.store_release(self.raw, OFF_WORD, encode_word(Phase.IDLE, initial_seq))
            self.req._resync()  # D11
        self.rsp: shmbridge.Responder | None = shmbridge.Responder.attach(
            name, dtype, shape, timeout=0.0, spin=0.0
        )
        self.sent: dict[int, Any] = {}
        self.value_errors: list[str] = []
        self.last_taken: shmbridge.Request | None = None
        self.added: set[int] = set()
        self.poked = False  # after a rogue write, payload values are no longer checked

    def word(self) -> int:
        return _native.load_acquire(self.raw, OFF_WORD)

    def _array(self, value: Any) -> np.ndarray[Any, Any]:
        return np.full(self.shape, value, dtype=self.dtype)

    def apply(self, actor: str, op: str, step: dict[str, Any]) -> str:
        try:
            self._apply(actor, op, step)
        except Error as e:
            return e.name
        return "ok"

    def _apply(self, actor: str, op: str, step: dict[str, Any]) -> None:
        if op == "poke_word":
            _native.store_release(self.raw, OFF_WORD, int(step["value"]))
            self.poked = True
            return
        if op == "attach":
            opts = dict(timeout=0.0, spin=0.0)
            if actor == "requester":
                self.req = shmbridge.Requester.attach(self.name, self.dtype, self.shape, **opts)
            else:
                self.rsp = shmbridge.Responder.attach(self.name, self.dtype, self.shape, **opts)
                self.last_taken = None
            return
        if op == "close":
            h = self.req if actor == "requester" else self.rsp
            if h is not None:
                h.close()
            return
        if actor == "requester":
            assert self.req is not None and not self.req.closed
            if op == "send":
                value = step.get("value", 0)
                seq = self.req.send(self._array(value))
                self.sent[seq] = value
            elif op == "receive":
                reply = self.req.try_receive()
                with reply as a:
                    sent = None if self.poked else self.sent.get(reply.seq)
                    if sent is not None and not np.array_equal(a, self._array(sent) + 1):
                        self.value_errors.append(f"reply #{reply.seq} != sent + 1")
            else:
                raise AssertionError(op)
        else:
            assert self.rsp is not None and not self.rsp.closed
            if op == "take":
                r = self.rsp.try_take()
                self.last_taken = r
                self.added.discard(r.seq)
                sent = None if self.poked else self.sent.get(r.seq)
                if sent is not None and not np.array_equal(r.array, self._array(sent)):
                    self.value_errors.append(f"request #{r.seq} payload != value sent")
            elif op == "reply":
                r = self.last_taken
                if self.rsp.held() is not None and r is not None and r.seq not in self.added:
                    a = r.array
                    a += np.ones((), dtype=self.dtype)
                    self.added.add(r.seq)
                self.rsp.reply()
            elif op == "reply_error":
                self.rsp.reply_error(ErrorCode[step["code"]])
            else:
                raise AssertionError(op)

    def pending(self) -> int | None:
        return None if self.req is None or self.req.closed else self.req.pending()

    def held(self) -> int | None:
        return None if self.rsp is None or self.rsp.closed else self.rsp.held()

    def close(self) -> None:
        for h in (self.rsp, self.req):
            if h is not None:
                h.close()
        self.raw.close()
        with contextlib.suppress(FileNotFoundError):
            _posixshmem.shm_unlink("/" + self.name)


class ModelPair:
    """The same operations on the pure model."""

    def __init__(self, initial_seq: int = 0) -> None:
        self.s = ModelState(word=encode_word(Phase.IDLE, initial_seq), seen=initial_seq)

    def apply(self, actor: str, op: str, step: dict[str, Any]) -> str:
        s = self.s
        if op == "poke_word":
            self.s = replace(s, word=int(step["value"]))
            return "ok"
        if op == "close":
            self.s = protocol.close(s, actor).state
            return "ok"
        if op == "attach":
            out: Any = protocol.attach(s, actor)
        else:
            model_op = "reply" if op == "reply_error" else op
            code = int(ErrorCode[step["code"]]) if op == "reply_error" else 0
            out = protocol.resolve(protocol.step(s, actor, model_op, code=code), s, actor)
        if isinstance(out, Transition):
            self.s = out.state
            return "ok" if out.result is None else out.result.name
        return str(out.code.name)

    def pending(self) -> int | None:
        return self.s.pending

    def held(self) -> int | None:
        return self.s.held

    def word(self) -> int:
        return self.s.word


def describe_word(word: int) -> dict[str, Any]:
    ph = phase_of(word)
    d: dict[str, Any] = {"seq": seq_of(word), "status": word & 3}
    if ph is not None:
        d["phase"] = ph.name
    return d
