"""What both relay ends share: configuration, the endpoint rules and CurveZMQ keys (R-RELAY-17,
R-RELAY-18), the JSON-lines log and counters (R-RELAY-19), and sending a message."""

from __future__ import annotations

import ipaddress
import json
import os
import secrets
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np
import zmq
import zmq.auth

from ..errors import InvalidArgument
from .wire import Desc, Kind, encode_header

__all__ = [
    "Curve",
    "Link",
    "Log",
    "check_endpoint",
    "keygen",
    "load_curve",
    "random_u64",
]

#: payload frames below this size are copied by ZeroMQ anyway (pyzmq's copy threshold)
ZERO_COPY_MIN = 65536


def random_u64() -> int:
    """A random non-zero u64 (an epoch or a session)."""
    return secrets.randbits(64) or 1


# ---------------------------------------------------------------------------- security


def _is_loopback(host: str) -> bool:
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # '*', an interface name or a DNS name: not provably loopback


def check_endpoint(endpoint: str, allow_remote: bool, what: str) -> None:
    """R-RELAY-17: loopback only, unless ``allow_remote``; refused before any socket exists."""
    scheme, sep, rest = endpoint.partition("://")
    if not sep or scheme not in ("tcp", "ipc"):
        raise InvalidArgument(
            f"{what} {endpoint!r}: expected tcp://HOST:PORT or ipc://PATH (ZeroMQ endpoint)"
        )
    if scheme == "ipc" or allow_remote:
        return
    host = rest.rsplit(":", 1)[0] if ":" in rest else rest
    if not _is_loopback(host):
        raise InvalidArgument(
            f"{what} {endpoint!r} is not a loopback address (127.0.0.0/8, ::1, localhost); a relay "
            "binds and connects to loopback only unless started with --allow-remote (give it "
            "CurveZMQ keys too: shmbridge relay keygen)"
        )


def is_remote(endpoint: str) -> bool:
    scheme, _, rest = endpoint.partition("://")
    if scheme != "tcp":
        return False
    return not _is_loopback(rest.rsplit(":", 1)[0])


@dataclass(frozen=True)
class Curve:
    """CurveZMQ keys (Z85): ours, and the server's public key a client pins (R-RELAY-18)."""

    public: bytes
    secret: bytes
    server_public: bytes | None = None  # client only
    clients_dir: str | None = None  # server only: admit these client keys (ZAP)


def keygen(prefix: str) -> tuple[Path, Path]:
    """Write ``PREFIX.key`` (public) and ``PREFIX.key_secret`` (mode 0600), ZeroMQ's certificate
    files (R-RELAY-18). Refuses to overwrite."""
    p = Path(prefix)
    pub, sec = p.with_name(p.name + ".key"), p.with_name(p.name + ".key_secret")
    for f in (pub, sec):
        if f.exists():
            raise InvalidArgument(f"keygen: {f} exists; remove it or choose another prefix")
    p.parent.mkdir(parents=True, exist_ok=True)
    old = os.umask(0o077)
    try:
        zmq.auth.create_certificates(str(p.parent), p.name)
    finally:
        os.umask(old)
    os.chmod(sec, 0o600)
    return pub, sec


def load_key(path: str, need_secret: bool) -> tuple[bytes, bytes | None]:
    try:
        public, secret = zmq.auth.load_certificate(path)
    except (OSError, ValueError) as e:
        raise InvalidArgument(
            f"CurveZMQ key file {path!r} cannot be read as a ZeroMQ certificate ({e}); create "
            "one with: shmbridge relay keygen PREFIX"
        ) from None
    if need_secret and not secret:
        raise InvalidArgument(
            f"CurveZMQ key file {path!r} holds no secret key; give the PREFIX.key_secret file"
        )
    return public, secret


def load_curve(
    secret_file: str | None, server_file: str | None, clients_dir: str | None
) -> Curve | None:
    """The CURVE configuration of an end from its flags, or None (plain TCP)."""
    if secret_file is None and server_file is None:
        if clients_dir is not None:
            raise InvalidArgument("--curve-clients needs --curve-secret (the server's key)")
        return None
    if secret_file is not None:
        public, secret = load_key(secret_file, True)
        assert secret is not None
    else:
        public, secret = zmq.curve_keypair()  # a client without its own key: an ephemeral one
    server = load_key(server_file, False)[0] if server_file is not None else None
    if clients_dir is not None and not Path(clients_dir).is_dir():
        raise InvalidArgument(f"--curve-clients {clients_dir!r} is not a directory of .key files")
    return Curve(public, secret, server, clients_dir)


# ---------------------------------------------------------------------------- log


