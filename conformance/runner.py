"""Runs one case in one pairing: starts the peers, watches them, checks what they did."""

from __future__ import annotations

import json
import os
import shlex
import signal
import struct
import subprocess
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from . import REPO_ROOT, history, spec, v2check
from . import relay as relay_mod
from .catalogue import Case, Proc, show_pairing


# ---------------------------------------------------------------- peers


@dataclass
class PeerImpl:
    name: str
    template: list  # argv with an "{args}" element, or argv to which the args are appended
    env: dict = field(default_factory=dict)
    available: bool = True
    why_unavailable: str = ""

    def argv(self, args: list) -> list:
        if "{args}" in self.template:
            i = self.template.index("{args}")
            return self.template[:i] + args + self.template[i + 1:]
        return self.template + args


def default_impls(cpp_peer: str | None = None, python: str | None = None) -> dict:
    py = python or sys.executable
    cpp = cpp_peer or os.environ.get("SHMBRIDGE_CPP_PEER") or str(REPO_ROOT / "build/cpp/tools/shmbridge-peer")
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))}
    return {
        "cpp": PeerImpl("cpp", [cpp]),
        "py": PeerImpl("py", [py, "-m", "shmbridge.peer"], env),
        "naive": PeerImpl("naive", [py, "-m", "conformance.naive_peer"], env),
    }


def default_cpp_relay() -> str:
    """The C++ relay ends (cpp/relay/), found as the C++ peer is: $SHMBRIDGE_CPP_RELAY, else
    the build directory."""
    return os.environ.get("SHMBRIDGE_CPP_RELAY") or str(REPO_ROOT / "build/cpp/relay/shmbridge-relay")


def parse_peer_option(text: str) -> PeerImpl:
    name, _, tmpl = text.partition("=")
    if not name or not tmpl:
        raise ValueError(f"--peer wants NAME=TEMPLATE, got {text!r}")
    return PeerImpl(name, shlex.split(tmpl))


def probe(impl: PeerImpl, timeout: float = 20.0) -> PeerImpl:
    """See _probe; for the Python peer, falls back to the source tree (python/ on PYTHONPATH)
    when shmbridge is not installed but its native helper was built in place."""
    _probe(impl, timeout)
    src = REPO_ROOT / "python"
    if not impl.available and impl.name == "py" and any((src / "shmbridge").glob("_native*")):
        first = impl.why_unavailable
        impl.env = dict(impl.env, PYTHONPATH=os.pathsep.join([impl.env.get("PYTHONPATH", ""), str(src)]))
        impl.available, impl.why_unavailable = True, ""
        _probe(impl, timeout)
        if not impl.available:
            impl.why_unavailable = f"{first}; with python/ on PYTHONPATH: {impl.why_unavailable}"
    return impl


def _probe(impl: PeerImpl, timeout: float = 20.0) -> PeerImpl:
    """A peer is available if `--print-clock` works and prints a CLOCK_MONOTONIC timestamp that
    lies between two readings of this process's clock (PEER.md §2)."""
    env = dict(os.environ, **impl.env)
    try:
        t0 = time.monotonic_ns()
        r = subprocess.run(impl.argv(["--print-clock"]), capture_output=True, text=True,
                           timeout=timeout, env=env, cwd=REPO_ROOT)
        t1 = time.monotonic_ns()
    except (OSError, subprocess.TimeoutExpired) as e:
        impl.available, impl.why_unavailable = False, f"cannot run {impl.template[0]}: {e}"
        return impl
    if r.returncode != 0:
        impl.available = False
        impl.why_unavailable = f"`{shlex.join(impl.argv(['--print-clock']))}` exited {r.returncode}: " \
                               + (r.stderr.strip().splitlines() or [""])[-1][:200]
        return impl
    try:
        t = json.loads(r.stdout.strip().splitlines()[-1])["t"]
    except (ValueError, KeyError, IndexError):
        impl.available, impl.why_unavailable = False, f"--print-clock printed {r.stdout[:100]!r}"
        return impl
    if not (t0 <= t <= t1):
        impl.available = False
        impl.why_unavailable = (f"clock mismatch: peer printed {t}, not within this process's "
                                f"CLOCK_MONOTONIC [{t0}, {t1}] (PEER.md §2)")
    return impl


# ---------------------------------------------------------------- results


@dataclass
class Check:
    name: str
    ok: bool
    requirements: list
    expected: str = ""
    actual: str = ""
    detail: str = ""
    proc: str = ""


@dataclass
class ProcResult:
    name: str
    role: str
    impl: str
    argv: list
    returncode: int | None = None
    started: bool = False
    start_ns: int | None = None
    end_ns: int | None = None
    lines: list = field(default_factory=list)
    bad_lines: list = field(default_factory=list)
    stdout_path: str = ""
    stderr_path: str = ""
    stderr_tail: str = ""
    killed_ns: int | None = None  # when the runner sent SIGKILL (kill_after_ms)
    crash_seen: float | None = None  # monotonic time its crash event was read (zombie_ms)

    @property
    def summary(self) -> dict | None:
        for obj in reversed(self.lines):
            if obj.get("event") == "summary":
                return obj
        return None

    def events(self) -> list:
        return [o for o in self.lines if "op" in o]


