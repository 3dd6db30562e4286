"""Relay benchmark (issue 15, spec/RELAY.md): the round trip of a float32 array through a relay
pair on loopback (Python requester -> shm -> near relay -> TCP -> far relay -> shm -> Python
responder adding 1 in place, and back) against pyzmq REQ/REP sending the same array directly over
TCP loopback (the server adds 1), in the same run, interleaved. Rows 64 B and 1 MiB by default,
one per relay implementation (``py``: python -m shmbridge relay; ``cpp``: shmbridge-relay of
cpp/relay/), each with its own relay pair in the same passes. The target of the issue is relay
<= 1.5 x direct; the ratio is the median over the passes of (relay p50 / direct p50) of the same
pass (``ratio_per_pass`` lists them; ``ratio_of_pooled_p50`` is the ratio of all rounds' p50s).

The **floor** is what two extra process hops cost at least on this machine, measured in the same
run: direct pyzmq p50 + the p50 of the two local shared-memory round trips the relay adds (a
Python requester and a Python responder that replies in place without work, with the spin budgets
of the relay's two segments: near = program requester / relay responder, far = relay requester /
program responder). A relay with zero overhead of its own would sit at the floor; ``floor_ratio``
= floor / direct says whether 1.5 x is reachable by construction at that size. ``*_cpu_us`` is
the CPU time (all threads, from /proc) each relay end spends per round.

The **bare relay** is the tighter floor: the relay's topology (two extra processes, a segment at
each end, one REQ/REP hop) with only the forwarding calls, no wire header, checks, heartbeats or
log; ``bare_ratio`` = bare / direct is what the topology costs, ``relay_over_bare`` what the
relay's own work per round adds.

    python -m bench.relay_bench [--sizes 64,1048576] [--seconds 3] [--passes 5]
                                [--relay-impl py,cpp] [--spin-us 0] [--json PATH]

Standalone (not part of ``python -m bench``): needs pyzmq and the shmbridge package."""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
TARGET = 1.5

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

# argv: segment name, spin seconds, "add1" (the relay's far program) or "noop" (a floor hop)
_RESPONDER = r"""
import sys, numpy as np, shmbridge as sb
opts = sb.Options(timeout=30, spin=float(sys.argv[2]))
with sb.Responder.attach(sys.argv[1], options=opts) as r:
    def add1(a):
        a += 1
    def noop(a):
        return None
    try:
        r.serve(add1 if sys.argv[3] == "add1" else noop, timeout=60)
    except sb.PeerGone:
        pass
"""

# The bare relay: the relay's topology (two extra processes, a local segment at each end, one
# REQ/REP hop between them) with nothing but the forwarding calls: no wire header, no checks, no
# heartbeats, no log. argv: "near" SEGMENT ENDPOINT SPIN, or "far" SEGMENT ENDPOINT SPIN N.
_BARE = r"""
import signal, sys, numpy as np, zmq, shmbridge as sb
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # the with blocks close (the far unlinks)
end, name, ep, spin = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
ctx = zmq.Context()
opts = sb.Options(timeout=30, spin=spin)
if end == "near":
    s = ctx.socket(zmq.REQ); s.connect(ep)
    with sb.Responder.attach(name, options=opts) as r:
        try:
            while True:
                q = r.take(None)
                a = q.array
                s.send(a, copy=a.nbytes < 65536)
                q.reply(np.frombuffer(s.recv(copy=False), dtype=np.float32))
        except sb.PeerGone:
            pass
else:
    s = ctx.socket(zmq.REP); s.bind(ep)
    with sb.Requester.create(name, np.float32, (int(sys.argv[5]),), options=opts) as q:
        out = np.empty(int(sys.argv[5]), np.float32)
        while True:
            f = s.recv(copy=False)
            q.send(np.frombuffer(f, dtype=np.float32))
            q.receive_copy(out=out)
            s.send(out, copy=out.nbytes < 65536)
"""

#: the spin budget of a program's handle (Options' default), for the floor's program side
PROGRAM_SPIN = 100e-6


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _p50_us(samples: list[int]) -> float:
    return float(np.percentile(np.array(samples) / 1e3, 50))


