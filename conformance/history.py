"""History checker: merge the event logs of all peers of one run and check that the observed
history is one the state machine of spec/transitions.json allows.

Each logged operation took effect (if at all) at one instant between its ``t_call`` and
``t_return``. The checker searches for an order of the operations that respects those intervals
(a linearization, as in Wing & Gong) in which every operation's outcome is legal in the model.
Public operations map to transitions one-to-one (send=T1, take=T2, reply=T3, receive=T4);
internal transitions (cancel, discard, reclaim, recover) are allowed where the spec lets an
implementation perform them (a receive that ends with TIMEOUT or PEER_GONE, an attach, a close).

The report names the first event for which no legal placement exists, the model state there and
why each option failed.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from . import spec

PHASE_BITS = None  # filled lazily from transitions.json


def _phases():
    global PHASE_BITS
    if PHASE_BITS is None:
        PHASE_BITS = {name: p["bits"] for name, p in spec.transitions()["phases"].items()}
    return PHASE_BITS


def decode_word(word: int) -> tuple[str, int]:
    tj = spec.transitions()["word"]
    bits = word & tj["phase_mask"]
    seq = (word >> tj["seq_shift"]) & ((1 << tj["seq_bits"]) - 1)
    for name, b in _phases().items():
        if b == bits:
            return name, seq
    return "INVALID", seq


@dataclass(frozen=True)
class State:
    phase: str = "IDLE"
    seq: int = 0
    pending: int | None = None  # the requester's outstanding seq
    held: int | None = None  # the seq the responder holds
    req_dead: bool = False
    rsp_dead: bool = False

    def show(self) -> str:
        return (f"word={self.phase}/seq {self.seq}, requester pending={self.pending}, "
                f"responder holds={self.held}")


@dataclass
class Event:
    idx: int
    peer: str
    role: str
    op: str
    t_call: int
    t_return: int
    result: str
    seq: int | None = None
    phase_after: str | None = None
    injected: bool = False
    raw: dict = field(default_factory=dict)

    def show(self) -> str:
        s = f"{self.peer}({self.role}) {self.op}"
        if self.injected:
            s += " [injected]"
        s += f" -> {self.result}"
        if self.seq is not None:
            s += f" seq={self.seq}"
        if self.phase_after:
            s += f" phase_after={self.phase_after}"
        return s + f" @[{self.t_call}, {self.t_return}]"


class Model:
    """The transition table of spec/transitions.json as a function on State."""

    def __init__(self):
        tj = spec.transitions()
        self.by_id = {t["id"]: t for t in tj["transitions"]}
        self.seq_mod = 1 << tj["word"]["seq_bits"]
        self.op_to_tid = {(t["actor"], t["op"]): t["id"] for t in tj["transitions"]}

    def guard_ok(self, t: dict, s: State) -> tuple[bool, str]:
        g = t["guard"]
        if g == "none":
            return True, ""
        if g == "none_pending":
            return (s.pending is None, f"requester has request #{s.pending} outstanding")
        if g == "own":
            ok = s.pending == s.seq
            return ok, f"word seq {s.seq} is not the requester's outstanding {s.pending}"
        if g == "not_own":
            return s.pending != s.seq, f"word seq {s.seq} is the requester's own"
        if g == "held":
            return s.held == s.seq, f"responder holds {s.held}, word seq is {s.seq}"
        if g == "not_held":
            return s.held != s.seq, "responder holds this request itself"
        if g == "peer_dead":
            dead = s.rsp_dead if t["actor"] == "requester" else s.req_dead
            return dead, "the peer is alive"
        return False, f"unknown guard {g}"

    def apply(self, tid: str, s: State) -> tuple[State | None, str]:
        t = self.by_id[tid]
        if s.phase != t["from"]:
            return None, f"{tid} ({t['actor']} {t['op']}) needs phase {t['from']}, word is {s.phase}"
        ok, why = self.guard_ok(t, s)
        if not ok:
            return None, f"{tid} guard {t['guard']} fails: {why}"
        seq = (s.seq + 1) % self.seq_mod if t["seq"] == "increment" else s.seq
        ns = replace(s, phase=t["to"], seq=seq)
        op = t["op"]
        if op == "send":
            ns = replace(ns, pending=seq)
        elif op in ("receive", "cancel", "discard", "reclaim"):
            ns = replace(ns, pending=None if op != "discard" else s.pending)
            if op == "reclaim":
                ns = replace(ns, held=None)
        elif op == "take":
            ns = replace(ns, held=seq)
        elif op in ("reply",):
            ns = replace(ns, held=None)
        return ns, ""

    def allowed(self, actor: str, op: str, s: State) -> bool:
        tid = self.op_to_tid.get((actor, op))
        return tid is not None and self.apply(tid, s)[0] is not None


LOCAL_ERRORS = {"SHAPE_MISMATCH", "DTYPE_MISMATCH", "CAPACITY_EXCEEDED", "INVALID_ARGUMENT"}
# a responder's take that rejects the request (R-MSG-1) still completes the round (R-MSG-2)
REJECTIONS = {"SHAPE_MISMATCH", "DTYPE_MISMATCH", "CORRUPT_HEADER"}


def options(ev: Event, model: Model) -> list[tuple[str, ...]]:
    """Transition sequences an event may have performed. () = left the word unchanged."""
    r, op, role = ev.result, ev.op, ev.role
    if role == "requester":
        if op == "send":
            return [("T1",), ("T4", "T1")] if r == "ok" else [()]
        if op == "receive":
            if ev.raw.get("reply_code") is not None:
                return [("T4",)]  # PEER.md §2: it logs reply_code only if it consumed a reply
            if r == "ok":
                return [("T4",)]
            if r == "TIMEOUT":
                return [("T5",), ()]
            if r == "PEER_GONE":
                return [("T5",), ("T7",), ("T4",)]
            if r in ("OUT_OF_TURN", "PROTOCOL_VIOLATION"):
                return [()]
            return [("T4",), ()]  # an error reply (R-MSG-2) is consumed by T4
        if op == "attach" and r == "ok":
            return [(), ("T5",), ("T6",), ("T7",)]
    if role == "responder":
        if op == "take":
            if r in REJECTIONS:
                return [("T2", "T3")]  # rejected at take, the round completed (R-MSG-1/2)
            return [("T2",)] if r == "ok" else [()]
        if op == "reply":
            if r == "HANDLER_FAILED":
                return [("T3",)]  # the error reply of a failed handler (R-MSG-3)
            if r != "ok" and ev.raw.get("reply_code"):
                return [("T3",)]  # a refused v2 reply, completed by an error reply (PEER.md §7.4)
            return [("T3",)] if r == "ok" else [()]
        if op == "attach" and r == "ok":
            return [(), ("T8",)]
        if op == "close":
            return [(), ("T3",)]
    return [()]



# phases the word may show right after an operation returned, when only the other role's public
# transitions can have happened in between (no crash, no rogue writer, one process per role)
def stable_after() -> dict:
    tj = spec.transitions()
    public = set(tj["public_ops"])
    out = {}
    for t in tj["transitions"]:
        if t["op"] not in public:
            continue
        other = [u for u in tj["transitions"] if u["actor"] != t["actor"] and u["op"] in public]
        reach, todo = {t["to"]}, [t["to"]]
        while todo:
            p = todo.pop()
            for u in other:
                if u["from"] == p and u["to"] not in reach:
                    reach.add(u["to"])
                    todo.append(u["to"])
        out[(t["actor"], t["op"])] = (t["id"], reach)
    return out


@dataclass
class Verdict:
    ok: bool
    message: str = ""
    linearized: int = 0
    total: int = 0
    inconclusive: bool = False
    requirements: tuple = ("R-STATE-2", "R-STATE-7")


def events_from_logs(logs: dict) -> list[Event]:
    """logs: label -> list of parsed JSON objects (one peer's stdout). The role comes from the
    start line (``role``)."""
    evs: list[Event] = []
    for label, lines in logs.items():
        role = None
        for obj in lines:
            if obj.get("event") == "start":
                role = obj.get("role")
            if "op" not in obj:
                continue
            try:
                evs.append(Event(
                    idx=0, peer=str(obj.get("peer", label)), role=obj.get("role") or role or "?",
                    op=obj["op"], t_call=int(obj["t_call"]), t_return=int(obj["t_return"]),
                    result=obj.get("result", "ok"), seq=obj.get("seq"),
                    phase_after=obj.get("phase_after"), injected=bool(obj.get("injected")), raw=obj))
            except (KeyError, TypeError, ValueError):
                continue
    evs.sort(key=lambda e: (e.t_call, e.t_return))
    for i, e in enumerate(evs):
        e.idx = i
    return evs


def hidden_closure(s: State, hidden: frozenset, model: Model, target: int | None = None
                   ) -> list[State]:
    """The states reachable from s by transitions of the unlogged roles alone (``hidden``):
    through a relay (spec/RELAY.md R-RELAY-1) each segment has one logged peer, and the relay
    end is an ordinary peer of the other role that may move the word at any time, by the
    table's rules.
    A hidden requester may also send and withdraw (T1, T5) any number of times (the far end
    re-sends a request its receive timed out on, R-RELAY-11), each T1 a new seq: from an IDLE
    word it reaches IDLE or REQUESTED at ``target``, the seq the next logged operation reports."""
    out, todo = [s], [s]
    while todo and len(out) < 16:
        cur = todo.pop()
        nxt = []
        for tid, t in model.by_id.items():
            if t["actor"] in hidden:
                nxt.append(model.apply(tid, cur)[0])
        if ("requester" in hidden and target is not None and cur.phase == "IDLE"
                and cur.pending is None and target != cur.seq):
            nxt += [replace(cur, seq=target), replace(cur, phase="REQUESTED", seq=target,
                                                      pending=target)]
        for ns in nxt:
            if ns is not None and ns not in out:
                out.append(ns)
                todo.append(ns)
    return out


def start_states(evs: list, hidden: frozenset, model: Model) -> list[State]:
    """A fresh segment (IDLE, seq 0), unless no logged peer created it and a hidden one did (a
    relay end, R-RELAY-1): then the hidden peer may have run rounds before the first logged
    operation, and the word is any phase at the seq of the first logged one (or the one before,
    which the next T1 brings to it)."""
    if not hidden or any(e.op == "create" and e.result == "ok" for e in evs):
        return [State()]
    k = next((e.seq for e in evs if isinstance(e.seq, int)), 0)
    out = []
    for ph in _phases():
        for q in {k, (k - 1) % model.seq_mod}:
            s = State(phase=ph, seq=q)
            if ph != "IDLE" and "requester" in hidden:
                s = replace(s, pending=q)
            if ph == "TAKEN" and "responder" in hidden:
                s = replace(s, held=q)
            out.append(s)
    return out


def check(logs: dict, budget: int = 200_000, hidden: frozenset = frozenset()) -> Verdict:
    """``hidden``: roles whose peer logs nothing (a relay end, R-RELAY-1); their transitions may
    happen between any two logged operations, only where the table allows them."""
    model = Model()
    evs = events_from_logs(logs)
    n = len(evs)
    if n == 0:
        return Verdict(True, "no events", 0, 0)

    # phase_after stability checks (cheap, independent of the search)
    crashes = any(e.op in ("crash", "corrupt") for e in evs)
    per_role = {}
    for e in evs:
        per_role.setdefault(e.role, set()).add(e.peer)
    single = all(len(v) <= 1 for v in per_role.values())
    if not crashes and single:
        stab = stable_after()
        for e in evs:
            key = (e.role, e.op)
            if e.result == "ok" and not e.injected and key in stab and e.phase_after:
                tid, allowed = stab[key]
                if e.phase_after not in allowed:
                    return Verdict(False, (
                        f"first illegal step: event #{e.idx} {e.show()}\n"
                        f"  after {tid} only the other role can move the word, so it must read one of "
                        f"{sorted(allowed)}; it read {e.phase_after} (a plain store or a missing CAS, R-STATE-2)"),
                        e.idx, n)

    # linearization search
    best = {"depth": -1, "why": None}
    seen = set()
    stack = [(0, frozenset(), start, 0) for start in start_states(evs, hidden, model)]
    nodes = 0
    while stack:
        i, done, s, depth = stack.pop()
        while i < n and i in done:
            done = done - {i}
            i += 1
        if i >= n:
            return Verdict(True, f"{n} events linearized", n, n)
        key = (i, done, s)
        if key in seen:
            continue
        seen.add(key)
        nodes += 1
        if nodes > budget:
            return Verdict(True, f"search budget exhausted after {best['depth']} of {n} events "
                                 "(inconclusive, not a failure)", best["depth"], n, inconclusive=True)
        # candidates: undone events whose call precedes every undone return
        cands = []
        min_ret = None
        j = i
        while j < n:
            if j in done:
                j += 1
                continue
            e = evs[j]
            if min_ret is not None and e.t_call > min_ret:
                break
            cands.append(e)
            min_ret = e.t_return if min_ret is None else min(min_ret, e.t_return)
            j += 1
        cands = [e for e in cands if e.t_call <= min_ret]
        failures = []
        pushed = 0
        for e in reversed(cands):
            befores = hidden_closure(s, hidden, model, e.seq if isinstance(e.seq, int) else None) \
                if hidden else [s]
            for opt in reversed(options(e, model)):
                reached, why = [], ""
                for k, sb in enumerate(befores):
                    ns, why_k = _run(e, opt, sb, model)
                    why = why if k else why_k  # report the failure from the state itself
                    if ns is not None and ns not in reached:
                        reached.append(ns)
                if not reached:
                    failures.append((e, opt, why))
                    continue
                nd = done | {e.idx}
                for ns in reached:
                    stack.append((i, nd, ns, depth + 1))
                    pushed += 1
        if not pushed and depth >= best["depth"]:
            best = {"depth": depth, "why": (s, failures)}
    s, failures = best["why"]
    # report the earliest event among the failures
    failures.sort(key=lambda f: f[0].idx)
    first = failures[0][0] if failures else None
    lines = [f"first illegal step after {best['depth']} of {n} events: "
             + (f"event #{first.idx} {first.show()}" if first else "?"),
             f"  model state: {s.show()}"]
    for e, opt, why in failures:
        if e is first:
            lines.append(f"  as {'+'.join(opt) or 'no change'}: {why}")
    reqs = ("R-STATE-2", "R-STATE-7")
    if first is not None and first.op == "receive":
        reqs = reqs + ("R-STATE-6",)
    return Verdict(False, "\n".join(lines), best["depth"], n, requirements=reqs)


def _run(e: Event, opt: tuple, s: State, model: Model) -> tuple[State | None, str]:
    op, role = e.op, e.role
    if op == "create":
        return (State() if e.result == "ok" else s), ""
    if op == "corrupt":
        raw = e.raw
        if raw.get("field") == "word" and e.result == "ok" and raw.get("value") is not None:
            ph, sq = decode_word(int(raw["value"]))
            return replace(s, phase=ph, seq=sq), ""
        return s, ""
    if op == "crash":
        return (replace(s, req_dead=True) if role == "requester"
                else replace(s, rsp_dead=True, held=None)), ""
    if op == "attach" and e.result == "ok":
        if role == "requester":
            s = replace(s, req_dead=False, pending=None)
            if not opt:
                if s.phase != "IDLE":
                    return None, ("a requester that attaches must bring the channel back to IDLE "
                                  f"before its first send (R-REC-1); the word is {s.phase}")
                return s, ""
            if opt[0] == "T5":  # the orphan request counts as its own (R-REC-1)
                s = replace(s, pending=s.seq)
            ns, why = model.apply(opt[0], s)
            return (replace(ns, pending=None) if ns else None), why
        s = replace(s, rsp_dead=False, held=None)
        if not opt:
            if s.phase == "TAKEN" and s.rsp_dead:
                return None, "a responder that finds TAKEN must recover it (T8, R-REC-2)"
            return s, ""
        return model.apply(opt[0], s)
    if op == "close":
        if role == "requester":
            return replace(s, req_dead=True), ""
        if opt:
            ns, why = model.apply(opt[0], s)
            if ns is None:
                return None, why
            s = ns
        elif s.phase == "TAKEN" and s.held is not None and s.held == s.seq:
            return None, (f"the responder closed while holding request #{s.held} without completing "
                          "the round (T3 with reply_code PEER_GONE, R-CLOSE-2)")
        return replace(s, rsp_dead=True, held=None), ""
    # the OUT_OF_TURN promise (R-STATE-7): the op must indeed not be allowed now
    if e.result == "OUT_OF_TURN" and not opt:
        if model.allowed(role, op, s) and _precondition_ok(e, s):
            return None, f"{op} reported OUT_OF_TURN but the model allows it here"
    for tid in opt:
        ns, why = model.apply(tid, s)
        if ns is None:
            return None, why
        s = ns
    if e.result == "ok" and e.seq is not None and opt and e.seq != s.seq:
        return None, f"reported seq {e.seq}, the model's seq is {s.seq}"
    return s, ""


def _precondition_ok(e: Event, s: State) -> bool:
    if e.role == "requester" and e.op == "send":
        return s.pending is None
    if e.role == "requester" and e.op == "receive":
        return s.pending is not None
    if e.role == "responder" and e.op == "take":
        return s.held is None
    if e.role == "responder" and e.op == "reply":
        return s.held is not None
    return True
