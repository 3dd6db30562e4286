"""Pieces of the spec/PEER.md contract shared by the kit's own peers (the naive peer) and its
tests: flags, data pattern, checksum, fault plan, event log, raw header pokes.

``python/shmbridge/peer.py`` is an independent implementation of the same contract on top of the
shmbridge package (it ships with the package and cannot import the kit); the unit tests check the
two agree on the pattern and the checksum.
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

import numpy as np

PHASE_NAMES = {0x0: "IDLE", 0x1: "REQUESTED", 0x4: "TAKEN", 0x2: "REPLIED"}
PHASE_BITS = {v: k for k, v in PHASE_NAMES.items()}
OPS_BY_TID = {"T1": "send", "T2": "take", "T3": "reply", "T4": "receive"}
DTYPE_CODES = {"bool": 1, "int8": 2, "uint8": 3, "int16": 4, "uint16": 5, "int32": 6, "uint32": 7,
               "int64": 8, "uint64": 9, "float16": 10, "float32": 11, "float64": 12,
               "complex64": 13, "complex128": 14}
GOLDEN = 0x9E3779B97F4A7C15
MASK64 = (1 << 64) - 1

# field -> (offset, struct format)
FIELDS = {
    "magic": (0x000, "8s"), "version_major": (0x008, "<H"), "version_minor": (0x00A, "<H"),
    "header_size": (0x00C, "<I"), "capacity": (0x010, "<Q"), "segment_size": (0x018, "<Q"),
    "flags": (0x020, "<I"), "max_dims": (0x024, "<I"),
    "declared_dtype": (0x040, "<I"), "declared_ndim": (0x044, "<I"), "declared_nbytes": (0x088, "<Q"),
    "message_dtype": (0x090, "<I"), "message_ndim": (0x094, "<I"), "message_shape0": (0x098, "<Q"),
    "message_nbytes": (0x0D8, "<Q"), "reply_code": (0x0E0, "<I"), "word": (0x100, "<I"),
}
HEADER_SIZE = 512


def now_ns() -> int:
    return time.monotonic_ns()


# ---------------------------------------------------------------- flags


class UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # exit code 2 per PEER.md §4
        sys.stderr.write(f"usage error: {message}\n")
        sys.exit(2)


def parse_shape(text: str | None):
    if text is None:
        return None
    t = text.strip()
    if t in ("", "()", "scalar"):
        return ()
    try:
        shape = tuple(int(x) for x in t.strip("()").split(",") if x.strip() != "")
    except ValueError:
        raise UsageError(f"bad --shape {text!r}") from None
    if any(x < 0 for x in shape):
        raise UsageError(f"bad --shape {text!r}")
    return shape


def build_parser(prog: str) -> argparse.ArgumentParser:
    p = _Parser(prog=prog, description="shmbridge conformance peer (spec/PEER.md)")
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
    p.add_argument("--op", choices=["add1", "echo", "checksum"], default="add1")
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
    return p


def parse_args(argv, prog="peer"):
    p = build_parser(prog)
    a = p.parse_args(argv)
    if a.print_clock:
        return a
    if not a.role or a.name is None or not (a.create or a.attach):
        p.error("--role, --name and one of --create/--attach are required")
    try:
        a.shape_t = parse_shape(a.shape)
        if a.create:
            a.dtype = a.dtype or "float32"
            if a.shape_t is None:
                a.shape_t = (512, 512)
        if a.dtype is not None and a.dtype not in DTYPE_CODES:
            # passed through: the library must answer DTYPE_MISMATCH (R-DTYPE-1)
            pass
        a.faults = FaultPlan(a)
    except UsageError as e:
        p.error(str(e))
    a.label = a.label or a.role
    return a


# ---------------------------------------------------------------- faults


def norm_where(w: str) -> str:
    w = w.strip()
    w = OPS_BY_TID.get(w.upper(), w) if w.upper() in OPS_BY_TID else w
    if w not in ("send", "take", "reply", "receive", "ready", "close", "create", "attach"):
        raise UsageError(f"unknown WHERE {w!r} (T1..T4, send/take/reply/receive, ready)")
    return "ready" if w in ("create", "attach") else w


def _split_round(text: str):
    if "@" in text:
        body, r = text.rsplit("@", 1)
        try:
            return body, int(r)
        except ValueError:
            raise UsageError(f"bad round in {text!r}") from None
    return text, None


class FaultPlan:
    def __init__(self, a):
        self.before, self.after = [], []
        for lst, specs in ((self.before, a.delay_before), (self.after, a.delay_after)):
            for s in specs:
                body, rnd = _split_round(s)
                if ":" not in body:
                    raise UsageError(f"bad delay {s!r}, want WHERE:MS[@R]")
                w, ms = body.rsplit(":", 1)
                lst.append((norm_where(w), float(ms), rnd))
        self.crash = None
        if a.crash_at:
            body, rnd = _split_round(a.crash_at)
            when = "after"
            if body.endswith(":before"):
                body, when = body[: -len(":before")], "before"
            elif body.endswith(":after"):
                body = body[: -len(":after")]
            self.crash = (norm_where(body), when, rnd if rnd is not None else 1)
        self.crash_mode = a.crash_mode
        self.corrupt = None
        if a.corrupt:
            body, where = (a.corrupt.split("@", 1) + [None])[:2] if "@" in a.corrupt else (a.corrupt, None)
            field, _, value = body.partition("=")
            if field not in FIELDS:
                raise UsageError(f"unknown --corrupt field {field!r}")
            self.corrupt = (field, value or None, norm_where(where) if where else "ready")
        self.jitter_ms = a.jitter_ms
        self.rng = random.Random(a.seed * 7919 + 1)

    def _sleep(self, ms):
        if ms > 0:
            time.sleep(ms / 1000.0)

    def jitter(self):
        if self.jitter_ms > 0:
            self._sleep(self.rng.uniform(0, self.jitter_ms))

    def delay(self, when: str, where: str, rnd: int):
        for w, ms, r in (self.before if when == "before" else self.after):
            if w == where and (r is None or r == rnd):
                self._sleep(ms)

    def crash_due(self, when: str, where: str, rnd: int) -> bool:
        return self.crash is not None and self.crash[0] == where and self.crash[1] == when \
            and (where == "ready" or self.crash[2] == rnd)


def die(log, mode: str, rnd: int):
    log.event("crash", rnd, now_ns(), now_ns(), "ok", mode=mode)
    sys.stdout.flush()
    if mode == "abort":
        try:
            import resource
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        except Exception:
            pass
        os.abort()
    os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(10)


# ---------------------------------------------------------------- data


def np_dtype(name: str) -> np.dtype:
    return np.dtype(name).newbyteorder("<") if name not in ("bool", "int8", "uint8") else np.dtype(name)


def pattern(dtype: str, shape: tuple, rnd: int, seed: int) -> np.ndarray:
    n = int(np.prod(shape, dtype=np.int64)) if len(shape) else 1
    i = np.arange(n, dtype=np.int64)
    v = (7 * i + 13 * rnd + seed) % 61
    if dtype == "bool":
        a = (v % 2) == 1
    elif dtype.startswith("complex"):
        a = (v + 1j * (i % 5)).astype(np_dtype(dtype))
    else:
        a = v.astype(np_dtype(dtype))
    return a.reshape(shape)


def apply_op(op: str, a: np.ndarray) -> None:
    """In place (the responder computes in the payload)."""
    if op != "add1":
        return
    if a.dtype == np.bool_:
        np.logical_not(a, out=a)
    else:
        a += a.dtype.type(1)


def expected_reply(op: str, req: np.ndarray) -> np.ndarray:
    out = req.copy()
    apply_op(op, out)
    return out


def checksum(a) -> int:
    b = np.ascontiguousarray(a).reshape(-1).view(np.uint8)
    n = int(b.size)
    pad = (-n) % 8
    if pad:
        b = np.concatenate([b, np.zeros(pad, np.uint8)])
    w = b.view("<u8")
    if w.size == 0:
        s = 0
    else:
        k = np.arange(w.size, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
        with np.errstate(over="ignore"):
            s = int((w * k).sum(dtype=np.uint64))
    return (s + n * GOLDEN) & MASK64


def hexsum(a) -> str:
    return f"{checksum(a):016x}"


def wrong_shape(shape: tuple) -> tuple:
    return (1,) if len(shape) == 0 else (shape[0] + 1,) + tuple(shape[1:])


def wrong_dtype(dtype: str) -> str:
    return "float32" if dtype == "int32" else "int32"


# ---------------------------------------------------------------- log


class EventLog:
    def __init__(self, label: str, impl: str, role: str, name, out=None):
        self.label, self.impl, self.role = label, impl, role
        self.out = out or sys.stdout
        self.write({"event": "start", "peer": label, "impl": impl, "pid": os.getpid(), "role": role,
                    "name": name, "t": now_ns()})

    def write(self, obj):
        self.out.write(json.dumps(obj, separators=(",", ":")) + "\n")
        self.out.flush()

    def event(self, op, rnd, t_call, t_return, result, seq=None, phase_after=None, checksum=None,
              **extra):
        obj = {"peer": self.label, "op": op, "round": rnd, "t_call": t_call, "t_return": t_return,
               "result": result, "seq": seq, "phase_after": phase_after, "checksum": checksum}
        obj.update({k: v for k, v in extra.items() if v is not None})
        self.write(obj)

    def summary(self, rounds_ok, verified, mismatches, exit_code, error):
        self.write({"event": "summary", "peer": self.label, "rounds_ok": rounds_ok,
                    "verified": verified, "mismatches": mismatches, "exit": exit_code,
                    "error": error, "t": now_ns()})


# ---------------------------------------------------------------- raw header access


def shm_path(name: str) -> str:
    return "/dev/shm/" + (name[1:] if name.startswith("/") else name)


def corrupt_header(name: str, field: str, value: str | None, declared=None) -> int:
    """Plain little-endian store of ``value`` into ``field`` of the segment's header; returns the
    integer written (or 0 for magic). Never unlinks."""
    off, fmt = FIELDS[field]
    fd = os.open(shm_path(name), os.O_RDWR)
    try:
        m = mmap.mmap(fd, HEADER_SIZE)
    finally:
        os.close(fd)
    try:
        cur = struct.unpack_from(fmt, m, off)[0]
        if field == "magic":
            raw = b"\0" * 8 if value == "0" else (value or "SHMBRIDX").encode()[:8].ljust(8, b"\0")
            struct.pack_into("8s", m, off, raw)
            return 0
        if field == "word":
            v = parse_word_value(value, cur)
        elif value is not None:
            v = int(value, 0)
        else:
            v = default_corrupt_value(field, cur, m)
        struct.pack_into(fmt, m, off, v)
        return v
    finally:
        m.close()


def default_corrupt_value(field: str, cur: int, m) -> int:
    return {
        "version_major": 2, "header_size": 256, "flags": 1, "max_dims": 4, "declared_dtype": 99,
        "message_dtype": DTYPE_CODES["float32"] if struct.unpack_from("<I", m, 0x40)[0] == 6
        else DTYPE_CODES["int32"],
    }.get(field, cur + (64 if field in ("capacity", "segment_size") else 1))


def parse_word_value(value: str | None, cur: int) -> int:
    if value is None:
        return 0xF
    for ph, bits in PHASE_BITS.items():
        if value.startswith(ph):
            rest = value[len(ph):]
            seq = cur >> 4
            if rest.startswith("+"):
                seq += int(rest[1:])
            elif rest.startswith("-"):
                seq -= int(rest[1:])
            elif rest.startswith("="):
                seq = int(rest[1:])
            return ((seq & ((1 << 28) - 1)) << 4) | bits
    return int(value, 0) & 0xFFFFFFFF


def wait_peer(name: str, role: str, timeout: float) -> bool:
    """--wait-peer: poll the other role's slot state (plain read) until ATTACHED (1)."""
    off = (0x160 if role == "requester" else 0x140) + 4
    deadline = time.monotonic() + max(timeout, 0)
    while True:
        try:
            with open(shm_path(name), "rb") as fh:
                fh.seek(off)
                if struct.unpack("<I", fh.read(4))[0] == 1:
                    return True
        except (OSError, struct.error):
            pass
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.002)


def phase_name(word: int) -> str:
    return PHASE_NAMES.get(word & 0xF, "INVALID")
