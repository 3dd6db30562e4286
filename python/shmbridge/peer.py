"""The Python conformance peer: ``python -m shmbridge.peer`` (spec/PEER.md).

One process, one role, one segment: creates or attaches, runs ``--rounds`` rounds with the data
pattern of PEER.md §3, injects the faults it is asked for, logs every operation as a JSON line on
stdout (CLOCK_MONOTONIC nanoseconds, so logs of two processes merge) and exits with the code of
spec/errors.json. Built only on the public API of the package.
"""

from __future__ import annotations

import argparse
import json
import mmap
import os
import random
import signal
import struct
import sys
import time
from typing import Any, Callable, NoReturn, TextIO, Union

import numpy as np

from . import Error, HandlerFailed, PeerGone, Phase, Requester, Responder

__all__ = ["checksum", "main", "pattern"]

Handle = Union[Requester, Responder]

DTYPE_CODES = {
    "bool": 1,
    "int8": 2,
    "uint8": 3,
    "int16": 4,
    "uint16": 5,
    "int32": 6,
    "uint32": 7,
    "int64": 8,
    "uint64": 9,
    "float16": 10,
    "float32": 11,
    "float64": 12,
    "complex64": 13,
    "complex128": 14,
}
OPS_BY_TID = {"T1": "send", "T2": "take", "T3": "reply", "T4": "receive"}
PHASE_BITS = {"IDLE": 0x0, "REQUESTED": 0x1, "TAKEN": 0x4, "REPLIED": 0x2}
GOLDEN = 0x9E3779B97F4A7C15
MASK64 = (1 << 64) - 1
HEADER_SIZE = 512
# --corrupt FIELD -> (offset, struct format), PROTOCOL.md §3
FIELDS = {
    "magic": (0x000, "8s"),
    "version_major": (0x008, "<H"),
    "version_minor": (0x00A, "<H"),
    "header_size": (0x00C, "<I"),
    "capacity": (0x010, "<Q"),
    "segment_size": (0x018, "<Q"),
    "flags": (0x020, "<I"),
    "max_dims": (0x024, "<I"),
    "declared_dtype": (0x040, "<I"),
    "declared_ndim": (0x044, "<I"),
    "declared_nbytes": (0x088, "<Q"),
    "message_dtype": (0x090, "<I"),
    "message_ndim": (0x094, "<I"),
    "message_shape0": (0x098, "<Q"),
    "message_nbytes": (0x0D8, "<Q"),
    "reply_code": (0x0E0, "<I"),
    "word": (0x100, "<I"),
    "creator_slot": (0x180, "32s"),  # zeroed: an EMPTY creator slot (R-STALE-1)
}
EXIT_USAGE, EXIT_VERIFY, EXIT_INTERNAL = 2, 3, 1


def now_ns() -> int:
    return time.monotonic_ns()


# ------------------------------------------------------------------------------ data (§3)


def np_dtype(name: str) -> np.dtype[Any]:
    dt = np.dtype(name)
    return dt if dt.itemsize == 1 else dt.newbyteorder("<")


def pattern(dtype: str, shape: tuple[int, ...], rnd: int, seed: int) -> np.ndarray[Any, Any]:
    """Element i of round r: v = (7 i + 13 r + seed) mod 61 (PEER.md §3)."""
    n = int(np.prod(shape, dtype=np.int64)) if shape else 1
    i = np.arange(n, dtype=np.int64)
    v = (7 * i + 13 * rnd + seed) % 61
    if dtype == "bool":
        a: np.ndarray[Any, Any] = (v % 2) == 1
    elif dtype.startswith("complex"):
        a = (v + 1j * (i % 5)).astype(np_dtype(dtype))
    else:
        a = v.astype(np_dtype(dtype))
    return a.reshape(shape)


def apply_op(op: str, a: np.ndarray[Any, Any]) -> None:
    if op != "add1":
        return
    if a.dtype == np.bool_:
        np.logical_not(a, out=a)
    else:
        a += a.dtype.type(1)


