"""The relay ends' rules without a network (spec/RELAY.md): the far end's at-most-once execution
and reply cache (R-RELAY-10), its heartbeat answers and resends (R-RELAY-13, R-RELAY-15), driven
message by message with a recording link and a real local segment; endpoint and key rules
(R-RELAY-17, R-RELAY-18) and the command line's refusals (R-RELAY-19)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("zmq", reason="the relay needs pyzmq (pip install 'shmbridge[relay]')")

import shmbridge as sb
from shmbridge.errors import InvalidArgument
from shmbridge.relay.far import FarConfig, FarRelay
from shmbridge.relay.link import Log, check_endpoint, keygen, load_curve
from shmbridge.relay.wire import Desc, Kind, RoundState, decode, encode_header

F32 = 11
S = 0x51
ROUTE = b"route"


class _Recorder:
    def __init__(self) -> None:
        self.sent: list[tuple[Kind, dict[str, Any], list[Any]]] = []

    def __call__(self, kind: Kind, *, route: bytes | None = None, frames: Any = (),
                 descs: Any = (), **fields: int) -> None:  # fmt: skip
        self.sent.append((kind, fields, [bytes(np.asarray(f).tobytes()) for f in frames]))

    def kinds(self) -> list[Kind]:
        return [k for k, _, _ in self.sent]


def _msg(kind: Kind, far: FarRelay, rs: int = 0, session: int = S, epoch: int | None = None,
         data: np.ndarray[Any, Any] | None = None, **kw: int) -> Any:  # fmt: skip
    ep = far.epoch if epoch is None else epoch
    if kind is Kind.REQ:
        assert data is not None
        d = Desc.of(F32, data.shape)
        return decode([encode_header(Kind.REQ, protocol=1, session=session, epoch=ep,
                                     relay_seq=rs, descs=[d], **kw), data.tobytes()])  # fmt: skip
    frames = [encode_header(kind, protocol=0 if kind is Kind.HB else 1, session=session,
                            epoch=ep, relay_seq=rs, **kw)]  # fmt: skip
    if kind is Kind.HELLO:
        frames.append(b"")
    return decode(frames)


def _run_round(far: FarRelay) -> None:
    deadline = time.monotonic() + 10
    while far.running is not None and time.monotonic() < deadline:
        far._step()
    assert far.running is None


def test_r_relay_10_far_end_executes_each_round_at_most_once(segname: str) -> None:
    """R-RELAY-10, R-RELAY-15, R-RELAY-13: a duplicate REQ gets the cached REP (no second take);
    a duplicate while executing is ignored; an HB answers DONE/EXECUTING/UNKNOWN and makes the far
    end resend the cached REP once a heartbeat passed; an old relay seq, another session and
    another epoch are dropped and counted, never executed."""
    log = Log("far")
    far = FarRelay(FarConfig(segname, "inproc://unused", create_v1=(np.float32, (4,)),
                             heartbeat=0.05), log)  # fmt: skip
    rec = _Recorder()
    far.link.send = rec  # type: ignore[method-assign]
    assert far._ensure_local()
    taken: list[int] = []
    rsp = sb.Responder.attach(segname)

    def serve() -> None:
        def add1(a: np.ndarray[Any, Any]) -> None:
            taken.append(int(a[0]))
            a += 1

        rsp.serve(add1, timeout=20)

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        far._handle(_msg(Kind.HELLO, far), ROUTE)
        assert rec.kinds() == [Kind.HELLO]
        x = np.arange(4, dtype=np.float32)
        far._handle(_msg(Kind.REQ, far, 1, data=x), ROUTE)
        far._handle(_msg(Kind.REQ, far, 1, data=x), ROUTE)  # while executing: ignored
        hb = len(rec.sent)
        far._handle(_msg(Kind.HB, far, 1), ROUTE)
        assert rec.sent[hb][1]["round_state"] == RoundState.EXECUTING
        _run_round(far)
        reps = [(f, d) for k, f, d in rec.sent if k is Kind.REP]
        assert len(reps) == 1 and reps[0][0]["relay_seq"] == 1 and reps[0][0]["reply_code"] == 0
        assert np.frombuffer(reps[0][1][0], np.float32).tolist() == [1, 2, 3, 4]
        far._handle(_msg(Kind.REQ, far, 1, data=x), ROUTE)  # resent REQ: the cached REP
        assert [k for k, _, _ in rec.sent].count(Kind.REP) == 2
        time.sleep(0.06)  # a heartbeat after the REP was sent: an HB for it resends it
        far._handle(_msg(Kind.HB, far, 1), ROUTE)
        assert [f["round_state"] for k, f, _ in rec.sent if k is Kind.HB][-1] == RoundState.DONE
        assert [k for k, _, _ in rec.sent].count(Kind.REP) == 3
        far._handle(_msg(Kind.HB, far, 2), ROUTE)
        assert [f["round_state"] for k, f, _ in rec.sent if k is Kind.HB][-1] == RoundState.UNKNOWN
        far._handle(_msg(Kind.REQ, far, 2, data=x + 10), ROUTE)
        _run_round(far)
        n = len(rec.sent)
        far._handle(_msg(Kind.REQ, far, 1, data=x), ROUTE)  # older than the highest: stale
        far._handle(_msg(Kind.REQ, far, 3, session=S + 1, data=x), ROUTE)  # another session
        far._handle(_msg(Kind.REQ, far, 3, epoch=far.epoch + 1, data=x), ROUTE)  # old epoch
        assert far.running is None
        assert [k for k, _, _ in rec.sent[n:]] == [Kind.HELLO, Kind.HELLO]  # "here is my epoch"
        assert taken == [0, 10]  # executed once each, in order
        st = log.stats
        assert st["duplicates"] == 2 and st["stale_requests"] == 1
        assert st["stale_session"] == 1 and st["stale_epoch"] == 1 and st["reply_resends"] == 1
    finally:
        far.close()
        t.join(10)
        rsp.close()


def test_r_relay_6_far_answers_a_request_whose_frames_are_bad(segname: str) -> None:
    """R-RELAY-6: a REQ whose header passed W1-W8 but whose payload frame has the wrong size is
    answered with a REP of CORRUPT_HEADER (the requester gets an error, not a timeout)."""
    from shmbridge.errors import Error

    log = Log("far")
    far = FarRelay(FarConfig(segname, "inproc://unused", create_v1=(np.float32, (4,))), log)
    rec = _Recorder()
    far.link.send = rec  # type: ignore[method-assign]
    try:
        assert far._ensure_local()
        far._handle(_msg(Kind.HELLO, far), ROUTE)
        d = Desc.of(F32, (4,))
        frames = [encode_header(Kind.REQ, protocol=1, session=S, epoch=far.epoch, relay_seq=1,
                                descs=[d]), bytes(15)]  # fmt: skip
        with pytest.raises(Error) as ei:
            decode(frames)
        far._bad_frame(ei.value, ROUTE)
        rep = [f for k, f, _ in rec.sent if k is Kind.REP]
        assert rep and rep[0]["reply_code"] == 10 and rep[0]["relay_seq"] == 1
        assert log.stats["bad_frames"] == 1
    finally:
        far.close()


# ---------------------------------------------------------------------------- security


@pytest.mark.parametrize(
    ("endpoint", "ok"),
    [("tcp://127.0.0.1:5555", True), ("tcp://127.9.9.9:1", True), ("tcp://[::1]:5555", True),
     ("tcp://localhost:5555", True), ("ipc:///tmp/x.sock", True), ("tcp://0.0.0.0:5555", False),
     ("tcp://*:5555", False), ("tcp://10.1.2.3:5555", False), ("tcp://example.com:1", False),
     ("udp://127.0.0.1:1", False), ("127.0.0.1:5555", False)],
)  # fmt: skip
def test_r_relay_17_loopback_unless_allow_remote(endpoint: str, ok: bool) -> None:
    """R-RELAY-17: loopback (and ipc://) only; anything else needs --allow-remote."""
    if ok:
        check_endpoint(endpoint, False, "--bind")
    else:
        with pytest.raises(InvalidArgument):
            check_endpoint(endpoint, False, "--bind")
    if endpoint.startswith(("tcp://", "ipc://")):
        check_endpoint(endpoint, True, "--bind")


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "shmbridge", "relay", *args],
                          capture_output=True, text=True, timeout=60)  # fmt: skip


