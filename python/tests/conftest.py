"""Shared fixtures: spec paths, vector loading (fails loudly if missing), unique segment names and
/dev/shm cleanup."""

from __future__ import annotations

import contextlib
import itertools
import json
import mmap
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

import pytest

REPO = Path(__file__).resolve().parents[2]
SPEC = REPO / "spec"
VECTORS = SPEC / "vectors"
TESTS = Path(__file__).resolve().parent

_counter = itertools.count()


def load_spec_json(relpath: str) -> Any:
    path = SPEC / relpath
    if not path.is_file():
        pytest.fail(
            f"required spec file {path} is missing: the shared vectors/spec tables must be "
            "generated and committed (spec/tools/gen_vectors.py)",
            pytrace=False,
        )
    with path.open(encoding="utf-8") as f:
        return json.load(f)


def unique_name(tag: str = "t") -> str:
    """A segment name unique to this process and test (R-NAME-1: <= 30 chars)."""
    return f"sbpy{os.getpid() % 100000}_{tag[:8]}{next(_counter)}"


def shm_path(name: str) -> Path:
    return Path("/dev/shm") / name


@pytest.fixture
def segname(request: pytest.FixtureRequest) -> Iterator[str]:
    """A unique segment name; whatever is left under it is removed after the test."""
    name = unique_name(request.node.name.replace("test_", "")[:8].replace("[", "_"))
    yield name
    _cleanup(name)


@pytest.fixture
def make_name(request: pytest.FixtureRequest) -> Iterator[Callable[[], str]]:
    names: list[str] = []

    def make() -> str:
        n = unique_name("m")
        names.append(n)
        return n

    yield make
    for n in names:
        _cleanup(n)


@pytest.fixture
def names() -> Iterator[list[str]]:
    """A list the test appends the segment names it makes to; each is removed afterwards."""
    made: list[str] = []
    yield made
    for n in made:
        _cleanup(n)


def reaped_pid() -> int:
    """The pid of a child that has exited and been reaped: a process that is certainly dead."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        os._exit(0)
    os.waitpid(pid, 0)
    return pid


def map_raw(name: str, size: int = 512) -> mmap.mmap:
    """Map the first ``size`` bytes of segment ``name`` directly (POSIX), to poke at the header
    the way a rogue or buggy peer would."""
    import _posixshmem

    fd = _posixshmem.shm_open("/" + name, os.O_RDWR, 0)
    try:
        return mmap.mmap(fd, size)
    finally:
        os.close(fd)


def _cleanup(name: str) -> None:
    if sys.platform.startswith("linux"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(shm_path(name))


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: cross-process / timing tests")
