"""Hostile input and isolation, in both implementations (Python in-process, C++ through the
conformance peer `shmbridge-peer`, PEER.md, whose exit codes are those of spec/errors.json):

- every invalid header vector of spec/vectors/headers.json written into a real OS object of the
  vector's size, then attached: the same typed error from both languages, no crash, no SIGBUS
  (R-LAYOUT-3..6, R-SEG-6, spec/vectors D16);
- truncated objects (smaller than the header / than segment_size) on attach and create;
- segment permissions 0600 whatever the umask (R-SEG-2), hostile names rejected before any OS
  object is touched (R-NAME-1), another user gets PERMISSION_DENIED (needs root: a throwaway user
  `shmbridge-test` is created for the test and removed afterwards);
- stale segments left by a SIGKILLed creator of the other language (R-STALE-1/2), and a live
  creator's segment is never reclaimed.

The C++ peer is looked up in $SHMBRIDGE_CPP_BUILD_DIR (default <repo>/build); if it is missing the
C++ halves FAIL unless SHMBRIDGE_ALLOW_NO_CPP=1 (then they are skipped, with the reason).
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import REPO, load_spec_json, shm_path, unique_name

import shmbridge as sb
from shmbridge import errors

BUILD = Path(os.environ.get("SHMBRIDGE_CPP_BUILD_DIR") or REPO / "build")
PEER = BUILD / "cpp" / "tools" / "shmbridge-peer"
HEADERS = load_spec_json("vectors/headers.json")
EXIT = {e["name"]: e["exit"] for e in load_spec_json("errors.json")["errors"]}
TEST_USER = "shmbridge-test"

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="POSIX /dev/shm")


def cpp_peer() -> Path:
    if PEER.is_file() and os.access(PEER, os.X_OK):
        return PEER
    msg = f"C++ peer {PEER} not found: build it (bash ci/build.sh) or set SHMBRIDGE_CPP_BUILD_DIR"
    if os.environ.get("SHMBRIDGE_ALLOW_NO_CPP") == "1":
        pytest.skip(f"{msg} (SHMBRIDGE_ALLOW_NO_CPP=1)")
    pytest.fail(msg + "; set SHMBRIDGE_ALLOW_NO_CPP=1 to skip instead", pytrace=False)


def run_peer(*args: str, timeout: float = 20.0, prefix: tuple[str, ...] = ()) -> tuple[int, str]:
    p = subprocess.run(
        [*prefix, str(cpp_peer()), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return p.returncode, p.stderr + p.stdout  # the error message is in the event log too


def wait_ready(p: subprocess.Popen[str]) -> None:
    """Reads the peer's event log until its create/attach returned ok (PEER.md)."""
    assert p.stdout is not None
    for line in p.stdout:
        ev = json.loads(line)
        if ev.get("op") in ("create", "attach"):
            assert ev["result"] == "ok", ev
            return
    raise AssertionError(f"peer exited before create/attach: {p.stderr.read() if p.stderr else ''}")


