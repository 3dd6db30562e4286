#!/usr/bin/env python3
"""Consistency checker for the shmbridge spec (standard library only).

Checks that the Markdown tables of spec/PROTOCOL.md agree with the machine-readable files:
  - <!-- transitions:begin/end -->  <->  transitions.json (transitions) and the §4 phase table
    <->  transitions.json (phases)
  - <!-- errors:begin/end -->       <->  errors.json
  - <!-- dtypes:begin/end -->       <->  dtypes.json (and the R-DTYPE-1 sentence)
  - §3 header, §3.1 descriptor, §3.3 slot tables  <->  layout.json
that no requirement id is defined twice, and that every requirement id cited by
transitions.json and the vectors (and every error / dtype name they use) exists.
Part II (protocol v2) is checked by check_spec_v2.py against layout_v2.json and the v2 vectors.

    python3 spec/tools/check_spec.py [--spec-dir DIR]

Exit 0 and print "spec consistency: N checks passed", or exit 1 listing every failure.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys

DEFAULT_SPEC = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Checker:
    def __init__(self, spec_dir: str):
        self.dir = spec_dir
        self.passed = 0
        self.failures: list[str] = []

    def check(self, ok: bool, what: str) -> bool:
        if ok:
            self.passed += 1
        else:
            self.failures.append(what)
        return ok

    def eq(self, md, js, what: str) -> bool:
        return self.check(md == js, f"{what}: PROTOCOL.md has {md!r}, JSON has {js!r}")

    def load(self, rel: str):
        path = os.path.join(self.dir, rel)
        try:
            with open(path, encoding="utf-8") as fh:
                return json.load(fh)
        except (OSError, ValueError) as e:
            self.check(False, f"cannot load {rel}: {e}")
            return None


# ------------------------------------------------------------------ Markdown helpers
def split_row(line: str) -> list[str]:
    s = line.strip()
    if s.startswith("|"):
        s = s[1:]
    if s.endswith("|"):
        s = s[:-1]
    return [c.strip() for c in s.split("|")]


def parse_table(lines: list[str]) -> list[dict]:
    """First Markdown table in `lines`: list of {header: cell}."""
    rows, header = [], None
    started = False
    for ln in lines:
        if ln.strip().startswith("|"):
            cells = split_row(ln)
            if header is None:
                header = cells
            elif all(re.fullmatch(r":?-{2,}:?", c) for c in cells):
                continue
            else:
                rows.append(dict(zip(header, cells)))
            started = True
        elif started:
            break
    return rows


def marked_block(text: str, name: str):
    m = re.search(rf"<!--\s*{name}:begin\s*-->(.*?)<!--\s*{name}:end\s*-->", text, re.S)
    return m.group(1).splitlines() if m else None


def section_lines(text: str, heading_re: str) -> list[str] | None:
    """Lines after the heading matching heading_re up to the next heading of any level."""
    lines = text.splitlines()
    for i, ln in enumerate(lines):
        if re.match(heading_re, ln):
            out = []
            for l2 in lines[i + 1:]:
                if l2.startswith("#"):
                    break
                out.append(l2)
            return out
    return None


def strip_code(s: str) -> str:
    return s.replace("`", "").strip()


def to_int(s: str):
    s = s.strip()
    try:
        return int(s, 16) if s.lower().startswith("0x") else int(s)
    except ValueError:
        return s


# ------------------------------------------------------------------ individual checks
GUARDS = {"none": "none", "none pending": "none_pending", "own": "own", "not own": "not_own",
          "held": "held", "not held": "not_held", "peer dead": "peer_dead"}
SEQ = {"+1": "increment", "=": "keep"}


def check_transitions(c: Checker, text: str, tj) -> None:
    block = marked_block(text, "transitions")
    if not c.check(block is not None, "PROTOCOL.md: <!-- transitions:begin/end --> markers missing"):
        return
    rows = parse_table(block)
    c.check(len(rows) > 0, "transitions table is empty")
    if tj is None:
        return
    js = {t.get("id"): t for t in tj.get("transitions", [])}
    c.eq(sorted(r.get("id") for r in rows), sorted(js), "transition ids")
    for r in rows:
        tid = r.get("id")
        t = js.get(tid)
        if t is None:
            continue
        waits = r.get("waits in", "")
        waits = [] if waits in ("—", "-", "", "none") else [w.strip() for w in waits.split(",")]
        md = {"actor": r.get("actor"), "op": r.get("op"), "from": r.get("from"),
              "guard": GUARDS.get(r.get("guard"), r.get("guard")), "waits_in": waits,
              "to": r.get("to"), "seq": SEQ.get(r.get("seq"), r.get("seq")),
              "order": r.get("order"), "requirement": r.get("requirement")}
        for k, v in md.items():
            c.eq(v, t.get(k), f"transition {tid}.{k}")
        c.check(t.get("guard") in tj.get("guards", {}),
                f"transition {tid}: guard {t.get('guard')!r} not defined in transitions.json guards")
        c.check(t.get("op") in tj.get("ops", {}).get(t.get("actor"), []),
                f"transition {tid}: op {t.get('op')!r} not listed for {t.get('actor')}")
    # §4 phase table (R-STATE-1)
    sec = section_lines(text, r"^## 4\.")
    rows = parse_table(sec or [])
    if not c.check(bool(rows), "§4 phase table not found"):
        return
    phases = tj.get("phases", {})
    c.eq(sorted(strip_code(r.get("phase", "")) for r in rows), sorted(phases), "phase names")
    for r in rows:
        name = strip_code(r.get("phase", ""))
        p = phases.get(name)
        if p is None:
            continue
        c.eq(to_int(strip_code(r.get("bits 0–3", ""))), p.get("bits"), f"phase {name}.bits")
        c.eq(to_int(r.get("status", "")), p.get("status"), f"phase {name}.status")
        owner = r.get("payload owned by", "")
        owner = None if owner.startswith("nobody") else owner
        c.eq(owner, p.get("owner"), f"phase {name}.owner")
    w = tj.get("word", {})
    c.check(w.get("phase_mask") == 15 and w.get("seq_shift") == 4 and w.get("seq_bits") == 28
            and w.get("status_mask") == 3,
            "transitions.json word: expected phase bits 0-3, seq bits 4-31, status = word & 3")


def check_errors(c: Checker, text: str, ej) -> None:
    block = marked_block(text, "errors")
    if not c.check(block is not None, "PROTOCOL.md: <!-- errors:begin/end --> markers missing"):
        return
    rows = parse_table(block)
    if ej is None:
        return
    js = {e.get("code"): e for e in ej.get("errors", [])}
    c.eq(sorted(to_int(r.get("code", "")) for r in rows), sorted(js), "error codes")
    for r in rows:
        code = to_int(r.get("code", ""))
        e = js.get(code)
        if e is None:
            continue
        c.eq(r.get("name"), e.get("name"), f"error {code}.name")
        c.eq(to_int(r.get("exit", "")), e.get("exit"), f"error {code}.exit")
        c.eq(r.get("meaning"), e.get("meaning"), f"error {code}.meaning")
    names = [e.get("name") for e in ej.get("errors", [])]
    c.check(len(names) == len(set(names)), "errors.json: duplicate error names")


def check_dtypes(c: Checker, text: str, dj) -> None:
    block = marked_block(text, "dtypes")
    if not c.check(block is not None, "PROTOCOL.md: <!-- dtypes:begin/end --> markers missing"):
        return
    rows = parse_table(block)
    if dj is None:
        return
    js = {d.get("code"): d for d in dj.get("dtypes", [])}
    c.eq(sorted(to_int(r.get("code", "")) for r in rows), sorted(js), "dtype codes")
    for r in rows:
        code = to_int(r.get("code", ""))
        d = js.get(code)
        if d is None:
            continue
        c.eq(r.get("dtype"), d.get("name"), f"dtype {code}.name")
        c.eq(to_int(r.get("itemsize", "")), d.get("itemsize"), f"dtype {code}.itemsize")
    # the R-DTYPE-1 sentence lists the same codes
    m = re.search(r"\*\*R-DTYPE-1\*\*(.*?)(?:\n- \*\*|\n\n)", text, re.S)
    if c.check(m is not None, "R-DTYPE-1 not found"):
        pairs = re.findall(r"(\d+)\s+`(\w+)`", m.group(1))
        c.eq(sorted((int(a), b) for a, b in pairs),
             sorted((d.get("code"), d.get("name")) for d in dj.get("dtypes", [])),
             "R-DTYPE-1 sentence vs dtypes.json")


def _layout_rows(c: Checker, rows: list[dict], fields: list[dict], what: str) -> None:
    c.eq(len(rows), len(fields), f"{what}: number of rows")
    for r, f in zip(rows, fields):
        off = r.get("offset", "").lstrip("+")
        mdtype = r.get("type", "")
        atomic = mdtype.endswith(" atomic")
        mdtype = mdtype[: -len(" atomic")] if atomic else mdtype
        field = strip_code(r.get("field", ""))
        if field == "reserved" and mdtype == "":
            mdtype = "reserved"
        where = f"{what} row {r.get('offset')} {field}"
        c.eq(to_int(off), f.get("offset"), f"{where}: offset")
        c.eq(to_int(r.get("size", "")), f.get("size"), f"{where}: size")
        c.eq(mdtype, f.get("type"), f"{where}: type")
        c.eq(field, f.get("field"), f"{where}: field")
        c.eq(atomic, bool(f.get("atomic")), f"{where}: atomic")
    off = 0
    for f in fields:
        c.check(f.get("offset") == off, f"layout.json {what}: {f.get('field')} at "
                f"{f.get('offset')} but the previous field ends at {off}")
        off = f.get("offset", 0) + (f.get("size") if isinstance(f.get("size"), int) else 0)


def check_layout(c: Checker, text: str, lj) -> None:
    if lj is None:
        return
    sec = section_lines(text, r"^## 3\. Header layout")
    rows = parse_table(sec or [])
    if not c.check(bool(rows), "§3 header table not found"):
        return
    payload = [r for r in rows if strip_code(r.get("field", "")) == "payload"]
    rows = [r for r in rows if strip_code(r.get("field", "")) != "payload"]
    hdr = lj.get("header", {})
    _layout_rows(c, rows, hdr.get("fields", []), "header")
    c.eq(hdr.get("size"), lj.get("header_size"), "layout.json header.size vs header_size")
    c.check(sum(f.get("size", 0) for f in hdr.get("fields", [])) == lj.get("header_size"),
            "layout.json: header field sizes do not add up to header_size")
    if c.check(len(payload) == 1, "§3: payload row missing"):
        p = payload[0]
        c.eq(to_int(p.get("offset", "")), hdr.get("payload", {}).get("offset"), "payload offset")
        c.eq(p.get("size"), hdr.get("payload", {}).get("size"), "payload size")
        c.eq(to_int(p.get("offset", "")), lj.get("payload_offset"), "payload_offset")
    m = re.search(r"header_size = (\d+)", text)
    if c.check(m is not None, "R-LAYOUT-2: 'header_size = N' not found"):
        c.eq(int(m.group(1)), lj.get("header_size"), "R-LAYOUT-2 header_size")
    m = re.search(r"`magic` is the 8 bytes `([0-9A-Fa-f ]+)`", text)
    if c.check(m is not None, "R-LAYOUT-3: magic bytes not found"):
        c.eq(m.group(1).replace(" ", "").lower(), lj.get("magic_hex"), "R-LAYOUT-3 magic bytes")
        c.eq(bytes.fromhex(lj.get("magic_hex", "")).decode("latin-1"), lj.get("magic"),
             "layout.json magic vs magic_hex")
    for sub, heading, key in (("descriptor", r"^### 3\.1 ", "descriptor"),
                              ("slot", r"^### 3\.3 ", "slot")):
        rows = parse_table(section_lines(text, heading) or [])
        if not c.check(bool(rows), f"§3 {sub} table not found"):
            continue
        t = lj.get(key, {})
        _layout_rows(c, rows, t.get("fields", []), sub)
        m = re.search(heading.lstrip("^") + r".*\((\d+) bytes\)", text)
        if m:
            c.eq(int(m.group(1)), t.get("size"), f"{sub} size in heading")
        c.check(sum(f.get("size", 0) for f in t.get("fields", [])) == t.get("size"),
                f"layout.json {sub}: field sizes do not add up to size")
    # the slot 'state' meaning lists the state codes
    sec = section_lines(text, r"^### 3\.3 ") or []
    st = re.findall(r"(\d+) `([A-Z]+)`", "\n".join(sec))
    c.eq(sorted((b, int(a)) for a, b in st), sorted(lj.get("slot", {}).get("states", {}).items()),
         "slot states")


def check_requirement_ids(c: Checker, text: str, tj, docs: dict) -> set[str]:
    defs = re.findall(r"^\s*[-*]\s+\*\*(R-[A-Z]+-\d+)\*\*", text, re.M)
    seen, dups = set(), []
    for d in defs:
        if d in seen:
            dups.append(d)
        seen.add(d)
    c.check(not dups, f"requirement ids defined more than once: {sorted(set(dups))}")
    c.check(len(defs) > 0, "no requirement definitions found")
    cited = []
    if tj is not None:
        cited += [("transitions.json " + t.get("id", "?"), t.get("requirement"))
                  for t in tj.get("transitions", [])]
        cited.append(("transitions.json otherwise", tj.get("otherwise", {}).get("requirement")))
    for rel, doc in docs.items():
        if doc is None:
            continue
        for group in ("valid", "invalid", "sequences", "cases"):
            for v in doc.get(group, []):
                for rid in v.get("requirements", []):
                    cited.append((f"{rel} {v.get('id')}", rid))
    # ids cited in the Markdown tables themselves
    for rid in re.findall(r"\|\s*(R-[A-Z]+-\d+)\s*\|", text):
        cited.append(("PROTOCOL.md table", rid))
    unknown = sorted({f"{where}: {rid}" for where, rid in cited if rid not in seen})
    c.check(not unknown, "unknown requirement ids cited: " + "; ".join(unknown))
    return seen


def check_vectors(c: Checker, ej, dj, docs: dict) -> None:
    names = {e.get("name") for e in (ej or {}).get("errors", [])}
    dtypes = {d.get("name") for d in (dj or {}).get("dtypes", [])}
    bad = []
    ids = []
    h = docs.get("vectors/headers.json")
    if h is not None:
        for v in h.get("invalid", []):
            ids.append(v.get("id"))
            if v.get("error") not in names:
                bad.append(f"{v.get('id')}: error {v.get('error')!r}")
            if len(v.get("hex", "")) != 1024:
                bad.append(f"{v.get('id')}: hex is not 512 bytes")
        for v in h.get("valid", []):
            ids.append(v.get("id"))
            if len(v.get("hex", "")) != 1024:
                bad.append(f"{v.get('id')}: hex is not 512 bytes")
    s = docs.get("vectors/sequences.json")
    if s is not None:
        for q in s.get("sequences", []):
            ids.append(q.get("id"))
            if q.get("dtype") not in dtypes:
                bad.append(f"{q.get('id')}: dtype {q.get('dtype')!r}")
            for i, st in enumerate(q.get("steps", [])):
                r = st.get("expect", {}).get("result")
                if r != "ok" and r not in names:
                    bad.append(f"{q.get('id')} step {i}: result {r!r}")
                if st.get("op") == "reply_error" and st.get("code") not in names:
                    bad.append(f"{q.get('id')} step {i}: code {st.get('code')!r}")
    p = docs.get("vectors/procstat.json")
    if p is not None:
        for v in p.get("cases", []):
            ids.append(v.get("id"))
            exp = v.get("expect", {})
            if not isinstance(exp.get("exists"), bool) or not isinstance(exp.get("start_stamp"), int):
                bad.append(f"{v.get('id')}: expect needs exists (bool) and start_stamp (int)")
    c.check(not bad, "vectors use unknown error/dtype names or bad hex: " + "; ".join(bad))
    dup = sorted({i for i in ids if ids.count(i) > 1})
    c.check(not dup, f"duplicate vector ids: {dup}")


def run(spec_dir: str) -> Checker:
    c = Checker(spec_dir)
    try:
        with open(os.path.join(spec_dir, "PROTOCOL.md"), encoding="utf-8") as fh:
            text = fh.read()
    except OSError as e:
        c.check(False, f"cannot read PROTOCOL.md: {e}")
        return c
    tj = c.load("transitions.json")
    ej = c.load("errors.json")
    dj = c.load("dtypes.json")
    lj = c.load("layout.json")
    docs = {}
    for rel in ("vectors/headers.json", "vectors/sequences.json", "vectors/procstat.json"):
        if os.path.exists(os.path.join(spec_dir, rel)):
            docs[rel] = c.load(rel)
    check_transitions(c, text, tj)
    check_errors(c, text, ej)
    check_dtypes(c, text, dj)
    check_layout(c, text, lj)
    check_requirement_ids(c, text, tj, docs)
    check_vectors(c, ej, dj, docs)
    import check_spec_v2  # Part II (protocol v2); imports this module's table helpers
    check_spec_v2.check_part2(c, text, c.load)
    return c


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="check spec/PROTOCOL.md against the JSON files")
    ap.add_argument("--spec-dir", default=DEFAULT_SPEC)
    a = ap.parse_args(argv)
    c = run(a.spec_dir)
    if c.failures:
        for f in c.failures:
            print(f"spec consistency FAILED: {f}", file=sys.stderr)
        print(f"spec consistency: {len(c.failures)} failed, {c.passed} passed", file=sys.stderr)
        return 1
    print(f"spec consistency: {c.passed} checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