def checksum(a: np.ndarray[Any, Any]) -> int:
    """(sum of w_i * (2i + 1) + nbytes * golden) mod 2^64 over the zero-padded LE u64 words."""
    b = np.ascontiguousarray(a).reshape(-1).view(np.uint8)
    n = int(b.size)
    pad = (-n) % 8
    if pad:
        b = np.concatenate([b, np.zeros(pad, np.uint8)])
    w = b.view("<u8")
    s = 0
    if w.size:
        k = np.arange(w.size, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
        with np.errstate(over="ignore"):
            s = int((w * k).sum(dtype=np.uint64))
    return (s + n * GOLDEN) & MASK64


def hexsum(a: np.ndarray[Any, Any]) -> str:
    return f"{checksum(a):016x}"


def wrong_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    return (1,) if not shape else (shape[0] + 1, *shape[1:])


def wrong_dtype(dtype: str) -> str:
    return "float32" if dtype == "int32" else "int32"


# ------------------------------------------------------------------------------ flags (§1)


class UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"usage error: {message}\n")
        sys.exit(EXIT_USAGE)


def parse_shape(text: str | None) -> tuple[int, ...] | None:
    if text is None:
        return None
    t = text.strip()
    if t in ("", "()", "scalar"):
        return ()
    try:
        shape = tuple(int(x) for x in t.strip("()").split(",") if x.strip())
    except ValueError:
        raise UsageError(f"bad --shape {text!r}") from None
    if any(x < 0 for x in shape):
        raise UsageError(f"bad --shape {text!r}")
    return shape


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="python -m shmbridge.peer", description="shmbridge conformance peer (spec/PEER.md)"
    )
    p.add_argument("--role", choices=["requester", "responder"])
    p.add_argument("--name")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--create", action="store_true")
    g.add_argument("--attach", action="store_true")
    p.add_argument("--dtype")
    p.add_argument("--shape")
    p.add_argument("--capacity", type=int)
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--timeout", type=float, default=5.0)
    p.add_argument("--op", choices=["add1", "echo", "checksum", "fail"], default="add1")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--label")
    p.add_argument("--no-reclaim", action="store_true")
    p.add_argument("--keep", action="store_true")
    p.add_argument("--hold-ms", type=float, default=0.0)
    p.add_argument("--on-peer-gone", choices=["exit", "retry"], default="exit")
    p.add_argument("--retry-after-timeout", action="store_true")
    p.add_argument("--print-clock", action="store_true")
    p.add_argument("--wait-peer", action="store_true")
    p.add_argument("--delay-before", action="append", default=[])
    p.add_argument("--delay-after", action="append", default=[])
    p.add_argument("--crash-at")
    p.add_argument("--crash-mode", choices=["kill", "abort"], default="kill")
    p.add_argument("--out-of-turn", choices=["send", "take", "reply", "receive"])
    p.add_argument("--wrong-shape", action="store_true")
    p.add_argument("--wrong-dtype", action="store_true")
    p.add_argument("--corrupt")
    p.add_argument("--jitter-ms", type=float, default=0.0)
    p.add_argument("--close-at")
    return p


def _norm_where(w: str) -> str:
    w = OPS_BY_TID.get(w.strip().upper(), w.strip())
    if w in ("create", "attach"):
        return "ready"
    if w not in ("send", "take", "reply", "receive", "ready", "close"):
        raise UsageError(f"unknown WHERE {w!r} (T1..T4, send/take/reply/receive, ready)")
    return w


def _split_round(text: str) -> tuple[str, int | None]:
    if "@" not in text:
        return text, None
    body, r = text.rsplit("@", 1)
    try:
        return body, int(r)
    except ValueError:
        raise UsageError(f"bad round in {text!r}") from None


