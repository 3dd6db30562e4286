"""The Python conformance peer: ``python -m shmbridge.peer`` (spec/PEER.md).

One process, one role, one segment: creates or attaches, runs ``--rounds`` rounds with the data
pattern of PEER.md §3, injects the faults it is asked for, logs every operation as a JSON line on
stdout (CLOCK_MONOTONIC nanoseconds, so logs of two processes merge) and exits with the code of
spec/errors.json. Built only on the public API of the package. With ``--protocol 2`` or a schema
flag it speaks protocol v2 (PEER.md §7: ``MessageRequester``/``MessageResponder``, the SPEC
grammar, per-field shapes and checksums in the log).
"""

from __future__ import annotations

import argparse
import json
import mmap
import os
import random
import re
import signal
import struct
import sys
import time
from typing import Any, Callable, NoReturn, TextIO, Union

import numpy as np

from . import (
    Error,
    HandlerFailed,
    MessageRequest,
    MessageRequester,
    MessageResponder,
    MessageView,
    PeerGone,
    Phase,
    Requester,
    Responder,
    Schema,
    inplace,
    upto,
)
from .schema import Record

__all__ = ["checksum", "main", "parse_spec", "pattern"]

Handle = Union[Requester, Responder, MessageRequester, MessageResponder]

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
    # protocol v2 (PEER.md §7.5); the table entries are entry 0 of an area (offset added at the
    # time of the write, from the geometry block)
    "request_fields": (0x040, "<I"),
    "reply_fields": (0x044, "<I"),
    "schema0_dtype": (0x220, "<I"),
    "schema0_offset": (0x270, "<Q"),
    "request_table_dtype": (0, "<I"),
    "request_table_shape0": (8, "<Q"),
    "request_table_nbytes": (72, "<Q"),
    "reply_table_dtype": (0, "<I"),
    "reply_table_shape0": (8, "<Q"),
    "reply_table_nbytes": (72, "<Q"),
}
#: The area a table field of --corrupt is in: its offset is read from the geometry block.
TABLE_AREAS = {"request_table": 0x048, "reply_table": 0x058}
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


# ------------------------------------------------------------------------------ protocol 2 (§7)

_SPEC_NAME = re.compile(r"[A-Za-z0-9_]+")
_SPEC_UINT = re.compile(r"0|[1-9][0-9]*")


def parse_spec(text: str) -> Schema:
    """PEER.md §7.2: ``name:dtype:extents`` (extent ``N`` fixed, ``<=N`` variable) or
    ``name:=target``, separated by ``;``; the empty string is a schema with no fields. Anything
    the grammar does not admit is a usage error; what it admits but a schema may not be (names,
    counts, duplicates, in-place fields in a request) is left to the library (R-SCHEMA-3)."""
    items: list[tuple[str, Any]] = []
    for part in text.split(";") if text else []:
        name, colon, rest = part.partition(":")
        if not colon or not _SPEC_NAME.fullmatch(name):
            raise UsageError(f"bad field {part!r} in SPEC {text!r} (PEER.md §7.2)")
        if rest.startswith("="):
            if not _SPEC_NAME.fullmatch(rest[1:]):
                raise UsageError(f"bad in-place field {part!r} in SPEC {text!r}")
            items.append((name, inplace(rest[1:])))
            continue
        dtype, colon, extents = rest.partition(":")
        if not colon or dtype not in DTYPE_CODES:
            raise UsageError(f"bad field {part!r} in SPEC {text!r}: want name:dtype:extents")
        shape: list[Any] = []
        for e in extents.split(",") if extents else []:
            variable = e.startswith("<=")
            digits = e[2:] if variable else e
            if not _SPEC_UINT.fullmatch(digits) or int(digits) > MASK64:
                raise UsageError(f"bad extent {e!r} in SPEC {text!r}")
            shape.append(upto(int(digits)) if variable else int(digits))
        items.append((name, (np_dtype(dtype), tuple(shape))))
    return Schema(items)


def extent_of(mode: str, rule: int, maximum: int) -> int:
    """A variable extent by --extents / --reply-extents (§7.3); ``rule`` is the left operand of
    the rule's ``mod (M + 1)`` (exact)."""
    if mode == "rule":
        return rule % (maximum + 1)
    if mode == "zero":
        return 0
    if mode == "max":
        return maximum
    if maximum == MASK64:
        raise UsageError("--extents over with a maximum of 2^64 - 1 cannot be expressed")
    return maximum + 1


