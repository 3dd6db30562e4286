"""The ``shmbridge`` command line (python -m shmbridge and the console script): info, ls, rm and
clean on a live segment, on a segment whose creator was SIGKILLed (stale, R-STALE-1), and on
corrupt / truncated / foreign objects; conformance and bench delegation."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import REPO, shm_path, unique_name
from test_processes import child_env

import shmbridge as sb
from shmbridge.layout import encode_header, header_from_fields

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/dev/shm")
EXIT = {
    e["name"]: e["exit"] for e in json.loads((REPO / "spec" / "errors.json").read_text())["errors"]
}


def cli(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "shmbridge", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        env=env or child_env(),
        check=False,
    )


def cli_json(*args: str) -> Any:
    p = cli(*args, "--json")
    assert p.stdout, p.stderr
    return json.loads(p.stdout)


def sigkilled_creator(name: str) -> int:
    """A Python creator that claims both roles, sends one request and is SIGKILLed: its segment
    stays behind with a dead creator (R-STALE-1). Returns the dead pid."""
    code = (
        "import os, signal, numpy as np, shmbridge as sb\n"
        f"r = sb.Requester.create({name!r}, np.int16, (4, 6))\n"
        "r.send(np.zeros((4, 6), np.int16))\n"
        "print('created', flush=True)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    p = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=child_env()
    )
    assert p.stdout is not None
    assert p.stdout.readline().strip() == "created"
    p.wait(timeout=30)
    assert p.returncode == -signal.SIGKILL
    return p.pid


def raw_object(name: str, data: bytes, size: int | None = None) -> None:
    fd = os.open(shm_path(name), os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
    try:
        os.ftruncate(fd, len(data) if size is None else size)
        os.pwrite(fd, data, 0)
    finally:
        os.close(fd)


def valid_header_fields() -> dict[str, Any]:
    vec = json.loads((REPO / "spec" / "vectors" / "headers.json").read_text())
    return next(v for v in vec["valid"] if v["id"] == "H-VALID-F32-512x512")["fields"]  # type: ignore[no-any-return]


# ---------------------------------------------------------------- live


def test_info_ls_rm_live_segment(names: list[str]) -> None:
    """info decodes every field of a live segment; ls lists it as live; rm refuses it (exit
    ALREADY_EXISTS) until --force."""
    name = unique_name("clilive")
    names.append(name)
    with sb.Requester.create(name, np.float32, (3, 4), keep_segment=True) as req:
        rsp = sb.Responder.attach(name)
        req.send(np.ones((3, 4), np.float32))
        info = cli_json("info", name)
        assert info["state"] == "live" and info["valid"] is True
        assert info["version"] == "1.0"
        assert info["declared"] == {
            "dtype": "float32",
            "dtype_code": 11,
            "ndim": 2,
            "shape": [3, 4],
            "nbytes": 48,
        }
        assert info["capacity"] == 48 and info["segment_size"] == 560 and info["size"] == 560
        assert info["mode"] == "0600"
        assert info["word"]["phase"] == "REQUESTED" and info["word"]["seq"] == 1
        assert info["word"]["status"] == 1
        assert info["reply_code"] == {"code": 0, "name": "OK"}
        for role in ("requester", "responder", "creator"):
            assert info["slots"][role]["pid"] == os.getpid()
            assert info["slots"][role]["liveness"] == "alive"
            assert info["slots"][role]["state"] == "ATTACHED"
        text = cli("info", name)
        assert text.returncode == 0, text.stderr
        for word in ("REQUESTED", "float32 (3, 4)", "requester", "alive", "0600"):
            assert word in text.stdout
        listed = {s["name"]: s for s in cli_json("ls")}
        assert listed[name]["state"] == "live"
        assert name in cli("ls").stdout
        p = cli("rm", name)
        assert p.returncode == EXIT["ALREADY_EXISTS"], p.stderr
        assert "live creator" in p.stderr
        assert shm_path(name).exists()
        # clean --stale never touches a live segment
        assert cli("clean", "--stale").returncode == 0
        assert shm_path(name).exists()
        rsp.close()
        p = cli("rm", "--force", name)
        assert p.returncode == 0, p.stderr
        assert not shm_path(name).exists()


def test_info_closed_slots_and_reply_code(names: list[str]) -> None:
    """After a full round with an error reply and a clean close of the responder: reply_code is
    shown by name, the closed slot as closed, the kept segment of a closed creator as kept."""
    name = unique_name("clirc")
    names.append(name)
    with sb.Requester.create(name, np.uint8, (4,), keep_segment=True) as req:
        with sb.Responder.attach(name) as rsp:
            req.send(np.zeros(4, np.uint8))
            with rsp.take() as r:
                r.fail(sb.ErrorCode.SHAPE_MISMATCH)
        info = cli_json("info", name)
        assert info["word"]["phase"] == "REPLIED"
        assert info["reply_code"] == {"code": 3, "name": "SHAPE_MISMATCH"}
        assert info["slots"]["responder"]["liveness"] == "closed"
        assert info["slots"]["responder"]["state"] == "CLOSED"
        with pytest.raises(sb.ShapeMismatch):
            req.receive_copy()
    info = cli_json("info", name)
    assert info["state"] == "kept"
    assert cli("rm", name).returncode == 0  # the creator is not alive in its slot any more


# ---------------------------------------------------------------- dead owner


def test_dead_owner_info_ls_clean(names: list[str]) -> None:
    """A SIGKILLed creator: info shows the dead pid in all its slots and the request it left;
    ls says stale; clean --stale --dry-run lists it without removing; clean --stale removes it
    (and nothing else of ours)."""
    name = unique_name("clidead")
    live = unique_name("clilive2")
    names += [name, live]
    pid = sigkilled_creator(name)
    info = cli_json("info", name)
    assert info["state"] == "stale"
    assert info["slots"]["creator"] == {**info["slots"]["creator"], "pid": pid, "liveness": "dead"}
    assert info["slots"]["requester"]["liveness"] == "dead"
    assert info["slots"]["responder"]["liveness"] == "empty"
    assert info["word"]["phase"] == "REQUESTED" and info["word"]["seq"] == 1
    assert info["declared"]["shape"] == [4, 6] and info["declared"]["dtype"] == "int16"
    assert "dead" in cli("info", name).stdout
    assert {s["name"]: s["state"] for s in cli_json("ls")}[name] == "stale"
    with sb.Requester.create(live, np.uint8, (2,)):
        dry = cli_json("clean", "--stale", "--dry-run")
        assert name in [s["name"] for s in dry["removed"]]
        assert shm_path(name).exists()
        done = cli_json("clean", "--stale")
        removed = [s["name"] for s in done["removed"]]
        assert name in removed and live not in removed
        assert not shm_path(name).exists()
        assert shm_path(live).exists()
    p = cli("clean")
    assert p.returncode == EXIT["INVALID_ARGUMENT"]  # clean needs --stale


def test_rm_dead_owner_without_force(names: list[str]) -> None:
    name = unique_name("clirmd")
    names.append(name)
    sigkilled_creator(name)
    p = cli("rm", name)
    assert p.returncode == 0, p.stderr
    assert not shm_path(name).exists()
    p = cli("rm", name)
    assert p.returncode == EXIT["SEGMENT_NOT_FOUND"]


# ---------------------------------------------------------------- corrupt objects


def test_corrupt_truncated_and_foreign_objects(names: list[str]) -> None:
    """info reports the header error (exit code of the error) and still shows what it can; ls
    lists SHMBRIDG objects as corrupt / version-mismatch / truncated; clean --stale removes none
    of them; rm refuses a foreign object without --force."""
    f = valid_header_fields()
    bad_flags = unique_name("clibf")
    v2 = unique_name("cliv2")
    trunc = unique_name("clitr")
    foreign = unique_name("clifo")
    stale_corrupt = unique_name("clisc")
    names += [bad_flags, v2, trunc, foreign, stale_corrupt]
    raw_object(bad_flags, encode_header(header_from_fields({**f, "flags": 1})), f["segment_size"])
    # a version no library speaks (2 is protocol v2 now, decoded as such: test_cli_v2.py)
    raw_object(v2, encode_header(header_from_fields({**f, "version_major": 3})), f["segment_size"])
    raw_object(trunc, b"SHMBRIDG" + bytes(92))
    raw_object(foreign, b"NOTSHMBR" + bytes(600))
    dead = {"pid": 0x7FFFFFF0, "state": 1, "start_time": 1, "incarnation": 1}  # no such process
    raw_object(
        stale_corrupt,
        encode_header(header_from_fields({**f, "max_dims": 4, "creator": dead})),
        f["segment_size"],
    )

    p = cli("info", bad_flags)
    assert p.returncode == EXIT["CORRUPT_HEADER"], p.stderr
    assert "flags" in p.stdout
    info = cli_json("info", bad_flags)
    assert info["state"] == "corrupt" and info["error"] == "CORRUPT_HEADER"
    assert info["declared"]["shape"] == [512, 512]
    assert cli_json("info", v2)["state"] == "version-mismatch"
    assert cli("info", v2).returncode == EXIT["VERSION_MISMATCH"]
    t = cli_json("info", trunc)
    assert t["state"] == "truncated" and t["size"] == 100
    assert cli_json("info", stale_corrupt)["slots"]["creator"]["liveness"] == "dead"

    states = {s["name"]: s["state"] for s in cli_json("ls")}
    assert states[bad_flags] == "corrupt"
    assert states[v2] == "version-mismatch"
    assert states[trunc] == "truncated"
    assert states[stale_corrupt] == "corrupt"
    assert foreign not in states  # not a shmbridge object

    removed = [s["name"] for s in cli_json("clean", "--stale")["removed"]]
    assert not set(removed) & {bad_flags, v2, trunc, foreign, stale_corrupt}
    for n in (bad_flags, v2, trunc, foreign, stale_corrupt):
        assert shm_path(n).exists()

    p = cli("rm", foreign)
    assert p.returncode == EXIT["CORRUPT_HEADER"] and "not a shmbridge segment" in p.stderr
    assert shm_path(foreign).exists()
    assert cli("rm", "--force", foreign).returncode == 0
    assert cli("rm", trunc).returncode == 0  # a SHMBRIDG object with no live creator


def test_names_and_missing() -> None:
    assert cli("info", "../etc/passwd").returncode == EXIT["INVALID_NAME"]
    assert cli("info", unique_name("nope")).returncode == EXIT["SEGMENT_NOT_FOUND"]
    assert cli("rm", "a/b").returncode == EXIT["INVALID_NAME"]
    assert cli("bogus").returncode == 2
    assert cli().returncode == 2


# ---------------------------------------------------------------- delegation and entry points


def test_conformance_and_bench_delegation(tmp_path: Path) -> None:
    """`shmbridge conformance ...` runs `python -m conformance ...` of the checkout; without one
    it says where the kit lives and exits 2. Same for bench."""
    p = cli("conformance", "list", cwd=REPO)
    assert p.returncode == 0, p.stderr
    assert "turn/second-send" in p.stdout
    env = {**child_env(), "SHMBRIDGE_SOURCE_DIR": str(tmp_path)}
    for module in ("conformance", "bench"):
        p = cli(module, "--help", cwd=tmp_path, env=env)
        assert p.returncode == 2
        assert f"`{module}` package was not found" in p.stderr
    p = cli("bench", "--help", cwd=REPO)
    assert p.returncode == 0, p.stderr


def test_console_script() -> None:
    """The `shmbridge` console script ([project.scripts]) is installed next to the interpreter."""
    exe = Path(sys.executable).parent / "shmbridge"
    if not exe.exists():
        pytest.skip(f"NOT RUN: no console script at {exe} (package not installed as a wheel)")
    p = subprocess.run(
        [str(exe), "ls", "--json"], capture_output=True, text=True, timeout=60, check=False
    )
    assert p.returncode == 0, p.stderr
    assert isinstance(json.loads(p.stdout), list)
