#!/usr/bin/env python3
"""Differential check of header validation on a fuzz corpus (run by ci/fuzz.sh).

v1 (default): reads the lines "<RESULT> <file>" that header_oracle (the C++ validate_header)
printed on stdin, runs the same inputs through the Python implementation
(shmbridge.layout.decode_header) and the reference decoder of spec/tools/gen_vectors.py, and fails
on the first disagreement. Input format as fuzz_header: u64 LE mapping size, then up to 512 header
bytes, zero-padded.

--v2: reads the lines "<HEADER> <TABLES> <file>" of `header_oracle --v2` (C++ validate_header_v2,
then validate_table on the request and the reply table) and compares them with the reference of
spec/tools/gen_vectors_v2.py (decode, validate_table) and, for the header, with the Python
implementation's shmbridge.layout_v2.decode_header(raw, mapping_size) when that module exists
(PYTHON_V2 below; without it the comparison is C++ vs reference, and the summary says so).
Input format as fuzz_v2 (cpp/fuzz/v2_input.hpp).
"""

from __future__ import annotations

import importlib
import sys
import types
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# The Python v2 header decoder, mirroring v1's shmbridge.layout.decode_header (spec/API.md:
# layout_v2.py). Compared as soon as the Python implementation provides it.
PYTHON_V2 = ("shmbridge.layout_v2", "decode_header")
MAX_HEADER = 4608  # 512 + 128 x 32 (PROTOCOL.md R-SCHEMA-5)
ENTRY = 80


def _package() -> None:
    # shmbridge's modules without the package __init__ (which needs the compiled _native helper).
    pkg = types.ModuleType("shmbridge")
    pkg.__path__ = [str(REPO / "python" / "shmbridge")]
    sys.modules.setdefault("shmbridge", pkg)
    sys.path.insert(0, str(REPO / "spec" / "tools"))


def _load() -> tuple[types.ModuleType, types.ModuleType]:
    _package()
    return importlib.import_module("shmbridge.layout"), importlib.import_module("gen_vectors")


def split(raw: bytes) -> tuple[int, bytes]:
    mapping = int.from_bytes(raw[:8].ljust(8, b"\0")[:8], "little") if raw else 0
    body = raw[8 : 8 + 512] if len(raw) > 8 else b""
    return mapping, body.ljust(512, b"\0")


def split_v2(raw: bytes) -> tuple[int, bytes, bytes]:
    """cpp/fuzz/v2_input.hpp split_v2_input, byte for byte."""
    mapping = int.from_bytes(raw[:8].ljust(8, b"\0")[:8], "little")
    body = raw[8:]
    size = min(mapping, MAX_HEADER)
    header = body[:size].ljust(size, b"\0")
    table_at = 512
    if len(body) >= 16:
        hs = int.from_bytes(body[12:16], "little")
        if 512 <= hs <= MAX_HEADER:
            table_at = hs
    tables = body[table_at : table_at + ENTRY * 32].ljust(ENTRY * 32, b"\0")
    return mapping, header, tables


def main_v1() -> int:
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


def main_v2() -> int:
    _package()
    ref = importlib.import_module("gen_vectors_v2")
    try:
        python_decode = getattr(importlib.import_module(PYTHON_V2[0]), PYTHON_V2[1])
    except (ImportError, AttributeError):
        python_decode = None
    n = bad = 0
    for line in sys.stdin:
        cpp_header, cpp_tables, path = line.rstrip("\n").split(" ", 2)
        mapping, header, tables = split_v2(Path(path).read_bytes())
        try:
            h = ref.decode(header, mapping)
            rf_header = "OK"
        except ref.V2Error as e:
            h, rf_header = None, e.name
        except AssertionError:  # the reference read beyond the bytes it may read
            h, rf_header = None, "READ-BEYOND"
        rf_tables = "-"
        if h is not None:
            rf_tables = "OK"
            nreq = len(h["request_schema"])
            try:
                ref.validate_table(h["request_schema"], tables[: ENTRY * nreq])
                ref.validate_table(
                    h["reply_schema"],
                    tables[ENTRY * nreq : ENTRY * (nreq + len(h["reply_schema"]))],
                )
            except ref.V2Error as e:
                rf_tables = f"{e.name}:{e.field}"
        py_header = cpp_header
        if python_decode is not None:
            try:
                python_decode(header, mapping)
                py_header = "OK"
            except Exception as e:
                py_header = getattr(e, "name", type(e).__name__)
        n += 1
        if (cpp_header, cpp_tables) != (rf_header, rf_tables) or py_header != cpp_header:
            bad += 1
            if bad <= 20:
                print(
                    f"differential v2: {path}: C++ {cpp_header} {cpp_tables}, "
                    f"reference {rf_header} {rf_tables}, Python {py_header}"
                )
    who = (
        "C++ / Python / reference"
        if python_decode
        else (f"C++ / reference; no Python v2 decoder {'.'.join(PYTHON_V2)} yet")
    )
    print(f"differential v2: {n} corpus inputs, {bad} disagreements ({who})")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main_v2() if sys.argv[1:] == ["--v2"] else main_v1())
