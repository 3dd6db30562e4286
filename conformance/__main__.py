"""python -m conformance run|list|coverage — see conformance/README.md."""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

from . import REPO_ROOT, catalogue, netns, report, runner
from . import relay as relay_mod
from .catalogue import ALL_PAIRINGS, SOLO_PAIRINGS, norm_pairing, show_pairing

# run --netns where namespaces cannot be made: the exit code ctest reads as SKIPPED
# (SKIP_RETURN_CODE), never as a pass.
SKIP_EXIT = 77
NETNS_PREFIX = "cfn"  # namespaces cfnA<pid>/cfnB<pid> (conformance/netns.py)

KNOWN_BAD_PAIRINGS = {
    "requester": ["naive-cpp", "naive-py", "naive-naive"],
    "responder": ["cpp-naive", "py-naive", "naive-naive"],
    "either": ["naive-cpp", "naive-py", "cpp-naive", "py-naive", "naive-naive"],
}


def build_parser():
    p = argparse.ArgumentParser(prog="python -m conformance", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="run the catalogue across pairings")
    r.add_argument("--ids", nargs="+", action="extend", default=[], metavar="PREFIX",
                   help="only cases whose id starts with one of these")
    r.add_argument("--case", action="append", default=[], metavar="ID", help="exactly this case id")
    r.add_argument("--category", action="append", default=[])
    r.add_argument("--pairing", nargs="+", action="extend", default=[],
                   help="REQUESTER-RESPONDER, e.g. cpp-py (default: all four)")
    r.add_argument("--peer", action="append", default=[], metavar="NAME=TEMPLATE",
                   help="a peer command template; {args} marks where the flags go")
    r.add_argument("--cpp-peer", help="path of shmbridge-peer (default build/cpp/tools/shmbridge-peer)")
    r.add_argument("--python", help="interpreter for the Python peer (default: this one)")
    r.add_argument("--stress", action="store_true", help="stress sizes (10x rounds in stress cases)")
    r.add_argument("--known-bad", action="store_true",
                   help="run the naive peer (original design) where the catalogue says; pass = it is caught")
    r.add_argument("--relay", action="store_true",
                   help="run the cases marked relay through a relay pair (spec/RELAY.md, needs "
                        "pyzmq: pip install '.[relay]'): requester → near relay → far relay → "
                        "responder on loopback")
    r.add_argument("--relay-ends", default="py,py", metavar="NEAR,FAR",
                   help="with --relay: each end's implementation, py (python -m shmbridge relay) "
                        "or cpp (shmbridge-relay, cpp/relay/): py,py (default), cpp,cpp, cpp,py, "
                        "py,cpp")
    r.add_argument("--cpp-relay", help="path of shmbridge-relay (default "
                                       "build/cpp/relay/shmbridge-relay or $SHMBRIDGE_CPP_RELAY)")
    r.add_argument("--netns", action="store_true",
                   help="with --relay: the near relay end in one network namespace, the far end in "
                        "another, joined by a veth pair and CurveZMQ keys made for the run (needs "
                        f"root and iproute2; otherwise exits {SKIP_EXIT} with the reason)")
    r.add_argument("-j", "--jobs", type=int, default=min(2, os.cpu_count() or 1))
    r.add_argument("--slack-ms", type=float, default=250.0, help="added to every time bound")
    r.add_argument("--workdir", default=str(REPO_ROOT / "build/conformance/runs"))
    r.add_argument("--junit")
    r.add_argument("--json")
    r.add_argument("--md")
    r.add_argument("--html")
    r.add_argument("--allow-skip", action="store_true",
                   help="exit 0 even when a peer is unavailable (its runs are skipped)")
    r.add_argument("--minimal", metavar="NAME",
                   help="NAME (a --peer) supports only the minimal level of spec/PEER.md §6: give "
                        "it only cases whose processes it plays stay within that level; without "
                        "--pairing, pair it with cpp and py both ways and with itself")
    r.add_argument("--quiet", action="store_true")
    ls = sub.add_parser("list", help="list the cases")
    ls.add_argument("--ids", nargs="+", action="extend", default=[])
    cov = sub.add_parser("coverage", help="write spec/COVERAGE.md")
    cov.add_argument("--out", default=str(REPO_ROOT / "spec/COVERAGE.md"))
    cov.add_argument("--check", action="store_true", help="do not write; fail if the file is stale")
    cov.add_argument("--committed", metavar="PATH",
                     help="write --out; warn (do not fail) when the committed PATH differs (CI)")
    return p


def pairings_for(case, requested, known_bad):
    if known_bad:
        kb = case.known_bad or {}
        ps = KNOWN_BAD_PAIRINGS[kb.get("naive", "either")]
        return [p for p in ps if not requested or p in requested]
    if not requested:
        return [p for p in ALL_PAIRINGS if any(catalogue.pairing_matches(c, p) for c in case.pairings)]
    if case.pairings == ALL_PAIRINGS:
        return list(requested)
    if case.pairings == SOLO_PAIRINGS:
        return [p for p in requested if p.split("-")[0] == p.split("-")[1]]
    return [p for p in requested if any(catalogue.pairing_matches(c, p) for c in case.pairings)]


