"""What the runner checks on the event logs of protocol v2 peers (spec/PEER.md §7.5), beyond
what it checks for every peer:

- the log fields of §7.5: ``protocol`` on create/attach, ``checksum`` null, ``shapes`` and
  ``checksums`` on every successful send/take/reply/receive (null on a failed one), ``field`` on
  every failed one, no v1 descriptor (``declared_desc``, ``message_desc``);
- the data rules, recomputed from the creator's SPECs (conformance/v2spec.py): every request
  sent is the one of §7.3 for its round, seed and ``--extents``; every derived reply is the one
  of §7.4 for the request taken; an add1/echo/checksum reply has the shapes of the request;
- the flow, field by field: what was taken is what was sent and what was received is what
  was published (same names in schema order, same shapes, same §3 checksums), by seq.

Each failure is a ``Finding``; the runner turns them into failed checks.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import v2spec
from .v2spec import Logged

MESSAGE_OPS = ("send", "take", "reply", "receive")


@dataclass
class Finding:
    name: str
    requirements: list
    expected: str
    actual: str
    proc: str = ""


@dataclass
class V2Proc:
    """One v2 process of a run: its label, role, flags and events."""

    name: str
    role: str
    argv: list
    events: list

    def flag(self, name: str, default: str | None = None) -> str | None:
        return flag(self.argv, name, default)


def flag(argv: list, name: str, default: str | None = None) -> str | None:
    """The value of ``--name V`` or ``--name=V`` in an argv (the last one given)."""
    value = default
    for i, tok in enumerate(argv):
        if tok == name and i + 1 < len(argv):
            value = argv[i + 1]
        elif tok.startswith(name + "="):
            value = tok[len(name) + 1:]
    return value


def is_v2(lines: list) -> bool:
    """PEER.md §7.5: the start line carries ``"protocol": 2`` (a peer that omits it speaks v1)."""
    return any(o.get("event") == "start" and o.get("protocol") == 2 for o in lines)


def check(procs: list[V2Proc]) -> list[Finding]:
    out: list[Finding] = []
    for p in procs:
        out += log_fields(p)
    out += data_rules(procs)
    out += flow(procs)
    return out


# ---------------------------------------------------------------- §7.5 log fields


def log_fields(p: V2Proc) -> list[Finding]:
    out = []

    def bad(reqs, expected, e):
        out.append(Finding("v2 log fields", reqs, expected, _brief(e), p.name))

    for e in p.events:
        op, ok = e.get("op"), e.get("result") == "ok"
        if op in ("create", "attach"):
            if e.get("protocol") != 2:
                bad(["R-VER-1"], f"every {op} line of a v2 peer logs \"protocol\": 2 "
                    "(PEER.md §7.5)", e)
            if ok and "declared_desc" in e:
                bad(["R-SCHEMA-5"], f"a v2 {op} logs no declared_desc (PEER.md §7.5)", e)
            if not ok and "field" not in e:
                bad(["R-FIELD-7"], f"a failed v2 {op} logs field (PEER.md §7.5)", e)
            continue
        if op not in MESSAGE_OPS:
            continue
        if e.get("checksum") is not None:
            bad(["R-FIELD-1"], f"a v2 {op} logs \"checksum\": null (PEER.md §7.5)", e)
        if "message_desc" in e:
            bad(["R-SCHEMA-5"], "a v2 receive logs no message_desc (0x090 is reserved)", e)
        if ok and v2spec.logged(e) is None:
            bad(["R-FIELD-1"], f"a successful v2 {op} logs shapes and checksums of the same "
                "fields (PEER.md §7.5)", e)
        if not ok and (e.get("shapes") is not None or e.get("checksums") is not None
                       or "field" not in e):
            bad(["R-FIELD-7"], f"a failed v2 {op} logs shapes and checksums null and field "
                "(PEER.md §7.5)", e)
    return out


# ---------------------------------------------------------------- §7.3 / §7.4 data rules


def schemas(procs: list[V2Proc]) -> tuple[list, list] | None:
    """The segment's schemas: the SPECs of the v2 creators whose create succeeded, if they all
    declared the same pair (else None: the rules are not checked)."""
    pairs = set()
    for p in procs:
        if any(e.get("op") == "create" and e.get("result") == "ok" for e in p.events):
            pairs.add((p.flag("--request-schema"), p.flag("--reply-schema")))
    if len(pairs) != 1:
        return None
    (req, rep), = pairs
    if req is None or rep is None:
        return None
    request = v2spec.parse(req)
    return request, v2spec.resolve(request, v2spec.parse(rep))


def data_rules(procs: list[V2Proc]) -> list[Finding]:
    sch = schemas(procs)
    if sch is None:
        return []
    request, reply = sch
    out: list[Finding] = []
    for p in procs:
        ok = [e for e in p.events if e.get("result") == "ok" and not e.get("injected")]
        if p.role == "requester":
            seed, mode = int(p.flag("--seed", "0")), p.flag("--extents", "rule")
            for e in (e for e in ok if e.get("op") == "send"):
                want = v2spec.request_fields(request, int(e["round"]), seed, mode)
                got = v2spec.logged(e)
                if got is not None and got != want:
                    out.append(Finding(
                        "v2 request data", ["R-FIELD-4", "R-FIELD-1"],
                        f"round {e['round']}: the request of PEER.md §7.3 (seed {seed}, --extents "
                        f"{mode}): {v2spec.show(want)}", v2spec.show(got), p.name))
            continue
        op, mode = p.flag("--op", "add1"), p.flag("--reply-extents", "rule")
        taken: Logged | None = None
        for e in ok:
            if e.get("op") == "take":
                taken = v2spec.logged(e)
            elif e.get("op") == "reply" and taken is not None:
                why = _reply_rule(op, mode, reply, taken, v2spec.logged(e))
                if why:
                    out.append(Finding("v2 reply data", ["R-FIELD-6"],
                                       f"seq {e.get('seq')}: {why[0]}", why[1], p.name))
    return out


def _reply_rule(op, mode, reply, taken: Logged, got: Logged | None) -> tuple[str, str] | None:
    """None if the reply ``got`` is the one ``op`` promises for ``taken`` (§7.4), else
    (expected, actual)."""
    if got is None:
        return None
    if op == "derive":
        c = v2spec.derive_base(taken)
        want = v2spec.derive_fields(reply, c, mode)
        if got != want:
            return (f"the derived reply of PEER.md §7.4 (c = {c}, --reply-extents {mode}): "
                    f"{v2spec.show(want)}", v2spec.show(got))
        return None
    if op in ("add1", "echo", "checksum"):
        names = [f.name for f in reply]
        shapes = [s for s, _ in taken.values()]
        if list(got) != names or [s for s, _ in got.values()] != shapes:
            return (f"the reply fields {names} with the shapes taken {shapes} (PEER.md §7.4)",
                    v2spec.show(got))
        if op != "add1" and [c for _, c in got.values()] != [c for _, c in taken.values()]:
            return ("the data taken, unchanged (echo/checksum)", v2spec.show(got))
    return None


# ---------------------------------------------------------------- flow, field by field


def flow(procs: list[V2Proc]) -> list[Finding]:
    """By seq: every message taken is one that was sent, every message received is one that was
    published (as v1's checksum check, per field)."""
    tables: dict[str, dict] = {op: {} for op in MESSAGE_OPS}
    for p in procs:
        for e in p.events:
            if e.get("op") in MESSAGE_OPS and e.get("result") == "ok" and not e.get("injected") \
                    and e.get("seq") is not None:
                fields = v2spec.logged(e)
                if fields is not None:
                    tables[e["op"]].setdefault(e["seq"], []).append(_key(fields))
    out = []
    for a, b, label, reqs in (
            ("send", "take", "the responder took what the requester sent, field by field",
             ["R-FIELD-3", "R-FIELD-8", "R-STATE-3"]),
            ("reply", "receive", "the requester received what the responder published, field by "
             "field", ["R-FIELD-3", "R-FIELD-6", "R-STATE-6"])):
        for seq in sorted(set(tables[a]) & set(tables[b])):
            sent, got = tables[a][seq], tables[b][seq]
            extra = [g for g in got if g not in sent]
            if extra:
                got_text = f"{a} {_show_key(sent[0])}, {b} {_show_key(extra[0])}"
                out.append(Finding("v2 fields", reqs, label, f"seq {seq}: {got_text}"))
                return out
    return out


def _key(fields: Logged) -> tuple:
    return tuple((k, s, c) for k, (s, c) in fields.items())


def _show_key(key: tuple) -> str:
    return v2spec.show({k: (s, c) for k, s, c in key})


def _brief(e: dict) -> str:
    keys = ("op", "round", "result", "checksum", "shapes", "checksums", "field", "protocol",
            "declared_desc", "message_desc")
    return ", ".join(f"{k}={e[k]}" for k in keys if k in e)[:300]
