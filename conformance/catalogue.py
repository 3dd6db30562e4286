"""The case catalogue: ``conformance/cases/*.toml``, as data.

A file holds ``[[case]]`` tables and ``[[matrix]]`` generators. A case::

    [[case]]
    id = "kill/responder/at-T2"            # stable, never renumbered (like test262 esids)
    requirements = ["R-LIVE-3"]
    purpose = "one line"
    category = "kill"
    pairings = ["cpp-py", ...]             # default: all four; "solo" = cpp-cpp and py-py only
    timing = true                          # measured time bounds: run alone, not in parallel
    leftover = "forbidden"|"expected"      # a segment left in /dev/shm after the case
    watchdog_s = 30
    known_bad = {category = "crash", naive = "requester"}   # also in the known-bad matrix
    one_ok = ["a", "b"]                    # exactly one of these procs exits OK (a race's winner)
    relay = true                           # also run through a relay pair (--relay, spec/RELAY.md)
    relay = {cites = ["R-RELAY-12"], why = "..", expect.req = {..}}   # ... with expectations
                                           # the relay legitimately changes, each override
                                           # justified by the R-RELAY ids it cites
    unchanged_after = "creator"            # the segment's bytes when that proc exited (a creator
                                           # with --keep) are its bytes at the end of the case:
                                           # what ran after it claimed no slot, changed nothing
      [[case.proc]]
      name = "req"; role = "requester"
      start = "first" | "after:PROC:ready" | "after:PROC:exit" | "after:PROC:started"
                                           # started: PROC logged its start line (PEER.md §2)
      delay_ms = 0; impl = "requester"|"responder"  (whose implementation; default: its role's)
      args = "--create --rounds {rounds}"  # {name} = the run's segment name, {rounds} = rounds
      expect = {exit = "OK", verified = 5, events = [{op = "send", result = "OUT_OF_TURN"}]}
      kill_after_ms = 300                  # the runner sends SIGKILL this long after the start
      zombie_ms = 2000                     # a process that crashed stays unreaped (a zombie)
      comm = "a) Z 1 (b"                   # run the executable through a symlink of this name
                                           # (its /proc comm, R-LIVE-7; a native peer only)

A matrix expands a case template over the cartesian product of ``vars``; ``{var}`` in any string
of the template is replaced (a table value binds each of its keys); a string that is exactly
``"{var}"`` takes the variable's own type (``reply_code = "{code}"`` with ``code = 4``).
"""

from __future__ import annotations

import itertools
import re
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from . import spec

CASES_DIR = Path(__file__).resolve().parent / "cases"
ALL_PAIRINGS = ["cpp-py", "py-cpp", "cpp-cpp", "py-py"]
SOLO_PAIRINGS = ["cpp-cpp", "py-py"]
# spec/PEER.md §6: the flags a minimal peer supports (spec/IMPLEMENTING.md). A run gives a peer
# under --minimal only cases whose processes it plays use nothing else.
MINIMAL_FLAGS = {"--role", "--name", "--label", "--create", "--attach", "--dtype", "--shape",
                 "--capacity", "--rounds", "--timeout", "--op", "--seed", "--no-reclaim", "--keep",
                 "--hold-ms", "--on-peer-gone", "--wait-peer", "--print-clock", "--delay-before",
                 "--delay-after", "--crash-at", "--crash-mode", "--wrong-shape", "--wrong-dtype"}
MINIMAL_OPS = {"add1", "echo", "checksum"}
EXPECT_KEYS = {"exit", "rounds_ok", "verified", "mismatches", "events", "no_events", "max_op_ms",
               "min_op_ms", "peer_gone_within_ms", "summary", "max_median_round_ms"}
PROC_KEYS = {"name", "role", "start", "delay_ms", "impl", "args", "expect", "kill_after_ms",
             "zombie_ms", "comm"}
CASE_KEYS = {"id", "requirements", "purpose", "category", "pairings", "timing", "leftover",
             "watchdog_s", "known_bad", "proc", "rounds", "stress_rounds", "history", "checksums",
             "one_ok", "unchanged_after", "relay"}
RELAY_KEYS = {"cites", "why", "expect", "watchdog_s"}


class CatalogueError(Exception):
    pass


@dataclass
class Proc:
    name: str
    role: str
    args: str
    start: str = "first"
    delay_ms: float = 0
    impl: str = ""
    expect: dict = field(default_factory=dict)
    kill_after_ms: float | None = None
    zombie_ms: float = 0
    comm: str = ""


