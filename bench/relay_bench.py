"""Relay benchmark (issue 15, spec/RELAY.md): the round trip of a float32 array through a relay
pair on loopback (Python requester -> shm -> near relay -> TCP -> far relay -> shm -> Python
responder adding 1 in place, and back) against pyzmq REQ/REP sending the same array directly over
TCP loopback (the server adds 1), in the same run, interleaved. Rows 64 B and 1 MiB by default;
the target of the issue is relay p50 <= 1.5 x direct p50.

    python -m bench.relay_bench [--sizes 64,1048576] [--seconds 3] [--json PATH]

Standalone (not part of ``python -m bench``): needs pyzmq and the shmbridge package."""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent

_SERVER = r"""
import sys, numpy as np, zmq
ctx = zmq.Context(); s = ctx.socket(zmq.REP); s.bind(sys.argv[1])
while True:
    f = s.recv(copy=False)
    if len(f) == 0:
        s.send(b""); break
    a = np.frombuffer(f, dtype=np.float32).copy()
    a += 1
    s.send(a, copy=False)
"""

_RESPONDER = r"""
import sys, numpy as np, shmbridge as sb
with sb.Responder.attach(sys.argv[1], timeout=30) as r:
    def add1(a):
        a += 1
    try:
        r.serve(add1, timeout=60)
    except sb.PeerGone:
        pass
"""


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _p50_us(samples: list[int]) -> float:
    return float(np.percentile(np.array(samples) / 1e3, 50))


def _direct(endpoint: str, arr: np.ndarray[Any, Any], out: np.ndarray[Any, Any],
            seconds: float) -> list[int]:  # fmt: skip
    import zmq

    ctx = zmq.Context.instance()
    s = ctx.socket(zmq.REQ)
    s.connect(endpoint)
    samples: list[int] = []
    end = time.monotonic() + seconds
    for i in range(50 + 10**9):
        t0 = time.perf_counter_ns()
        s.send(arr, copy=arr.nbytes < 65536)
        f = s.recv(copy=False)
        out[...] = np.frombuffer(f, dtype=np.float32)
        t1 = time.perf_counter_ns()
        if i >= 50:
            samples.append(t1 - t0)
        if time.monotonic() > end and len(samples) >= 20:
            break
    s.close(linger=0)
    return samples


def _relay(req: Any, arr: np.ndarray[Any, Any], out: np.ndarray[Any, Any],
           seconds: float) -> list[int]:  # fmt: skip
    samples: list[int] = []
    end = time.monotonic() + seconds
    for i in range(50 + 10**9):
        t0 = time.perf_counter_ns()
        req.send(arr)
        req.receive_copy(out=out)
        t1 = time.perf_counter_ns()
        if i >= 50:
            samples.append(t1 - t0)
        if time.monotonic() > end and len(samples) >= 20:
            break
    return samples


def run(sizes: list[int], seconds: float, passes: int) -> list[dict[str, Any]]:
    import zmq

    import shmbridge as sb

    py = sys.executable
    rows = []
    for size in sizes:
        n = max(1, size // 4)
        tag = f"{os.getpid() % 100000}_{size}"
        near, far = f"rbn{tag}", f"rbf{tag}"
        port = _port()
        ep = f"tcp://127.0.0.1:{port}"
        dport = _port()
        dep = f"tcp://127.0.0.1:{dport}"
        procs = [
            subprocess.Popen([py, "-c", _SERVER, dep]),
            subprocess.Popen(
                [
                    py,
                    "-m",
                    "shmbridge",
                    "relay",
                    "far",
                    far,
                    "--bind",
                    ep,
                    "--create",
                    "--dtype",
                    "float32",
                    "--shape",
                    str(n),
                    "--log",
                    os.devnull,
                ]
            ),
        ]
        procs.append(subprocess.Popen([py, "-c", _RESPONDER, far]))
        procs.append(
            subprocess.Popen(
                [
                    py,
                    "-m",
                    "shmbridge",
                    "relay",
                    "near",
                    near,
                    "--connect",
                    ep,
                    "--create",
                    "--log",
                    os.devnull,
                ]
            )
        )
        try:
            req = sb.Requester.attach(near, timeout=30)
            arr = (np.arange(n) % 61).astype(np.float32)
            out = np.empty_like(arr)
            relay_s: list[int] = []
            direct_s: list[int] = []
            for _ in range(passes):  # interleaved: both see the same machine state
                direct_s += _direct(dep, arr, out, seconds / passes)
                assert out[1] == arr[1] + 1
                relay_s += _relay(req, arr, out, seconds / passes)
                assert out[1] == arr[1] + 1
            req.close()
        finally:
            ctx = zmq.Context.instance()
            s = ctx.socket(zmq.REQ)
            s.connect(dep)
            s.send(b"")
            s.recv()
            s.close(linger=0)
            for p in procs[1:]:
                p.terminate()
            for p in procs:
                p.wait(10)
        d50, r50 = _p50_us(direct_s), _p50_us(relay_s)
        rows.append(
            {
                "payload_bytes": n * 4,
                "direct_pyzmq_p50_us": round(d50, 1),
                "relay_p50_us": round(r50, 1),
                "ratio": round(r50 / d50, 2),
                "target": 1.5,
                "direct_rounds": len(direct_s),
                "relay_rounds": len(relay_s),
            }
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.relay_bench", description=__doc__)
    ap.add_argument("--sizes", default="64,1048576")
    ap.add_argument("--seconds", type=float, default=3.0, help="per size and system")
    ap.add_argument("--passes", type=int, default=3)
    ap.add_argument("--json", default=None, help="write the rows here (default bench/results/)")
    a = ap.parse_args(argv)
    rows = run([int(s) for s in a.sizes.split(",")], a.seconds, a.passes)
    print(f"{'payload':>10} {'pyzmq REQ/REP p50':>18} {'relay p50':>11} {'ratio':>6}  target")
    for r in rows:
        ok = "ok" if r["ratio"] <= r["target"] else "ABOVE"
        print(f"{r['payload_bytes']:>10} {r['direct_pyzmq_p50_us']:>15.1f} us "
              f"{r['relay_p50_us']:>8.1f} us {r['ratio']:>6.2f}  <= 1.5 {ok}")  # fmt: skip
    path = Path(a.json) if a.json else HERE / "results" / time.strftime("relay_%Y%m%d-%H%M.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {"host": platform.node(), "cpus": os.cpu_count(), "python": sys.version.split()[0]}
    path.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