def field_array(r: Record, k: int, mode: str, rule: int, base: int) -> np.ndarray[Any, Any]:
    """Field k of a v2 message: extent d variable by ``mode`` (rule operand ``rule + 3k + d``),
    element i ``(7 i + base + 29 k) mod 61`` cast as in §3. An ``over`` extent gives a read-only
    array of that shape that holds no memory (the send or reply refuses it by its shape, S7)."""
    shape = tuple(
        extent_of(mode, rule + 3 * k + d, m) if r.variable(d) else m
        for d, m in enumerate(r.max_shape)
    )
    dtype = DTYPE_NAMES[r.dtype]
    if mode == "over" and r.variable_mask:
        return np.broadcast_to(np.zeros((), np_dtype(dtype)), shape)
    return pattern(dtype, shape, 0, base + 29 * k)


DTYPE_NAMES = {v: k for k, v in DTYPE_CODES.items()}


def compatible(request: tuple[Record, ...], reply: tuple[Record, ...]) -> bool:
    """§7.4: add1, echo and checksum need reply field k in place onto request field k, or of
    the same dtype, extents, maxima and variable extents (names may differ)."""
    return len(request) == len(reply) and all(
        b.alias == k + 1
        or (b.alias == 0 and (a.dtype, a.max_shape, a.variable_mask)
            == (b.dtype, b.max_shape, b.variable_mask))
        for k, (a, b) in enumerate(zip(request, reply))
    )  # fmt: skip


def derive_base(request: dict[str, np.ndarray[Any, Any]] | MessageView) -> int:
    """§7.4 derive: c = the checksum of request field 0 mod 61, 0 without request fields."""
    for a in request.values():
        return checksum(a) % 61
    return 0


def fields_log(msg: dict[str, np.ndarray[Any, Any]] | MessageView) -> dict[str, Any]:
    """§7.5: ``shapes`` and ``checksums`` of every field, in schema order."""
    return {
        "checksum": None,
        "shapes": {k: list(a.shape) for k, a in msg.items()},
        "checksums": {k: hexsum(a) for k, a in msg.items()},
    }


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
    p.add_argument("--op", choices=["add1", "echo", "checksum", "derive", "fail"], default="add1")
    p.add_argument("--protocol", choices=["1", "2"])
    p.add_argument("--request-schema")
    p.add_argument("--reply-schema")
    extents = ["rule", "zero", "max", "over"]
    p.add_argument("--extents", choices=extents, default="rule")
    p.add_argument("--reply-extents", choices=extents, default="rule")
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
    def __init__(self, label: str, role: str, name: str, out: TextIO, protocol: int = 1) -> None:
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
                "protocol": protocol,  # PEER.md §7.5
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
        nulls: tuple[str, ...] = (),
        **extra: Any,
    ) -> None:
        """One operation line (§2); an ``extra`` of None is left out unless named in ``nulls``
        (the v2 fields written as null, §7.5)."""
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
        obj.update({k: v for k, v in extra.items() if v is not None or k in nulls})
        self.write(obj)


# ------------------------------------------------------------------------------ raw pokes


def _shm_path(name: str) -> str:
    return "/dev/shm/" + (name[1:] if name.startswith("/") else name)


