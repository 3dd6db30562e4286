"""The near end (spec/RELAY.md): the local responder of the requester's segment, a ZeroMQ DEALER
towards the far end. One thread: it takes a local request only while the link is up, forwards it,
and completes the local round with the reply of exactly that relay seq, or with a typed error."""

from __future__ import annotations

import contextlib
import enum
import time
from dataclasses import dataclass, field

import zmq

from ..channel import Options
from ..errors import Error, ErrorCode, PeerGone, error_name
from .faults import CrashPlan
from .link import Curve, Link, Log, random_u64
from .local import Declaration, Held, NearLocal
from .wire import Kind, Message, RoundState, WireError, decode

__all__ = ["NearConfig", "NearRelay"]

CHECK = 0.05  # the longest wait between two liveness checks (R-RELAY-13)


class State(enum.Enum):
    CONNECTING = "connecting"  # no valid HELLO yet (or a new epoch to greet): do not take
    UP = "up"
    DOWN = "down"  # the far end was up and is gone: complete requests with PEER_GONE


@dataclass
class NearConfig:
    name: str
    connect: str
    create: bool = False
    declaration: Declaration | None = None  # --create with flags; None: the far end's
    protocol: int = 0  # 0: the segment's
    heartbeat: float = 0.2
    misses: int = 3
    round_timeout: float | None = None
    curve: Curve | None = None
    options: Options = field(default_factory=Options)
    min_rate: float = 4 * 2**20  # bytes/s assumed while a round is in flight (R-RELAY-13)


class FatalConfig(Exception):
    """A configuration error the relay cannot go on with (R-RELAY-2): exit with its code."""

    def __init__(self, error: Error) -> None:
        super().__init__(str(error))
        self.error = error