def test_r_relay_17_remote_bind_is_refused_by_the_cli() -> None:
    """R-RELAY-17, R-RELAY-19: a remote --bind without --allow-remote exits with
    INVALID_ARGUMENT's code (25) and says what to do, before any socket or segment exists."""
    r = _cli("far", "seg", "--bind", "tcp://0.0.0.0:5999")
    assert r.returncode == 25 and "--allow-remote" in r.stderr, r.stderr
    r = _cli("near", "seg", "--connect", "tcp://192.0.2.1:5999")
    assert r.returncode == 25 and "loopback" in r.stderr


def test_r_relay_18_keygen_and_key_files(tmp_path: Path) -> None:
    """R-RELAY-18: keygen writes PREFIX.key (public) and PREFIX.key_secret (mode 0600), refuses
    to overwrite; a missing or public-only key where a secret is needed is INVALID_ARGUMENT."""
    r = _cli("keygen", str(tmp_path / "far"))
    assert r.returncode == 0, r.stderr
    pub, sec = tmp_path / "far.key", tmp_path / "far.key_secret"
    assert stat.S_IMODE(os.stat(sec).st_mode) == 0o600
    assert "secret-key" not in pub.read_text() and "secret-key" in sec.read_text()
    assert _cli("keygen", str(tmp_path / "far")).returncode == 25
    c = load_curve(str(sec), None, None)
    assert c is not None and len(c.public) == 40 and len(c.secret) == 40
    with pytest.raises(InvalidArgument):
        load_curve(str(pub), None, None)  # a public key where the secret is needed
    with pytest.raises(InvalidArgument):
        load_curve(str(tmp_path / "missing.key_secret"), None, None)
    r = _cli("near", "seg", "--connect", "tcp://127.0.0.1:5999", "--curve-server",
             str(tmp_path / "nope.key"))  # fmt: skip
    assert r.returncode == 25 and "nope.key" in r.stderr
    with pytest.raises(InvalidArgument):
        keygen(str(tmp_path / "far"))