def raw_object(name: str, size: int, data: bytes = b"") -> None:
    """An OS object of exactly ``size`` bytes holding ``data`` at offset 0 (a hostile writer)."""
    fd = os.open(shm_path(name), os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
    try:
        os.ftruncate(fd, size)
        os.pwrite(fd, data[:size], 0)
    finally:
        os.close(fd)


def _ids(vs: list[dict[str, Any]]) -> list[str]:
    return [v["id"] for v in vs]


# ---------------------------------------------------------------- hostile headers, both languages


@pytest.mark.parametrize("vec", HEADERS["invalid"], ids=_ids(HEADERS["invalid"]))
def test_invalid_header_vector_on_attach_same_error_both_languages(
    vec: dict[str, Any], names: list[str]
) -> None:
    """R-LAYOUT-3..6, R-SEG-6, D16: the vector's bytes in a real OS object of `mapping_size` bytes
    (the payload, if any, zero): attaching with timeout 0 fails with the vector's error in Python
    and with that error's exit code from the C++ peer. The segment is left untouched."""
    name = unique_name("hv")
    names.append(name)
    raw = bytes.fromhex(vec["hex"])
    raw_object(name, vec["mapping_size"], raw)
    with pytest.raises(errors.Error) as info:
        sb.Responder.attach(name, timeout=0)
    assert info.value.name == vec["error"], str(info.value)
    code, err = run_peer("--role", "responder", "--name", name, "--attach", "--timeout", "0")
    assert code == EXIT[vec["error"]], f"C++ peer exit {code}, stderr: {err}"
    with open(shm_path(name), "rb") as f:  # nobody wrote to it
        assert f.read(len(raw))[: min(len(raw), vec["mapping_size"])] == raw[: vec["mapping_size"]]


# ---------------------------------------------------------------- truncated objects


@pytest.mark.parametrize("size", [1, 8, 100, 511])
def test_object_smaller_than_header_is_corrupt_at_once(size: int, names: list[str]) -> None:
    """R-LAYOUT-6, D16: an object of 1..511 bytes is CORRUPT_HEADER at once on attach and on
    create (never reclaimed, never waited for as 'initialising'), in both languages."""
    name = unique_name("tiny")
    names.append(name)
    raw_object(name, size, b"SHMBRIDG")
    t0 = time.monotonic()
    with pytest.raises(errors.CorruptHeader):
        sb.Requester.attach(name, timeout=5)
    with pytest.raises(errors.CorruptHeader):
        sb.Requester.create(name, np.uint8, (4,), timeout=5)
    assert time.monotonic() - t0 < 1.0
    code, err = run_peer("--role", "responder", "--name", name, "--attach", "--timeout", "5")
    assert code == EXIT["CORRUPT_HEADER"], err
    code, err = run_peer("--role", "requester", "--name", name, "--create", "--timeout", "5")
    assert code == EXIT["CORRUPT_HEADER"], err
    assert time.monotonic() - t0 < 3.0
    assert shm_path(name).stat().st_size == size  # left alone


def test_truncated_segment_no_sigbus(names: list[str]) -> None:
    """R-LAYOUT-6: a real segment whose OS object was truncated below segment_size (here to the
    header only) is CORRUPT_HEADER on attach in both languages; nothing maps or touches the
    missing payload (a SIGBUS would kill this process)."""
    name = unique_name("trunc")
    names.append(name)
    with sb.Requester.create(name, np.float32, (256, 256), keep_segment=True):
        pass
    os.truncate(shm_path(name), 512)
    with pytest.raises(errors.CorruptHeader):
        sb.Responder.attach(name, timeout=0)
    code, err = run_peer("--role", "responder", "--name", name, "--attach", "--timeout", "0")
    assert code == EXIT["CORRUPT_HEADER"], err
    os.truncate(shm_path(name), 512 + 1000)
    with pytest.raises(errors.CorruptHeader):
        sb.Responder.attach(name, timeout=0)
    code, err = run_peer("--role", "requester", "--name", name, "--attach", "--timeout", "0")
    assert code == EXIT["CORRUPT_HEADER"], err


def test_empty_object_is_initialising(names: list[str]) -> None:
    """R-SEG-6: size 0 means the creator has not sized it yet: SEGMENT_NOT_FOUND at the deadline."""
    name = unique_name("empty")
    names.append(name)
    raw_object(name, 0)
    with pytest.raises(errors.SegmentNotFound):
        sb.Requester.attach(name, timeout=0.05)
    code, err = run_peer("--role", "requester", "--name", name, "--attach", "--timeout", "0.05")
    assert code == EXIT["SEGMENT_NOT_FOUND"], err


# ---------------------------------------------------------------- permissions and names


def test_r_seg_2_mode_0600_even_with_umask_0(names: list[str]) -> None:
    """R-SEG-2: both languages create the object with mode 0600, also under umask 000."""
    old = os.umask(0)
    try:
        name = unique_name("mode")
        with sb.Requester.create(name, np.uint8, (8,)):
            assert shm_path(name).stat().st_mode & 0o777 == 0o600
        name = unique_name("modecpp")
        names.append(name)
        p = subprocess.Popen(
            [str(cpp_peer()), "--role", "requester", "--name", name, "--create", "--shape", "8",
             "--dtype", "uint8", "--rounds", "0", "--hold-ms", "3000"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            wait_ready(p)
            assert shm_path(name).stat().st_mode & 0o777 == 0o600
        finally:
            p.kill()
            p.wait()
    finally:
        os.umask(old)


# "{t}" is replaced by a token unique to the test, so that the check "no OS object appeared" looks
# only for objects this test could have made (other tests may run at the same time).
HOSTILE_NAMES = [
    "",
    "/",
    "//{t}",
    "../{t}",
    "{t}/b",
    ".{t}",
    "-{t}",
    "{t} b",
    "{t}\n",
    "{t}\x00b",
    "{t}" + "x" * 31,
    "/{t}" + "x" * 31,
    "{t}\u00e9",
    "{t}*",
    "%s%n{t}",
]


@pytest.mark.parametrize("template", HOSTILE_NAMES, ids=[repr(n) for n in HOSTILE_NAMES])
def test_r_name_1_hostile_names_rejected_before_os(template: str) -> None:
    """R-NAME-1: INVALID_NAME in both languages, and no OS object appears."""
    token = unique_name("hn")
    bad = template.replace("{t}", token)
    with pytest.raises(errors.InvalidName):
        sb.Requester.create(bad, np.uint8, (4,))
    with pytest.raises(errors.InvalidName):
        sb.Responder.attach(bad, timeout=0)
    if "\x00" not in bad:  # argv cannot carry a NUL
        code, err = run_peer("--role", "requester", "--name", bad, "--create", "--timeout", "0")
        assert code == EXIT["INVALID_NAME"], err
    assert [n for n in os.listdir("/dev/shm") if token in n] == []


@pytest.fixture(scope="module")
def other_user() -> Iterator[pwd.struct_passwd]:
    """A throwaway user without a home directory, removed afterwards if this fixture created it.
    Needs root; otherwise the test is skipped with the reason (and -ra prints it)."""
    if os.geteuid() != 0:
        pytest.skip("NOT RUN: needs root to create the throwaway user 'shmbridge-test'")
    created = False
    try:
        pw = pwd.getpwnam(TEST_USER)
    except KeyError:
        useradd = shutil.which("useradd")
        if useradd is None:
            pytest.skip("NOT RUN: useradd is not available")
        subprocess.run(
            [useradd, "-M", "-r", "-s", "/usr/sbin/nologin", TEST_USER], check=True, timeout=30
        )
        created = True
        pw = pwd.getpwnam(TEST_USER)
    yield pw
    if created:
        subprocess.run(["userdel", TEST_USER], check=False, timeout=30)


def test_r_seg_2_other_user_gets_permission_denied(
    other_user: pwd.struct_passwd, names: list[str]
) -> None:
    """R-SEG-2, R-SEG-4: a segment created by root (mode 0600) cannot be attached by another user:
    PERMISSION_DENIED in Python (a forked child that drops to the user) and in C++ (the peer run
    with `setpriv --reuid/--regid --clear-groups`). Neither can create over it."""
    name = unique_name("perm")
    names.append(name)
    with sb.Requester.create(name, np.uint8, (8,)):
        pid = os.fork()
        if pid == 0:  # pragma: no cover - child
            code = 9
            try:
                os.setgroups([])
                os.setgid(other_user.pw_gid)
                os.setuid(other_user.pw_uid)
                try:
                    sb.Responder.attach(name, timeout=0)
                    code = 2
                except errors.PermissionDenied:
                    code = 0
                except BaseException:
                    code = 3
                try:
                    sb.Requester.create(name, np.uint8, (8,), timeout=0)
                    code = code or 4
                except errors.PermissionDenied:
                    pass
                except BaseException:
                    code = code or 5
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, status
        setpriv = shutil.which("setpriv")
        assert setpriv is not None, "setpriv (util-linux) is needed to run the C++ peer as the user"
        as_user = (
            setpriv,
            f"--reuid={other_user.pw_uid}",
            f"--regid={other_user.pw_gid}",
            "--clear-groups",
        )
        code, err = run_peer(
            "--role", "responder", "--name", name, "--attach", "--timeout", "0", prefix=as_user
        )
        assert code == EXIT["PERMISSION_DENIED"], err
        assert shm_path(name).exists()


# ---------------------------------------------------------------- stale segments across languages


def _sigkill_creator(cmd: list[str]) -> None:
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_ready(p)
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait()
    assert p.returncode == -signal.SIGKILL


def test_r_stale_cpp_creator_sigkilled_python_reclaims(names: list[str]) -> None:
    """R-STALE-1/2: a C++ creator killed with SIGKILL leaves a stale segment. Python with
    reclaiming off fails with STALE_SEGMENT naming the command that removes it; by default it
    reclaims (a fresh segment with this process as creator)."""
    name = unique_name("stc")
    names.append(name)
    _sigkill_creator(
        [str(cpp_peer()), "--role", "requester", "--name", name, "--create", "--shape", "4",
         "--rounds", "0", "--hold-ms", "60000"]
    )  # fmt: skip
    assert shm_path(name).exists()
    with pytest.raises(errors.StaleSegment) as info:
        sb.Requester.create(name, np.float32, (4,), reclaim_stale=False)
    assert f"rm /dev/shm/{name}" in str(info.value)
    with sb.Requester.create(name, np.uint8, (16,)) as req:
        assert req.shape == (16,)


def test_r_stale_python_creator_sigkilled_cpp_reclaims(names: list[str]) -> None:
    """R-STALE-1/2 the other way round: a SIGKILLed Python creator; the C++ peer with --no-reclaim
    exits STALE_SEGMENT and names `rm /dev/shm/NAME`; without it, it reclaims and runs."""
    name = unique_name("stp")
    names.append(name)
    code = (
        "import json, os, signal, numpy as np, shmbridge as sb\n"
        f"r = sb.Requester.create({name!r}, np.float32, (4,))\n"
        "print(json.dumps({'op': 'create', 'result': 'ok'}), flush=True)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    _sigkill_creator([sys.executable, "-c", code])
    assert shm_path(name).exists()
    rc, err = run_peer("--role", "requester", "--name", name, "--create", "--shape", "4",
                       "--no-reclaim", "--rounds", "0")  # fmt: skip
    assert rc == EXIT["STALE_SEGMENT"], err
    assert f"rm /dev/shm/{name}" in err
    rc, err = run_peer("--role", "requester", "--name", name, "--create", "--shape", "4",
                       "--rounds", "0")  # fmt: skip
    assert rc == 0, err
    assert not shm_path(name).exists()  # the C++ creator closed and unlinked its fresh segment


def test_r_stale_2_live_creator_is_never_reclaimed(names: list[str]) -> None:
    """R-STALE-2: a creator that is alive (another process) keeps its segment: ALREADY_EXISTS in
    both languages, the segment and its inode unchanged."""
    name = unique_name("live")
    names.append(name)
    p = subprocess.Popen(
        [str(cpp_peer()), "--role", "requester", "--name", name, "--create", "--shape", "4",
         "--rounds", "0", "--hold-ms", "20000"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        wait_ready(p)
        ino = shm_path(name).stat().st_ino
        with pytest.raises(errors.AlreadyExists):
            sb.Requester.create(name, np.float32, (4,))
        with pytest.raises(errors.AlreadyExists):
            sb.Requester.create(name, np.float32, (4,), reclaim_stale=False)
        rc, err = run_peer("--role", "responder", "--name", name, "--create", "--shape", "4")
        assert rc == EXIT["ALREADY_EXISTS"], err
        assert shm_path(name).stat().st_ino == ino
    finally:
        p.kill()
        p.wait()


def test_r_stale_2_zero_magic_object_is_corrupt_never_reclaimed(names: list[str]) -> None:
    """R-STALE-2, R-SEG-6: an object whose magic is still zero when the create deadline passes (its
    creator died initialising it) is CORRUPT_HEADER in both languages and is left in place."""
    name = unique_name("zmagic")
    names.append(name)
    fd = os.open(shm_path(name), os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
    try:
        os.ftruncate(fd, 4096)
    finally:
        os.close(fd)
    ino = shm_path(name).stat().st_ino
    with pytest.raises(errors.CorruptHeader):
        sb.Requester.create(name, np.uint8, (4,), timeout=0.05)
    rc, err = run_peer("--role", "requester", "--name", name, "--create", "--shape", "4",
                       "--timeout", "0.05", "--rounds", "0")  # fmt: skip
    assert rc == EXIT["CORRUPT_HEADER"], err
    assert shm_path(name).stat().st_ino == ino


def test_errors_json_exit_codes_are_distinct() -> None:
    """The exit-code mapping the C++ checks above rely on (R-ERR-1)."""
    assert len(set(EXIT.values())) == len(EXIT)
    assert json.dumps(EXIT)