class NearRelay:
    def __init__(self, cfg: NearConfig, log: Log) -> None:
        self.cfg = cfg
        self.log = log
        self.link = Link(log)
        self.local = NearLocal(cfg.name, cfg.options)
        self.state = State.CONNECTING
        self.session = 0
        self.epoch = 0
        self.relay_seq = 0
        self.last_heard = 0.0
        self.next_hb = 0.0
        self.stop = False
        self.local_gone = False
        self.bad_reply: tuple[int, Error] | None = None
        self.crash = CrashPlan.from_env("near", log)  # a test hook (RELAY.md §12)

    # -- socket ---------------------------------------------------------------------------------

    def _open_socket(self) -> None:
        """A new DEALER with a new session (R-RELAY-3, R-RELAY-16)."""
        self.link.close()
        self.session = random_u64()
        self.relay_seq = 0
        s = self.link.ctx.socket(zmq.DEALER)
        s.setsockopt(zmq.ROUTING_ID, self.session.to_bytes(8, "little"))
        s.setsockopt(zmq.IMMEDIATE, 1)
        s.setsockopt(zmq.LINGER, 0)
        s.setsockopt(zmq.RECONNECT_IVL, 100)
        s.setsockopt(zmq.RECONNECT_IVL_MAX, 1000)
        c = self.cfg.curve
        if c is not None:
            s.curve_serverkey = c.server_public
            s.curve_publickey = c.public
            s.curve_secretkey = c.secret
        s.connect(self.cfg.connect)
        self.link.sock = s
        self.log.event("session", session=self.session)

    def _hello(self) -> None:
        decl = self.local.decl
        self.link.send(
            Kind.HELLO,
            frames=[decl.raw if decl is not None else b""],
            protocol=decl.protocol if decl is not None else 0,
            session=self.session,
            epoch=self.epoch,
        )
        self.next_hb = time.monotonic() + self.cfg.heartbeat

    # -- receiving ------------------------------------------------------------------------------

    def _recv(self, timeout: float) -> list[Message] | None:
        """The next message, if one comes within ``timeout`` (None if none came): a list of at
        most one, one message per receive (Link.recv says why); empty when it was
        dropped: W1-W11 failed (counted, R-RELAY-6) or another session's."""
        frames = self.link.recv(timeout)
        if frames is None:
            return None
        try:
            m = decode(frames)
        except Error as e:
            self._bad_frame(e)
            head = e.head if isinstance(e, WireError) else None
            if head is not None and head.kind is Kind.REP and head.session == self.session:
                self.bad_reply = (head.relay_seq, e)  # R-RELAY-6: fails that round
            return []
        if m.session != self.session:
            self.log.count("stale_session")
            return []
        return [m]

    def _bad_frame(self, e: Error) -> None:
        self.log.count("bad_frames")
        self.log.event("bad_frame", error=e.name, check=e.check, message=e.message)

    def _seen(self, m: Message, held: _Round | None) -> Message | None:
        """Liveness, epochs and HELLO (R-RELAY-13, R-RELAY-14); returns ``m`` if the caller
        must look at it further (a REP or an HB answer)."""
        self.last_heard = time.monotonic()
        if self.epoch and m.epoch and m.epoch != self.epoch:
            self.log.event("far_restarted", old_epoch=self.epoch, epoch=m.epoch)
            self.epoch = 0
            if held is not None:
                held.finish_error(
                    int(ErrorCode.PEER_GONE),
                    f"the far relay restarted (epoch changed): request #{held.held.seq} was "
                    "executed at most once, perhaps not at all; send it again if it is safe",
                )
            self.state = State.CONNECTING
            # the new far end serves only a session that said HELLO to it (R-RELAY-10), and it
            # may have started before this end saw the old one silent: say HELLO now
            self._hello()
            if m.kind is not Kind.HELLO:
                return None
        if m.kind is Kind.HELLO:
            self._far_hello(m)
            return None
        return m

    def _far_hello(self, m: Message) -> None:
        try:
            frame = m.frames[0]
            far = Declaration.decode(bytes(getattr(frame, "buffer", frame)))
        except Error as e:
            self._bad_frame(e)
            return
        if self.local.handle is None and self.cfg.create and self.cfg.declaration is None:
            self.local.create(far)  # R-RELAY-2: --create without a declaration
            self.log.event("created", name=self.cfg.name, declaration=far.describe())
        if self.local.decl is None:
            return  # our segment is not there yet: not up
        try:
            self.local.decl.check_same(far, self.cfg.name)
        except Error as e:
            raise FatalConfig(e) from None
        self.epoch = m.epoch
        if self.state is not State.UP:
            self.state = State.UP
            self.log.event("up", epoch=m.epoch, session=self.session)

    # -- the loop -------------------------------------------------------------------------------

    def _housekeeping(self) -> None:
        now = time.monotonic()
        gone_after = self.cfg.heartbeat * self.cfg.misses
        if self.state is State.UP and now - self.last_heard > gone_after:
            self._far_gone()
        if now >= self.next_hb:
            if self.state is State.UP:
                self.link.send(Kind.HB, session=self.session, epoch=self.epoch)
                self.next_hb = now + self.cfg.heartbeat
            else:
                self._hello()

    def _far_gone(self) -> None:
        """R-RELAY-13, R-RELAY-16: gone; a new socket and session; HELLO until answered."""
        self.state = State.DOWN
        self.log.event("down", epoch=self.epoch, silent_s=time.monotonic() - self.last_heard)
        self.log.count("far_gone")
        self.epoch = 0
        self._open_socket()
        self._hello()

    def _ensure_local(self) -> bool:
        """Open the local segment if it is not open (attach, or create with flags)."""
        if self.local.handle is not None:
            return True
        try:
            if self.cfg.create:
                if self.cfg.declaration is None:
                    return False  # created from the far end's HELLO
                self.local.create(self.cfg.declaration)
                self.log.event("created", name=self.cfg.name)
            else:
                self.local.attach(self.cfg.protocol, 0.0)
                self.log.event("attached", name=self.cfg.name, protocol=self.local.decl.protocol
                               if self.local.decl else None)  # fmt: skip
        except Error as e:
            if e.code in (ErrorCode.SEGMENT_NOT_FOUND, ErrorCode.ROLE_TAKEN, ErrorCode.TIMEOUT):
                return False  # not there yet, or a previous responder still holds the role
            raise FatalConfig(e) from None
        self._hello()  # tell the far end our declaration
        return True

    def _idle(self, timeout: float) -> None:
        """Serve the network while no round is held: every REP is stale (R-RELAY-9). Takes
        what is queued (at most 64: the local side must not starve), the first within
        ``timeout``."""
        for _ in range(64):
            got = self._recv(timeout)
            if got is None:
                return
            for m in got:
                rest = self._seen(m, None)
                if rest is not None and rest.kind is Kind.REP:
                    self.log.count("stale_replies")
                    self.log.event("stale", relay_seq=rest.relay_seq)
            timeout = 0.0

    def _local_left(self, e: PeerGone) -> None:
        """The local requester closed or died (R-RELAY-19): wait for the next one."""
        if not self.local_gone:  # logged once per departure
            self.local_gone = True
            self.log.event("local_peer_gone", reason=e.reason.name)
        if not self.local.created:
            self.local.close()  # re-attach: a creator requester may have removed the segment

    def run(self) -> None:
        self._open_socket()
        self._ensure_local()
        self._hello()
        self.log.event("ready", name=self.cfg.name, connect=self.cfg.connect)
        next_drain = 0.0
        while not self.stop:
            now = time.monotonic()
            if now >= next_drain:  # messages between rounds (HB answers, stale REPs): at
                self._idle(0)  # most every CHECK, an empty receive costs a poll(2)
                next_drain = now + CHECK
            self._housekeeping()
            if not self._ensure_local() or self.state is State.CONNECTING:
                self._idle(CHECK)
                continue
            try:
                held = self.local.take(min(CHECK, self.cfg.heartbeat / 2))
            except PeerGone as e:
                self._local_left(e)
                self._idle(CHECK)
                continue
            self.local_gone = False
            if held is None:
                continue
            if self.state is State.DOWN:
                held.fail(int(ErrorCode.PEER_GONE))
                self.log.count("rounds_failed")
                self.log.round(0, held.seq, "PEER_GONE", "far end gone")
                continue
            self.crash.reached("near.taken")
            _Round(self, held).run()

    def close(self) -> None:
        self.local.close()
        self.link.close()


