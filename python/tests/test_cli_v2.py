"""The ``shmbridge`` command line on protocol v2 segments: info decodes the geometry and both
schemas (PROTOCOL.md §II.3), validates by H1-H16/F1-F9 (R-SCHEMA-9) and says which check failed;
ls lists v2 segments with their schemas; a v2 segment left by a SIGKILLed creator is stale for
ls and clean --stale (R-VER-7)."""

from __future__ import annotations

import json
import signal
import struct
import subprocess
import sys

import numpy as np
import pytest
from conftest import map_raw, shm_path, unique_name
from test_cli import EXIT, cli, cli_json
from test_processes import child_env

import shmbridge as sb
from shmbridge import Schema, inplace, upto

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/dev/shm")
REQUEST = Schema(image=(np.uint8, (4, 6, 3)), stamp=(np.float64, ()))
REPLY = Schema(boxes=(np.float32, (upto(9), 6)), image=inplace("image"))


def test_r_schema_5_info_and_ls_decode_a_live_v2_segment(names: list[str]) -> None:
    """info --json: version 2.0, the geometry block, every record (name, dtype, maxima, variable
    extents, in-place target, offset); the text output and ls show the schemas."""
    name = unique_name("cliv2")
    names.append(name)
    with sb.MessageRequester.create(name, REQUEST, REPLY) as req:
        req.send(image=np.zeros((4, 6, 3), np.uint8), stamp=1.0)
        info = cli_json("info", name)
        h = req.header()
        assert (info["valid"], info["state"], info["version"], info["protocol"]) == (
            True, "live", "2.0", 2
        )  # fmt: skip
        g = h.geometry
        assert info["geometry"] == {
            "request_fields": 2, "reply_fields": 2,
            "request_area_offset": g.request_area_offset, "request_area_size": g.request_area_size,
            "reply_area_offset": g.reply_area_offset, "reply_area_size": g.reply_area_size,
        }  # fmt: skip
        image, stamp = info["request_schema"]
        assert (image["name"], image["dtype"], image["max_shape"], image["variable"]) == (
            "image", "uint8", [4, 6, 3], []
        )  # fmt: skip
        assert (stamp["dtype"], stamp["ndim"], stamp["offset"]) == (
            "float64",
            0,
            h.request[1].offset,
        )
        boxes, again = info["reply_schema"]
        assert (boxes["max_shape"], boxes["variable"], boxes["inplace"]) == ([9, 6], [0], None)
        assert (again["inplace"], again["offset"]) == ("image", h.request[0].offset)
        assert info["word"]["phase"] == "REQUESTED"
        text = cli("info", name)
        assert text.returncode == 0, text.stderr
        for word in ("v2 (typed messages)", "image: uint8 (4, 6, 3)", "boxes: float32 (<=9, 6)",
                     "image in place onto image", "REQUESTED"):  # fmt: skip
            assert word in text.stdout, text.stdout
        listed = {s["name"]: s for s in cli_json("ls")}
        assert listed[name]["protocol"] == 2 and listed[name]["state"] == "live"
        assert "stamp: float64 () -> boxes" in cli("ls").stdout


@pytest.mark.parametrize(
    ("offset", "value", "fmt"),
    [(0x040, 17, "<I"), (0x220, 99, "<I"), (0x270, 8, "<Q"), (0x050, 64, "<Q")],
)
def test_r_schema_9_info_reports_an_invalid_v2_header(
    names: list[str], offset: int, value: int, fmt: str
) -> None:
    """info exits with CORRUPT_HEADER's code on a v2 header that fails H1-H16/F1-F9 and still
    shows what it can read."""
    name = unique_name("cliv2bad")
    names.append(name)
    with sb.MessageResponder.create(name, REQUEST, REPLY, keep_segment=True):
        pass
    raw = map_raw(name, 1024)
    struct.pack_into(fmt, raw, offset, value)
    raw.close()
    p = cli("info", name, "--json")
    assert p.returncode == EXIT["CORRUPT_HEADER"], p.stderr
    info = json.loads(p.stdout)
    assert (info["valid"], info["error"], info["state"]) == (False, "CORRUPT_HEADER", "corrupt")
    assert info["protocol"] == 2
    assert [r["name"] for r in info["request_schema"]][:2] == ["image", "stamp"]


def test_r_ver_7_a_stale_v2_segment_is_listed_and_cleaned(names: list[str]) -> None:
    """A v2 segment whose creator was SIGKILLed is stale for ls; clean --stale removes it."""
    name = unique_name("cliv2st")
    names.append(name)
    code = (
        "import os, signal, numpy as np, shmbridge as sb\n"
        f"r = sb.MessageRequester.create({name!r}, sb.Schema(a=(np.int8, (3,))), sb.Schema())\n"
        "print('created', flush=True)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                         env=child_env())  # fmt: skip
    assert p.stdout is not None and p.stdout.readline().strip() == "created"
    assert p.wait(timeout=30) == -signal.SIGKILL
    listed = {s["name"]: s for s in cli_json("ls")}
    assert listed[name]["state"] == "stale" and listed[name]["protocol"] == 2
    assert cli("clean", "--stale").returncode == 0
    assert not shm_path(name).exists()
