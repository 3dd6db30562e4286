"""The relay between two network namespaces the test creates (spec/RELAY.md §7, §8): the near end
in one, the far end in the other, joined by a veth pair; rounds across them, then link loss (the
veth taken down while the far responder holds a request) and recovery. Needs root and
`ip netns`; skipped with the reason printed otherwise. The peers stay in the root namespace
(shared memory is not namespaced by `ip netns exec`)."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("zmq", reason="the relay needs pyzmq (pip install 'shmbridge[relay]')")

from conftest import REPO

# The namespace set-up is shared with the conformance kit (run --relay --netns): stdlib only.
sys.path.insert(0, str(REPO))
from conformance import netns as namespaces
from relay_harness import (
    GONE_BOUND,
    PY,
    Pair,
    Proc,
    attached,
    ops,
    relay_pair,
    summary,
)

V1 = ("--create", "--dtype", "float32", "--shape", "16")


@pytest.fixture
def netns() -> Iterator[namespaces.Namespaces]:
    """Two namespaces joined by a veth pair (conformance/netns.py)."""
    try:
        ns = namespaces.create("sbr")  # the kit's run --netns makes the same (cfn...)
    except namespaces.NetnsUnavailable as e:
        print(f"SKIP netns: {e}")
        pytest.skip(str(e))
    try:
        yield ns
    finally:
        namespaces.delete(ns)


def _in_ns(ns: str, pair: Pair, end: str, *args: str) -> Proc:
    """Start a relay end inside namespace ``ns`` (remote addresses: --allow-remote)."""
    name = pair.near_name if end == "near" else pair.far_name
    flag = "--connect" if end == "near" else "--bind"
    log = pair._log(end)
    cmd = ["ip", "netns", "exec", ns, PY, "-m", "shmbridge", "relay", end, name, flag,
           pair.endpoint, "--allow-remote", "--heartbeat-ms", "100", "--log", str(log),
           *args]  # fmt: skip
    p = Proc(cmd, pair._log(f"{end}_stderr"), env=dict(os.environ))
    p.log = log
    pair.procs.append(p)
    if end == "near":
        pair.near = p
    else:
        pair.far = p
    return p


def test_r_relay_16_link_loss_and_recovery_between_namespaces(
    tmp_path: Path, netns: namespaces.Namespaces
) -> None:
    """R-RELAY-3, R-RELAY-13, R-RELAY-16, R-RELAY-17: verified rounds between two namespaces
    (--allow-remote); then the link drops while the far responder holds round 1: the requester
    gets PEER_GONE within the bound, round 1 is executed once (never re-run after the link comes
    back), its late reply is dropped, and after the link is restored the near end comes up
    again (new session) and the next rounds verify."""
    near_ns, far_ns, far_addr = netns.near_ns, netns.far_ns, netns.far_addr
    with relay_pair(tmp_path, "ns") as pair:
        pair.endpoint = f"tcp://{far_addr}:{pair.port}"
        _in_ns(far_ns, pair, "far", *V1)
        near = _in_ns(near_ns, pair, "near", "--create")
        pair.wait_up(20)
        rsp = attached(pair.peer("py", "responder", "--attach", "--rounds", "5"))
        req = pair.peer("cpp", "requester", "--attach", "--rounds", "5")
        assert req.wait(30) == 0, req.text()
        assert rsp.wait(30) == 0
        assert summary(req)["verified"] == 5

        # link loss while the far responder holds round 1
        rsp = attached(pair.peer("py", "responder", "--attach", "--rounds", "0",
                                 "--delay-before", "T3:1000@1", "--timeout", "20"))  # fmt: skip
        req = pair.peer("py", "requester", "--attach", "--rounds", "1", "--timeout", "10")
        rsp.wait_event(lambda e: e.get("op") == "take" and e.get("result") == "ok", 15, "taken")
        r = namespaces.ip("-n", near_ns, "link", "set", netns.near_if, "down")
        assert r.returncode == 0, r.stderr
        down_at = time.monotonic_ns()
        assert req.wait(30) == 16, req.text()
        rcv = ops(req, "receive")[0]
        took = (rcv["t_return"] - down_at) / 1e9
        print(f"link down -> requester PEER_GONE after {took:.3f} s")
        assert rcv["reply_code"] == 7 and took < GONE_BOUND
        time.sleep(1.5)  # the far responder replies to round 1 while the link is down
        r = namespaces.ip("-n", near_ns, "link", "set", netns.near_if, "up")
        assert r.returncode == 0, r.stderr
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if len([e for e in near.events() if e.get("event") == "up"]) >= 2:
                break
            time.sleep(0.05)
        else:
            pytest.fail(f"near end not up again after the link came back:\n{near.text()}")
        up_again = (time.monotonic_ns() - down_at) / 1e9
        print(f"link restored: near end up again {up_again:.3f} s after the drop")
        req2 = pair.peer("py", "requester", "--attach", "--rounds", "3", "--seed", "8")
        assert req2.wait(30) == 0, req2.text()
        assert summary(req2)["verified"] == 3
        taken = [e["checksum"] for e in ops(rsp, "take") if e["checksum"]]
        sent = [e["checksum"] for e in ops(req, "send") + ops(req2, "send")]
        assert taken == sent  # round 1 once, never again after the link came back
