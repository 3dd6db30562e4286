"""The far end (spec/RELAY.md): the local requester of the responder's segment, a ZeroMQ ROUTER
the near end connects to. One thread: it serves the network between short waits for the local
reply, executes each (session, relay seq) at most once and keeps the last reply for resends."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import zmq
import zmq.auth.thread

from ..channel import Options
from ..errors import Error, ErrorCode, error_name
from ..schema import Schema
from .faults import CrashPlan
from .link import Curve, Link, Log, random_u64
from .local import FarLocal, Outcome
from .wire import Desc, Kind, Message, RoundState, WireError, decode

__all__ = ["FarConfig", "FarRelay"]

SLICE = 0.02  # longest local wait before the network is served again (R-RELAY-11)


@dataclass
class FarConfig:
    name: str
    bind: str
    create_v1: tuple[Any, Any] | None = None  # (dtype, shape)
    create_v2: tuple[Schema, Schema] | None = None
    protocol: int = 0
    heartbeat: float = 0.2
    misses: int = 3
    curve: Curve | None = None
    options: Options = field(default_factory=Options)


@dataclass
class _Job:
    session: int
    relay_seq: int
    route: bytes
    local_seq: int
    descs: tuple[Desc, ...]
    frames: tuple[Any, ...]


@dataclass
class _Cached:
    """The reply cache of one round (R-RELAY-10)."""

    session: int
    relay_seq: int
    route: bytes
    outcome: Outcome
    sent_at: float


class FarRelay:
    def __init__(self, cfg: FarConfig, log: Log) -> None:
        self.cfg = cfg
        self.log = log
        self.link = Link(log)
        self.local = FarLocal(cfg.name, cfg.options)
        self.epoch = random_u64()
        self.session = 0  # the current session: the last that said HELLO
        self.route = b""
        self.highest = 0  # the highest relay seq received in the current session
        self.last_heard = 0.0
        self.session_alive = False
        self.running: _Job | None = None
        self.next_job: _Job | None = None
        self.cache: _Cached | None = None
        self.stop = False
        self.auth: zmq.auth.thread.ThreadAuthenticator | None = None
        self.next_attach = 0.0
        self.crash = CrashPlan.from_env("far", log)  # a test hook (RELAY.md §12)

    def _open_socket(self) -> None:
        s = self.link.ctx.socket(zmq.ROUTER)
        s.setsockopt(zmq.ROUTER_HANDOVER, 1)
        s.setsockopt(zmq.LINGER, 0)
        c = self.cfg.curve
        if c is not None:
            if c.clients_dir is not None:
                self.auth = zmq.auth.thread.ThreadAuthenticator(self.link.ctx)
                self.auth.start()
                self.auth.configure_curve(domain="*", location=c.clients_dir)
            s.curve_secretkey = c.secret
            s.curve_publickey = c.public
            s.curve_server = True
        s.bind(self.cfg.bind)
        self.link.sock = s

    # -- local segment --------------------------------------------------------------------------

    def _ensure_local(self) -> bool:
        if self.local.handle is not None:
            return True
        now = time.monotonic()
        if now < self.next_attach:
            return False
        self.next_attach = now + 0.05
        try:
            if self.cfg.create_v1 is not None:
                self.local.create_v1(*self.cfg.create_v1)
                self.log.event("created", name=self.cfg.name)
            elif self.cfg.create_v2 is not None:
                self.local.create_v2(*self.cfg.create_v2)
                self.log.event("created", name=self.cfg.name)
            else:
                self.local.attach(self.cfg.protocol, 0.0)
                self.log.event("attached", name=self.cfg.name)
        except Error as e:
            if e.code in (ErrorCode.SEGMENT_NOT_FOUND, ErrorCode.ROLE_TAKEN, ErrorCode.TIMEOUT):
                return False
            raise
        return True

    # -- network --------------------------------------------------------------------------------

    def _hello(self, route: bytes, session: int) -> None:
        decl = self.local.decl
        if decl is None:
            return  # no segment yet: the link is not up (R-RELAY-8)
        self.link.send(
            Kind.HELLO, route=route, frames=[decl.raw], protocol=decl.protocol,
            session=session, epoch=self.epoch,
        )  # fmt: skip

    def _serve_network(self, timeout: float) -> None:
        """Handle the next message, if one comes within ``timeout`` (one per receive:
        Link.recv says why)."""
        parts = self.link.recv(timeout)
        if parts is None:
            return
        route, frames = parts[0].bytes, parts[1:]
        try:
            m = decode(frames)
        except Error as e:
            self._bad_frame(e, route)
        else:
            self._handle(m, route)

    def _bad_frame(self, e: Error, route: bytes) -> None:
        self.log.count("bad_frames")
        self.log.event("bad_frame", error=e.name, check=e.check, message=e.message)
        head = e.head if isinstance(e, WireError) else None
        if head is not None and head.kind is Kind.REQ and head.session == self.session:
            # R-RELAY-6: a REQ whose frames fail W9-W11 is answered with that error
            self._reply(route, head.session, head.relay_seq, head.local_seq,
                        Outcome(int(e.code), [], [], 0, e.message), cache=False)  # fmt: skip

    def _handle(self, m: Message, route: bytes) -> None:
        if m.kind is Kind.HELLO:
            if m.session != self.session:
                self.session, self.route, self.highest = m.session, route, 0
                self.log.event("session", session=m.session)
            self.route = route
            self.last_heard = time.monotonic()
            self.session_alive = True
            self._hello(route, m.session)
            return
        if m.session != self.session or m.epoch != self.epoch:
            # R-RELAY-10: another session or an older far end's epoch: never executed
            self.log.count("stale_epoch" if m.session == self.session else "stale_session")
            self._hello(route, m.session)
            return
        self.last_heard = time.monotonic()
        self.session_alive = True
        self.route = route
        if m.kind is Kind.HB:
            self._answer_hb(m, route)
        elif m.kind is Kind.REQ:
            self._request(m, route)
        else:
            self.log.count("unexpected")

    def _state_of(self, session: int, rs: int) -> RoundState:
        if rs == 0:
            return RoundState.NONE
        c = self.cache
        if c is not None and (c.session, c.relay_seq) == (session, rs):
            return RoundState.DONE
        for j in (self.running, self.next_job):
            if j is not None and (j.session, j.relay_seq) == (session, rs):
                return RoundState.EXECUTING
        return RoundState.UNKNOWN

    def _answer_hb(self, m: Message, route: bytes) -> None:
        state = self._state_of(m.session, m.relay_seq)
        self.link.send(Kind.HB, route=route, session=m.session, epoch=self.epoch,
                       relay_seq=m.relay_seq, round_state=int(state))  # fmt: skip
        c = self.cache
        # R-RELAY-15: resend the cached REP if it had a whole heartbeat to arrive
        if state is RoundState.DONE and c is not None and self._overdue(c.sent_at):
            self.log.count("reply_resends")
            self._send_cached(c, route)

    def _overdue(self, sent_at: float) -> bool:
        return time.monotonic() - sent_at >= self.cfg.heartbeat

    def _request(self, m: Message, route: bytes) -> None:
        state = self._state_of(m.session, m.relay_seq)
        if state is RoundState.DONE:
            assert self.cache is not None
            self.log.count("duplicates")  # R-RELAY-10: the cached reply, not a new run
            self._send_cached(self.cache, route)
            return
        if state is RoundState.EXECUTING:
            self.log.count("duplicates")
            return
        if m.relay_seq <= self.highest:
            self.log.count("stale_requests")
            return
        self.highest = m.relay_seq
        self.crash.reached("far.req_received")
        job = _Job(m.session, m.relay_seq, route, m.local_seq, m.descs, m.frames)
        if self.running is None:
            self._start(job)
        else:
            if self.next_job is not None:
                self.log.count("superseded")
            self.next_job = job  # a newer round waits for the running one (R-RELAY-10)

    # -- rounds ---------------------------------------------------------------------------------

    def _start(self, job: _Job) -> None:
        self.cache = None  # the next round begins: the last reply is no longer asked for
        if not self._ensure_local():
            self._finish(job, Outcome(int(ErrorCode.PEER_GONE), [], [], 0,
                                      "the far segment is not attached"))  # fmt: skip
            return
        try:
            self.local.check(job.descs)  # R-RELAY-7
            self.local.start(job.descs, job.frames)
        except Error as e:
            self._finish(job, Outcome(int(e.code), [], [], 0, e.message))
            return
        self.crash.reached("far.sent")
        self.running = job

    def _step(self) -> None:
        job = self.running
        assert job is not None
        out = self.local.step(SLICE)
        if out is None:
            return
        self.crash.reached("far.reply_taken")
        self.running = None
        if out.reply_code == ErrorCode.PEER_GONE and not self.local.created:
            self.local.close()  # R-RELAY-19: re-attach for the next responder
            self.log.event("local_peer_gone", message=out.message)
        self._finish(job, out)

    def _finish(self, job: _Job, out: Outcome) -> None:
        self._reply(job.route, job.session, job.relay_seq, out.local_seq, out, cache=True)
        self.crash.reached("far.rep_sent")
        self.log.count("rounds_ok" if out.reply_code == 0 else "rounds_failed")
        self.log.round(
            job.relay_seq,
            out.local_seq,
            "ok" if out.reply_code == 0 else error_name(out.reply_code),
        )
        if self.next_job is not None:
            nxt, self.next_job = self.next_job, None
            self._start(nxt)

    def _reply(self, route: bytes, session: int, rs: int, local_seq: int, out: Outcome,
               cache: bool) -> None:  # fmt: skip
        c = _Cached(session, rs, route, out, 0.0)
        if cache:
            self.cache = c
        self._send_cached(c, route)

    def _send_cached(self, c: _Cached, route: bytes) -> None:
        out = c.outcome
        decl = self.local.decl
        self.link.send(
            Kind.REP, route=route, frames=out.arrays if out.reply_code == 0 else [],
            descs=out.descs if out.reply_code == 0 else [],
            protocol=decl.protocol if decl is not None else 1, session=c.session,
            epoch=self.epoch, relay_seq=c.relay_seq, local_seq=out.local_seq,
            reply_code=out.reply_code,
        )  # fmt: skip
        c.sent_at = time.monotonic()

    # -- loop -----------------------------------------------------------------------------------

    def run(self) -> None:
        self._open_socket()
        self._ensure_local()
        self.log.event("ready", name=self.cfg.name, bind=self.cfg.bind, epoch=self.epoch)
        gone_after = self.cfg.heartbeat * self.cfg.misses
        while not self.stop:
            if self.running is not None:
                self._step()  # the local reply first: most rounds end within one slice
                if self.running is not None:
                    self._serve_network(0)
            else:
                self._ensure_local()
                self._serve_network(0.05)
            if self.session_alive and time.monotonic() - self.last_heard > gone_after:
                self.session_alive = False
                self.log.count("sessions_gone")
                self.log.event("session_gone", session=self.session)

    def close(self) -> None:
        self.local.close()
        self.link.close()
        if self.auth is not None:
            self.auth.stop()
