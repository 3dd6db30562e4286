"""``run --relay --netns`` (spec/RELAY.md §13): the option's validation, the skip rule (exit 77,
never a pass), the routes that split a relay pair across two namespaces and, where root and
iproute2 allow, one case end to end across them (R-RELAY-17: --allow-remote on a non-loopback
address; R-RELAY-18: the run's CurveZMQ keys)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conformance import REPO_ROOT, netns, relay
from conformance.__main__ import SKIP_EXIT, main


def kit(*args, env=None, timeout=120):
    return subprocess.run([sys.executable, "-m", "conformance", "run", *args], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=timeout, env=env)


def test_netns_without_relay_is_a_usage_error(capsys, tmp_path):
    assert main(["run", "--netns", "--case", "round/float32/3x5x7", "--workdir",
                 str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "--netns" in err and "give --relay too" in err


def test_netns_skips_with_77_and_a_reason_when_namespaces_cannot_be_made(tmp_path):
    """No `ip` on PATH (or not root): one line saying why, exit 77 (ctest SKIP_RETURN_CODE),
    never 0. The relay itself is not needed to get there."""
    env = dict(os.environ, PATH=str(tmp_path))  # the interpreter is called by its full path
    r = kit("--relay", "--netns", "--case", "round/float32/3x5x7", "--pairing", "py-py",
            "--python", sys.executable, "--workdir", str(tmp_path / "runs"), env=env)
    assert r.returncode == SKIP_EXIT, r.stdout + r.stderr
    skip = [ln for ln in r.stdout.splitlines() if ln.startswith("SKIP --netns:")]
    assert len(skip) == 1, r.stdout
    assert "needs root" in skip[0] or "needs the ip command" in skip[0]


def test_routes_put_the_ends_in_two_namespaces_on_private_ports():
    ns = netns.Namespaces("cfnA1", "cfnB1", "cfna1", "cfnb1")
    routes = relay.NamespaceRoutes(ns, (("--curve-server", "f.key"), ("--curve-secret", "f.s")))
    a, b = routes.route(), routes.route()
    assert a.endpoint == f"tcp://{netns.FAR_ADDR}:{relay.NamespaceRoutes.FIRST_PORT}"
    assert b.endpoint != a.endpoint  # one port per run, counted, never reused within the run
    assert a.near_prefix == ("ip", "netns", "exec", "cfnA1")
    assert a.far_prefix == ("ip", "netns", "exec", "cfnB1")
    assert a.near_flags == ("--allow-remote", "--curve-server", "f.key")
    assert a.far_flags == ("--allow-remote", "--curve-secret", "f.s")


def test_relay_pair_argv_carries_the_route(tmp_path):
    route = relay.Route("tcp://10.231.7.2:20000", ("ip", "netns", "exec", "A"),
                        ("ip", "netns", "exec", "B"), ("--allow-remote",), ("--allow-remote", "-x"))
    pair = relay.RelayPair(["py"], {}, "sa", "sb",
                           [["--create", "--dtype", "float32", "--shape", "4"]], [["--attach"]],
                           tmp_path, route)
    near, far = pair.ends["near"].argv, pair.ends["far"].argv
    assert near[:4] == ["ip", "netns", "exec", "A"] and far[:4] == ["ip", "netns", "exec", "B"]
    assert near[near.index("--connect") + 1] == route.endpoint and "--allow-remote" in near
    assert far[far.index("--bind") + 1] == route.endpoint and "-x" in far


def _netns_possible() -> str:
    why = netns.why_unavailable()
    if why:
        return why
    try:
        import zmq  # noqa: F401
    except ImportError:
        return "the relay needs pyzmq (pip install '.[relay]')"
    return ""


@pytest.mark.skipif(bool(_netns_possible()), reason=_netns_possible() or "-")
def test_r_relay_17_18_one_case_end_to_end_across_two_namespaces(tmp_path):
    """A py-py round case through a relay pair split across the run's namespaces: PASS, the ends
    started under `ip netns exec` with --allow-remote and CURVE keys, the namespaces gone."""
    out = tmp_path / "r.json"
    r = kit("--relay", "--netns", "--case", "round/float32/3x5x7", "--pairing", "py-py",
            "--python", sys.executable, "--workdir", str(tmp_path / "runs"), "--json", str(out),
            "--quiet")
    if r.returncode == SKIP_EXIT:
        pytest.skip(r.stdout.strip())
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    run = json.loads(out.read_text())["runs"][0]
    assert run["verdict"] == "PASS"
    near = next(ln for ln in run["note"].splitlines() if ln.startswith("relay near:"))
    far = next(ln for ln in run["note"].splitlines() if ln.startswith("relay far:"))
    assert "ip netns exec cfnA" in near and "ip netns exec cfnB" in far
    assert f"--connect tcp://{netns.FAR_ADDR}:" in near and f"--bind tcp://{netns.FAR_ADDR}:" in far
    assert "--curve-server" in near and "--curve-clients" in far
    left = netns.ip("netns", "list").stdout
    assert not any(n.split()[0].endswith(str(_pid_of(near))) for n in left.splitlines() if n)
    assert not list(Path(tmp_path / "runs").glob("netns-*-keys"))  # the run's keys removed


def _pid_of(near_line: str) -> str:
    """The runner's pid, from its namespace name cfnA<pid>."""
    word = next(w for w in near_line.split() if w.startswith("cfnA"))
    return word[len("cfnA"):]


@pytest.mark.skipif(bool(netns.why_unavailable()), reason=netns.why_unavailable() or "-")
def test_a_killed_runs_namespaces_are_removed_by_the_next_run():
    """A run ended by SIGKILL (a ctest timeout) leaves cfnA/B<pid>; the next run removes the
    namespaces of a pid that is gone, and leaves a live one's alone."""
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    live = str(os.getpid())
    for n in (f"tstA{dead}", f"tstB{dead}", f"tstA{live}"):
        assert netns.ip("netns", "add", n).returncode == 0
    try:
        assert sorted(netns.delete_stale("tst")) == [f"tstA{dead}", f"tstB{dead}"]
        names = [ln.split()[0] for ln in netns.ip("netns", "list").stdout.splitlines() if ln]
        assert f"tstA{live}" in names and f"tstA{dead}" not in names
    finally:
        for n in (f"tstA{dead}", f"tstB{dead}", f"tstA{live}"):
            netns.ip("netns", "del", n)
