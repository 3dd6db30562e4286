"""The Python floor: a responder that does the least any Python process must do per round, with
no library logic (driven by bench/run.py as the "pybare" side of a pairing).

    python bench/py/bare_peer.py responder --name N [--spin-us S]

It maps an existing shmbridge segment (created by a C++ ``bench_peer requester``) and serves its
rounds with the bare protocol and the library's native helper: one ``_native.wait_cas`` (spin
``S`` µs for REQUESTED, then futex, CAS to TAKEN), ``a += 1.0`` on a numpy view of the payload,
one ``_native.cas_wake`` (CAS to REPLIED with the R-WAIT-3 wake): two native calls per round,
the fewest any Python responder on this helper can make. No liveness slot, no message or
reply_code checks, no leases, no error handling: what is left of a cpp→py round is the C++
requester plus this loop, so ``cpp→py / cpp→pybare`` is the Python library's overhead and
``cpp→pybare / raw ping-pong`` is how far CPython itself is from the C++ hand-off.
It ends when the requester's slot says CLOSED and prints the JSON line of bench_peer.py.
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
from shmbridge.segment import Segment

IDLE, REQUESTED, TAKEN, REPLIED = 0x0, 0x1, 0x4, 0x2
KEEP_SEQ = 0xFFFFFFF0


def cpu_s() -> float:
    t = os.times()
    return t.user + t.system


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
        w = wait_cas(mm, OFF_WORD, OFF_WAITERS, *take, spin_s, 0.0)
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
    ap.add_argument("mode", choices=["responder"])
    ap.add_argument("--name", default="shmb_bench")
    ap.add_argument("--spin-us", type=float, default=100.0)  # library default (R-WAIT-1)
    ap.add_argument("--timeout", type=float, default=30.0)  # accepted for bench_peer's CLI
    return responder(ap.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