@dataclass
class RunResult:
    case: Case
    pairing: str
    verdict: str  # PASS FAIL SKIP ERROR
    checks: list = field(default_factory=list)
    procs: list = field(default_factory=list)
    seconds: float = 0.0
    name: str = ""
    rerun: str = ""
    note: str = ""
    history: str = ""

    @property
    def failed_checks(self) -> list:
        return [c for c in self.checks if not c.ok]

    @property
    def violated(self) -> list:
        out = []
        for c in self.failed_checks:
            for r in c.requirements:
                if r not in out:
                    out.append(r)
        return out


# ---------------------------------------------------------------- running


class Options:
    def __init__(self, impls: dict, workdir: Path, stress: bool = False, slack_ms: float = 250.0,
                 rerun_prefix: str = "python -m conformance run", keep_logs: bool = False,
                 relay: bool = False, netns: relay_mod.NamespaceRoutes | None = None,
                 relay_ends: tuple[str, str] = ("py", "py"), cpp_relay: str | None = None):
        self.impls = impls
        self.workdir = Path(workdir)
        self.stress = stress
        self.slack_ms = slack_ms
        self.rerun_prefix = rerun_prefix
        self.keep_logs = keep_logs
        self.relay = relay  # every case through a relay pair (conformance/relay.py)
        self.netns = netns  # with relay: its two ends in two network namespaces
        self.relay_ends = relay_ends  # (near, far) implementation: py or cpp
        self.cpp_relay = cpp_relay or default_cpp_relay()


_counter = [0]


def segment_name(case: Case, pairing: str) -> str:
    _counter[0] += 1
    return f"cf{os.getpid() % 100000:05d}x{_counter[0]:04d}"


def _sanitize(s: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in s)


def proc_args(case: Case, p: Proc, name: str, rounds: int) -> list:
    text = p.args.replace("{name}", name).replace("{rounds}", str(rounds))
    args = shlex.split(text)
    if "--name" not in args and not any(a.startswith("--name=") for a in args):
        args = ["--name", name] + args
    return ["--role", p.role, "--label", p.name] + args


def relay_case(case: Case) -> Case:
    """The case as run through a relay: its relay overrides (catalogue ``relay``) merged in."""
    over = case.relay or {}
    procs = [replace(p, expect=dict(p.expect, **(over.get("expect") or {}).get(p.name, {})))
             for p in case.procs]
    return replace(case, procs=procs, watchdog_s=float(over.get("watchdog_s", case.watchdog_s)))


def relay_available(python: str, env: dict) -> str:
    """Why the relay cannot run with this interpreter ("" when it can): pyzmq (extra `relay`)."""
    try:
        r = subprocess.run([python, "-c", "import zmq, shmbridge.relay"], capture_output=True,
                           text=True, timeout=60, env=dict(os.environ, **env), cwd=REPO_ROOT)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"cannot run {python}: {e}"
    if r.returncode != 0:
        return (f"{python} cannot import zmq and shmbridge.relay (pip install '.[relay]'): "
                + (r.stderr.strip().splitlines() or [""])[-1][:200])
    return ""


