"""Loads the machine-readable parts of the spec: errors, transitions, dtypes, requirement texts."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from . import REPO_ROOT

SPEC_DIR = REPO_ROOT / "spec"


@lru_cache(maxsize=None)
def errors() -> dict:
    """name -> {"code", "exit", "meaning"}"""
    data = json.loads((SPEC_DIR / "errors.json").read_text())
    return {e["name"]: e for e in data["errors"]}


@lru_cache(maxsize=None)
def exit_to_name() -> dict:
    out = {e["exit"]: name for name, e in errors().items()}
    out.update({0: "OK", 1: "INTERNAL", 2: "USAGE", 3: "VERIFY_FAILED"})
    return out


def exit_code_of(name: str) -> int:
    """Exit code for an expectation name: OK, an error name, INTERNAL/USAGE/VERIFY_FAILED,
    KILLED (SIGKILL) or ABORTED (SIGABRT) as seen by the parent (negative = signal)."""
    special = {"OK": 0, "INTERNAL": 1, "USAGE": 2, "VERIFY_FAILED": 3, "KILLED": -9, "ABORTED": -6}
    if name in special:
        return special[name]
    try:
        return errors()[name]["exit"]
    except KeyError:
        raise ValueError(f"unknown exit expectation {name!r}") from None


def describe_exit(code: int | None) -> str:
    if code is None:
        return "HANG (killed by the runner)"
    if code < 0:
        return {-9: "KILLED", -6: "ABORTED"}.get(code, f"signal {-code}")
    return exit_to_name().get(code, f"exit {code}")


@lru_cache(maxsize=None)
def transitions() -> dict:
    return json.loads((SPEC_DIR / "transitions.json").read_text())


@lru_cache(maxsize=None)
def dtypes() -> dict:
    data = json.loads((SPEC_DIR / "dtypes.json").read_text())
    return {d["name"]: d for d in data["dtypes"]}


@dataclass(frozen=True)
class Requirement:
    id: str
    text: str
    level: str  # MUST, SHOULD, MAY, or INFO
    section: str
    withdrawn: bool = False

    @property
    def first_sentence(self) -> str:
        m = re.match(r"(.+?[.;:])(\s|$)", self.text)
        return (m.group(1) if m else self.text)[:300]


_REQ_RE = re.compile(r"^- \*\*(R-[A-Z]+-\d+)\*\*\s*(.*)$")


@lru_cache(maxsize=None)
def requirements(path: str | None = None) -> dict:
    """Extract every `- **R-X-N** text` bullet from PROTOCOL.md (continuation lines included)."""
    text = Path(path or SPEC_DIR / "PROTOCOL.md").read_text()
    out: dict[str, Requirement] = {}
    section = ""
    cur_id = None
    cur: list[str] = []

    def flush():
        nonlocal cur_id, cur
        if cur_id:
            body = " ".join(s.strip() for s in cur).strip()
            out[cur_id] = Requirement(cur_id, body, _level(body), section, "withdrawn" in body[:40].lower())
        cur_id, cur = None, []

    for line in text.splitlines():
        if line.startswith("#"):
            flush()
            section = line.lstrip("#").strip()
            continue
        m = _REQ_RE.match(line)
        if m:
            flush()
            cur_id, cur = m.group(1), [m.group(2)]
        elif cur_id and line.startswith("  ") and line.strip():
            cur.append(line)
        elif cur_id:
            flush()
    flush()
    return out


def _level(text: str) -> str:
    """MUST / SHOULD / MAY. A requirement written as a plain statement ("The control word is …")
    is binding like MUST; a SHOULD counts only when no MUST and no plain statement precedes it."""
    if re.search(r"\bMUST\b", text):
        return "MUST"
    first = re.split(r"(?<=[.;])\s", text, maxsplit=1)[0]
    for kw in ("SHOULD", "MAY"):
        if re.search(r"\b" + kw + r"\b", first):
            return kw
    return "MUST"


def requirement_text(rid: str) -> str:
    r = requirements().get(rid)
    return r.text if r else f"(no requirement {rid} in PROTOCOL.md)"


@lru_cache(maxsize=None)
def relay_requirements() -> set:
    """The requirement ids of spec/RELAY.md (R-RELAY-N)."""
    text = (SPEC_DIR / "RELAY.md").read_text(encoding="utf-8")
    return set(re.findall(r"^- \*\*(R-RELAY-\d+)\*\*", text, flags=re.M))
