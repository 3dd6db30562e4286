"""The Python floors: the least any Python process must do per round, with no library logic
(driven by bench/run.py as the "pybare" side of a pairing).

    python bench/py/bare_peer.py responder --name N [--spin-us S]
    python bench/py/bare_peer.py requester --name N --bytes B [--rounds R] [--warmup W]
                                 [--spin-us S] [--zero-copy 0|1]

responder: maps an existing shmbridge segment (created by a ``bench_peer requester``) and serves
its rounds with the bare protocol and the library's native helper: one ``_native.wait_cas`` (spin
``S`` µs for REQUESTED, then futex, CAS to TAKEN), ``a += 1.0`` on a numpy view of the payload,
one ``_native.cas_wake`` (CAS to REPLIED with the R-WAIT-3 wake): two native calls per round,
the fewest any Python responder on this helper can make. No liveness slot, no message or
reply_code checks, no leases, no error handling: what is left of a cpp→py round is the C++
requester plus this loop, so ``cpp→py / cpp→pybare`` is the Python library's overhead and
``cpp→pybare / raw ping-pong`` is how far CPython itself is from the C++ hand-off.
It ends when the requester's slot says CLOSED and prints the JSON line of bench_peer.py.

requester: the mirror, against any responder: creates the segment like bench_peer.py (the
library's ``Requester.create``, untimed), then per round writes the request into a numpy view of
the payload, one ``_native.cas_wake`` (IDLE -> REQUESTED of the next seq, T1, with the wake), one
``_native.wait_cas`` (spin ``S`` µs, then futex, for REPLIED of that seq; CAS to IDLE, T4) and
reads the reply: two native calls per round. The round's data work is bench_peer.py's: copying,
the whole array in (``a[...] = src``) and out; ``--zero-copy 1``, element 0 written in place and
the first and last element read. No reply_code or message check, no phase checks, no leases:
``py→cpp / pybare→cpp`` is the Python requester's overhead, and ``pybare→cpp`` against the
original is the most any Python requester on this helper can reach.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

try:
    import shmbridge  # noqa: F401  (only to locate the package)
except ImportError:  # run from a checkout without installing: use python/ next to bench/
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "python"))

from shmbridge import _native
from shmbridge.errors import SegmentNotFound
from shmbridge.layout import (
    OFF_REQUESTER,
    OFF_WAITERS,
    OFF_WORD,
    PAYLOAD_OFFSET,
    SLOT_CLOSED,
    decode_header,
)
from shmbridge.liveness import slot_owner
from shmbridge.protocol import SEQ_MASK
from shmbridge.segment import Segment

IDLE, REQUESTED, TAKEN, REPLIED = 0x0, 0x1, 0x4, 0x2
KEEP_SEQ = 0xFFFFFFF0


def cpu_s() -> float:
    t = os.times()
    return t.user + t.system


def requester(a: argparse.Namespace) -> int:
    import shmbridge

    n = a.bytes // 4
    shape = (512, 512) if a.bytes == 1 << 20 else (n,)  # bench_peer.py's shapes
    opts = shmbridge.Options(timeout=60.0, spin=a.spin_us * 1e-6)
    handle = shmbridge.Requester.create(a.name, np.float32, shape, options=opts)
    seg = Segment.attach(a.name, deadline=time.monotonic() + 1.0)  # the bare mapping
    mm = seg.mm
    assert mm is not None
    payload = np.frombuffer(mm, dtype=np.float32, count=n, offset=PAYLOAD_OFFSET)
    src = (np.arange(n, dtype=np.int32) % 1024).astype(np.float32)  # whole values: exact + 1
    out = np.zeros(n, dtype=np.float32)
    payload[...] = src
    wait_cas, cas_wake = _native.wait_cas, _native.cas_wake
    spin_s = min(a.spin_us * 1e-6, _native.MAX_SPIN_SLICE_S)
    seq = (_native.load_acquire(mm, OFF_WORD) >> 4) & SEQ_MASK
    last = float(n - 1) % 1024  # zero-copy: the last element grows by 1 per round
    print("READY", flush=True)
    samples = []
    bad = 0
    clock = time.perf_counter_ns
    c0 = w0 = 0.0
    for r in range(-a.warmup, a.rounds):
        if r == 0:
            c0, w0 = cpu_s(), time.perf_counter()
        value = float(r & 0xFFFF)
        src[0] = value
        t0 = clock()
        if a.zero_copy:
            payload[0] = value
        else:
            payload[...] = src
        nxt = (seq + 1) & SEQ_MASK
        base = nxt << 4
        cas_wake(mm, OFF_WORD, OFF_WAITERS, seq << 4, base | REQUESTED)  # T1
        # T4: wait in REQUESTED or TAKEN of this seq for REPLIED, CAS it to IDLE.
        done = wait_cas(
            mm, OFF_WORD, OFF_WAITERS, 0xFFFFFFFF, base | REPLIED, KEEP_SEQ, IDLE, 0xFFFFFFFF,
            base | REQUESTED, base | TAKEN, spin_s, 0.0,
        )  # fmt: skip
        while done > 0xFFFFFFFF:
            done = wait_cas(
                mm, OFF_WORD, OFF_WAITERS, 0xFFFFFFFF, base | REPLIED, KEEP_SEQ, IDLE, 0xFFFFFFFF,
                base | REQUESTED, base | TAKEN, 0.0, 0.05,
            )  # fmt: skip
        seq = nxt
        if a.zero_copy:
            first, end = payload[0], payload[-1]
        else:
            out[...] = payload
            first, end = out[0], out[-1]
        t1 = clock()
        last += 1.0
        if first != value + 1 or end != (last if a.zero_copy else src[-1] + 1):
            bad += 1
        if r >= 0:
            samples.append(t1 - t0)
    res = {
        "lang": "pybare",
        "role": "requester",
        "bytes": a.bytes,
        "rounds": len(samples),
        "errors": bad,
        "wall_s": time.perf_counter() - w0,
        "cpu_s": cpu_s() - c0,
        "samples_ns": samples,
    }
    print(json.dumps(res), flush=True)
    del payload
    seg.close()
    handle.close()  # the slot says CLOSED: the responder ends
    return 1 if bad else 0


def responder(a: argparse.Namespace) -> int:
    give_up = time.monotonic() + 10.0
    while True:
        try:
            seg = Segment.attach(a.name, deadline=time.monotonic() + 1.0)
            break
        except SegmentNotFound:
            if time.monotonic() >= give_up:
                raise
            time.sleep(0.005)
    mm = seg.mm
    assert mm is not None
    header = decode_header(mm, len(mm))
    payload = np.frombuffer(
        mm, dtype=np.float32, count=header.declared.nbytes // 4, offset=PAYLOAD_OFFSET
    )
    wait_cas, cas_wake = _native.wait_cas, _native.cas_wake
    # T2: wait in IDLE or REPLIED for REQUESTED, CAS it to TAKEN (the library's take step).
    take = (0xF, REQUESTED, KEEP_SEQ, TAKEN, 0xF, IDLE, REPLIED)
    spin_s = min(a.spin_us * 1e-6, _native.MAX_SPIN_SLICE_S)
    served = 0
    c0 = cpu_s()
    while True:
        w = wait_cas(  # *take spelled out: a star call costs ~1,000 instructions more
            mm, OFF_WORD, OFF_WAITERS, 0xF, REQUESTED, KEEP_SEQ, TAKEN, 0xF, IDLE, REPLIED,
            spin_s, 0.0,
        )  # fmt: skip
        while w > 0xFFFFFFFF:  # no request within the spin (< 2**32: taken): the end of the run?
            if slot_owner(mm, OFF_REQUESTER)[1] == SLOT_CLOSED:
                print(
                    json.dumps(
                        {
                            "lang": "pybare",
                            "role": "responder",
                            "served": served,
                            "cpu_s": cpu_s() - c0,
                        }
                    ),
                    flush=True,
                )
                seg.close()
                return 0
            w = wait_cas(mm, OFF_WORD, OFF_WAITERS, *take, 0.0, 0.05)
        payload += 1.0
        keep = w & KEEP_SEQ
        cas_wake(mm, OFF_WORD, OFF_WAITERS, keep | TAKEN, keep | REPLIED)
        served += 1


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["requester", "responder"])
    ap.add_argument("--name", default="shmb_bench")
    ap.add_argument("--bytes", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=10000)
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--zero-copy", type=int, default=0)
    ap.add_argument("--max-seconds", type=float, default=0.0)  # accepted for bench_peer's CLI
    ap.add_argument("--spin-us", type=float, default=100.0)  # library default (R-WAIT-1)
    ap.add_argument("--timeout", type=float, default=30.0)  # accepted for bench_peer's CLI
    a = ap.parse_args(argv)
    return requester(a) if a.mode == "requester" else responder(a)


if __name__ == "__main__":
    raise SystemExit(main())