def run_case(case: Case, pairing: str, opt: Options) -> RunResult:
    if opt.relay:
        case = relay_case(case)
    req_impl, rsp_impl = pairing.split("-")
    rounds = case.stress_rounds if (opt.stress and case.stress_rounds) else case.rounds
    rerun = f"{opt.rerun_prefix} --case '{case.id}' --pairing {pairing}"
    rerun += " --relay" if opt.relay else ""
    rerun += " --netns" if opt.netns is not None else ""
    if opt.relay and opt.relay_ends != ("py", "py"):
        rerun += f" --relay-ends {','.join(opt.relay_ends)}"
    res = RunResult(case, pairing, "PASS", rerun=rerun)
    for impl_name in (req_impl, rsp_impl):
        impl = opt.impls.get(impl_name)
        if impl is None or not impl.available:
            res.verdict = "SKIP"
            res.note = f"peer {impl_name!r} unavailable: " + (impl.why_unavailable if impl else "not configured")
            return res
    name = segment_name(case, pairing)
    res.name = name
    rundir = opt.workdir / _sanitize(case.id) / pairing
    rundir.mkdir(parents=True, exist_ok=True)
    pair: relay_mod.RelayPair | None = None
    seg_of = {"requester": name, "responder": name}
    if opt.relay:  # NAME_A for the requesters, NAME_B for the responders (spec/RELAY.md §1)
        py = opt.impls["py"]
        why = relay_available(py.template[0], py.env)
        if not why and "cpp" in opt.relay_ends and not os.access(opt.cpp_relay, os.X_OK):
            why = (f"the C++ relay {opt.cpp_relay} is not built (cmake needs libzmq3-dev and "
                   "cppzmq-dev; --cpp-relay PATH or $SHMBRIDGE_CPP_RELAY)")
        if why:
            res.verdict, res.note = "SKIP", f"relay unavailable: {why}"
            return res
        seg_of = {"requester": name + "a", "responder": name + "b"}
        try:
            pair = relay_mod.RelayPair(
                [py.template[0]], dict(os.environ, **py.env), seg_of["requester"],
                seg_of["responder"],
                [shlex.split(p.args) for p in case.procs if p.role == "requester"],
                [shlex.split(p.args) for p in case.procs if p.role == "responder"], rundir,
                opt.netns.route() if opt.netns is not None else None,
                relay_mod.relay_commands(opt.relay_ends, [py.template[0]], opt.cpp_relay))
        except relay_mod.NotRelayable as e:
            res.verdict, res.note = "ERROR", f"case not runnable through a relay: {e}"
            return res
    procs: dict[str, ProcResult] = {}
    popen: dict[str, subprocess.Popen] = {}
    files = {}
    offsets = {}
    pending = list(case.procs)
    t_start = time.monotonic()
    deadline = t_start + case.watchdog_s * (4 if opt.stress and case.stress_rounds else 1)
    if pair is not None:
        pair.start(REPO_ROOT)
        deadline += 20  # the relay ends' start-up (Python, pyzmq) before the case's clock

    def relay_gate(p) -> bool:
        """Through a relay a process starts once the relay ends listen (RelayPair.listening),
        and an attacher of a segment a relay end creates once that segment exists (the far end
        creates it at start-up, the near end after the far end's HELLO; the case's start
        conditions name only the case's processes)."""
        if pair is None:
            return True
        if not pair.listening():
            return False
        creates = "--create" in shlex.split(p.args)
        relay_creates = pair.near_creates if p.role == "requester" else pair.far_creates
        return creates or not relay_creates or pair.segment_exists(p.role)
    ready_at: dict[str, float] = {}
    exited_at: dict[str, float] = {}
    snapshot: bytes | None = None  # the segment when case.unchanged_after exited
    started_at: dict[str, float] = {}
    logged_start: dict[str, float] = {}
    for p in case.procs:
        impl = opt.impls[req_impl if p.impl == "requester" else rsp_impl]
        args = proc_args(case, p, seg_of[p.role], rounds)
        argv = impl.argv(args)
        if p.comm:  # R-LIVE-7: its /proc comm is the name of the file it was executed from
            link = rundir / p.comm
            if link.is_symlink() or link.exists():
                link.unlink()
            link.symlink_to(os.path.realpath(argv[0]))
            argv = [str(link)] + argv[1:]
        procs[p.name] = ProcResult(p.name, p.role, impl.name, argv)
    res.procs = list(procs.values())

    def read_new(pname):
        pr = procs[pname]
        path = pr.stdout_path
        try:
            with open(path, "rb") as fh:
                fh.seek(offsets.get(pname, 0))
                data = fh.read()
        except FileNotFoundError:
            return
        cut = data.rfind(b"\n")
        if cut < 0:
            return
        offsets[pname] = offsets.get(pname, 0) + cut + 1
        for raw in data[: cut + 1].splitlines():
            if not raw.strip():
                continue
            try:
                obj = json.loads(raw)
                if not isinstance(obj, dict):
                    raise ValueError
                pr.lines.append(obj)
                if obj.get("event") == "start":
                    logged_start.setdefault(pname, time.monotonic())
                if obj.get("op") in ("create", "attach") and obj.get("result") == "ok":
                    ready_at.setdefault(pname, time.monotonic())
                if obj.get("op") == "crash" and pr.crash_seen is None:
                    pr.crash_seen = time.monotonic()
            except ValueError:
                pr.bad_lines.append(raw.decode(errors="replace")[:200])

    try:
        while True:
            now = time.monotonic()
            # start what may start
            for p in list(pending):
                ok = p.start == "first"
                if not ok:
                    _, dep, what = p.start.split(":")
                    t_dep = {"ready": ready_at, "exit": exited_at,
                             "started": logged_start}[what].get(dep)
                    ok = t_dep is not None and now >= t_dep + p.delay_ms / 1000
                    if t_dep is None and dep in exited_at and what in ("ready", "started"):
                        pending.remove(p)  # its dependency died before it became ready
                        continue
                elif p.delay_ms and now < t_start + p.delay_ms / 1000:
                    ok = False
                if ok and not relay_gate(p):
                    ok = False
                if ok:
                    pending.remove(p)
                    pr = procs[p.name]
                    impl = opt.impls[pr.impl]
                    pr.stdout_path = str(rundir / f"{p.name}.out")
                    pr.stderr_path = str(rundir / f"{p.name}.err")
                    files[p.name] = (open(pr.stdout_path, "wb"), open(pr.stderr_path, "wb"))
                    env = dict(os.environ, **impl.env)
                    pr.start_ns = time.monotonic_ns()
                    started_at[p.name] = time.monotonic()
                    popen[p.name] = subprocess.Popen(
                        pr.argv, stdout=files[p.name][0], stderr=files[p.name][1],
                        stdin=subprocess.DEVNULL, cwd=REPO_ROOT, env=env, start_new_session=True)
                    pr.started = True
            for pname, po in popen.items():
                read_new(pname)
                pr, pc = procs[pname], case.proc(pname)
                if (pc.kill_after_ms is not None and pr.killed_ns is None and pname not in exited_at
                        and now >= started_at[pname] + pc.kill_after_ms / 1000):
                    pr.killed_ns = time.monotonic_ns()  # R-WAIT-6: killed wherever it is
                    _kill_group(po)
                if pc.zombie_ms and pr.crash_seen is not None and \
                        time.monotonic() < pr.crash_seen + pc.zombie_ms / 1000:
                    continue  # not reaped yet: a zombie (R-LIVE-2, R-LIVE-7)
                if pname not in exited_at and po.poll() is not None:
                    read_new(pname)
                    exited_at[pname] = time.monotonic()
                    procs[pname].returncode = po.returncode
                    procs[pname].end_ns = time.monotonic_ns()
                    if pname == case.unchanged_after:
                        snapshot = _segment_bytes(seg_of[pr.role])
            running = [n for n in popen if n not in exited_at]
            if not running and not pending:
                break
            if not running and pending:
                # nothing runs and nothing more can start
                if all(not _startable(p, ready_at, exited_at, logged_start) for p in pending):
                    break
            if now > deadline:
                for n in running:
                    _kill_group(popen[n])
                    procs[n].returncode = None
                    exited_at[n] = time.monotonic()
                for n in running:
                    try:
                        popen[n].wait(timeout=5)
                    except subprocess.TimeoutExpired:
                        pass
                    read_new(n)
                    procs[n].returncode = None  # HANG
                break
            time.sleep(0.003)
    finally:
        for n, po in popen.items():
            if po.poll() is None:
                _kill_group(po)
                po.wait()
        if pair is not None:
            pair.stop()
        for out, err in files.values():
            out.close()
            err.close()
    for pr in procs.values():
        if pr.stderr_path:
            try:
                pr.stderr_tail = Path(pr.stderr_path).read_text(errors="replace")[-2000:]
            except OSError:
                pass
    res.seconds = time.monotonic() - t_start
    final = None
    if case.unchanged_after:
        final = _segment_bytes(seg_of[procs[case.unchanged_after].role])
    leftover = any([_cleanup_segment(n, case) for n in sorted(set(seg_of.values()))])
    if pair is not None:
        res.note = pair.command_lines()
        for cname, ok, reqs, expected, actual in relay_mod.findings(pair):
            res.checks.append(Check(cname, ok, reqs, expected, actual))
    _evaluate(res, case, procs, leftover, opt, relayed=pair is not None)
    if case.unchanged_after:
        _check_unchanged(res, case, snapshot, final)
    res.verdict = "PASS" if all(c.ok for c in res.checks) else "FAIL"
    return res