@dataclass
class Case:
    id: str
    requirements: list
    purpose: str
    category: str
    procs: list
    pairings: list = field(default_factory=lambda: list(ALL_PAIRINGS))
    timing: bool = False
    leftover: str = "forbidden"
    watchdog_s: float = 30.0
    known_bad: dict | None = None
    rounds: int = 0
    stress_rounds: int = 0
    history: bool = True
    checksums: bool = True
    one_ok: list = field(default_factory=list)  # exactly one of these procs exits OK (races)
    unchanged_after: str = ""  # the segment's bytes when this proc exited = at the end
    relay: dict | None = None  # runs through a relay pair (--relay); overrides, see _relay_of
    source: str = ""

    def proc(self, name: str) -> Proc:
        for p in self.procs:
            if p.name == name:
                return p
        raise KeyError(name)


def _subst(obj, vars_: dict):
    if isinstance(obj, str):
        whole = re.fullmatch(r"\{([A-Za-z_][A-Za-z0-9_]*)\}", obj)
        if whole and whole.group(1) in vars_ and not isinstance(vars_[whole.group(1)], str):
            return vars_[whole.group(1)]  # "{code}" alone keeps the variable's type (reply_code = 4)
        def rep(m):
            k = m.group(1)
            return str(vars_[k]) if k in vars_ else m.group(0)
        return re.sub(r"\{([A-Za-z_][A-Za-z0-9_]*)\}", rep, obj)
    if isinstance(obj, list):
        return [_subst(x, vars_) for x in obj]
    if isinstance(obj, dict):
        return {k: _subst(v, vars_) for k, v in obj.items()}
    return obj


def _expand_matrix(m: dict, where: str) -> list[dict]:
    vars_ = m.get("vars", {})
    tmpl = m.get("case")
    if not isinstance(tmpl, dict):
        raise CatalogueError(f"{where}: [[matrix]] needs a [matrix.case] template")
    keys = list(vars_)
    out = []
    for combo in itertools.product(*(vars_[k] for k in keys)):
        binding = {}
        for k, v in zip(keys, combo):
            if isinstance(v, dict):
                binding.update(v)
            else:
                binding[k] = v
        out.append(_subst(tmpl, binding))
    return out


def _make_case(d: dict, where: str) -> Case:
    unknown = set(d) - CASE_KEYS
    if unknown:
        raise CatalogueError(f"{where}: case {d.get('id')!r}: unknown keys {sorted(unknown)}")
    for k in ("id", "requirements", "purpose", "proc"):
        if k not in d:
            raise CatalogueError(f"{where}: case {d.get('id')!r} lacks {k!r}")
    reqs = spec.requirements()
    for r in d["requirements"]:
        if r not in reqs:
            raise CatalogueError(f"{where}: case {d['id']}: unknown requirement {r}")
    procs = []
    for p in d["proc"]:
        unknown = set(p) - PROC_KEYS
        if unknown:
            raise CatalogueError(f"{where}: case {d['id']}: proc keys {sorted(unknown)}")
        exp = dict(p.get("expect", {}))
        bad = set(exp) - EXPECT_KEYS
        if bad:
            raise CatalogueError(f"{where}: case {d['id']}: expect keys {sorted(bad)}")
        exits = exp.get("exit", "OK")
        for e in ([exits] if isinstance(exits, str) else exits):
            spec.exit_code_of(e)  # raises on a typo
        if p.get("role") not in ("requester", "responder"):
            raise CatalogueError(f"{where}: case {d['id']}: proc role must be requester|responder")
        procs.append(Proc(name=p["name"], role=p["role"], args=p.get("args", ""),
                          start=p.get("start", "first"), delay_ms=p.get("delay_ms", 0),
                          impl=p.get("impl", p["role"]), expect=exp,
                          kill_after_ms=p.get("kill_after_ms"), zombie_ms=p.get("zombie_ms", 0),
                          comm=p.get("comm", "")))
    names = [p.name for p in procs]
    if len(set(names)) != len(names):
        raise CatalogueError(f"{where}: case {d['id']}: duplicate proc names")
    for n in d.get("one_ok", []):
        if n not in names:
            raise CatalogueError(f"{where}: case {d['id']}: one_ok names no proc {n!r}")
    if d.get("unchanged_after", "") not in ("", *names):
        raise CatalogueError(f"{where}: case {d['id']}: unchanged_after names no proc "
                             f"{d['unchanged_after']!r}")
    for p in procs:
        if p.start != "first":
            m = re.fullmatch(r"after:([^:]+):(ready|exit|started)", p.start)
            if not m or m.group(1) not in names:
                raise CatalogueError(f"{where}: case {d['id']}: bad start {p.start!r}")
    pairings = d.get("pairings", ALL_PAIRINGS)
    if pairings == "solo":
        pairings = SOLO_PAIRINGS
    return Case(id=d["id"], requirements=list(d["requirements"]), purpose=d["purpose"],
                category=d.get("category", d["id"].split("/")[0]), procs=procs,
                pairings=list(pairings), timing=bool(d.get("timing", False)),
                leftover=d.get("leftover", "forbidden"), watchdog_s=float(d.get("watchdog_s", 30)),
                known_bad=d.get("known_bad"), rounds=int(d.get("rounds", 0)),
                stress_rounds=int(d.get("stress_rounds", 0)), history=bool(d.get("history", True)),
                checksums=bool(d.get("checksums", True)), one_ok=list(d.get("one_ok", [])),
                unchanged_after=d.get("unchanged_after", ""),
                relay=_relay_of(d, names, where), source=where)


