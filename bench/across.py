"""The targets of several saved benchmark runs side by side, with how many runs met each.

    python -m bench.across bench/results/RUN.json [RUN.json ...] [--all] [--markdown]

One run's verdict is one sample: on a shared VM each peer process lands in one of several
cross-core states, so a target near its limit can be met in one run and missed in the next run
of the same commit. This table shows which verdicts hold in every run and which flip. Targets are
taken as each run stored them (``python -m bench.report RUN.json`` recomputes a run's);
``--all`` adds the (info) rows.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any


def load(path: Path) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(path.read_text())
    return result


def run_label(result: dict[str, Any]) -> str:
    """``MM-DD HH:MM commit`` of a run (its start and the first 7 hex digits of its commit)."""
    m = result["meta"]
    date = str(m.get("date", ""))
    return f"{date[5:10]} {date[11:16]} {str(m.get('commit', ''))[:7]}"


def table(results: list[dict[str, Any]], with_info: bool) -> list[dict[str, Any]]:
    """One row per target (first-seen order): its limit, each run's value and verdict, how many
    runs met it and the median of the values."""
    rows: dict[str, dict[str, Any]] = {}
    for i, result in enumerate(results):
        for t in result.get("targets", []):
            name = t["target"]
            if not with_info and name.startswith("(info)"):
                continue
            row = rows.setdefault(name, {"target": name, "limit": t["limit"], "runs": {}})
            row["runs"][i] = (t["value"], t["met"])
    for row in rows.values():
        judged = [met for _v, met in row["runs"].values() if met is not None]
        values = [v for v, _met in row["runs"].values() if v is not None]
        row["met"] = sum(judged)
        row["judged"] = len(judged)
        row["median"] = statistics.median(values) if values else None
    return list(rows.values())


def fmt(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.2f}"


def cell(run: tuple[float | None, bool | None] | None, markdown: bool) -> str:
    if run is None:
        return "—"
    value, met = run
    text = fmt(value)
    if met is False:
        return f"**{text}**" if markdown else f"[red]{text}[/]"
    return text


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.across", description=__doc__.split("\n")[0])
    ap.add_argument("runs", nargs="+", type=Path, help="result JSON files (bench/results/*.json)")
    ap.add_argument("--all", action="store_true", help="the (info) rows too")
    ap.add_argument("--markdown", action="store_true", help="a Markdown table instead of rich")
    a = ap.parse_args(argv)
    results = [load(p) for p in a.runs]
    labels = [run_label(r) for r in results]
    rows = table(results, a.all)
    head = ["target", "limit", *labels, "met", "median"]

    def cells(row: dict[str, Any], md: bool) -> list[str]:
        runs = [cell(row["runs"].get(i), md) for i in range(len(results))]
        met = f"{row['met']}/{row['judged']}"
        return [row["target"], f"{row['limit']:g}", *runs, met, fmt(row["median"])]

    if a.markdown:
        print("| " + " | ".join(head) + " |")
        print("|---|" + "--:|" * (len(head) - 1))
        for row in rows:
            print("| " + " | ".join(cells(row, True)) + " |")
        print(f"\nBold: not met in that run. {len(rows)} targets, {len(results)} runs.")
        return 0
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"Targets across {len(results)} runs (red: not met in that run)")
    for h in head:
        t.add_column(h, justify="left" if h == "target" else "right")
    for row in rows:
        t.add_row(*cells(row, False))
    Console(width=max(160, 60 + 14 * len(head))).print(t)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
