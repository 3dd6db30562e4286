"""Benchmark peer on the public shmbridge Python API (driven by bench/run.py); the mirror of
bench/cpp/bench_peer.cpp, same command line, same JSON.

    python bench/py/bench_peer.py requester --name N --bytes B [--rounds R] [--warmup W]
                                  [--spin-us S] [--timeout S]
    python bench/py/bench_peer.py responder --name N [--spin-us S] [--timeout S]
    python bench/py/bench_peer.py idle --name N --seconds T [--spin-us S]

requester: creates the segment (float32; (512, 512) for 1 MiB, else (B/4,)), prints READY, then
W warm-up and R timed rounds of ``send(in)`` (np.copyto into the segment) + ``receive_copy(out=)``
(np.copyto out), each timed with perf_counter_ns. With ``--zero-copy 1`` the zero-copy round
instead: element 0 written into ``request_buffer()`` in place (the whole buffer once, before the
warm-up), sent on leaving the block, and the first and last element read from the ``receive()``
view; no copy in or out. responder: ``serve`` with ``a += 1.0`` in
place. idle: creates the segment as the responder and waits T s in ``take`` for a request that
never comes; reports the process CPU time (os.times) of that wait.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time

import numpy as np

try:
    import shmbridge
except ImportError:  # run from a checkout without installing: use python/ next to bench/
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "python"))
    import shmbridge


def shape_for(nbytes: int) -> tuple[int, ...]:
    return (512, 512) if nbytes == 1 << 20 else (nbytes // 4,)


def cpu_s() -> float:
    t = os.times()
    return t.user + t.system


def minflt() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def options(a: argparse.Namespace) -> shmbridge.Options:
    return shmbridge.Options(timeout=a.timeout, spin=a.spin_us * 1e-6)


def requester(a: argparse.Namespace) -> int:
    shape = shape_for(a.bytes)
    req = shmbridge.Requester.create(a.name, np.float32, shape, options=options(a))
    n = a.bytes // 4
    src = (np.arange(n, dtype=np.float32) % 1024 + np.float32(1e-6)).reshape(shape)
    out = np.zeros(shape, dtype=np.float32)  # pre-touched: every page written before timing
    flat_in, flat_out = src.reshape(-1), out.reshape(-1)
    first_i, last_i = (0,) * len(shape), tuple(s - 1 for s in shape)
    # zero-copy: the first round writes the whole request in place (whole values, exact after
    # many +1), later rounds element 0; the last element grows by 1 per round.
    whole = (np.arange(n, dtype=np.int32) % 1024).astype(np.float32).reshape(shape)
    last = float((n - 1) % 1024)
    print("READY", flush=True)
    samples = []
    bad = 0
    clock = time.perf_counter_ns
    c0 = f0 = w0 = 0
    for r in range(-a.warmup, a.rounds):
        if r == 0:
            c0, f0, w0 = cpu_s(), minflt(), time.perf_counter()
        flat_in[0] = r & 0xFFFF  # a different request every round
        if a.zero_copy:
            value = flat_in[0]
            t0 = clock()
            with req.request_buffer() as buf:
                if r == -a.warmup:
                    buf[...] = whole
                buf[first_i] = value
            with req.receive() as reply:
                first, end = reply[first_i], reply[last_i]
            t1 = clock()
            last += 1.0
            if first != value + 1 or end != last:
                bad += 1
            if r >= 0:
                samples.append(t1 - t0)
                if a.max_seconds and time.perf_counter() - w0 > a.max_seconds:
                    break
            continue
        t0 = clock()
        req.send(src)
        req.receive_copy(out=out)
        t1 = clock()
        if flat_out[0] != flat_in[0] + 1 or flat_out[-1] != flat_in[-1] + 1:
            bad += 1
        if r >= 0:
            samples.append(t1 - t0)
            if a.max_seconds and time.perf_counter() - w0 > a.max_seconds:
                break
    res = {
        "lang": "py",
        "role": "requester",
        "bytes": a.bytes,
        "rounds": len(samples),
        "errors": bad,
        "wall_s": time.perf_counter() - w0,
        "cpu_s": cpu_s() - c0,
        "minor_faults": minflt() - f0,
        "samples_ns": samples,
    }
    print(json.dumps(res), flush=True)
    req.close()
    return 1 if bad else 0


def responder(a: argparse.Namespace) -> int:
    give_up = time.monotonic() + 10.0
    while True:
        try:
            rsp = shmbridge.Responder.attach(a.name, options=options(a))
            break
        except shmbridge.SegmentNotFound:
            if time.monotonic() >= give_up:
                raise
            time.sleep(0.005)
    c0, f0 = cpu_s(), minflt()

    def handler(arr: np.ndarray) -> None:
        arr += 1.0  # the reply is computed in place

    served = rsp.serve(handler)
    print(
        json.dumps(
            {
                "lang": "py",
                "role": "responder",
                "served": served,
                "cpu_s": cpu_s() - c0,
                "minor_faults": minflt() - f0,
            }
        ),
        flush=True,
    )
    rsp.close()
    return 0


def idle(a: argparse.Namespace) -> int:
    rsp = shmbridge.Responder.create(a.name, np.float32, shape_for(a.bytes), options=options(a))
    print("READY", flush=True)
    c0, t0 = cpu_s(), time.monotonic()
    outcome = "request"
    try:
        rsp.take(timeout=a.seconds)
    except shmbridge.Error as e:
        outcome = e.code.name
    res = {
        "lang": "py",
        "role": "idle",
        "outcome": outcome,
        "wall_s": time.monotonic() - t0,
        "cpu_s": cpu_s() - c0,
    }
    print(json.dumps(res), flush=True)
    rsp.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["requester", "responder", "idle"])
    ap.add_argument("--name", default="shmb_bench")
    ap.add_argument("--bytes", type=int, default=1 << 20)
    ap.add_argument("--rounds", type=int, default=1000)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--spin-us", type=float, default=100.0)  # library default (R-WAIT-1)
    ap.add_argument("--timeout", type=float, default=30.0)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument(
        "--zero-copy",
        type=int,
        default=0,
        help="requester: 1 = the zero-copy round (request_buffer in place, receive() view)",
    )
    ap.add_argument(
        "--max-seconds",
        type=float,
        default=0.0,
        help="requester: stop the timed rounds after this long (0 = no limit)",
    )
    a = ap.parse_args(argv)
    if a.bytes < 4 or a.bytes % 4:
        ap.error("--bytes must be a positive multiple of 4")
    try:
        return {"requester": requester, "responder": responder, "idle": idle}[a.mode](a)
    except shmbridge.Error as e:
        print(f"bench_peer.py {a.mode}: {e}", file=sys.stderr)
        return e.exit_code


if __name__ == "__main__":
    raise SystemExit(main())