def _cpu_s(pid: int) -> float:
    """utime + stime of all threads of ``pid`` (seconds), or 0 where /proc is missing."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _timed(one_round: Callable[[], None], seconds: float) -> list[int]:
    """Round-trip times (ns) of ``one_round`` for ``seconds`` after 50 warm-up rounds."""
    samples: list[int] = []
    end = time.monotonic() + seconds
    for i in range(50 + 10**9):
        t0 = time.perf_counter_ns()
        one_round()
        t1 = time.perf_counter_ns()
        if i >= 50:
            samples.append(t1 - t0)
        if time.monotonic() > end and len(samples) >= 20:
            break
    return samples


def _direct(endpoint: str, arr: np.ndarray[Any, Any], out: np.ndarray[Any, Any],
            seconds: float) -> list[int]:  # fmt: skip
    import zmq

    s = zmq.Context.instance().socket(zmq.REQ)
    s.connect(endpoint)

    def one() -> None:
        s.send(arr, copy=arr.nbytes < 65536)
        out[...] = np.frombuffer(s.recv(copy=False), dtype=np.float32)

    try:
        return _timed(one, seconds)
    finally:
        s.close(linger=0)


def _local(req: Any, arr: np.ndarray[Any, Any], out: np.ndarray[Any, Any],
           seconds: float) -> list[int]:  # fmt: skip
    """Rounds through a shmbridge segment: the relay's near segment, or a floor hop."""

    def one() -> None:
        req.send(arr)
        req.receive_copy(out=out)

    return _timed(one, seconds)


def _relay_cmd(end: str, name: str, ep: str, spin_us: float, n: int, impl: str) -> list[str]:
    """A relay end: ``py`` (python -m shmbridge relay) or ``cpp`` (cpp/relay/ shmbridge-relay,
    $SHMBRIDGE_CPP_RELAY or build/cpp/relay/shmbridge-relay)."""
    start = [_cpp_relay()] if impl == "cpp" else [sys.executable, "-m", "shmbridge", "relay"]
    cmd = [*start, end, name, "--log", os.devnull, "--spin-us", str(spin_us), "--create"]
    if end == "far":
        return [*cmd, "--bind", ep, "--dtype", "float32", "--shape", str(n)]
    return [*cmd, "--connect", ep]


def _cpp_relay() -> str:
    return os.environ.get("SHMBRIDGE_CPP_RELAY") or str(
        HERE.parent / "build" / "cpp" / "relay" / "shmbridge-relay"
    )


def _median_ratio(num: list[float], den: list[float]) -> float:
    """The median over passes of num[i] / den[i] (each pass's own p50s): robust to the drift of
    a shared machine, which moves both figures of a pass together."""
    return float(np.median([a / b for a, b in zip(num, den)]))


