#!/usr/bin/env python3
"""Writes the libFuzzer seed corpora from the shared vectors (run by ci/fuzz.sh at fuzz time).

make_seeds.py header DIR       one file per headers.json vector: u64 LE mapping_size + 512 bytes
make_seeds.py transitions DIR  one file per sequences.json sequence, in fuzz_transitions' input
                               format (mode byte 0 = model, u32 initial_seq, then op bytes)
make_seeds.py v2 DIR           fuzz_v2's format (cpp/fuzz/v2_input.hpp): every headers_v2.json
                               vector (u64 LE mapping_size + header bytes + the initial tables of
                               a valid one), and every messages_v2.json table in the header of
                               its schema (the other area's table initial)
make_seeds.py relay_wire DIR   fuzz_relay_wire's format: every relay_wire.json vector's frames,
                               each as u16 LE length + bytes
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


def v2_seeds(out: Path) -> int:
    sys.path.insert(0, str(SPEC / "tools"))
    import gen_vectors_v2 as g  # the reference encoder (PROTOCOL.md Part II)

    def tables(f: dict, request: bytes | None = None, reply: bytes | None = None) -> bytes:
        req = g.encode_table(g.initial_table(f["request_schema"])) if request is None else request
        rep = g.encode_table(g.initial_table(f["reply_schema"])) if reply is None else reply
        return req + rep

    vec = json.loads((SPEC / "vectors" / "headers_v2.json").read_text())
    n = 0
    for v in vec["valid"] + vec["invalid"] + vec["decode_only"]:
        raw = struct.pack("<Q", v["mapping_size"]) + bytes.fromhex(v["hex"])
        if "fields" in v:
            raw += tables(v["fields"])
        (out / v["id"]).write_bytes(raw)
        n += 1
    msg = json.loads((SPEC / "vectors" / "messages_v2.json").read_text())
    schemas = {s["id"]: s for s in msg["schemas"]}
    for v in msg["tables"]["valid"] + msg["tables"]["invalid"]:
        s = schemas[v["schema"]]
        f = g.fields_for(s["request"], s["reply"])
        table = bytes.fromhex(v["hex"])
        both = tables(f, request=table) if v["side"] == "request" else tables(f, reply=table)
        raw = struct.pack("<Q", f["segment_size"]) + g.encode(f) + both
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


def relay_wire_seeds(out: Path) -> int:
    vec = json.loads((SPEC / "vectors" / "relay_wire.json").read_text())
    n = 0
    for v in vec["valid"] + vec["invalid"]:
        frames = [bytes.fromhex(f) for f in v["frames"]]
        if any(len(f) > 0xFFFF for f in frames):
            continue  # not expressible in the u16 length format
        (out / v["id"]).write_bytes(b"".join(struct.pack("<H", len(f)) + f for f in frames))
        n += 1
    return n


def main() -> int:
    kind, out = sys.argv[1], Path(sys.argv[2])
    out.mkdir(parents=True, exist_ok=True)
    make = {
        "header": header_seeds,
        "transitions": transition_seeds,
        "v2": v2_seeds,
        "relay_wire": relay_wire_seeds,
    }[kind]
    n = make(out)
    print(f"make_seeds: {n} {kind} seeds in {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
