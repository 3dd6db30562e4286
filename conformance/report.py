"""Reports: console (rich when installed), JUnit XML, JSON, Markdown and HTML matrices."""

from __future__ import annotations

import html
import json
import shlex
import xml.etree.ElementTree as ET
from pathlib import Path

from . import spec
from .catalogue import show_pairing

try:  # rich is optional: plain text without it
    from rich.console import Console
    from rich.table import Table
    HAVE_RICH = True
except ImportError:  # pragma: no cover
    HAVE_RICH = False

SYMBOL = {"PASS": "PASS", "FAIL": "FAIL", "SKIP": "skip", "ERROR": "ERROR", "CAUGHT": "CAUGHT",
          "MISSED": "MISSED", None: "·"}
STYLE = {"PASS": "green", "FAIL": "bold red", "SKIP": "yellow", "ERROR": "bold magenta",
         "CAUGHT": "green", "MISSED": "bold red"}


def cell_verdict(r, known_bad: bool) -> str:
    if not known_bad or r.verdict in ("SKIP", "ERROR"):
        return r.verdict
    return "CAUGHT" if r.verdict == "FAIL" else "MISSED"


def matrix(results, known_bad=False):
    pairings, cases, cells = [], [], {}
    for r in results:
        if r.pairing not in pairings:
            pairings.append(r.pairing)
        if r.case.id not in [c.id for c in cases]:
            cases.append(r.case)
        cells[(r.case.id, r.pairing)] = r
    return pairings, cases, cells


def counts(results, known_bad=False) -> dict:
    out = {}
    for r in results:
        v = cell_verdict(r, known_bad)
        out[v] = out.get(v, 0) + 1
    return out


def failure_text(r, known_bad=False) -> str:
    """Everything needed to understand one failure: requirement text, expected vs actual, rerun."""
    lines = [f"{r.case.id} [{show_pairing(r.pairing)}] — {r.case.purpose}"]
    for c in r.failed_checks:
        who = f" ({c.proc})" if c.proc else ""
        lines.append(f"  ✗ {c.name}{who}: {', '.join(c.requirements)}")
        lines.append(f"      expected: {c.expected}")
        lines.append(f"      actual:   {c.actual}")
        if c.detail:
            for d in c.detail.splitlines():
                lines.append(f"      {d}")
    for rid in r.violated:
        req = spec.requirements().get(rid)
        if req:
            lines.append(f"  {rid} ({req.level}): {req.text[:400]}")
    lines.append(f"  rerun: {r.rerun}")
    for p in r.procs:
        if p.started:
            lines.append(f"  {p.name}: {shlex.join(p.argv)}   → {spec.describe_exit(p.returncode)}")
            if p.stderr_tail.strip() and not known_bad:
                tail = p.stderr_tail.strip().splitlines()[-3:]
                lines += [f"      stderr: {t[:200]}" for t in tail]
    lines.append(f"  logs: {Path(r.procs[0].stdout_path).parent if r.procs and r.procs[0].stdout_path else '-'}")
    return "\n".join(lines)


# ---------------------------------------------------------------- console


def console_report(results, known_bad=False, out=None, show_failures=True, title="conformance"):
    pairings, cases, cells = matrix(results, known_bad)
    if HAVE_RICH:
        con = Console(file=out, width=max(100, 40 + 12 * len(pairings)))
        t = Table(title=title, show_lines=False)
        t.add_column("case", overflow="fold")
        for p in pairings:
            t.add_column(show_pairing(p), justify="center")
        for c in cases:
            row = [c.id]
            for p in pairings:
                r = cells.get((c.id, p))
                v = cell_verdict(r, known_bad) if r else None
                row.append(f"[{STYLE.get(v, 'dim')}]{SYMBOL[v]}[/]" if r else "[dim]·[/]")
            t.add_row(*row)
        con.print(t)
        con.print(summary_line(results, known_bad))
        if show_failures:
            for r in results:
                if r.verdict in ("FAIL", "ERROR") and not known_bad:
                    con.print(f"[bold red]{r.verdict}[/] ", end="")
                    con.print(failure_text(r) + (f"\n  {r.note}" if r.note else ""), highlight=False,
                              markup=False, soft_wrap=True)
            skipped = {r.note for r in results if r.verdict == "SKIP"}
            for note in sorted(skipped):
                con.print(f"[yellow]skipped:[/] {note}", highlight=False, soft_wrap=True)
        return
    w = max([len(c.id) for c in cases] + [4])
    print(f"{'case':<{w}}  " + "  ".join(f"{show_pairing(p):^9}" for p in pairings), file=out)
    for c in cases:
        row = [f"{SYMBOL[cell_verdict(cells[(c.id, p)], known_bad)] if (c.id, p) in cells else '·':^9}"
               for p in pairings]
        print(f"{c.id:<{w}}  " + "  ".join(row), file=out)
    print(summary_line(results, known_bad), file=out)
    if show_failures and not known_bad:
        for r in results:
            if r.verdict in ("FAIL", "ERROR"):
                print(f"{r.verdict} " + failure_text(r) + (f"\n  {r.note}" if r.note else ""), file=out)
    for note in sorted({r.note for r in results if r.verdict == "SKIP"}):
        print(f"skipped: {note}", file=out)


def summary_line(results, known_bad=False) -> str:
    c = counts(results, known_bad)
    cases = len({r.case.id for r in results})
    pairings = len({r.pairing for r in results})
    parts = ", ".join(f"{v} {k.lower()}" for k, v in sorted(c.items()))
    return f"{len(results)} runs ({cases} cases × {pairings} pairings): {parts}"


# ---------------------------------------------------------------- files