class Faults:
    """The fault plan of PEER.md §1.1."""

    def __init__(self, a: argparse.Namespace) -> None:
        self.before: list[tuple[str, float, int | None]] = []
        self.after: list[tuple[str, float, int | None]] = []
        for lst, specs in ((self.before, a.delay_before), (self.after, a.delay_after)):
            for s in specs:
                body, rnd = _split_round(s)
                if ":" not in body:
                    raise UsageError(f"bad delay {s!r}: want WHERE:MS[@R]")
                w, ms = body.rsplit(":", 1)
                lst.append((_norm_where(w), float(ms), rnd))
        self.crash: tuple[str, str, int] | None = None
        if a.crash_at:
            body, rnd = _split_round(a.crash_at)
            when = "after"
            for suffix in (":before", ":after"):
                if body.endswith(suffix):
                    body, when = body[: -len(suffix)], suffix[1:]
            self.crash = (_norm_where(body), when, 1 if rnd is None else rnd)
        self.crash_mode: str = a.crash_mode
        self.corrupt: tuple[str, str | None, str] | None = None
        if a.corrupt:
            body, _, where = a.corrupt.partition("@")
            field, _, value = body.partition("=")
            if field not in FIELDS:
                raise UsageError(f"unknown --corrupt field {field!r}")
            self.corrupt = (field, value or None, _norm_where(where) if where else "ready")
        self.close_at: tuple[str, int] | None = None
        if a.close_at:
            body, rnd = _split_round(a.close_at)
            self.close_at = (_norm_where(body), 1 if rnd is None else rnd)
        self.jitter_ms: float = a.jitter_ms
        self.rng = random.Random(a.seed * 7919 + 1)

    def jitter(self) -> None:
        if self.jitter_ms > 0:
            time.sleep(self.rng.uniform(0, self.jitter_ms) / 1000.0)

    def delay(self, when: str, where: str, rnd: int) -> None:
        for w, ms, r in self.before if when == "before" else self.after:
            if w == where and (r is None or r == rnd) and ms > 0:
                time.sleep(ms / 1000.0)

    def crash_due(self, when: str, where: str, rnd: int) -> bool:
        c = self.crash
        return (
            c is not None and c[0] == where and c[1] == when and (where == "ready" or c[2] == rnd)
        )


# ------------------------------------------------------------------------------ log (§2)


class Log:
    def __init__(self, label: str, role: str, name: str, out: TextIO) -> None:
        self.label = label
        self.out = out
        self.write(
            {
                "event": "start",
                "peer": label,
                "impl": "py",
                "pid": os.getpid(),
                "role": role,
                "name": name,
                "t": now_ns(),
            }
        )

    def write(self, obj: dict[str, Any]) -> None:
        self.out.write(json.dumps(obj, separators=(",", ":")) + "\n")
        self.out.flush()

    def event(
        self,
        op: str,
        rnd: int,
        t_call: int,
        t_return: int,
        result: str,
        seq: int | None = None,
        phase_after: str | None = None,
        checksum: str | None = None,
        **extra: Any,
    ) -> None:
        obj: dict[str, Any] = {
            "peer": self.label,
            "op": op,
            "round": rnd,
            "t_call": t_call,
            "t_return": t_return,
            "result": result,
            "seq": seq,
            "phase_after": phase_after,
            "checksum": checksum,
        }
        obj.update({k: v for k, v in extra.items() if v is not None})
        self.write(obj)


# ------------------------------------------------------------------------------ raw pokes


def _shm_path(name: str) -> str:
    return "/dev/shm/" + (name[1:] if name.startswith("/") else name)


def corrupt_header(name: str, field: str, value: str | None) -> int:
    """A rogue writer's plain little-endian store into the header (never through the library)."""
    off, fmt = FIELDS[field]
    fd = os.open(_shm_path(name), os.O_RDWR)
    try:
        m = mmap.mmap(fd, HEADER_SIZE)
    finally:
        os.close(fd)
    try:
        cur = struct.unpack_from(fmt, m, off)[0]
        if field == "creator_slot":
            struct.pack_into(fmt, m, off, bytes(32))
            return 0
        if field == "magic":
            raw = b"\0" * 8 if value == "0" else (value or "SHMBRIDX").encode()[:8].ljust(8, b"\0")
            struct.pack_into("8s", m, off, raw)
            return 0
        if field == "word":
            v = _word_value(value, int(cur))
        elif value is not None:
            v = int(value, 0)
        else:
            declared_dtype = struct.unpack_from("<I", m, 0x40)[0]
            v = {
                "version_major": 2,
                "header_size": 256,
                "flags": 1,
                "max_dims": 4,
                "declared_dtype": 99,
                "message_dtype": DTYPE_CODES[
                    wrong_dtype("int32" if declared_dtype == 6 else "float32")
                ],
            }.get(field, int(cur) + (64 if field in ("capacity", "segment_size") else 1))
        struct.pack_into(fmt, m, off, v)
        return int(v)
    finally:
        m.close()


