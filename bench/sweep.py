"""Spin-budget sweep (profiling aid): round-trip p50 and CPU per round of the blocking mode as a
function of the spin budget (Options.spin), to choose the library default with data.

    python -m bench.sweep [--build-dir build] [--sizes 64,1048576] [--spins 0,5,20,50,100,200,1000]
                          [--pairings cpp→cpp,cpp→py,py→cpp] [--passes 3] [--cell-seconds 1]

Every (pairing, size, spin) cell runs once per pass, in a rotated order (interleaved).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from .report import fmt_size, fmt_us
from .run import BENCH, MiB, PeerError, find_tools, run_pair, seg_name, summarize


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.sweep")
    ap.add_argument("--build-dir", default="build")
    ap.add_argument("--pythonpath")
    ap.add_argument("--sizes", default=f"64,{MiB}")
    ap.add_argument("--spins", default="0,5,20,50,100,200,1000")
    ap.add_argument("--pairings", default="cpp→cpp,cpp→py,py→cpp")
    ap.add_argument("--passes", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=2000)
    ap.add_argument("--cell-seconds", type=float, default=1.0)
    ap.add_argument("--out", default=str(BENCH / "results"))
    a = ap.parse_args(argv)
    tools = find_tools(a)
    cells = [
        (p, int(s), float(sp))
        for s in a.sizes.split(",")
        for p in a.pairings.split(",")
        for sp in a.spins.split(",")
    ]
    samples: dict[tuple[str, int, float], list[int]] = {c: [] for c in cells}
    cpu: dict[tuple[str, int, float], list[float]] = {c: [] for c in cells}
    for i in range(a.passes):
        k = (i * 7) % len(cells)
        for c in cells[k:] + cells[:k]:
            p, size, spin = c
            rq, rs = p.split("→")
            name = seg_name()
            req = [
                *tools.peer_cmd(rq),
                "requester",
                "--name",
                name,
                "--bytes",
                str(size),
                "--rounds",
                str(a.rounds),
                "--warmup",
                "100",
                "--spin-us",
                str(spin),
                "--max-seconds",
                str(a.cell_seconds),
            ]
            rsp = [*tools.peer_cmd(rs), "responder", "--name", name, "--spin-us", str(spin)]
            try:
                res, rres = run_pair(req, rsp, tools.env, 120, f"sweep {c}")
            except PeerError as e:
                print(f"sweep: {e}", file=sys.stderr)
                continue
            samples[c] += res["samples_ns"]
            n = max(1, len(res["samples_ns"]))
            cpu[c].append((res["cpu_s"] + (rres or {}).get("cpu_s", 0.0)) / n)
        print(f"[sweep] pass {i + 1}/{a.passes} done", file=sys.stderr)
    rows = []
    for c in cells:
        st = summarize(samples[c])
        rows.append(
            {
                "pairing": c[0],
                "size": c[1],
                "spin_us": c[2],
                **st,
                "cpu_per_round_us": 1e6 * sum(cpu[c]) / max(1, len(cpu[c])),
            }
        )
    try:
        from rich.console import Console
        from rich.table import Table

        t = Table(title="Blocking mode vs spin budget (p50 round trip; CPU = both processes)")
        for h in ("pairing", "payload", "spin", "p50", "p90", "p99", "CPU/round"):
            t.add_column(h, justify="right")
        last = None
        for r in rows:
            if last and (r["pairing"], r["size"]) != last:
                t.add_section()
            last = (r["pairing"], r["size"])
            t.add_row(
                r["pairing"],
                fmt_size(r["size"]),
                f"{r['spin_us']:g} µs",
                fmt_us(r["p50_ns"]),
                fmt_us(r["p90_ns"]),
                fmt_us(r["p99_ns"]),
                fmt_us(r["cpu_per_round_us"] * 1e3),
            )
        Console(width=120).print(t)
    except ImportError:
        print(json.dumps(rows, indent=1))
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"sweep_{time.strftime('%Y%m%d-%H%M')}.json"
    path.write_text(json.dumps(rows, indent=1) + "\n")
    print(f"[sweep] wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
