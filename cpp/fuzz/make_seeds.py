#!/usr/bin/env python3
"""Writes the libFuzzer seed corpora from the shared vectors (run by ci/fuzz.sh at fuzz time).

make_seeds.py header DIR       one file per headers.json vector: u64 LE mapping_size + 512 bytes
make_seeds.py transitions DIR  one file per sequences.json sequence, in fuzz_transitions' input
                               format (mode byte 0 = model, u32 initial_seq, then op bytes)
"""

from __future__ import annotations

import json
import struct
import sys
from pathlib import Path

SPEC = Path(__file__).resolve().parents[2] / "spec"
ERRORS = json.loads((SPEC / "errors.json").read_text())


def header_seeds(out: Path) -> int:
    vec = json.loads((SPEC / "vectors" / "headers.json").read_text())
    n = 0
    for v in vec["valid"] + vec["invalid"]:
        raw = struct.pack("<Q", v["mapping_size"]) + bytes.fromhex(v["hex"])
        (out / v["id"]).write_bytes(raw)
        n += 1
    return n


def _error_index(name: str) -> int:
    items = ERRORS["errors"] if isinstance(ERRORS, dict) and "errors" in ERRORS else ERRORS
    for e in items:
        if e["name"] == name:
            return int(e["code"]) - 1
    return 0


def transition_seeds(out: Path) -> int:
    seqs = json.loads((SPEC / "vectors" / "sequences.json").read_text())["sequences"]
    n = 0
    for q in seqs:
        b = bytearray([0]) + struct.pack("<I", q.get("initial_seq", 0))
        for s in q["steps"]:
            actor, op = s["actor"], s["op"]
            role = 1 if actor == "responder" else 0
            if op == "send":
                b.append(0)
            elif op == "take":
                b.append(2)
            elif op == "reply":
                b.append(4)
            elif op == "reply_error":
                b += bytes([5, _error_index(s["code"])])
            elif op == "receive":
                b.append(6)
            elif op == "close":
                b += bytes([8, role])
            elif op == "attach":
                b += bytes([9, role])
            elif op == "poke_word":
                b += bytes([11, 1]) + struct.pack("<I", s["value"])
        (out / q["id"]).write_bytes(bytes(b))
        n += 1
    return n


def main() -> int:
    kind, out = sys.argv[1], Path(sys.argv[2])
    out.mkdir(parents=True, exist_ok=True)
    n = header_seeds(out) if kind == "header" else transition_seeds(out)
    print(f"make_seeds: {n} {kind} seeds in {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