def _word_value(value: str | None, cur: int) -> int:
    if value is None:
        return 0xF
    for ph, bits in PHASE_BITS.items():
        if value.startswith(ph):
            rest, seq = value[len(ph) :], cur >> 4
            if rest.startswith("+"):
                seq += int(rest[1:])
            elif rest.startswith("-"):
                seq -= int(rest[1:])
            elif rest.startswith("="):
                seq = int(rest[1:])
            return ((seq & ((1 << 28) - 1)) << 4) | bits
    return int(value, 0) & 0xFFFFFFFF


class HeaderView:
    """A read-only descriptor of the OS object, opened once after create/attach: it reads the same
    object even after its creator unlinked the name (plain reads, as --wait-peer's)."""

    def __init__(self, name: str) -> None:
        try:
            self.fd: int | None = os.open(_shm_path(name), os.O_RDONLY)
        except OSError:
            self.fd = None

    def read(self, off: int, n: int) -> bytes | None:
        if self.fd is None:
            return None
        data = os.pread(self.fd, n, off)
        return data if len(data) == n else None

    def declared_field(self) -> dict[str, Any]:
        """PEER.md §2 ``declared_desc``: the 80 bytes of ``declared`` as hex."""
        d = self.read(0x040, 80)
        return {} if d is None else {"declared_desc": d.hex()}

    def reply_fields(self) -> dict[str, Any]:
        """PEER.md §2: what the reply a receive consumed left (R-MSG-4): reply_code and
        message_desc."""
        rc, desc = self.read(0x0E0, 4), self.read(0x090, 80)
        if rc is None or desc is None:
            return {}
        return {"reply_code": struct.unpack("<I", rc)[0], "message_desc": desc.hex()}


def wait_peer(name: str, role: str, timeout: float) -> bool:
    """--wait-peer: poll the other role's slot state (a plain read) until ATTACHED (1)."""
    off = (0x160 if role == "requester" else 0x140) + 4
    deadline = time.monotonic() + max(timeout, 0.0)
    while True:
        try:
            with open(_shm_path(name), "rb") as fh:
                fh.seek(off)
                if struct.unpack("<I", fh.read(4))[0] == 1:
                    return True
        except (OSError, struct.error):
            pass
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.002)


# ------------------------------------------------------------------------------ the peer


class CloseNow(Exception):
    """--close-at: stop here and close the handle on purpose (exit 0; R-CLOSE-2)."""


class Fatal(Exception):
    """Ends the peer with an error (already logged)."""

    def __init__(self, name: str, code: int) -> None:
        super().__init__(name)
        self.name = name
        self.code = code