def test_r_relay_4_only_zero_copy_frames_are_tracked() -> None:
    """R-RELAY-4: payload frames of at least ZERO_COPY_MIN bytes go zero-copy with a tracker that
    is done only once ZeroMQ released them; smaller frames (and the header) are copied at send,
    so a message with none returns no tracker; a mixed message tracks its big frames only."""
    import zmq

    from shmbridge.relay.link import ZERO_COPY_MIN, Link

    link = Link(Log("near"))
    ctx = link.ctx
    rx = ctx.socket(zmq.PAIR)
    port = rx.bind_to_random_port("tcp://127.0.0.1")
    tx = ctx.socket(zmq.PAIR)
    tx.connect(f"tcp://127.0.0.1:{port}")
    link.sock = tx
    try:
        small = np.arange(16, dtype=np.float32)
        big = np.arange(ZERO_COPY_MIN // 4, dtype=np.float32)
        d_small, d_big = Desc.of(F32, small.shape), Desc.of(F32, big.shape)
        assert link.send(Kind.REQ, frames=[small], descs=[d_small], protocol=2, relay_seq=1) is None
        t = link.send(Kind.REQ, frames=[small, big], descs=[d_small, d_big], protocol=2,
                      relay_seq=2)  # fmt: skip
        assert isinstance(t, zmq.MessageTracker)
        for rs, arrays in ((1, [small]), (2, [small, big])):
            assert rx.poll(5000)
            m = decode(rx.recv_multipart(copy=False))
            assert m.relay_seq == rs
            assert [np.frombuffer(f.buffer, np.float32).tolist() for f in m.frames] == [
                a.tolist() for a in arrays
            ]
        t.wait(5)  # released once ZeroMQ wrote it: the sender may reuse the buffer
        assert t.done
    finally:
        link.close()
        rx.close(linger=0)


def test_r_relay_6_descriptor_cache_is_bounded_and_keeps_w11() -> None:
    """R-RELAY-6: the memoised W10 decoding of descriptors neither grows without bound (a peer
    sending ever new shapes) nor lets a known descriptor skip W11 (payload size)."""
    from shmbridge.relay import wire

    for n in range(1, 600):
        d = Desc.of(F32, (n,))
        m = decode([encode_header(Kind.REQ, protocol=1, relay_seq=1, descs=[d]), bytes(4 * n)])
        assert m.descs == (d,)
    assert len(wire._DECODED) <= wire._CACHE_MAX and len(wire._ENCODED) <= wire._CACHE_MAX
    head = encode_header(Kind.REQ, protocol=1, relay_seq=1, descs=[Desc.of(F32, (1,))])
    with pytest.raises(wire.WireCorrupt) as e:
        decode([head, bytes(8)])  # the descriptor is cached; its payload is 8 bytes, not 4
    assert e.value.check == "W11"


def test_r_relay_13_receive_waits_at_most_its_timeout_one_message_per_call() -> None:
    """R-RELAY-13: an end checks liveness between bounded waits, so a receive returns None after
    its timeout (within scheduling slack), at once with NOBLOCK (timeout 0), and one queued
    message per call; a new socket gets its own ZMQ_RCVTIMEO (a cached value of the old one
    would leave it blocking forever)."""
    import zmq

    from shmbridge.relay.link import Link

    link = Link(Log("near"))
    rx = link.ctx.socket(zmq.PAIR)
    port = rx.bind_to_random_port("tcp://127.0.0.1")
    tx = link.ctx.socket(zmq.PAIR)
    tx.connect(f"tcp://127.0.0.1:{port}")
    link.sock = rx
    try:
        t0 = time.monotonic()
        assert link.recv(0.0) is None
        assert link.recv(0.12) is None
        waited = time.monotonic() - t0
        assert 0.1 <= waited < 2.0, waited
        assert rx.getsockopt(zmq.RCVTIMEO) == 120
        tx.send_multipart([b"a", b"1"])
        tx.send_multipart([b"b", b"2"])
        got = [link.recv(5.0) for _ in range(2)]
        assert [[f.bytes for f in m] for m in got if m is not None] == [[b"a", b"1"], [b"b", b"2"]]
        assert link.recv(0.0) is None
        link.close()  # the next socket starts with ZeroMQ's default, -1 (block forever)
        rx2 = link.ctx.socket(zmq.PAIR)
        rx2.bind_to_random_port("tcp://127.0.0.1")
        link.sock = rx2
        assert link.recv(0.12) is None
        assert rx2.getsockopt(zmq.RCVTIMEO) == 120
    finally:
        link.close()
        rx.close(linger=0)
        tx.close(linger=0)
