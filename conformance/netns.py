"""Two network namespaces joined by a veth pair, for the relay across a real (virtual) link.

Used by ``python -m conformance run --relay --netns`` (spec/RELAY.md §13) and by
python/tests/test_relay_netns.py. Stdlib only: the test imports it from the repository.

Topology: namespace ``<prefix>A<pid>`` holds ``<prefix>a<pid>`` with NEAR_ADDR/30, namespace
``<prefix>B<pid>`` holds ``<prefix>b<pid>`` with FAR_ADDR/30, both links and both ``lo`` up. The
addresses are the same in every run: each run's namespaces see only their own veth pair, so
parallel runs collide only on names, which carry the pid. Shared memory is not namespaced by
``ip netns exec`` (it keeps /dev/shm), so the peers stay in the root namespace.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

NEAR_ADDR = "10.231.7.1"
FAR_ADDR = "10.231.7.2"


class NetnsUnavailable(Exception):
    """Namespaces cannot be made here (not root, no iproute2, no kernel support): a skip."""


@dataclass(frozen=True)
class Namespaces:
    near_ns: str
    far_ns: str
    near_if: str  # the veth end inside near_ns
    far_if: str  # the veth end inside far_ns
    near_addr: str = NEAR_ADDR
    far_addr: str = FAR_ADDR

    def exec_prefix(self, end: str) -> list[str]:
        """The argv prefix that runs a command inside the ``end`` ("near"/"far") namespace."""
        return ["ip", "netns", "exec", self.near_ns if end == "near" else self.far_ns]


def ip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10)


def why_unavailable() -> str:
    """Why namespaces cannot be created here ("" when they may): checked before any change."""
    if os.name != "posix" or os.geteuid() != 0:
        return "needs root to create network namespaces"
    if shutil.which("ip") is None:
        return "needs the ip command (iproute2)"
    return ""


def create(prefix: str, pid: int | None = None) -> Namespaces:
    """Create the two namespaces and the veth pair; raises NetnsUnavailable with the reason (and
    removes what it made) when a step fails."""
    why = why_unavailable()
    if why:
        raise NetnsUnavailable(why)
    tag = str(os.getpid() if pid is None else pid)
    ns = Namespaces(f"{prefix}A{tag}", f"{prefix}B{tag}", f"{prefix}a{tag}", f"{prefix}b{tag}")
    if len(ns.near_if) > 15:  # IFNAMSIZ - 1
        raise ValueError(f"prefix {prefix!r} too long: {ns.near_if!r} exceeds 15 characters")
    r = ip("netns", "add", ns.near_ns)
    if r.returncode != 0:
        raise NetnsUnavailable(f"ip netns add failed: {r.stderr.strip()}")
    steps = [
        ("netns", "add", ns.far_ns),
        ("link", "add", ns.near_if, "type", "veth", "peer", "name", ns.far_if),
        ("link", "set", ns.near_if, "netns", ns.near_ns),
        ("link", "set", ns.far_if, "netns", ns.far_ns),
        ("-n", ns.near_ns, "addr", "add", f"{ns.near_addr}/30", "dev", ns.near_if),
        ("-n", ns.far_ns, "addr", "add", f"{ns.far_addr}/30", "dev", ns.far_if),
        ("-n", ns.near_ns, "link", "set", ns.near_if, "up"),
        ("-n", ns.far_ns, "link", "set", ns.far_if, "up"),
        ("-n", ns.near_ns, "link", "set", "lo", "up"),
        ("-n", ns.far_ns, "link", "set", "lo", "up"),
    ]
    for s in steps:
        r = ip(*s)
        if r.returncode != 0:
            delete(ns)
            raise NetnsUnavailable(f"ip {' '.join(s)} failed: {r.stderr.strip()}")
    return ns


def delete(ns: Namespaces) -> None:
    """Remove both namespaces (the veth pair goes with them); quiet when already gone."""
    ip("netns", "del", ns.near_ns)
    ip("netns", "del", ns.far_ns)
    ip("link", "del", ns.near_if)  # only if a failed create left it in the root namespace


def delete_stale(prefix: str) -> list[str]:
    """Remove ``<prefix>A|B<pid>`` namespaces whose pid is gone (a run killed by SIGKILL, e.g. a
    ctest timeout, cannot run its finally). Returns the names removed."""
    if why_unavailable():
        return []
    r = ip("netns", "list")
    gone = []
    for line in r.stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        rest = name[len(prefix) + 1 :]
        if name[: len(prefix)] != prefix or name[len(prefix) : len(prefix) + 1] not in "AB":
            continue
        if not rest.isdigit() or _alive(int(rest)):
            continue
        if ip("netns", "del", name).returncode == 0:
            gone.append(name)
    return gone


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextmanager
def namespaces(prefix: str) -> Iterator[Namespaces]:
    """create() ... delete(), whatever happens in between."""
    ns = create(prefix)
    try:
        yield ns
    finally:
        delete(ns)
