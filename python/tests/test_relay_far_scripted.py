"""The far end against scripted near ends (spec/RELAY.md): a real `shmbridge relay far` process
(either implementation: SHMBRIDGE_RELAY_ENDS), its local responder, and ZeroMQ DEALERs in this
process that play near ends message by message. A near end that stops reading while a large
REP is on its way must not stop the far end from serving the next session (R-RELAY-4: the far
end hands its segment's reply area back before the next T1, dropping a REP it cannot deliver;
R-RELAY-10, R-RELAY-15: the new session gets its round, once)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

zmq = pytest.importorskip("zmq", reason="the relay needs pyzmq (pip install 'shmbridge[relay]')")

from relay_harness import attached, relay_pair  # noqa: E402

from shmbridge.relay.wire import Desc, Kind, decode, encode_header  # noqa: E402

F32 = 11
N = 4 << 20  # float32 elements: a 16 MiB REP, far more than the socket buffers hold


class Near:
    """A scripted near end: a DEALER with its own session that says HELLO and sends REQs."""

    def __init__(self, endpoint: str, session: int, rcvbuf: int = -1) -> None:
        self.sock = zmq.Context.instance().socket(zmq.DEALER)
        self.sock.setsockopt(zmq.ROUTING_ID, session.to_bytes(8, "little"))
        self.sock.linger = 0
        if rcvbuf > 0:  # a reader that stops reading: the kernel holds little for it
            self.sock.setsockopt(zmq.RCVBUF, rcvbuf)
            self.sock.setsockopt(zmq.RCVHWM, 1)
        self.sock.connect(endpoint)
        self.session = session
        self.epoch = 0

    def hello(self, timeout: float = 10.0) -> None:
        """HELLO until the far end's HELLO comes back (its epoch: R-RELAY-8)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.sock.send_multipart([encode_header(Kind.HELLO, session=self.session), b""])
            if self.sock.poll(200):
                m = decode(self.sock.recv_multipart())
                if m.kind is Kind.HELLO:
                    self.epoch = m.epoch
                    return
        pytest.fail(f"session {self.session}: no HELLO from the far end within {timeout} s")

    def req(self, rs: int, payload: np.ndarray[Any, Any]) -> None:
        head = encode_header(Kind.REQ, descs=[Desc.of(F32, payload.shape)], protocol=1,
                             session=self.session, epoch=self.epoch, relay_seq=rs)  # fmt: skip
        self.sock.send_multipart([head, payload])

    def reply(self, rs: int, timeout: float) -> tuple[Any, int]:
        """The REP of ``rs``, heartbeating every 100 ms meanwhile (R-RELAY-15: a far end that
        has the round DONE resends it); returns (message, REPs received for ``rs``)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.sock.poll(100):
                m = decode(self.sock.recv_multipart(copy=False))
                if m.kind is Kind.REP and m.relay_seq == rs:
                    return m, 1
                continue
            hb = encode_header(Kind.HB, session=self.session, epoch=self.epoch, relay_seq=rs)
            self.sock.send(hb)
        pytest.fail(f"session {self.session}: no REP of relay seq {rs} within {timeout} s")

    def close(self) -> None:
        self.sock.close(linger=0)


def test_r_relay_4_r_relay_10_a_stalled_reader_does_not_stop_the_next_session(
    tmp_path: Path,
) -> None:
    """R-RELAY-4, R-RELAY-10, R-RELAY-15: session 1 sends two 16 MiB REQs and stops reading,
    so its second REP sits in the far end's socket; session 2 says HELLO and sends its own REQ:
    it gets the right REP within a few seconds, and the far responder took exactly three
    requests (each round executed once)."""
    with relay_pair(tmp_path, "stall") as pair:
        far = pair.start_far("--create", "--dtype", "float32", "--shape", str(N))
        rsp = attached(pair.peer("py", "responder", "--attach", "--rounds", "0"))
        a = (np.arange(N) % 1000).astype(np.float32)
        stalled = Near(pair.endpoint, session=11, rcvbuf=4096)
        try:
            stalled.hello()
            # its ZeroMQ takes REP 1 into its queue (RCVHWM 1) and then reads no more: REP 2
            # stays in the far end's socket
            for rs in (1, 2):
                stalled.req(rs, a)
                rsp.wait_event(lambda e, rs=rs: e.get("op") == "reply" and e.get("round") == rs
                               and e.get("result") == "ok", 20, f"reply {rs}")  # fmt: skip
                time.sleep(0.3)
            fresh = Near(pair.endpoint, session=22)
            try:
                fresh.hello()
                b = a[::-1].copy()
                t0 = time.monotonic()
                fresh.req(1, b)
                m, _ = fresh.reply(1, timeout=15)
                took = time.monotonic() - t0
                assert m.reply_code == 0, m
                got = np.frombuffer(m.frames[0].buffer, dtype=np.float32)
                assert got[0] == b[0] + 1 and got[-1] == b[-1] + 1 and got[N // 2] == b[N // 2] + 1
                print(f"session 2's round after a stalled session 1: {took:.3f} s")
                assert took < 10
            finally:
                fresh.close()
        finally:
            stalled.close()
        far.stop()
        takes = [e for e in rsp.events() if e.get("op") == "take" and e.get("result") == "ok"]
        assert len(takes) == 3, rsp.text()
        dropped = [e for e in far.events() if e.get("event") == "dropped_queued_reply"]
        print(f"far end: {len(dropped)} queued REP dropped (a far end that copies its REPs: 0)")


def test_r_relay_10_a_req_without_the_far_epoch_is_never_executed(tmp_path: Path) -> None:
    """R-RELAY-10: a REQ of the current session whose epoch is not the far end's (0 included:
    a near end that never heard this far end) is dropped and answered with a HELLO; the far
    responder takes nothing; the same REQ with the far end's epoch is executed once."""
    with relay_pair(tmp_path, "ep0") as pair:
        far = pair.start_far("--create", "--dtype", "float32", "--shape", "16")
        rsp = attached(pair.peer("py", "responder", "--attach", "--rounds", "0"))
        near = Near(pair.endpoint, session=33)
        try:
            near.hello()
            a = np.arange(16, dtype=np.float32)
            for wrong in (0, near.epoch ^ 1):
                head = encode_header(Kind.REQ, descs=[Desc.of(F32, a.shape)], protocol=1,
                                     session=near.session, epoch=wrong, relay_seq=1)  # fmt: skip
                near.sock.send_multipart([head, a])
                assert near.sock.poll(5000), f"no answer to a REQ of epoch {wrong}"
                m = decode(near.sock.recv_multipart())
                assert m.kind is Kind.HELLO and m.epoch == near.epoch, m
            near.req(1, a)
            m, _ = near.reply(1, timeout=10)
            assert m.reply_code == 0
            assert np.array_equal(np.frombuffer(m.frames[0].buffer, dtype=np.float32), a + 1)
        finally:
            near.close()
        far.stop()
        assert far.stats().get("stale_epoch") == 2, far.text()
        takes = [e for e in rsp.events() if e.get("op") == "take" and e.get("result") == "ok"]
        assert len(takes) == 1, rsp.text()