def _relay_of(d: dict, names: list, where: str) -> dict | None:
    """``relay = true`` or a table: the case also runs through a relay pair (``run --relay``).
    A table may override process expectations (``expect.PROC = {...}``, merged into PROC's) or the
    watchdog, and must then cite the spec/RELAY.md ids that make the relay change that outcome
    and say why: an override without a reason would hide a relay bug."""
    r = d.get("relay")
    if r is None or r is False:
        return None
    if r is True:
        return {}
    if not isinstance(r, dict) or set(r) - RELAY_KEYS:
        raise CatalogueError(f"{where}: case {d['id']}: relay must be true or a table of "
                             f"{sorted(RELAY_KEYS)}, got {r!r}")
    cites = r.get("cites") or []
    unknown = [c for c in cites if c not in spec.relay_requirements()]
    if unknown:
        raise CatalogueError(f"{where}: case {d['id']}: relay cites {unknown}: not ids of "
                             "spec/RELAY.md")
    if (r.get("expect") or "watchdog_s" in r) and not (cites and r.get("why")):
        raise CatalogueError(f"{where}: case {d['id']}: a relay override needs cites = "
                             f"[R-RELAY-N, ...] (ids of spec/RELAY.md) and a why; got "
                             f"cites {cites!r}")
    for pname, exp in (r.get("expect") or {}).items():
        if pname not in names:
            raise CatalogueError(f"{where}: case {d['id']}: relay.expect names no proc {pname!r}")
        bad = set(exp) - EXPECT_KEYS
        if bad:
            raise CatalogueError(f"{where}: case {d['id']}: relay.expect keys {sorted(bad)}")
    return dict(r)


def load(directory: Path | None = None) -> list[Case]:
    directory = Path(directory or CASES_DIR)
    cases: list[Case] = []
    for f in sorted(directory.glob("*.toml")):
        data = tomllib.loads(f.read_text())
        where = f.name
        for m in data.get("matrix", []):
            for d in _expand_matrix(m, where):
                cases.append(_make_case(d, where))
        for d in data.get("case", []):
            cases.append(_make_case(d, where))
    ids = [c.id for c in cases]
    dup = {i for i in ids if ids.count(i) > 1}
    if dup:
        raise CatalogueError(f"duplicate case ids: {sorted(dup)}")
    return cases


def minimal_args(args: str) -> bool:
    """Whether a process's args stay within the minimal level of spec/PEER.md §6."""
    toks = shlex.split(args.replace("{name}", "n").replace("{rounds}", "1"))
    for i, tok in enumerate(toks):
        if not tok.startswith("--"):
            continue
        flag, _, value = tok.partition("=")
        if flag not in MINIMAL_FLAGS:
            return False
        if flag == "--op" and (value or (toks[i + 1] if i + 1 < len(toks) else "")) \
                not in MINIMAL_OPS:
            return False
    return True


def pairing_matches(pattern: str, pairing: str) -> bool:
    """``cpp-*`` matches every pairing whose requester is cpp (e.g. a case that needs a native
    requester, whatever the responder)."""
    return all(p in ("*", x) for p, x in zip(pattern.split("-"), pairing.split("-")))


def select(cases: list[Case], prefixes: list[str] | None = None, exact: list[str] | None = None,
           categories: list[str] | None = None) -> list[Case]:
    out = cases
    if exact:
        out = [c for c in out if c.id in exact]
    if prefixes:
        out = [c for c in out if any(c.id.startswith(p) for p in prefixes)]
    if categories:
        out = [c for c in out if c.category in categories]
    return out


def norm_pairing(p: str) -> str:
    p = p.replace("→", "-").replace("->", "-").replace(":", "-")
    if p.count("-") != 1:
        raise CatalogueError(f"bad pairing {p!r}: want REQUESTER-RESPONDER, e.g. cpp-py")
    return p


def show_pairing(p: str) -> str:
    a, b = p.split("-")
    return f"{a}→{b}"
