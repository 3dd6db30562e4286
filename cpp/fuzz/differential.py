#!/usr/bin/env python3
"""Differential check of header validation on a fuzz corpus (run by ci/fuzz.sh).

Reads the lines "<RESULT> <file>" that header_oracle (the C++ validate_header) printed on stdin,
runs the same inputs through the Python implementation (shmbridge.layout.decode_header) and the
reference decoder of spec/tools/gen_vectors.py, and fails on the first disagreement. Input format
as fuzz_header: u64 LE mapping size, then up to 512 header bytes, zero-padded.
"""

from __future__ import annotations

import importlib
import sys
import types
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _load() -> tuple[types.ModuleType, types.ModuleType]:
    # shmbridge.layout without the package __init__ (which needs the compiled _native helper).
    pkg = types.ModuleType("shmbridge")
    pkg.__path__ = [str(REPO / "python" / "shmbridge")]
    sys.modules.setdefault("shmbridge", pkg)
    layout = importlib.import_module("shmbridge.layout")
    sys.path.insert(0, str(REPO / "spec" / "tools"))
    ref = importlib.import_module("gen_vectors")
    return layout, ref


def split(raw: bytes) -> tuple[int, bytes]:
    mapping = int.from_bytes(raw[:8].ljust(8, b"\0")[:8], "little") if raw else 0
    body = raw[8 : 8 + 512] if len(raw) > 8 else b""
    return mapping, body.ljust(512, b"\0")


def main() -> int:
    layout, ref = _load()
    n = bad = 0
    for line in sys.stdin:
        cpp, _, path = line.rstrip("\n").partition(" ")
        mapping, header = split(Path(path).read_bytes())
        try:
            layout.decode_header(header, mapping)
            py = "OK"
        except Exception as e:
            py = getattr(e, "name", type(e).__name__)
        try:
            ref.decode(header, mapping)
            rf = "OK"
        except ref.HeaderError as e:
            rf = e.name
        n += 1
        if not (cpp == py == rf):
            bad += 1
            if bad <= 20:
                print(f"differential: {path}: C++ {cpp}, Python {py}, reference {rf}")
    print(f"differential: {n} corpus inputs, {bad} disagreements (C++ / Python / reference)")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