class _Round:
    """One forwarded round (R-RELAY-9 .. R-RELAY-16)."""

    def __init__(self, relay: NearRelay, held: Held) -> None:
        self.r = relay
        self.held = held
        self.done = False
        relay.relay_seq += 1
        self.rs = relay.relay_seq
        self.sent_at = 0.0
        self.tracker: zmq.MessageTracker | None = None
        # R-RELAY-13: ZeroMQ delivers whole messages in order, so the far end's answers queue
        # behind this round's request and reply: the silence allowed grows by their transfer
        # time at the slowest rate assumed (the reply bounded by the segment's size)
        cfg = relay.cfg
        handle = relay.local.handle
        in_flight = sum(a.nbytes for a in held.arrays) + (
            handle.segment_size if handle is not None else 0
        )
        self.silence = cfg.heartbeat * cfg.misses + in_flight / cfg.min_rate

    def _send(self) -> None:
        r = self.r
        self.tracker = r.link.send(
            Kind.REQ,
            frames=self.held.arrays,
            descs=self.held.descs,
            protocol=r.local.decl.protocol if r.local.decl else 1,
            session=r.session,
            epoch=r.epoch,
            relay_seq=self.rs,
            local_seq=self.held.seq,
        )
        self.sent_at = time.monotonic()

    def _release(self) -> None:
        """R-RELAY-4: no zero-copy frame of the REQ may still be queued when the local round
        completes (the requester then owns its request area again)."""
        t = self.tracker
        if t is None or t.done:
            return
        with contextlib.suppress(zmq.NotDone):
            t.wait(0.05)
        if not t.done:
            self.r.log.event("dropped_queued_request", relay_seq=self.rs)
            self.r._open_socket()  # LINGER 0 drops it (R-RELAY-16)
            self.r.state = State.CONNECTING
            self.r._hello()

    def finish_error(self, code: int, why: str) -> None:
        if self.done:
            return
        self._release()
        self.held.fail(code)
        self.done = True
        self.r.log.count("rounds_failed")
        self.r.log.round(self.rs, self.held.seq, error_name(code), why)

    def _finish(self, m: Message) -> None:
        self.r.crash.reached("near.rep_received")
        self._release()
        if m.reply_code:
            self.held.fail(m.reply_code)
            self.r.log.count("rounds_failed")
            result = error_name(m.reply_code)
        else:
            err = self.held.reply(m.descs, m.frames)
            result = "ok" if err is None else err.name
            self.r.log.count("rounds_ok" if err is None else "rounds_failed")
        self.done = True
        self.r.crash.reached("near.replied")
        self.r.log.round(self.rs, self.held.seq, result)

    def run(self) -> None:
        r = self.r
        self._send()
        r.crash.reached("near.req_sent")
        start = self.sent_at
        while not self.done and not r.stop:
            now = time.monotonic()
            wait = min(CHECK, max(0.0, r.next_hb - now))
            if r.cfg.round_timeout is not None:
                wait = min(wait, max(0.0, start + r.cfg.round_timeout - now))
            for m in r._recv(wait) or ():
                rest = r._seen(m, self)
                if self.done:
                    break
                if rest is None:
                    continue
                if rest.kind is Kind.REP:
                    if rest.relay_seq == self.rs and rest.epoch == r.epoch:
                        self._finish(rest)
                        break
                    r.log.count("stale_replies")  # R-RELAY-9
                    r.log.event("stale", relay_seq=rest.relay_seq, holding=self.rs)
                elif (
                    rest.kind is Kind.HB
                    and rest.relay_seq == self.rs
                    and (
                        rest.round_state == RoundState.UNKNOWN
                        and time.monotonic() - self.sent_at >= r.cfg.heartbeat
                    )
                ):
                    r.log.count("resends")  # R-RELAY-15
                    self._send()
            if self.done:
                break
            bad, r.bad_reply = r.bad_reply, None
            if bad is not None and bad[0] == self.rs:
                self.finish_error(int(bad[1].code), f"bad reply frames: {bad[1].check}")
                break
            if r.state is not State.UP:  # a new epoch was learned: handled in _seen
                self.finish_error(int(ErrorCode.PEER_GONE), "far end restarted")
                break
            now = time.monotonic()
            if r.cfg.round_timeout is not None and now - start >= r.cfg.round_timeout:
                self.finish_error(int(ErrorCode.TIMEOUT), "--round-timeout passed")
                break
            if now - r.last_heard > self.silence:
                self.finish_error(int(ErrorCode.PEER_GONE), "far end silent (heartbeats)")
                r._far_gone()
                break
            if now >= r.next_hb:
                r.link.send(Kind.HB, session=r.session, epoch=r.epoch, relay_seq=self.rs)
                r.next_hb = now + r.cfg.heartbeat