class Peer:
    def __init__(self, a: argparse.Namespace, out: TextIO) -> None:
        self.a = a
        self.f: Faults = a.faults
        self.log = Log(a.label, a.role, a.name, out)
        self.h: Handle | None = None
        self.view: HeaderView | None = None
        self.rounds_ok = 0
        self.verified = 0
        self.mismatches = 0

    # -- helpers -------------------------------------------------------------------------------

    def phase(self) -> str | None:
        h = self.h
        if h is None or h.closed:
            return None
        try:
            ph = h.phase()
        except Exception:
            return None
        return "INVALID" if ph is None else Phase(ph).name

    def call(
        self, op: str, rnd: int, fn: Callable[[], Any], injected: bool = False, fatal: bool = True
    ) -> tuple[str, Any]:
        """Runs one library call and logs it; returns (result, value)."""
        t0 = now_ns()
        try:
            value = fn()
        except Error as e:
            t1 = now_ns()
            # PEER.md §2: the reason of a PEER_GONE (R-LIVE-5); what a consumed reply left.
            extra: dict[str, Any] = {}
            if isinstance(e, PeerGone):
                extra["reason"] = e.reason.value
            if op == "receive" and e.reply_code is not None:
                extra.update(self.reply_fields())
            self.log.event(
                op,
                rnd,
                t0,
                t1,
                e.name,
                None,
                self.phase(),
                None,
                injected=injected or None,
                message=str(e)[:300],
                **extra,
            )
            return e.name, e
        except Exception as e:
            self.log.event(
                op,
                rnd,
                t0,
                now_ns(),
                "INTERNAL",
                None,
                self.phase(),
                None,
                injected=injected or None,
                message=repr(e)[:300],
            )
            raise
        return "ok", (t0, now_ns(), value)

    def reply_fields(self) -> dict[str, Any]:
        """What the reply a receive consumed left in the header (PEER.md §2)."""
        return self.view.reply_fields() if self.view is not None else {}

    def log_receive(
        self, h: Requester, rnd: int, t0: int, t1: int, reply: Any, **extra: Any
    ) -> None:
        """A successful receive, with what its reply left in the header (PEER.md §2)."""
        self.log.event(
            "receive",
            rnd,
            t0,
            t1,
            "ok",
            h.seq(),
            self.phase(),
            hexsum(reply),
            **extra,
            **self.reply_fields(),
        )

    def point(self, when: str, where: str, rnd: int) -> None:
        f = self.f
        if when == "after" and f.corrupt and f.corrupt[2] == where and rnd <= 1:
            field, value, _ = f.corrupt
            t = now_ns()
            v = corrupt_header(self.a.name, field, value)
            self.log.event("corrupt", rnd, t, t, "ok", field=field, value=v)
        if when == "before":
            f.jitter()
        f.delay(when, where, rnd)
        if when == "after":
            f.jitter()
        if f.crash_due(when, where, rnd):
            self.die(rnd)
        c = f.close_at
        if (
            when == "after"
            and c is not None
            and c[0] == where
            and (where == "ready" or c[1] == rnd)
        ):
            raise CloseNow

    def die(self, rnd: int) -> None:
        t = now_ns()
        self.log.event("crash", rnd, t, t, "ok", mode=self.f.crash_mode)
        if self.f.crash_mode == "abort":
            try:
                import resource

                resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
            except (ImportError, ValueError, OSError):
                pass
            os.abort()
        os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(60)

    def fail(self, result: str, err: Any) -> NoReturn:
        code = err.exit_code if isinstance(err, Error) else EXIT_INTERNAL
        raise Fatal(result, int(code))

    # -- phases --------------------------------------------------------------------------------

    def open(self) -> None:
        a = self.a
        cls = Requester if a.role == "requester" else Responder
        kw: dict[str, Any] = {
            "timeout": a.timeout,
            "reclaim_stale": not a.no_reclaim,
            "keep_segment": a.keep,
        }
        if a.create:
            op = "create"

            def fn() -> Handle:
                if a.capacity is not None:
                    return cls.create(a.name, a.dtype, a.shape_t, capacity=a.capacity, **kw)
                return cls.create(a.name, a.dtype, a.shape_t, **kw)
        else:
            op = "attach"
            dtype = a.dtype
            shape = a.shape_t
            if a.wrong_dtype:
                if dtype is None:
                    raise UsageError("--wrong-dtype with --attach needs --dtype")
                dtype = wrong_dtype(dtype)
            if a.wrong_shape:
                if shape is None:
                    raise UsageError("--wrong-shape with --attach needs --shape")
                shape = wrong_shape(shape)

            def fn() -> Handle:
                return cls.attach(a.name, dtype, shape, **kw)

        res, val = self.call(op, 0, fn)
        if res != "ok":
            self.fail(res, val)
        t0, t1, self.h = val
        self.view = HeaderView(a.name)
        self.log.event(
            op, 0, t0, t1, "ok", self.h.seq(), self.phase(), **self.view.declared_field()
        )
        self.dtype = self.h.dtype.name
        self.shape: tuple[int, ...] = tuple(self.h.shape)
        self.point("after", "ready", 0)
        if a.wait_peer:
            wait_peer(a.name, a.role, 10.0)

    def run_requester(self) -> None:
        a, h = self.a, self.h
        assert isinstance(h, Requester)
        rnd = 1
        data = pattern(self.dtype, self.shape, rnd, a.seed)
        need_send = True
        gone_since: float | None = None
        retries = 0
        while rnd <= a.rounds:
            if need_send:
                if rnd == 1 and a.out_of_turn == "receive":
                    self.injected_receive(h, rnd)
                if rnd == 1 and a.create and (a.wrong_shape or a.wrong_dtype):
                    bad = pattern(
                        wrong_dtype(self.dtype) if a.wrong_dtype else self.dtype,
                        wrong_shape(self.shape) if a.wrong_shape else self.shape,
                        rnd,
                        a.seed,
                    )
                    self.send(h, rnd, bad, injected=True)
                self.point("before", "send", rnd)
                res, val = self.send(h, rnd, data)
                if res != "ok":
                    self.fail(res, val)
                self.point("after", "send", rnd)
                if rnd == 1 and a.out_of_turn == "send":
                    self.send(h, rnd, data, injected=True)
            self.point("before", "receive", rnd)
            res, val = self.call("receive", rnd, lambda: h.receive_copy())
            if res == "ok":
                t0, t1, reply = val
                good = self.verify(data, reply)
                self.log_receive(h, rnd, t0, t1, reply, verified=good)
                self.rounds_ok += 1
                self.verified += int(good)
                self.mismatches += int(not good)
                self.point("after", "receive", rnd)
                rnd += 1
                data = pattern(self.dtype, self.shape, rnd, a.seed)
                need_send, gone_since, retries = True, None, 0
                continue
            if res == "TIMEOUT" and a.retry_after_timeout and retries < 100:
                retries += 1
                if rnd < a.rounds:
                    nxt = pattern(self.dtype, self.shape, rnd + 1, a.seed)
                    r2, v2 = self.send(h, rnd + 1, nxt)
                    if r2 == "ok":  # the old round is abandoned (cancelled or its reply dropped)
                        rnd, data, need_send = rnd + 1, nxt, False
                        continue
                    if r2 != "OUT_OF_TURN":
                        self.fail(r2, v2)
                need_send = False  # receive the late reply of the same round
                continue
            if res == "PEER_GONE" and a.on_peer_gone == "retry":
                now = time.monotonic()
                gone_since = now if gone_since is None else gone_since
                if now - gone_since <= a.timeout:
                    time.sleep(0.02)
                    need_send = h.pending() is None
                    continue
            self.fail(res, val)

    def send(
        self, h: Requester, rnd: int, data: np.ndarray[Any, Any], injected: bool = False
    ) -> tuple[str, Any]:
        res, val = self.call("send", rnd, lambda: h.send(data), injected=injected)
        if res == "ok":
            t0, t1, seq = val
            self.log.event(
                "send",
                rnd,
                t0,
                t1,
                "ok",
                int(seq),
                self.phase(),
                hexsum(data),
                injected=injected or None,
            )
        return res, val

    def injected_receive(self, h: Requester, rnd: int) -> None:
        res, val = self.call("receive", rnd, lambda: h.receive_copy(timeout=0), injected=True)
        if res == "ok":
            t0, t1, reply = val
            self.log_receive(h, rnd, t0, t1, reply, injected=True)

    def verify(self, sent: np.ndarray[Any, Any], reply: np.ndarray[Any, Any]) -> bool:
        if self.a.op == "checksum":
            return checksum(reply) == checksum(sent)
        want = sent.copy()
        apply_op(self.a.op, want)
        return bool(reply.shape == want.shape and np.array_equal(reply, want))

    def run_responder(self) -> None:
        a, h = self.a, self.h
        assert isinstance(h, Responder)
        rnd = 0
        gone_since: float | None = None
        while a.rounds == 0 or rnd < a.rounds:
            nr = rnd + 1
            if nr == 1 and a.out_of_turn == "reply" and gone_since is None:
                self.call("reply", nr, lambda: h.reply(), injected=True)
            self.point("before", "take", nr)
            res, val = self.call("take", nr, lambda: h.take())
            if res == "PEER_GONE":
                now = time.monotonic()
                if a.on_peer_gone == "retry":
                    gone_since = now if gone_since is None else gone_since
                    if now - gone_since <= a.timeout:
                        time.sleep(0.02)
                        continue
                if a.rounds == 0:
                    return  # end of service (R-LIVE-4)
                self.fail(res, val)
            if res != "ok":
                self.fail(res, val)
            gone_since = None
            rnd = nr
            t0, t1, req = val
            arr = req.array
            self.log.event("take", rnd, t0, t1, "ok", int(req.seq), self.phase(), hexsum(arr))
            self.point("after", "take", rnd)
            if rnd == 1 and a.out_of_turn == "take":
                self.call("take", rnd, lambda: h.take(timeout=0), injected=True)
            if a.op == "fail":
                self.handler_fails(req, rnd)
            apply_op(a.op, arr)
            self.point("before", "reply", rnd)
            cs = hexsum(arr)
            res, val = self.call("reply", rnd, req.reply)
            if res != "ok":
                self.fail(res, val)
            t0, t1, _ = val
            self.log.event("reply", rnd, t0, t1, "ok", int(req.seq), self.phase(), cs)
            self.rounds_ok += 1
            self.verified += 1
            self.point("after", "reply", rnd)

    def handler_fails(self, req: Any, rnd: int) -> NoReturn:
        """--op fail: a handler that raises a non-shmbridge exception inside the library's
        request scope (``with req:``, as in ``Responder.serve``); the library answers with
        reply_code HANDLER_FAILED (R-MSG-3). Logged as a ``reply`` with that result."""
        self.point("before", "reply", rnd)
        t0 = now_ns()
        try:
            with req:
                raise RuntimeError("--op fail: the handler failed on purpose")
        except RuntimeError as e:
            err = HandlerFailed(
                f"the handler of request #{req.seq} failed: {e}; the library answered it with "
                "reply_code HANDLER_FAILED (R-MSG-3)"
            )
            self.log.event(
                "reply", rnd, t0, now_ns(), err.name, int(req.seq), self.phase(), message=str(err)
            )
            self.fail(err.name, err)
        raise AssertionError("unreachable")

    def close(self) -> None:
        h = self.h
        if h is None:
            return
        t0 = now_ns()
        try:
            h.close()
            self.log.event("close", 0, t0, now_ns(), "ok")
        except Error as e:
            self.log.event("close", 0, t0, now_ns(), e.name, message=str(e)[:300])