def run(
    sizes: list[int], seconds: float, passes: int, spin_us: float, impls: tuple[str, ...] = ("py",)
) -> list[dict[str, Any]]:
    """One row per (size, relay implementation); every implementation of ``impls`` runs its
    own relay pair in the same interleaved passes as direct pyzmq, the bare relay and the hops."""
    import zmq

    import shmbridge as sb

    py = sys.executable
    relay_spin = spin_us / 1e6
    rows = []
    for size in sizes:
        n = max(1, size // 4)
        tag = f"{os.getpid() % 100000}_{size}"
        hop_n, hop_f = f"rbh{tag}", f"rbg{tag}"
        bare_n, bare_f = f"rbbn{tag}", f"rbbf{tag}"
        dep = f"tcp://127.0.0.1:{_port()}"
        bep = f"tcp://127.0.0.1:{_port()}"
        opts = sb.Options(timeout=30)
        # the floor's two hops: the near one (program requester, relay-spin responder) and the
        # far one (relay-spin requester, program responder); no work in either responder
        hop_near = sb.Requester.create(hop_n, np.float32, (n,), options=opts)
        hop_far = sb.Requester.create(hop_f, np.float32, (n,), options=sb.Options(timeout=30,
                                      spin=relay_spin))  # fmt: skip
        bare = sb.Requester.create(bare_n, np.float32, (n,), options=opts)
        procs = [
            subprocess.Popen([py, "-c", _SERVER, dep]),
            subprocess.Popen([py, "-c", _RESPONDER, hop_n, str(relay_spin), "noop"]),
            subprocess.Popen([py, "-c", _RESPONDER, hop_f, str(PROGRAM_SPIN), "noop"]),
            subprocess.Popen([py, "-c", _BARE, "far", bare_f, bep, str(relay_spin), str(n)]),
            subprocess.Popen([py, "-c", _RESPONDER, bare_f, str(PROGRAM_SPIN), "add1"]),
            subprocess.Popen([py, "-c", _BARE, "near", bare_n, bep, str(relay_spin)]),
        ]
        pairs: dict[str, tuple[int, int, str]] = {}  # impl -> (near pid, far pid, near segment)
        for impl in impls:
            near, far = f"rbn{impl}{tag}", f"rbf{impl}{tag}"
            ep = f"tcp://127.0.0.1:{_port()}"
            pf = subprocess.Popen(_relay_cmd("far", far, ep, spin_us, n, impl))
            procs.append(pf)
            procs.append(subprocess.Popen([py, "-c", _RESPONDER, far, str(PROGRAM_SPIN), "add1"]))
            pn = subprocess.Popen(_relay_cmd("near", near, ep, spin_us, n, impl))
            procs.append(pn)
            pairs[impl] = (pn.pid, pf.pid, near)
        load0 = os.getloadavg()
        reqs: dict[str, Any] = {}
        try:
            for impl, (_n, _f, near) in pairs.items():
                reqs[impl] = sb.Requester.attach(near, timeout=30)
            arr = (np.arange(n) % 61).astype(np.float32)
            out = np.empty_like(arr)
            systems = ("direct", *(f"relay_{i}" for i in impls), "bare", "hop_near", "hop_far")
            got: dict[str, list[int]] = {k: [] for k in systems}
            per_pass: dict[str, list[float]] = {k: [] for k in systems}
            cpu = {(i, end): 0.0 for i in impls for end in ("near", "far")}
            share = seconds / passes
            for k in range(passes):  # interleaved: all of them see the same machine state
                order = list(systems) if k % 2 == 0 else list(reversed(systems))
                for system in order:
                    if system == "direct":
                        t = _direct(dep, arr, out, share)
                        assert out[1] == arr[1] + 1
                    elif system.startswith("relay_"):
                        impl = system[6:]
                        near_pid, far_pid = pairs[impl][0], pairs[impl][1]
                        c0 = (_cpu_s(near_pid), _cpu_s(far_pid))
                        t = _local(reqs[impl], arr, out, share)
                        c1 = (_cpu_s(near_pid), _cpu_s(far_pid))
                        assert out[1] == arr[1] + 1
                        rounds = len(t) + 50  # the warm-up rounds cost CPU too
                        cpu[(impl, "near")] += (c1[0] - c0[0]) / rounds / passes
                        cpu[(impl, "far")] += (c1[1] - c0[1]) / rounds / passes
                    elif system == "bare":
                        t = _local(bare, arr, out, share)
                        assert out[1] == arr[1] + 1
                    else:
                        t = _local(hop_near if system == "hop_near" else hop_far, arr, out,
                                   share / 2)  # fmt: skip
                        assert out[1] == arr[1]
                    got[system] += t
                    per_pass[system].append(_p50_us(t))
        finally:
            for r in reqs.values():
                r.close()
            hop_near.close()
            hop_far.close()
            bare.close()
            s: zmq.Socket[Any] = zmq.Context.instance().socket(zmq.REQ)
            s.connect(dep)
            s.send(b"")
            s.recv()
            s.close(linger=0)
            for p in procs[1:]:
                p.terminate()
            for p in procs:
                p.wait(10)
        d50 = _p50_us(got["direct"])
        hn50, hf50 = _p50_us(got["hop_near"]), _p50_us(got["hop_far"])
        b50 = _p50_us(got["bare"])
        floor = d50 + hn50 + hf50
        bare_ratio = _median_ratio(per_pass["bare"], per_pass["direct"])
        for impl in impls:
            key = f"relay_{impl}"
            r50 = _p50_us(got[key])
            ratio = _median_ratio(per_pass[key], per_pass["direct"])
            rows.append(
                {
                    "payload_bytes": n * 4,
                    "relay_impl": impl,
                    "direct_pyzmq_p50_us": round(d50, 1),
                    "relay_p50_us": round(r50, 1),
                    "ratio": round(ratio, 2),
                    "ratio_of_pooled_p50": round(r50 / d50, 2),
                    "ratio_per_pass": [
                        round(a / b, 2) for a, b in zip(per_pass[key], per_pass["direct"])
                    ],
                    "target": TARGET,
                    "target_met": ratio <= TARGET,
                    "hop_near_p50_us": round(hn50, 1),
                    "hop_far_p50_us": round(hf50, 1),
                    "bare_relay_p50_us": round(b50, 1),
                    "bare_ratio": round(bare_ratio, 2),
                    "relay_over_bare": round(_median_ratio(per_pass[key], per_pass["bare"]), 2),
                    "floor_p50_us": round(floor, 1),
                    "floor_ratio": round(floor / d50, 2),
                    "relay_over_floor": round(r50 / floor, 2),
                    "near_cpu_us_per_round": round(cpu[(impl, "near")] * 1e6, 1),
                    "far_cpu_us_per_round": round(cpu[(impl, "far")] * 1e6, 1),
                    "relay_spin_us": spin_us,
                    "passes": passes,
                    "loadavg_1m": [round(load0[0], 2), round(os.getloadavg()[0], 2)],
                    "direct_rounds": len(got["direct"]),
                    "relay_rounds": len(got[key]),
                }
            )
    return rows


def _verdict(r: dict[str, Any]) -> str:
    if r["target_met"]:
        return "met"
    if r["bare_ratio"] > TARGET:
        return "NOT met (the bare relay is above it too)"
    return "NOT met"


def print_rows(rows: list[dict[str, Any]]) -> None:
    head = ["payload", "ends", "direct p50", "relay p50", "relay / direct", "per pass",
            "bare / direct", "relay / bare", "CPU/round near/far", f"target {TARGET}x",
            "load"]  # fmt: skip
    cells = [
        [
            f"{r['payload_bytes']:,} B",
            r["relay_impl"],
            f"{r['direct_pyzmq_p50_us']:.1f} µs",
            f"{r['relay_p50_us']:.1f} µs",
            f"{r['ratio']:.2f}×",
            " ".join(f"{x:.2f}" for x in r["ratio_per_pass"]),
            f"{r['bare_ratio']:.2f}×",
            f"{r['relay_over_bare']:.2f}×",
            f"{r['near_cpu_us_per_round']:.0f}/{r['far_cpu_us_per_round']:.0f} µs",
            _verdict(r),
            f"{r['loadavg_1m'][0]:.1f}→{r['loadavg_1m'][1]:.1f}",
        ]
        for r in rows
    ]
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:  # rich is optional (ci/bench.sh installs it)
        for c in [head, *cells]:
            print(" | ".join(c))
        return
    t = Table(title="relay vs direct pyzmq (ratios: median over passes of the pass p50s)")
    for h in head:
        t.add_column(h, justify="left" if h in ("ends", f"target {TARGET}x") else "right")
    for c in cells:
        t.add_row(*c)
    Console(width=200).print(t)


def main(argv: list[str] | None = None) -> int:
    from .run import git_commit, machine_info

    ap = argparse.ArgumentParser(prog="python -m bench.relay_bench", description=__doc__)
    ap.add_argument("--sizes", default="64,1048576")
    ap.add_argument("--seconds", type=float, default=3.0, help="per size and system")
    ap.add_argument("--passes", type=int, default=5)
    ap.add_argument("--spin-us", type=float, default=0.0, help="the relay ends' --spin-us")
    ap.add_argument("--relay-impl", default=None,
                    help="the relay ends measured, comma-separated: py (python -m shmbridge "
                    "relay), cpp (shmbridge-relay of cpp/relay/); default both, or py alone "
                    "when the C++ relay is not built; the bare forwarder stays Python")  # fmt: skip
    ap.add_argument("--json", default=None, help="write the rows here (default bench/results/)")
    a = ap.parse_args(argv)
    if a.relay_impl is None:
        impls: tuple[str, ...] = ("py", "cpp") if Path(_cpp_relay()).exists() else ("py",)
        if impls == ("py",):
            print(f"relay_bench: the C++ relay ends are not built ({_cpp_relay()}; "
                  "SHMBRIDGE_CPP_RELAY names another): Python ends only")  # fmt: skip
    else:
        impls = tuple(i.strip() for i in a.relay_impl.split(","))
        bad = [i for i in impls if i not in ("py", "cpp")]
        if bad or not impls:
            ap.error(f"--relay-impl: expected py, cpp or py,cpp, found {a.relay_impl!r}")
        if "cpp" in impls and not Path(_cpp_relay()).exists():
            ap.error(f"--relay-impl cpp: {_cpp_relay()} not found; build it (cmake --build "
                     "build --target shmbridge-relay) or set SHMBRIDGE_CPP_RELAY")  # fmt: skip
    meta = machine_info()
    meta["date"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    commit, dirty = git_commit()
    meta.update(commit=commit + ("-dirty" if dirty else ""), relay_spin_us=a.spin_us,
                relay_impl=",".join(impls), passes=a.passes)  # fmt: skip
    rows = run([int(s) for s in a.sizes.split(",")], a.seconds, a.passes, a.spin_us, impls)
    meta["loadavg_end"] = list(os.getloadavg())
    print(f"{meta['cpu_model']}, {meta['cores']} cores, commit {meta['commit']}, relay "
          f"ends {','.join(impls)}, {a.passes} interleaved passes, "
          f"--spin-us {a.spin_us:g}; load {meta['loadavg_start'][0]:.2f} -> "
          f"{meta['loadavg_end'][0]:.2f}")  # fmt: skip
    print_rows(rows)
    path = Path(a.json) if a.json else HERE / "results" / time.strftime("relay_%Y%m%d-%H%M.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