def _startable(p, ready_at, exited_at, logged_start) -> bool:
    if p.start == "first":
        return True
    _, dep, what = p.start.split(":")
    return dep in {"ready": ready_at, "exit": exited_at, "started": logged_start}[what]


def _kill_group(po: subprocess.Popen):
    try:
        os.killpg(po.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        try:
            po.kill()
        except ProcessLookupError:
            pass


def _segment_bytes(name: str, limit: int = 1 << 24) -> bytes | None:
    """The OS object's bytes (at most ``limit``), None when there is none."""
    try:
        with open(Path("/dev/shm") / name, "rb") as fh:
            return fh.read(limit)
    except OSError:
        return None


def _check_unchanged(res: RunResult, case: Case, before: bytes | None, after: bytes | None):
    """``unchanged_after = PROC``: the segment (left by PROC, e.g. a creator with --keep) is byte
    for byte the same at the end of the case as when PROC exited: the processes that ran after
    it changed nothing, claimed no slot (R-LIVE-1)."""
    who = case.unchanged_after
    if before is None or after is None:
        res.checks.append(Check("segment unchanged", False, case.requirements,
                                f"the segment exists when {who} exited and at the end",
                                f"when {who} exited: {'absent' if before is None else 'present'}, "
                                f"at the end: {'absent' if after is None else 'present'}"))
        return
    if before != after:
        at = next((i for i, (x, y) in enumerate(zip(before, after)) if x != y),
                  min(len(before), len(after)))
        res.checks.append(Check("segment unchanged", False, case.requirements + ["R-LIVE-1"],
                                f"no byte of the segment changes after {who} exited",
                                f"{len(before)} -> {len(after)} bytes, first difference at "
                                f"offset 0x{at:03X} ({before[at:at + 8].hex()} -> "
                                f"{after[at:at + 8].hex()})"))


def _cleanup_segment(name: str, case: Case) -> bool:
    names = {name}
    for p in case.procs:  # a case may name its own segment (e.g. with a leading '/')
        for tok in shlex.split(p.args.replace("{name}", name)):
            if tok.lstrip("/").startswith(name):
                names.add(tok.lstrip("/"))
    left = False
    for n in names:
        path = Path("/dev/shm") / n
        if path.exists():
            left = True
            try:
                path.unlink()
            except OSError:
                pass
    return left


# ---------------------------------------------------------------- checks


def _as_list(x):
    return [x] if isinstance(x, (str, int)) else list(x)


def _match(obj: dict, pat: dict) -> bool:
    """An event matches a pattern of the catalogue: every key equal, except ``result = [..]``
    (one of), a value ``"null"`` (the key is logged as JSON null: TOML has no null, e.g. the
    ``field`` of an error that names none, PEER.md §7.5) and ``message_has = TEXT`` (the
    error message contains TEXT, e.g. the API R-VER-3 tells the user to use)."""
    for k, v in pat.items():
        if k == "result" and isinstance(v, list):
            if obj.get(k) not in v:
                return False
        elif k == "message_has":
            if str(v) not in str(obj.get("message") or ""):
                return False
        elif v == "null":
            if k not in obj or obj[k] is not None:
                return False
        elif obj.get(k) != v:
            return False
    return True


def _fmt_pat(pat: dict) -> str:
    return "{" + ", ".join(f"{k}={v}" for k, v in pat.items()) + "}"


def _last_error(pr: ProcResult) -> str:
    for e in reversed(pr.events()):
        if e.get("result") not in (None, "ok") and not e.get("injected"):
            msg = e.get("message") or ""
            return f"last error: {e.get('op')} -> {e.get('result')}" + (f" ({msg[:160]})" if msg else "")
    return ""


def _evaluate(res: RunResult, case: Case, procs: dict, leftover: bool, opt: Options,
              relayed: bool = False):
    checks = res.checks
    slack = opt.slack_ms
    crash_t = {n: next((e["t_call"] for e in pr.events() if e.get("op") == "crash"), pr.killed_ns)
               for n, pr in procs.items()}
    for p in case.procs:
        pr = procs[p.name]
        exp = p.expect
        exits = _as_list(exp.get("exit", "OK"))
        codes = {spec.exit_code_of(e) for e in exits}
        # started at all?
        if not pr.started:
            checks.append(Check("started", False, case.requirements, "the process is started",
                                f"never started: its start condition {p.start!r} never held", proc=p.name))
            continue
        # exit code
        actual = spec.describe_exit(pr.returncode)
        ok = pr.returncode in codes
        detail = _last_error(pr)
        if pr.returncode is None:
            checks.append(Check("no hang", False, ["R-WAIT-2", "R-LIVE-3"] + case.requirements,
                                f"exits within the {case.watchdog_s:g} s watchdog", "still running: killed",
                                detail, proc=p.name))
        else:
            checks.append(Check("exit", ok, case.requirements,
                                " or ".join(f"{e} ({spec.exit_code_of(e)})" for e in exits),
                                f"{actual} ({pr.returncode})", detail, proc=p.name))
        # log well-formed
        if pr.bad_lines:
            checks.append(Check("log format", False, ["R-ERR-1"], "JSON lines (PEER.md §2)",
                                f"{len(pr.bad_lines)} unparsable line(s): {pr.bad_lines[0]!r}", proc=p.name))
        evs = pr.events()
        bad_t = [e for e in evs if not (isinstance(e.get("t_call"), int) and isinstance(e.get("t_return"), int)
                                        and e["t_call"] <= e["t_return"])]
        if bad_t:
            checks.append(Check("timestamps", False, ["R-ERR-1"], "t_call <= t_return, integers (ns)",
                                json.dumps(bad_t[0])[:200], proc=p.name))
        unknown = [e for e in evs if e.get("result") != "ok" and e.get("result") not in spec.errors()]
        if unknown:
            checks.append(Check("error names", False, ["R-ERR-1"], "result is ok or a name from errors.json",
                                f"{unknown[0].get('result')!r} in {json.dumps(unknown[0])[:160]}", proc=p.name))
        no_msg = [e for e in evs if e.get("result") not in (None, "ok", "INTERNAL")
                  and len(str(e.get("message") or "")) < 10]
        if no_msg:
            checks.append(Check("error message", False, ["R-ERR-2"],
                                "every error carries a message (expected / found / what to do)",
                                f"{no_msg[0].get('op')} -> {no_msg[0].get('result')} with message "
                                f"{no_msg[0].get('message')!r}", proc=p.name))
        if "max_median_round_ms" in exp:
            rtts = _round_trips(evs)
            if rtts:
                med = sorted(rtts)[len(rtts) // 2]
                checks.append(Check("round-trip latency", med <= exp["max_median_round_ms"],
                                    ["R-WAIT-1"] + case.requirements,
                                    f"median send→receive round trip <= {exp['max_median_round_ms']} ms",
                                    f"{med:.3f} ms over {len(rtts)} rounds", proc=p.name))
            else:
                checks.append(Check("round-trip latency", False, ["R-WAIT-1"], "completed rounds",
                                    "none", proc=p.name))
        summ = pr.summary
        if pr.returncode is not None and pr.returncode >= 0:
            if summ is None:
                checks.append(Check("summary", False, ["R-ERR-1"], "a final summary line (PEER.md §2)",
                                    "none", proc=p.name))
            elif summ.get("exit") != pr.returncode:
                checks.append(Check("summary", False, ["R-ERR-1"],
                                    f"summary exit equals the process exit {pr.returncode}",
                                    f"summary says {summ.get('exit')}", proc=p.name))
        for key in ("rounds_ok", "verified"):
            if key in exp:
                got = (summ or {}).get(key)
                checks.append(Check(key, got is not None and got >= exp[key],
                                    ["R-STATE-3", "R-STATE-6"] + case.requirements,
                                    f"{key} >= {exp[key]}", f"{key} = {got}", proc=p.name))
        mm_max = exp.get("mismatches", 0)
        got = (summ or {}).get("mismatches", 0) or 0
        bad_recv = [e for e in evs if e.get("op") == "receive" and e.get("verified") is False]
        if got > mm_max or (mm_max == 0 and bad_recv):
            first = bad_recv[0] if bad_recv else {}
            checks.append(Check("replies verified", False, ["R-STATE-3", "R-STATE-6"],
                                f"at most {mm_max} reply that fails PEER.md §3",
                                f"{max(got, len(bad_recv))} (first: round {first.get('round')}, seq {first.get('seq')})",
                                "a reply was returned that is not the computation of this requester's "
                                "own request", proc=p.name))
        for pat in exp.get("events", []):
            found = any(_match(e, pat) for e in evs)
            checks.append(Check("event", found, case.requirements, f"an event {_fmt_pat(pat)}",
                                "present" if found else "absent; events: " + _brief(evs), proc=p.name))
        for pat in exp.get("no_events", []):
            hit = [e for e in evs if _match(e, pat)]
            checks.append(Check("no event", not hit, case.requirements, f"no event {_fmt_pat(pat)}",
                                "none" if not hit else json.dumps(hit[0])[:200], proc=p.name))
        for bound in _as_list_dicts(exp.get("min_op_ms")):
            pat = {k: v for k, v in bound.items() if k != "ms"}
            hit = [e for e in evs if _match(e, pat)]
            dur = min(((e["t_return"] - e["t_call"]) / 1e6 for e in hit), default=None)
            checks.append(Check("waited", dur is not None and dur >= bound["ms"],
                                ["R-WAIT-2"] + case.requirements,
                                f"{_fmt_pat(pat)} returns no earlier than {bound['ms']} ms",
                                "no such event" if dur is None else f"{dur:.1f} ms", proc=p.name))
        if pr.impl != "naive":  # the naive peer logs PEER.md 1.0 (it is known-bad anyway)
            _check_replies(checks, p.name, evs, v2=v2check.is_v2(pr.lines))
        for bound in _as_list_dicts(exp.get("max_op_ms")):
            pat = {k: v for k, v in bound.items() if k != "ms"}
            hit = [e for e in evs if _match(e, pat)]
            if not hit:
                checks.append(Check("time bound", False, ["R-WAIT-2"] + case.requirements,
                                    f"an event {_fmt_pat(pat)} within {bound['ms']} ms", "no such event",
                                    proc=p.name))
                continue
            dur = max((e["t_return"] - e["t_call"]) / 1e6 for e in hit)
            checks.append(Check("time bound", dur <= bound["ms"] + slack, ["R-WAIT-2"] + case.requirements,
                                f"{_fmt_pat(pat)} returns within {bound['ms']} ms (+{slack:g} ms slack)",
                                f"{dur:.1f} ms", proc=p.name))
        if "peer_gone_within_ms" in exp:
            lim = exp["peer_gone_within_ms"]
            others = [t for n, t in crash_t.items() if t is not None and n != p.name]
            gone = [e for e in evs if e.get("result") == "PEER_GONE"]
            if not others:
                checks.append(Check("peer gone", False, ["R-LIVE-3"], "another peer crashed", "no crash logged",
                                    proc=p.name))
            elif not gone:
                checks.append(Check("peer gone", False, ["R-LIVE-3"], f"PEER_GONE within {lim} ms of the crash",
                                    "no PEER_GONE reported; " + _brief(evs[-4:]), proc=p.name))
            else:
                t_crash = min(others)
                after = [e for e in gone if e["t_return"] >= t_crash]
                lat = (min(e["t_return"] for e in after) - t_crash) / 1e6 if after else float("inf")
                checks.append(Check("peer gone", lat <= lim + slack, ["R-LIVE-3"],
                                    f"PEER_GONE within {lim} ms of the crash (+{slack:g} ms slack)",
                                    f"{lat:.0f} ms", proc=p.name))
    if case.one_ok:
        ok = [n for n in case.one_ok if procs[n].returncode == 0]
        checks.append(Check("one winner", len(ok) == 1, case.requirements,
                            f"exactly one of {', '.join(case.one_ok)} exits OK",
                            f"{len(ok)} did" + (f" ({', '.join(ok)})" if ok else "")))
    # the merged history
    # through a relay each segment has the peers of one role; the relay end is the other
    segments = ([("", {"requester", "responder"}, frozenset())] if not relayed else
                [(" (requester's segment)", {"requester"}, frozenset({"responder"})),
                 (" (responder's segment)", {"responder"}, frozenset({"requester"}))])
    for label, roles, hidden in segments:
        logs = {n: pr.lines for n, pr in procs.items() if pr.lines and pr.role in roles}
        if not (case.history and logs):
            continue
        try:
            v = history.check(logs, hidden=hidden)
        except Exception as e:  # noqa: BLE001
            v = history.Verdict(False, f"history checker crashed: {e!r}")
        res.history += (label + ": " if label else "") + v.message + "\n"
        if not v.ok:
            first, _, rest = v.message.partition("\n")
            checks.append(Check("history" + label, False, list(v.requirements),
                                "a history allowed by spec/transitions.json", first, rest))
    if relayed:
        procs = _relay_translated(res, procs)
    # checksums: what was taken is what was sent, what was received is what was published
    if case.checksums:
        _check_checksums(res, procs)
        _check_v2(res, case, procs)
    if leftover and case.leftover != "expected":
        checks.append(Check("leftover segment", False, ["R-SEG-3", "R-CLOSE-1"],
                            f"no /dev/shm/{res.name} after the case", "left behind (removed by the runner)"))


def _relay_translated(res: RunResult, procs: dict) -> dict:
    """The processes with the responders' seqs (the responder's segment) renamed to the seqs of
    the requests they were paired with on the requester's segment (relay.match_rounds), so that
    the checks by seq compare the same round; a failed pairing is itself a failure."""
    req = sorted((e for pr in procs.values() if pr.role == "requester" for e in pr.events()),
                 key=lambda e: (e["t_call"], e["t_return"]))
    rsp = sorted((e for pr in procs.values() if pr.role == "responder" for e in pr.events()),
                 key=lambda e: (e["t_call"], e["t_return"]))
    mapping, why = relay_mod.match_rounds(req, rsp)
    if mapping is None:
        res.checks.append(Check("relay rounds", False, ["R-RELAY-9", "R-RELAY-10", "R-STATE-6"],
                                "every request taken through the relay is one the requester sent "
                                "(in order, at most once) and every reply received is the one "
                                "published for it", why))
        return procs
    return {n: (replace(pr, lines=relay_mod.translate(pr.lines, mapping))
                if pr.role == "responder" else pr) for n, pr in procs.items()}


def _desc_text(hexstr) -> str:
    """A descriptor's 80 bytes (hex, PEER.md §2) as 'dtype D ndim N shape (..) nbytes B'."""
    try:
        raw = bytes.fromhex(hexstr)
        dt, nd, *rest = struct.unpack("<II8QQ", raw)
    except (TypeError, ValueError, struct.error):
        return repr(hexstr)
    shape, nbytes = rest[:8], rest[8]
    return f"dtype {dt} ndim {nd} shape {tuple(shape[:nd]) if nd <= 8 else shape} nbytes {nbytes}"


REPLY_ERRORS_OF_OK = {"SHAPE_MISMATCH", "DTYPE_MISMATCH", "CORRUPT_HEADER"}


def _check_v2(res: RunResult, case: Case, procs: dict) -> None:
    """PEER.md §7.5 logs, the §7.3/§7.4 data rules and the flow field by field
    (conformance/v2check.py) for the protocol v2 processes of the run."""
    v2 = [v2check.V2Proc(n, pr.role, pr.argv, pr.events()) for n, pr in procs.items()
          if v2check.is_v2(pr.lines)]
    if not v2:
        return
    for f in v2check.check(v2):
        res.checks.append(Check(f.name, False, f.requirements, f.expected, f.actual, proc=f.proc))


def _check_replies(checks: list, proc: str, evs: list, v2: bool = False) -> None:
    """PEER.md 1.1 fields: what every consumed reply left (R-MSG-4, R-MSG-5) and the reason of
    every PEER_GONE (R-LIVE-5). A v2 peer (PEER.md §7.5) logs no v1 descriptor: its consumed
    replies are checked by reply_code only (R-MSG-5 as amended by R-FIELD-9)."""
    declared = next((e.get("declared_desc") for e in evs
                     if e.get("op") in ("create", "attach") and e.get("result") == "ok"), None)
    if not v2 and declared is None and any(e.get("op") in ("create", "attach") and e.get("result") == "ok"
                                for e in evs):
        checks.append(Check("log fields", False, ["R-MSG-4"],
                            "a successful create/attach logs declared_desc (PEER.md §2)", "absent",
                            proc=proc))
    names = spec.errors()
    by_code = {v["code"]: k for k, v in names.items()}
    for e in evs:
        if e.get("result") == "PEER_GONE" and e.get("reason") not in ("CLOSED", "DIED"):
            checks.append(Check("peer gone reason", False, ["R-LIVE-5"],
                                "every PEER_GONE logs reason CLOSED or DIED (PEER.md §2)",
                                f"{e.get('op')} -> PEER_GONE with reason {e.get('reason')!r}",
                                proc=proc))
        if e.get("op") != "receive":
            continue
        consumed = e.get("result") == "ok" or "reply_code" in e
        if not consumed:
            continue
        rc, desc = e.get("reply_code"), e.get("message_desc")
        where = f"receive round {e.get('round')} -> {e.get('result')}"
        if v2 and rc is None:
            checks.append(Check("log fields", False, ["R-FIELD-9", "R-MSG-5"],
                                "a v2 receive that consumed a reply logs reply_code (PEER.md §7.5)",
                                f"{where}: absent", proc=proc))
            continue
        if not v2 and (rc is None or desc is None):
            checks.append(Check("log fields", False, ["R-MSG-4", "R-MSG-5"],
                                "a receive that consumed a reply logs reply_code and message_desc "
                                "(PEER.md §2)", f"{where}: absent", proc=proc))
            continue
        if not v2 and declared is not None and desc != declared:
            checks.append(Check("reply descriptor", False, ["R-MSG-4", "R-MSG-1"],
                                f"the reply leaves message = declared ({_desc_text(declared)})",
                                f"{where}: message is {_desc_text(desc)}", proc=proc))
        if e.get("result") == "ok":
            want = None if rc == 0 else "a reply_code of 0"
        elif rc == 0:
            want = (None if e.get("result") in REPLY_ERRORS_OF_OK
                    else "a descriptor error (R-MSG-1) for a reply with reply_code 0")
        else:
            name = by_code.get(rc, "PROTOCOL_VIOLATION")
            want = None if e.get("result") == name else f"the error of reply_code {rc}: {name}"
        if want is not None:
            checks.append(Check("reply code", False, ["R-MSG-5", "R-MSG-2"], want,
                                f"{where} with reply_code {rc}", proc=proc))


def _round_trips(evs) -> list:
    out, t_send = [], None
    for e in evs:
        if e.get("injected"):
            continue
        if e.get("op") == "send" and e.get("result") == "ok":
            t_send = e["t_call"]
        elif e.get("op") == "receive" and e.get("result") == "ok" and t_send is not None:
            out.append((e["t_return"] - t_send) / 1e6)
            t_send = None
    return out


def _as_list_dicts(x):
    if x is None:
        return []
    return [x] if isinstance(x, dict) else list(x)


def _brief(evs) -> str:
    return ", ".join(f"{e.get('op')}:{e.get('result')}" for e in evs[-8:]) or "none"


def _check_checksums(res: RunResult, procs: dict):
    by_role = {"requester": [], "responder": []}
    for pr in procs.values():
        by_role[pr.role].append(pr)
    sends, takes, replies, recvs = {}, {}, {}, {}
    use_round = any(e.get("seq") is None for pr in procs.values() for e in pr.events()
                    if e.get("op") in ("send", "take") and e.get("result") == "ok")
    if use_round and (len(by_role["requester"]) != 1 or len(by_role["responder"]) != 1):
        return
    for pr in procs.values():
        for e in pr.events():
            if e.get("result") != "ok" or e.get("checksum") is None or e.get("injected"):
                continue
            key = e.get("round") if use_round else e.get("seq")
            if key is None:
                continue
            table = {"send": sends, "take": takes, "reply": replies, "receive": recvs}.get(e["op"])
            if table is not None:
                table.setdefault(key, []).append(e)
    what = "round" if use_round else "seq"
    for a, b, label, reqs in ((sends, takes, "the responder took what the requester sent", ["R-STATE-3", "R-STATE-2"]),
                              (replies, recvs, "the requester received what the responder published",
                               ["R-STATE-6", "R-STATE-3"])):
        for key in sorted(set(a) & set(b)):
            ca = {e["checksum"] for e in a[key]}
            cb = {e["checksum"] for e in b[key]}
            if not (cb <= ca):
                res.checks.append(Check("checksums", False, reqs, label,
                                        f"{what} {key}: sent {sorted(ca)}, got {sorted(cb)}"))
                return