def minimal_plan(plan, name):
    """--minimal NAME: drop the runs in which NAME plays a process beyond the minimal level."""
    out = []
    for c, p in plan:
        req, rsp = p.split("-")
        mine = [pr for pr in c.procs if (req if pr.impl == "requester" else rsp) == name]
        if all(catalogue.minimal_args(pr.args) and not pr.comm for pr in mine):
            out.append((c, p))
    return out


def cmd_run(a) -> int:
    cases = catalogue.load()
    sel = catalogue.select(cases, a.ids or None, a.case or None, a.category or None)
    if a.known_bad:
        sel = [c for c in sel if c.known_bad]
    if a.relay:
        if a.known_bad or a.minimal:
            print("--relay runs the relay cases with cpp and py peers: not with --known-bad "
                  "or --minimal", file=sys.stderr)
            return 2
        sel = [c for c in sel if c.relay is not None]
    if a.netns and not a.relay:
        print("--netns puts the two ends of the relay pair in two network namespaces: give "
              "--relay too (python -m conformance run --relay --netns)", file=sys.stderr)
        return 2
    try:
        relay_ends = relay_mod.parse_relay_ends(a.relay_ends)
    except ValueError as e:
        print(str(e), file=sys.stderr)
        return 2
    if relay_ends != ("py", "py") and not a.relay:
        print("--relay-ends chooses the relay ends' implementations: give --relay too",
              file=sys.stderr)
        return 2
    if not sel:
        print("no case selected", file=sys.stderr)
        return 2
    requested = [norm_pairing(p) for p in a.pairing]
    if a.minimal and not requested:
        m = a.minimal
        requested = [f"{m}-cpp", f"cpp-{m}", f"{m}-py", f"py-{m}", f"{m}-{m}"]
    impls = runner.default_impls(a.cpp_peer, a.python)
    for spec_ in a.peer:
        pi = runner.parse_peer_option(spec_)
        impls[pi.name] = pi
    plan = [(c, p) for c in sel for p in pairings_for(c, requested, a.known_bad)]
    if a.minimal:
        plan = minimal_plan(plan, a.minimal)
    needed = {x for _, p in plan for x in p.split("-")}
    for n in sorted(needed):
        if n not in impls:
            print(f"unknown peer {n!r}: give --peer {n}=TEMPLATE", file=sys.stderr)
            return 2
        runner.probe(impls[n])
        if not impls[n].available:
            print(f"warning: peer {n} unavailable: {impls[n].why_unavailable}", file=sys.stderr)
    prefix = "python -m conformance run"
    if a.cpp_peer:
        prefix += f" --cpp-peer {shlex.quote(a.cpp_peer)}"
    if a.python:
        prefix += f" --python {shlex.quote(a.python)}"
    for s in a.peer:
        prefix += f" --peer {shlex.quote(s)}"
    if a.known_bad:
        prefix += " --known-bad"
    if a.stress:
        prefix += " --stress"
    if a.minimal:
        prefix += f" --minimal {shlex.quote(a.minimal)}"
    if a.cpp_relay:
        prefix += f" --cpp-relay {shlex.quote(a.cpp_relay)}"
    opt = runner.Options(impls, Path(a.workdir), stress=a.stress, slack_ms=a.slack_ms,
                         rerun_prefix=prefix, relay=a.relay, relay_ends=relay_ends,
                         cpp_relay=a.cpp_relay)
    t0 = time.monotonic()
    if a.netns:
        results = execute_in_namespaces(plan, opt, a)
        if results is None:
            return SKIP_EXIT
        if isinstance(results, int):
            return results
    else:
        results = execute(plan, opt, a.jobs, quiet=a.quiet, known_bad=a.known_bad)
    elapsed = time.monotonic() - t0
    order = {(c.id, p): i for i, (c, p) in enumerate(plan)}
    results.sort(key=lambda r: order[(r.case.id, r.pairing)])
    title = "shmbridge conformance" + (" — known-bad matrix (naive peer)" if a.known_bad else "")
    if a.relay:
        title += " — through a relay pair (requester → near → far → responder)"
        if relay_ends != ("py", "py"):
            title += f", relay ends near={relay_ends[0]} far={relay_ends[1]}"
    if a.netns:
        title += " across two network namespaces"
    report.console_report(results, a.known_bad, title=title)
    if a.known_bad:
        print_known_bad(results)
    print(f"elapsed {elapsed:.1f} s")
    for fmt, fn in (("junit", report.write_junit), ("json", report.write_json), ("md", report.write_markdown),
                    ("html", report.write_html)):
        path = getattr(a, fmt)
        if path:
            fn(results, path, a.known_bad)
    c = report.counts(results, a.known_bad)
    if a.known_bad:
        return 0 if not c.get("MISSED") and not c.get("ERROR") and c.get("CAUGHT") else 1
    if c.get("FAIL") or c.get("ERROR"):
        return 1
    if c.get("SKIP") and not a.allow_skip:
        print("some runs were skipped (a peer is unavailable); --allow-skip to accept", file=sys.stderr)
        return 1
    return 0