@dataclass
class Log:
    """One JSON object per line (R-RELAY-19), flushed per line; counters for ``stats``."""

    end: str
    out: IO[str] | None = None
    stats: dict[str, int] = field(default_factory=dict)

    def event(self, event: str, **kw: Any) -> None:
        if self.out is None:
            return
        rec = {"event": event, "end": self.end, "t": time.monotonic_ns(), **kw}
        try:
            self.out.write(json.dumps(rec, default=str) + "\n")
            self.out.flush()
        except (OSError, ValueError):
            pass  # a closed log must not stop the relay

    def round(self, relay_seq: int, seq: int, result: str, why: str | None = None) -> None:
        """The ``round`` event, once per round at each end: the same line ``event`` writes,
        formatted without json.dumps (ints and an error name; ``why`` is escaped)."""
        if self.out is None:
            return
        if why is not None:
            self.event("round", seq=seq, relay_seq=relay_seq, result=result, why=why)
            return
        try:
            self.out.write(
                f'{{"event": "round", "end": "{self.end}", "t": {time.monotonic_ns()}, '
                f'"seq": {seq}, "relay_seq": {relay_seq}, "result": "{result}"}}\n'
            )
            self.out.flush()
        except (OSError, ValueError):
            pass

    def count(self, key: str, n: int = 1) -> None:
        self.stats[key] = self.stats.get(key, 0) + n

    def warn(self, text: str) -> None:
        print(f"shmbridge relay {self.end}: {text}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------- receiving


# pyzmq's constants are enum flags: ``a | b`` or ``events & POLLIN`` on them builds enum members
# (two enum calls each, measurable per message); the relay's hot path uses plain ints.
NOBLOCK = int(zmq.NOBLOCK)
_MORE = int(zmq.NOBLOCK) | int(zmq.SNDMORE)


# ---------------------------------------------------------------------------- sending


class Link:
    """A socket and the send rules of R-RELAY-3/-4: non-blocking, a dropped send is counted,
    payload frames of at least ZERO_COPY_MIN bytes go zero-copy with a tracker."""

    def __init__(self, log: Log) -> None:
        self.ctx: zmq.Context[Any] = zmq.Context.instance()
        self.log = log
        self.sock: zmq.Socket[Any] | None = None
        self.rcvtimeo: tuple[int, int] = (0, -1)  # (id of the socket, ZMQ_RCVTIMEO ms) as set

    def send(
        self,
        kind: Kind,
        *,
        route: bytes | None = None,
        frames: list[Any] | tuple[Any, ...] = (),
        descs: list[Desc] | tuple[Desc, ...] = (),
        **fields: int,
    ) -> zmq.MessageTracker | None:
        """Send one message; returns the tracker of its zero-copy frames (None if none, or if
        the send was dropped). Only payload frames of at least ZERO_COPY_MIN bytes go zero-copy
        and are tracked (R-RELAY-4); the header and small frames are copied, which pyzmq does
        faster than it sets up a zero-copy frame below about 64 KiB."""
        sock = self.sock
        assert sock is not None
        head = encode_header(kind, descs=descs, **fields)
        bufs = [_bytes(f) for f in frames]
        trackers: list[zmq.MessageTracker] = []
        try:
            if route is not None:
                sock.send(route, _MORE)
            # ZeroMQ queues a multipart message whole or not at all: only the first part can
            # meet a full queue (Again), the later ones are then always accepted
            sock.send(head, _MORE if bufs else NOBLOCK)
            last = len(bufs) - 1
            for i, b in enumerate(bufs):
                flags = NOBLOCK if i == last else _MORE
                if b.nbytes >= ZERO_COPY_MIN:
                    t = sock.send(b, flags, copy=False, track=True)
                    if t is not None:
                        trackers.append(t)
                else:
                    sock.send(b, flags)
        except zmq.Again:
            self.log.count("dropped_sends")
            return None
        except zmq.ZMQError as e:  # e.g. ROUTER to an unknown peer (ROUTER_MANDATORY is off)
            self.log.count("dropped_sends")
            self.log.event("send_error", error=str(e))
            return None
        if not trackers:
            return None
        return trackers[0] if len(trackers) == 1 else zmq.MessageTracker(*trackers)

    def recv(self, timeout: float) -> list[zmq.Frame] | None:
        """One multipart message within ``timeout`` seconds, or None.

        A blocking receive with ZMQ_RCVTIMEO, not ZMQ_EVENTS + zmq_poll: a message already
        queued is taken without a system call, and one that arrives wakes the receive once.
        Every ZMQ_EVENTS query and every empty non-blocking receive costs a poll(2) of the
        socket's mailbox, several per round before (measured: 11 poll(2) per round at the near
        end against 4.5 in a bare forwarder). So the caller takes one message per call and asks
        again."""
        sock = self.sock
        assert sock is not None
        if timeout <= 0:
            flags = NOBLOCK
        else:
            flags = 0
            ms = max(1, int(timeout * 1000 + 0.999))
            if self.rcvtimeo != (id(sock), ms):  # a set option costs no system call, but a
                sock.setsockopt(zmq.RCVTIMEO, ms)  # pyzmq call: only when it changes
                self.rcvtimeo = (id(sock), ms)
        try:
            return sock.recv_multipart(flags, copy=False)
        except zmq.Again:
            return None

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close(linger=0)
        self.sock = None
        self.rcvtimeo = (0, -1)


def _bytes(p: Any) -> memoryview:
    """A flat byte view over ``p`` without a copy (numpy arrays of any dtype and rank)."""
    if isinstance(p, np.ndarray):
        flat: Any = p.reshape(-1).view(np.uint8)
        return memoryview(flat)
    return memoryview(p).cast("B")