def main(argv: list[str] | None = None, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    p = build_parser()
    a = p.parse_args(sys.argv[1:] if argv is None else argv)
    if a.print_clock:
        out.write(json.dumps({"event": "clock", "t": now_ns()}) + "\n")
        out.flush()
        return 0
    if not a.role or a.name is None or not (a.create or a.attach):
        p.error("--role, --name and one of --create/--attach are required")
    try:
        a.shape_t = parse_shape(a.shape)
        if a.create:
            a.dtype = a.dtype or "float32"
            a.shape_t = (512, 512) if a.shape_t is None else a.shape_t
        a.faults = Faults(a)
    except UsageError as e:
        p.error(str(e))
    a.label = a.label or a.role
    peer = Peer(a, out)
    code, error = 0, None
    try:
        peer.open()
        if a.role == "requester":
            peer.run_requester()
        else:
            peer.run_responder()
        if a.hold_ms > 0:
            time.sleep(a.hold_ms / 1000.0)
    except Fatal as e:
        code, error = e.code, e.name
    except CloseNow:
        pass  # --close-at: peer.close() below, on purpose
    except UsageError as e:
        sys.stderr.write(f"usage error: {e}\n")
        code, error = EXIT_USAGE, "USAGE"
    except Exception as e:
        sys.stderr.write(f"shmbridge.peer: internal failure: {e!r}\n")
        code, error = EXIT_INTERNAL, "INTERNAL"
    peer.close()
    if code == 0 and peer.mismatches:
        code = EXIT_VERIFY
    peer.log.write(
        {
            "event": "summary",
            "peer": a.label,
            "rounds_ok": peer.rounds_ok,
            "verified": peer.verified,
            "mismatches": peer.mismatches,
            "exit": code,
            "error": error,
            "t": now_ns(),
        }
    )
    return code


if __name__ == "__main__":
    sys.exit(main())
