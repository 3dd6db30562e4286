"""Alternatives a user might pick instead of shmbridge, and the Python floors (driven by
bench/run.py). Each system runs its requester in this process and its responder in a second
process (multiprocessing, spawn), the same round as bench_peer: the requester copies a float32
array in, the responder adds 1.0, the requester copies the reply out.

    python bench/py/alt_peers.py pipe|zmq|iceoryx2 --bytes B --rounds R --warmup W
    python bench/py/alt_peers.py pyfloor --bytes B --rounds R
    python bench/py/alt_peers.py probe            # which alternatives are usable here (JSON)

pipe     multiprocessing.Pipe, arrays sent with pickle (Connection.send), a fresh array per
         message, reply computed in place on the received copy.
zmq      pyzmq REQ/REP over ipc://, frames sent with copy=False (zero-copy above pyzmq's copy
         threshold), reply computed with np.add(..., out=) into a reused buffer.
iceoryx2 iceoryx2 request/response with Slice[c_uint8] payloads loaned from shared memory;
         request written with np.copyto into the loan, reply computed into the response loan
         with np.add(..., out=). Both sides busy-poll (receive() in a loop): there is no blocking
         receive in its Python request/response API without an extra event service.
pyfloor  numpy floors: np.copyto of B bytes, ``a += 1.0``, and the work floor copyto in + add +
         copyto out, each per round with perf_counter_ns.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import multiprocessing as mp
import os
import sys
import time
from typing import Any, Callable

import numpy as np

clock = time.perf_counter_ns


def pin(cpu: int) -> None:
    """SHMB_BENCH_PIN=1 (bench/run.py --pin): requester on CPU 0, responder on CPU 1."""
    if os.environ.get("SHMB_BENCH_PIN") == "1" and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {cpu})


def shape_for(nbytes: int) -> tuple[int, ...]:
    return (512, 512) if nbytes == 1 << 20 else (nbytes // 4,)


def cpu_s() -> float:
    t = os.times()
    return t.user + t.system


def _rounds(
    a: argparse.Namespace, one_round: Callable[[np.ndarray, np.ndarray], None], system: str
) -> dict[str, Any]:
    shape = shape_for(a.bytes)
    n = a.bytes // 4
    src = (np.arange(n, dtype=np.float32) % 1024).reshape(shape)
    out = np.zeros(shape, dtype=np.float32)
    fi, fo = src.reshape(-1), out.reshape(-1)
    samples = []
    bad = 0
    c0 = w0 = 0.0
    for r in range(-a.warmup, a.rounds):
        if r == 0:
            c0, w0 = cpu_s(), time.perf_counter()
        fi[0] = r & 0xFFFF
        t0 = clock()
        one_round(src, out)
        t1 = clock()
        if fo[0] != fi[0] + 1 or fo[-1] != fi[-1] + 1:
            bad += 1
        if r >= 0:
            samples.append(t1 - t0)
            if a.max_seconds and time.perf_counter() - w0 > a.max_seconds:
                break
    return {
        "lang": "py",
        "system": system,
        "bytes": a.bytes,
        "rounds": len(samples),
        "errors": bad,
        "wall_s": time.perf_counter() - w0,
        "cpu_s": cpu_s() - c0,
        "samples_ns": samples,
    }


# -- multiprocessing Pipe (pickle) -----------------------------------------------------------


def _pipe_responder(conn: Any) -> None:
    pin(1)
    while True:
        a = conn.recv()
        if a is None:
            return
        a += 1.0
        conn.send(a)


def run_pipe(a: argparse.Namespace) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    p = ctx.Process(target=_pipe_responder, args=(child,), daemon=True)
    p.start()

    def one(src: np.ndarray, out: np.ndarray) -> None:
        parent.send(src)
        np.copyto(out, parent.recv())

    try:
        return _rounds(a, one, "pipe")
    finally:
        parent.send(None)
        p.join(10)


# -- pyzmq REQ/REP ----------------------------------------------------------------------------


def _zmq_responder(addr: str, nbytes: int) -> None:
    pin(1)
    import zmq

    ctx = zmq.Context()
    s = ctx.socket(zmq.REP)
    s.connect(addr)
    reply = np.empty(nbytes // 4, dtype=np.float32)
    while True:
        f = s.recv(copy=False)
        if len(f) == 0:
            s.send(b"")
            break
        np.add(np.frombuffer(f.buffer, dtype=np.float32), 1.0, out=reply)
        s.send(reply, copy=False)
    s.close(linger=1000)
    ctx.term()


def run_zmq(a: argparse.Namespace) -> dict[str, Any]:
    import zmq

    addr = f"ipc:///tmp/shmb_bench_zmq_{os.getpid()}"
    zctx = zmq.Context()
    s = zctx.socket(zmq.REQ)
    s.bind(addr)
    ctx = mp.get_context("spawn")
    p = ctx.Process(target=_zmq_responder, args=(addr, a.bytes), daemon=True)
    p.start()

    def one(src: np.ndarray, out: np.ndarray) -> None:
        s.send(src, copy=False)
        f = s.recv(copy=False)
        np.copyto(out.reshape(-1), np.frombuffer(f.buffer, dtype=np.float32))

    try:
        return _rounds(a, one, "zmq")
    finally:
        s.send(b"")
        s.recv()
        p.join(10)
        s.close(linger=0)
        zctx.term()


# -- iceoryx2 request/response ----------------------------------------------------------------


def _iox_view(ptr: int, nbytes: int) -> np.ndarray:
    # np.frombuffer over a ctypes char array: ~1 µs (np.ctypeslib.as_array takes ~18 µs at 1 MiB).
    return np.frombuffer((ctypes.c_char * nbytes).from_address(ptr), dtype=np.float32)


def _iox_service(name: str, nbytes: int) -> tuple[Any, Any]:
    import iceoryx2 as iox2

    iox2.set_log_level(iox2.LogLevel.Error)
    node = iox2.NodeBuilder.new().create(iox2.ServiceType.Ipc)
    svc = (
        node.service_builder(iox2.ServiceName.new(name))
        .request_response(iox2.Slice[ctypes.c_uint8], iox2.Slice[ctypes.c_uint8])
        .open_or_create()
    )
    return node, svc


def _iox_responder(name: str, nbytes: int, ready: Any) -> None:
    pin(1)
    node, svc = _iox_service(name, nbytes)
    server = svc.server_builder().initial_max_slice_len(nbytes).create()
    ready.set()
    while True:
        active = server.receive()
        if active is None:
            continue
        n = active.payload().len()
        if n == 4:  # the stop message
            resp = active.loan_slice_uninit(4)
            resp.assume_init().send()
            del active
            break
        req_view = _iox_view(active.payload_ptr, n)
        resp = active.loan_slice_uninit(n)
        np.add(req_view, 1.0, out=_iox_view(resp.payload_ptr, n))
        resp.assume_init().send()
        del req_view, active
    del server, svc, node


def run_iceoryx2(a: argparse.Namespace) -> dict[str, Any]:
    name = f"shmb_bench/iox/{os.getpid()}"
    _node, svc = _iox_service(name, a.bytes)  # held: the node lives as long as the service
    client = svc.client_builder().initial_max_slice_len(a.bytes).create()
    ctx = mp.get_context("spawn")
    ready = ctx.Event()
    p = ctx.Process(target=_iox_responder, args=(name, a.bytes, ready), daemon=True)
    p.start()
    if not ready.wait(30):
        raise RuntimeError("iceoryx2 responder did not start")
    while svc.dynamic_config.number_of_servers == 0:  # the server port is visible
        time.sleep(0.001)
    nb = a.bytes

    def one(src: np.ndarray, out: np.ndarray) -> None:
        req = client.loan_slice_uninit(nb)
        np.copyto(_iox_view(req.payload_ptr, nb), src.reshape(-1))
        pending = req.assume_init().send()
        while True:
            resp = pending.receive()
            if resp is not None:
                break
        np.copyto(out.reshape(-1), _iox_view(resp.payload_ptr, nb))
        del resp, pending

    try:
        return _rounds(a, one, "iceoryx2")
    finally:
        req = client.loan_slice_uninit(4)
        pending = req.assume_init().send()
        t_end = time.monotonic() + 5
        while pending.receive() is None and time.monotonic() < t_end:
            pass
        del pending
        p.join(10)
        if p.is_alive():
            p.kill()


# -- Python floors ------------------------------------------------------------------------------


def run_pyfloor(a: argparse.Namespace) -> dict[str, Any]:
    shape = shape_for(a.bytes)
    n = a.bytes // 4
    src = np.ones(shape, dtype=np.float32)
    mid = np.zeros(shape, dtype=np.float32)
    out = np.zeros(shape, dtype=np.float32)
    cp, add, work = [], [], []
    warm = a.rounds // 10 + 2
    for r in range(-warm, a.rounds):
        t0 = clock()
        np.copyto(mid, src)
        t1 = clock()
        mid += 1.0
        t2 = clock()
        t3 = clock()
        np.copyto(mid, src)
        mid += 1.0
        np.copyto(out, mid)
        t4 = clock()
        if r >= 0:
            cp.append(t1 - t0)
            add.append(t2 - t1)
            work.append(t4 - t3)
    assert out.reshape(-1)[n - 1] == 2.0
    return {"kind": "pyfloor", "bytes": a.bytes, "copy_ns": cp, "add_ns": add, "work_ns": work}


def probe() -> dict[str, Any]:
    res: dict[str, Any] = {}
    try:
        import zmq

        res["zmq"] = {"ok": True, "version": zmq.__version__}
    except Exception as e:  # any failure means "skip with this reason"
        res["zmq"] = {"ok": False, "reason": f"pyzmq not importable ({e}); pip install pyzmq"}
    try:
        import iceoryx2 as iox2

        node, svc = _iox_service(f"shmb_bench/probe/{os.getpid()}", 64)
        del svc, node
        res["iceoryx2"] = {"ok": True, "version": getattr(iox2, "__version__", "?")}
    except Exception as e:
        res["iceoryx2"] = {
            "ok": False,
            "reason": f"iceoryx2 not usable ({type(e).__name__}: {e}); pip install iceoryx2",
        }
    res["pipe"] = {"ok": True, "version": sys.version.split()[0]}
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("system", choices=["pipe", "zmq", "iceoryx2", "pyfloor", "probe"])
    ap.add_argument("--bytes", type=int, default=1 << 20)
    ap.add_argument("--rounds", type=int, default=500)
    ap.add_argument("--warmup", type=int, default=50)
    ap.add_argument("--max-seconds", type=float, default=0.0)
    a = ap.parse_args(argv)
    if a.system == "probe":
        print(json.dumps(probe()), flush=True)
        return 0
    pin(0)
    fn = {"pipe": run_pipe, "zmq": run_zmq, "iceoryx2": run_iceoryx2, "pyfloor": run_pyfloor}
    print(json.dumps(fn[a.system](a)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