def execute_in_namespaces(plan, opt, a):
    """run --netns: create the run's two namespaces and CurveZMQ keys, run the plan with every
    relay pair split across them, delete the namespaces whatever happens. None (after one line
    saying why) when namespaces cannot be made here: the caller exits SKIP_EXIT; 1 when the
    run's keys cannot be made."""
    for name in netns.delete_stale(NETNS_PREFIX):
        print(f"removed stale namespace {name} (its run is gone)", file=sys.stderr)
    try:
        ns = netns.create(NETNS_PREFIX)
    except netns.NetnsUnavailable as e:
        print(f"SKIP --netns: {e}", flush=True)
        return None
    # SIGTERM (ctest, a CI cancel) runs the finally below instead of leaving the namespaces.
    old = signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    keydir = Path(a.workdir) / f"netns-{os.getpid()}-keys"
    try:
        py = opt.impls["py"]
        try:
            curve = relay_mod.curve_keys([py.template[0]], dict(os.environ, **py.env), keydir)
        except (RuntimeError, OSError, subprocess.TimeoutExpired) as e:
            print(f"error: the run's CurveZMQ keys: {e} (the relay needs pyzmq: pip install "
                  "'.[relay]')", file=sys.stderr)
            return 1
        opt.netns = relay_mod.NamespaceRoutes(ns, curve)
        if not a.quiet:
            print(f"relay ends in namespaces {ns.near_ns} ({ns.near_addr}) and {ns.far_ns} "
                  f"({ns.far_addr}), link CurveZMQ (keys in {keydir})", flush=True)
        return execute(plan, opt, a.jobs, quiet=a.quiet, known_bad=a.known_bad)
    finally:
        signal.signal(signal.SIGTERM, old)
        netns.delete(ns)
        shutil.rmtree(keydir, ignore_errors=True)  # the run's keys serve no later run


def execute(plan, opt, jobs, quiet=False, known_bad=False):
    results = []
    parallel = [(c, p) for c, p in plan if not c.timing]
    serial = [(c, p) for c, p in plan if c.timing]
    total = len(plan)
    progress = None
    task = None
    if report.HAVE_RICH and sys.stdout.isatty() and not quiet:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
        progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TimeElapsedColumn(), TextColumn("{task.fields[last]}"))
        progress.start()
        task = progress.add_task("conformance", total=total, last="")

    def done(r):
        results.append(r)
        v = report.cell_verdict(r, known_bad)
        line = f"[{len(results)}/{total}] {v:<6} {r.case.id} [{show_pairing(r.pairing)}] {r.seconds:.2f}s"
        if progress is not None:
            progress.update(task, advance=1, last=line)
        elif not quiet:
            print(line, flush=True)

    def one(cp):
        c, p = cp
        try:
            return runner.run_case(c, p, opt)
        except Exception as e:  # noqa: BLE001
            r = runner.RunResult(c, p, "ERROR", note=f"runner error: {e!r}")
            return r

    try:
        with ThreadPoolExecutor(max_workers=max(1, jobs)) as ex:
            futs = [ex.submit(one, cp) for cp in parallel]
            for f in as_completed(futs):
                done(f.result())
        for cp in serial:
            done(one(cp))
    finally:
        if progress is not None:
            progress.stop()
    return results


def print_known_bad(results):
    by_case = {}
    for r in results:
        by_case.setdefault(r.case.id, []).append(r)
    print("\nknown-bad peer (original design): what caught it")
    for cid, rs in by_case.items():
        caught = [r for r in rs if r.verdict == "FAIL"]
        missed = [r for r in rs if r.verdict == "PASS"]
        viol = []
        for r in caught:
            for v in r.violated:
                if v not in viol:
                    viol.append(v)
        cat = (rs[0].case.known_bad or {}).get("category", rs[0].case.category)
        state = "CAUGHT" if caught and not missed else ("MISSED" if not caught else "PARTLY")
        print(f"  {state:<7} [{cat}] {cid}: {len(caught)}/{len(rs)} pairings; violates {', '.join(viol) or '-'}")
        for r in missed:
            print(f"          not caught in {show_pairing(r.pairing)}")


def cmd_list(a) -> int:
    for c in catalogue.select(catalogue.load(), a.ids or None):
        ps = ",".join(c.pairings) if c.pairings != ALL_PAIRINGS else "all"
        print(f"{c.id:<40} {','.join(c.requirements):<40} {ps:<16} {c.purpose}")
    return 0


def main(argv=None) -> int:
    a = build_parser().parse_args(argv)
    if a.cmd == "run":
        return cmd_run(a)
    if a.cmd == "list":
        return cmd_list(a)
    if a.cmd == "coverage":
        from . import coverage
        return coverage.main(a)
    return 2


if __name__ == "__main__":
    sys.exit(main())