def to_json(results, known_bad=False) -> dict:
    runs = []
    for r in results:
        runs.append({
            "case": r.case.id, "pairing": r.pairing, "verdict": r.verdict,
            "cell": cell_verdict(r, known_bad), "purpose": r.case.purpose,
            "category": r.case.category, "requirements": r.case.requirements,
            "violated": r.violated, "seconds": round(r.seconds, 3), "segment": r.name,
            "rerun": r.rerun, "note": r.note, "history": r.history,
            "checks": [{"name": c.name, "ok": c.ok, "requirements": c.requirements, "expected": c.expected,
                        "actual": c.actual, "detail": c.detail, "proc": c.proc} for c in r.checks],
            "procs": [{"name": p.name, "role": p.role, "impl": p.impl, "argv": p.argv,
                       "exit": p.returncode, "exit_name": spec.describe_exit(p.returncode) if p.started else None,
                       "started": p.started, "summary": p.summary, "stdout": p.stdout_path,
                       "stderr_tail": p.stderr_tail[-500:]} for p in r.procs],
        })
    return {"known_bad": known_bad, "counts": counts(results, known_bad), "summary": summary_line(results, known_bad),
            "runs": runs}


def write_json(results, path, known_bad=False):
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(to_json(results, known_bad), indent=1))


def write_junit(results, path, known_bad=False):
    root = ET.Element("testsuites", name="shmbridge-conformance" + ("-known-bad" if known_bad else ""))
    by_p = {}
    for r in results:
        by_p.setdefault(r.pairing, []).append(r)
    for p, rs in by_p.items():
        suite = ET.SubElement(root, "testsuite", name=f"conformance.{p}", tests=str(len(rs)))
        nf = ns = 0
        for r in rs:
            tc = ET.SubElement(suite, "testcase", classname=f"conformance.{p.replace('-', '_to_')}",
                               name=r.case.id, time=f"{r.seconds:.3f}")
            v = cell_verdict(r, known_bad)
            if v in ("FAIL", "MISSED", "ERROR"):
                nf += 1
                msg = ("the known-bad peer passed: not caught" if v == "MISSED"
                       else "; ".join(f"{c.name}: expected {c.expected}, actual {c.actual}" for c in r.failed_checks))
                f = ET.SubElement(tc, "failure", message=msg[:500])
                f.text = failure_text(r, known_bad)
            elif v == "SKIP":
                ns += 1
                ET.SubElement(tc, "skipped", message=r.note[:300])
            elif v == "CAUGHT":
                so = ET.SubElement(tc, "system-out")
                so.text = failure_text(r, known_bad)
        suite.set("failures", str(nf))
        suite.set("skipped", str(ns))
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)


def write_markdown(results, path, known_bad=False):
    pairings, cases, cells = matrix(results, known_bad)
    out = [f"# shmbridge conformance{' — known-bad matrix' if known_bad else ''}", "",
           summary_line(results, known_bad), "",
           "| case | requirements | " + " | ".join(show_pairing(p) for p in pairings) + " |",
           "|---|---|" + "---|" * len(pairings)]
    for c in cases:
        row = [f"`{c.id}`", ", ".join(c.requirements)]
        for p in pairings:
            r = cells.get((c.id, p))
            row.append(SYMBOL[cell_verdict(r, known_bad)] if r else "·")
        out.append("| " + " | ".join(row) + " |")
    fails = [r for r in results if r.verdict == "FAIL"]
    if fails:
        out += ["", "## Failures" if not known_bad else "## What the kit caught", ""]
        for r in fails:
            out += ["```", failure_text(r, known_bad), "```", ""]
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text("\n".join(out) + "\n")


def write_html(results, path, known_bad=False):
    pairings, cases, cells = matrix(results, known_bad)
    color = {"PASS": "#c8f7c5", "FAIL": "#f7c5c5", "SKIP": "#f7eec5", "ERROR": "#e5c5f7",
             "CAUGHT": "#c8f7c5", "MISSED": "#f7c5c5"}
    h = ["<!doctype html><meta charset='utf-8'><title>shmbridge conformance</title>",
         "<style>body{font-family:sans-serif}td,th{border:1px solid #ccc;padding:2px 6px}"
         "table{border-collapse:collapse}pre{background:#f6f6f6;padding:6px;white-space:pre-wrap}</style>",
         f"<h1>shmbridge conformance{' — known-bad matrix' if known_bad else ''}</h1>",
         f"<p>{html.escape(summary_line(results, known_bad))}</p><table><tr><th>case</th><th>requirements</th>"]
    h += [f"<th>{html.escape(show_pairing(p))}</th>" for p in pairings]
    h.append("</tr>")
    for c in cases:
        h.append(f"<tr><td title='{html.escape(c.purpose)}'>{html.escape(c.id)}</td>"
                 f"<td>{html.escape(', '.join(c.requirements))}</td>")
        for p in pairings:
            r = cells.get((c.id, p))
            if not r:
                h.append("<td>·</td>")
                continue
            v = cell_verdict(r, known_bad)
            link = f"<a href='#{html.escape(c.id + p)}'>{v}</a>" if r.verdict == "FAIL" else v
            h.append(f"<td style='background:{color.get(v, '#fff')}'>{link}</td>")
        h.append("</tr>")
    h.append("</table>")
    for r in results:
        if r.verdict == "FAIL":
            h.append(f"<h3 id='{html.escape(r.case.id + r.pairing)}'>{html.escape(r.case.id)} "
                     f"[{html.escape(show_pairing(r.pairing))}]</h3><pre>{html.escape(failure_text(r, known_bad))}</pre>")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text("\n".join(h))