def corrupt_header(name: str, field: str, value: str | None) -> int:
    """A rogue writer's plain little-endian store into the header, or into entry 0 of a v2
    message table (never through the library)."""
    off, fmt = FIELDS[field]
    fd = os.open(_shm_path(name), os.O_RDWR)
    try:
        area = TABLE_AREAS.get(field.rsplit("_", 1)[0])
        if area is not None:  # PEER.md §7.5: at the area offset of the geometry block
            (fields,) = struct.unpack("<I", os.pread(fd, 4, 0x040 if area == 0x048 else 0x044))
            if fields == 0:
                raise UsageError(f"--corrupt {field}: that schema has no fields, so no table entry")
            off += struct.unpack("<Q", os.pread(fd, 8, area))[0]
        m = mmap.mmap(fd, max(HEADER_SIZE, off + struct.calcsize(fmt)))
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
        elif field.endswith("table_dtype"):  # int32, or float32 if the field is int32 (§7.5)
            v = DTYPE_CODES[wrong_dtype("int32" if cur == 6 else "float32")]
        else:
            declared_dtype = struct.unpack_from("<I", m, 0x40)[0]
            (major,) = struct.unpack_from("<H", m, 0x008)
            v = {
                "version_major": 1 if major == 2 else 2,  # the other version (§1.1, §7.5)
                "header_size": 256,
                "flags": 1,
                "max_dims": 4,
                "declared_dtype": 99,
                "message_dtype": DTYPE_CODES[
                    wrong_dtype("int32" if declared_dtype == 6 else "float32")
                ],
                "request_fields": 17,
                "reply_fields": 17,
                "schema0_dtype": 99,
            }.get(
                field,
                int(cur) + (64 if field in ("capacity", "segment_size", "schema0_offset") else 1),
            )
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
    """Plain reads of the header through the handle's own mapping (``segment_bytes``): the same
    object the handle uses, even after its creator unlinked the name (a second open by name
    would race with that unlink and find nothing)."""

    def __init__(self, handle: Handle) -> None:
        self.handle = handle

    def read(self, off: int, n: int) -> bytes | None:
        if self.handle.closed:
            return None
        return self.handle.segment_bytes(off, n)

    def declared_field(self) -> dict[str, Any]:
        """PEER.md §2 ``declared_desc``: the 80 bytes of ``declared`` as hex."""
        d = self.read(0x040, 80)
        return {} if d is None else {"declared_desc": d.hex()}

    def reply_fields(self, protocol: int = 1) -> dict[str, Any]:
        """PEER.md §2: what the reply a receive consumed left (R-MSG-4): reply_code and
        message_desc (v2: reply_code only; 0x090 is reserved there, R-SCHEMA-5)."""
        rc, desc = self.read(0x0E0, 4), self.read(0x090, 80)
        if rc is None or desc is None:
            return {}
        if protocol == 2:
            return {"reply_code": struct.unpack("<I", rc)[0]}
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
        self.v2 = a.protocol == "2"
        self.log = Log(a.label, a.role, a.name, out, 2 if self.v2 else 1)
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
        self,
        op: str,
        rnd: int,
        fn: Callable[[], Any],
        injected: bool = False,
        fatal: bool = True,
        on_error: Callable[[Error], dict[str, Any]] | None = None,
    ) -> tuple[str, Any]:
        """Runs one library call and logs it; returns (result, value). ``on_error`` runs after
        a failed call and before its line is written, and adds fields to that line."""
        t0 = now_ns()
        try:
            value = fn()
        except Error as e:
            # PEER.md §2: the reason of a PEER_GONE (R-LIVE-5); what a consumed reply left.
            extra: dict[str, Any] = on_error(e) if on_error is not None else {}
            t1 = now_ns()
            if isinstance(e, PeerGone):
                extra["reason"] = e.reason.value
            if op == "receive" and e.reply_code is not None:
                extra.update(self.reply_fields())
            nulls: tuple[str, ...] = ()
            if self.v2 and op in ("send", "take", "reply", "receive"):
                # §7.5: no shapes nor checksums; the field the error names (R-FIELD-7)
                extra.update(shapes=None, checksums=None, field=e.field)
                nulls = ("shapes", "checksums", "field")
            elif self.v2:  # create/attach: the field a declaration or expectation check names
                extra.update(protocol=2, field=e.field)  # §7.5: on every create/attach line
                nulls = ("field",)
            self.log.event(
                op,
                rnd,
                t0,
                t1,
                e.name,
                None,
                self.phase(),
                None,
                nulls,
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
        if self.view is None:
            return {}
        return self.view.reply_fields(2 if self.v2 else 1)

    def describe(self, msg: Any) -> dict[str, Any]:
        """The log fields of a message: v1 its checksum (§2), v2 shapes and checksums (§7.5)."""
        return fields_log(msg) if self.v2 else {"checksum": hexsum(msg)}

    def log_receive(self, h: Any, rnd: int, t0: int, t1: int, reply: Any, **extra: Any) -> None:
        """A successful receive, with what its reply left in the header (PEER.md §2)."""
        self.log.event(
            "receive",
            rnd,
            t0,
            t1,
            "ok",
            h.seq(),
            self.phase(),
            **self.describe(reply),
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
        if self.v2:
            self.open_v2()
            return
        a = self.a
        cls = Requester if a.role == "requester" else Responder
        kw = self.options()
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
        t0, t1, h = val
        self.h = h
        self.view = HeaderView(h)
        self.log.event(op, 0, t0, t1, "ok", h.seq(), self.phase(), **self.view.declared_field())
        self.dtype = h.dtype.name
        self.shape: tuple[int, ...] = tuple(h.shape)
        self.ready()

    def options(self) -> dict[str, Any]:
        """The library options of the flags (§1): --timeout, --no-reclaim, --keep."""
        a = self.a
        return {"timeout": a.timeout, "reclaim_stale": not a.no_reclaim, "keep_segment": a.keep}

    def ready(self) -> None:
        self.point("after", "ready", 0)
        if self.a.wait_peer:
            wait_peer(self.a.name, self.a.role, 10.0)

    def open_v2(self) -> None:
        """§7: create with the schemas given, or attach stating those given (R-SCHEMA-10); an op
        that does not fit the schemas found is a usage error after the create/attach line."""
        a = self.a
        cls = MessageRequester if a.role == "requester" else MessageResponder
        kw = self.options()
        op = "create" if a.create else "attach"
        make = cls.create if a.create else cls.attach
        res, val = self.call(op, 0, lambda: make(a.name, a.request_spec, a.reply_spec, **kw))
        if res != "ok":
            self.fail(res, val)
        t0, t1, h = val
        self.h = h
        self.view = HeaderView(h)
        self.log.event(op, 0, t0, t1, "ok", h.seq(), self.phase(), protocol=2)
        header = h.header()
        self.request_records, self.reply_records = header.request, header.reply
        if a.op in ("add1", "echo", "checksum") and not compatible(
            self.request_records, self.reply_records
        ):
            raise UsageError(
                f"--op {a.op} needs reply field k in place onto request field k or of its dtype "
                "and shape (PEER.md §7.4); these schemas do not fit: use --op derive"
            )
        self.ready()

    def request_data(self, rnd: int) -> Any:
        """The request of round ``rnd``: §3's array, or §7.3's fields."""
        a = self.a
        if not self.v2:
            return pattern(self.dtype, self.shape, rnd, a.seed)
        base = 13 * rnd + a.seed
        return {
            r.name: field_array(r, k, a.extents, rnd + a.seed, base)
            for k, r in enumerate(self.request_records)
        }

    def run_requester(self) -> None:
        a, h = self.a, self.h
        assert isinstance(h, (Requester, MessageRequester))
        rnd = 1
        data = self.request_data(rnd)
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
                data = self.request_data(rnd)
                need_send, gone_since, retries = True, None, 0
                continue
            if res == "TIMEOUT" and a.retry_after_timeout and retries < 100:
                retries += 1
                if rnd < a.rounds:
                    nxt = self.request_data(rnd + 1)
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

    def send(self, h: Any, rnd: int, data: Any, injected: bool = False) -> tuple[str, Any]:
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
                injected=injected or None,
                **self.describe(data),
            )
        return res, val

    def injected_receive(self, h: Any, rnd: int) -> None:
        res, val = self.call("receive", rnd, lambda: h.receive_copy(timeout=0), injected=True)
        if res == "ok":
            t0, t1, reply = val
            self.log_receive(h, rnd, t0, t1, reply, injected=True)

    def verify(self, sent: Any, reply: Any) -> bool:
        if self.v2:
            return self.verify_v2(sent, reply)
        if self.a.op == "checksum":
            return checksum(reply) == checksum(sent)
        want = sent.copy()
        apply_op(self.a.op, want)
        return bool(reply.shape == want.shape and np.array_equal(reply, want))

    def promised(self, request: Any) -> dict[str, np.ndarray[Any, Any]]:
        """§7.4: the reply fields the op gives ``request`` (as sent, or as taken)."""
        a, out = self.a, {}
        if a.op == "derive":
            c = derive_base(request)
            for k, r in enumerate(self.reply_records):
                out[r.name] = field_array(r, k, a.reply_extents, c, c)
            return out
        for r, q in zip(self.reply_records, self.request_records):
            want = np.array(request[q.name])  # a copy (the request may be a view)
            apply_op(a.op, want)
            out[r.name] = want
        return out

    def verify_v2(self, sent: dict[str, Any], reply: dict[str, np.ndarray[Any, Any]]) -> bool:
        """§7.4 verification: every reply field has the shape and data the op promises for the
        request sent (``checksum``: by checksums only)."""
        want = self.promised(sent)
        if list(reply) != list(want):
            return False
        if self.a.op == "checksum":
            return all(checksum(reply[k]) == checksum(w) for k, w in want.items())
        return all(
            reply[k].shape == w.shape and np.array_equal(reply[k], w) for k, w in want.items()
        )

    def reply_v2(self, req: MessageRequest, rnd: int) -> None:
        """§7.4 on a taken v2 request: the reply of the op, copied in (an in-place field of echo
        and checksum is left as taken). A reply the library refuses (derive with
        --reply-extents over: CAPACITY_EXCEEDED, S7) is logged, the round completed with an
        error reply of that code (R-MSG-2), and the peer ends with it."""
        a = self.a
        published = self.promised(req.request)
        given = {
            r.name: v
            for r, v in zip(self.reply_records, published.values())
            if not (r.alias and a.op in ("echo", "checksum"))
        }
        self.point("before", "reply", rnd)
        res, val = self.call(
            "reply", rnd, lambda: req.reply(given), on_error=lambda e: self.error_reply(req, e)
        )
        if res != "ok":
            self.fail(res, val)
        t0, t1, _ = val
        self.log.event("reply", rnd, t0, t1, "ok", int(req.seq), self.phase(),
                       **fields_log(published))  # fmt: skip

    def error_reply(self, req: MessageRequest, e: Error) -> dict[str, Any]:
        """§7.4: a refused reply's round is completed by an error reply of its code (R-MSG-2)
        before the ``reply`` line is written, which then logs that ``reply_code``."""
        if req.done:
            return {}
        try:
            req.fail(e.code)
        except Error:
            return {}  # the error reply failed too (e.g. the requester is gone): no reply_code
        return {"reply_code": int(e.code)}

    def run_responder(self) -> None:
        a, h = self.a, self.h
        assert isinstance(h, (Responder, MessageResponder))
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
            taken = req.request if self.v2 else req.array
            self.log.event("take", rnd, t0, t1, "ok", int(req.seq), self.phase(),
                           **self.describe(taken))  # fmt: skip
            self.point("after", "take", rnd)
            if rnd == 1 and a.out_of_turn == "take":
                self.call("take", rnd, lambda: h.take(timeout=0), injected=True)
            if a.op == "fail":
                self.handler_fails(req, rnd)
            if self.v2:
                self.reply_v2(req, rnd)
                self.rounds_ok += 1
                self.verified += 1
                self.point("after", "reply", rnd)
                continue
            arr = taken
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
            v2: dict[str, Any] = {"shapes": None, "checksums": None, "field": None}
            self.log.event(
                "reply",
                rnd,
                t0,
                now_ns(),
                err.name,
                int(req.seq),
                self.phase(),
                None,
                tuple(v2) if self.v2 else (),  # §7.5: a failed v2 reply's null fields
                message=str(err),
                **(v2 if self.v2 else {}),
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


def protocol_flags(a: argparse.Namespace) -> None:
    """PEER.md §7.1: the protocol (2 if a schema flag is given), the flags each protocol
    refuses, and the SPECs parsed (usage errors)."""
    schemas = a.request_schema is not None or a.reply_schema is not None
    a.protocol = a.protocol or ("2" if schemas else "1")
    if a.capacity is not None and a.capacity < 0:
        raise UsageError("--capacity takes a byte count >= 0")
    if a.protocol == "1":
        if schemas:
            raise UsageError("--protocol 1 with a schema flag: schemas are protocol 2")
        if a.op == "derive":
            raise UsageError("--op derive is protocol 2 (PEER.md §7.4)")
        return
    for flag in ("dtype", "shape", "capacity"):
        if getattr(a, flag) is not None:
            raise UsageError(f"--{flag} is protocol 1: with protocol 2 give the schemas")
    if a.wrong_shape or a.wrong_dtype:
        raise UsageError("--wrong-shape/--wrong-dtype are protocol 1: give the attacher a SPEC")
    if a.create and (a.request_schema is None or a.reply_schema is None):
        raise UsageError("--create with protocol 2 needs --request-schema and --reply-schema")
    a.request_spec = None if a.request_schema is None else parse_spec(a.request_schema)
    a.reply_spec = None if a.reply_schema is None else parse_spec(a.reply_schema)


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
        protocol_flags(a)
        a.shape_t = parse_shape(a.shape)
        if a.create and a.protocol == "1":
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
