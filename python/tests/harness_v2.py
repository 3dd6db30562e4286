"""Protocol v2 counterpart of harness.RealPair: one fresh v2 segment with a MessageRequester and
a MessageResponder in this process, the operations of spec/vectors/README.md applied with timeout
0, and the message contents checked at every receipt (so that the stateful test drives the v2
channel through the same transition table as v1, R-VER-1)."""

from __future__ import annotations

import _posixshmem
import mmap
import os
from typing import Any

import numpy as np
from harness import RealPair

import shmbridge as sb
from shmbridge import Schema, _native, inplace, upto
from shmbridge.errors import ErrorCode
from shmbridge.layout import OFF_WORD
from shmbridge.protocol import Phase, encode_word
from shmbridge.schema import Record

#: Schema pairs the stateful test picks from: variable extents, 0-d fields, an in-place reply
#: field, a reply schema other than the request's, and no fields at all.
SCHEMAS: dict[str, tuple[Schema, Schema]] = {
    "typed": (
        Schema(a=(np.int16, ()), v=(np.float32, (upto(3),))),
        Schema(out=(np.float64, (upto(2), 2)), ok=(np.bool_, ())),
    ),
    "inplace": (Schema(array=(np.float32, (2, 3))), Schema(array=inplace("array"))),
    "mixed": (
        Schema(x=(np.int32, (upto(2),)), y=(np.uint8, (3,))),
        Schema(n=(np.int64, ()), y=inplace("y")),
    ),
    "empty": (Schema(), Schema()),
}


def _shape(r: Record, n: int) -> tuple[int, ...]:
    """Fixed extents as declared, variable ones n mod (maximum + 1)."""
    return tuple(n % (m + 1) if r.variable(d) else m for d, m in enumerate(r.max_shape))


def _filled(r: Record, n: int, value: int) -> np.ndarray[Any, Any]:
    return np.full(_shape(r, n), value % 100, sb.DType(r.dtype).numpy)


class MessagePair(RealPair):
    """Real v2 handles on one segment (created by the requester with keep_segment, D9); the
    word, apply, pending, held and close of :class:`harness.RealPair`."""

    def __init__(self, name: str, schemas: str, initial_seq: int = 0) -> None:
        self.name = name
        request, reply = SCHEMAS[schemas]
        opts: dict[str, Any] = {"timeout": 0.0, "keep_segment": True, "spin": 0.0}
        self.req: sb.MessageRequester | None = sb.MessageRequester.create(
            name, request, reply, **opts
        )
        h = self.req.header()
        self.request_records, self.reply_records = h.request, h.reply
        fd = _posixshmem.shm_open("/" + name, os.O_RDWR, 0)
        try:
            self.raw = mmap.mmap(fd, 512)
        finally:
            os.close(fd)
        if initial_seq:
            _native.store_release(self.raw, OFF_WORD, encode_word(Phase.IDLE, initial_seq))
            self.req._resync()  # D11
        self.rsp: sb.MessageResponder | None = sb.MessageResponder.attach(
            name, request, reply, timeout=0.0, spin=0.0
        )
        self.sent: dict[int, dict[str, np.ndarray[Any, Any]]] = {}
        self.replied: dict[int, dict[str, np.ndarray[Any, Any]]] = {}
        self.value_errors: list[str] = []
        self.last_taken: sb.MessageRequest | None = None  # type: ignore[assignment]
        self.poked = False  # after a rogue write, contents are no longer checked

    def _check(self, what: str, got: sb.MessageView, want: dict[str, Any] | None) -> None:
        if want is None or self.poked:
            return
        for k, a in want.items():
            g = got[k]
            if g.shape != a.shape or g.dtype != a.dtype or not np.array_equal(g, a):
                self.value_errors.append(f"{what}: field {k} {g!r} != {a!r}")

    def _apply(self, actor: str, op: str, step: dict[str, Any]) -> None:
        if op == "poke_word":
            _native.store_release(self.raw, OFF_WORD, int(step["value"]))
            self.poked = True
            return
        if op == "attach":
            opts: dict[str, Any] = {"timeout": 0.0, "spin": 0.0}
            if actor == "requester":
                self.req = sb.MessageRequester.attach(self.name, **opts)
            else:
                self.rsp = sb.MessageResponder.attach(self.name, **opts)
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
                value = int(step.get("value", 0))
                fields = {r.name: _filled(r, value + k, value) for k, r in
                          enumerate(self.request_records)}  # fmt: skip
                seq = self.req.send(fields)
                self.sent[seq] = fields
            elif op == "receive":
                with self.req.try_receive() as msg:
                    self._check(f"reply #{msg.seq}", msg, self.replied.get(msg.seq))
            else:
                raise AssertionError(op)
            return
        assert self.rsp is not None and not self.rsp.closed
        if op == "take":
            r = self.rsp.try_take()
            self.last_taken = r
            self._check(f"request #{r.seq}", r.request, self.sent.get(r.seq))
        elif op == "reply":
            r = self.last_taken
            if self.rsp.held() is None or r is None:
                self.rsp.reply()  # nothing held: OUT_OF_TURN (R-STATE-7)
                return
            given = {
                rec.name: _filled(rec, r.seq + k, r.seq + k + 1)
                for k, rec in enumerate(self.reply_records)
                if not rec.alias
            }
            want = dict(given)
            for rec in self.reply_records:  # in place, omitted: the request as taken
                if rec.alias:
                    want[rec.name] = r.request[self.request_records[rec.alias - 1].name].copy()
            self.rsp.reply(given)
            self.replied[r.seq] = want
        elif op == "reply_error":
            self.rsp.reply_error(ErrorCode[step["code"]])
        else:
            raise AssertionError(op)
