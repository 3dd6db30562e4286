"""``run --relay``: a case's peers with a relay pair in the middle (spec/RELAY.md).

The requester processes use segment NAME_A, the responder processes NAME_B; the runner starts
``python -m shmbridge relay far NAME_B`` and ``... relay near NAME_A`` on a free loopback port.
Which end creates follows the case (R-RELAY-1, R-RELAY-2): a requester that ``--create``s NAME_A
makes the near end attach (else the near end creates it as the far end declares it); a responder
that creates NAME_B makes the far end attach (else the far end creates it with the requester's
declaration). Each segment has one logged peer, so the history is checked per segment with the
relay end as an unlogged peer of the other role (history.check ``hidden``), and the two segments'
rounds are matched by content and time (``match_rounds``), not by seq: the seqs of NAME_A and
NAME_B are independent counters.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

# What the runner checks in every run through a relay, whatever the case (spec/RELAY.md §13):
# the relay ends use the local API (per-segment history, R-RELAY-1), one segment is created from
# the other's declaration (R-RELAY-2), no bad frame (R-RELAY-6), the link comes up (R-RELAY-8),
# the two segments' rounds pair up (R-RELAY-9, R-RELAY-10, R-RELAY-16), exit 0 on SIGTERM
# (R-RELAY-19).
EVERY_RUN = (
    "R-RELAY-1",
    "R-RELAY-2",
    "R-RELAY-6",
    "R-RELAY-8",
    "R-RELAY-9",
    "R-RELAY-10",
    "R-RELAY-16",
    "R-RELAY-19",
)

# What every run of ``run --relay --netns`` adds: the ends bind/connect to a non-loopback address
# with --allow-remote (R-RELAY-17) over a CURVE link with the far end's key pinned and only the
# near end's key admitted (R-RELAY-18).
EVERY_NETNS_RUN = ("R-RELAY-17", "R-RELAY-18")

# The relay ends' flags for a declaration, taken from the creating requester's args.
DECL_FLAGS = ("--dtype", "--shape", "--request-schema", "--reply-schema")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _flags(args: list) -> dict:
    out, i = {}, 0
    while i < len(args):
        a = args[i]
        if a.startswith("--"):
            k, eq, v = a.partition("=")
            if eq:
                out[k] = v
            elif i + 1 < len(args) and not args[i + 1].startswith("--"):
                out[k] = args[i + 1]
                i += 1
            else:
                out[k] = True
        i += 1
    return out


@dataclass(frozen=True)
class Route:
    """Where the two relay ends run and how they reach each other: by default both in this
    namespace on a free loopback port; with ``run --netns`` each end in its own network
    namespace (argv ``prefix``), the far end bound to its veth address (conformance/netns.py)."""

    endpoint: str
    near_prefix: tuple = ()
    far_prefix: tuple = ()
    near_flags: tuple = ()  # e.g. --allow-remote and the CURVE client flags
    far_flags: tuple = ()


def loopback_route() -> Route:
    return Route(f"tcp://127.0.0.1:{free_port()}")


class NamespaceRoutes:
    """``run --relay --netns`` (spec/RELAY.md §13): every run's near end in namespace A, its far
    end in namespace B bound to B's veth address on a port of a per-run counter (B is private to
    the run, so its ports are free whatever the root namespace uses), both ``--allow-remote``
    and, when ``curve`` flags are given, the link encrypted with the run's CurveZMQ keys."""

    FIRST_PORT = 20000

    def __init__(self, ns, curve: tuple[tuple, tuple] = ((), ())):
        self.ns = ns  # conformance.netns.Namespaces
        self.near_curve, self.far_curve = curve
        self._next = self.FIRST_PORT
        self._lock = threading.Lock()

    def route(self) -> Route:
        with self._lock:
            port, self._next = self._next, self._next + 1
        return Route(
            f"tcp://{self.ns.far_addr}:{port}",
            tuple(self.ns.exec_prefix("near")),
            tuple(self.ns.exec_prefix("far")),
            ("--allow-remote", *self.near_curve),
            ("--allow-remote", *self.far_curve),
        )


def curve_keys(python: list, env: dict, keydir: Path) -> tuple[tuple, tuple]:
    """Two key pairs made once per run with ``shmbridge relay keygen`` (R-RELAY-18): the far end
    a CURVE server admitting only the near end's public key (``--curve-clients``), the near end
    a client pinning the far end's key. Returns (near flags, far flags); raises RuntimeError."""
    shutil.rmtree(keydir, ignore_errors=True)  # keygen refuses to overwrite
    (keydir / "clients").mkdir(parents=True)
    for who in ("near", "far"):
        r = subprocess.run([*python, "-m", "shmbridge", "relay", "keygen", str(keydir / who)],
                           capture_output=True, text=True, timeout=60, env=env)  # fmt: skip
        if r.returncode != 0:
            raise RuntimeError(f"shmbridge relay keygen failed (exit {r.returncode}): "
                               f"{r.stderr.strip()[-300:]}")  # fmt: skip
    shutil.copy(keydir / "near.key", keydir / "clients" / "near.key")
    near = ("--curve-secret", str(keydir / "near.key_secret"),
            "--curve-server", str(keydir / "far.key"))  # fmt: skip
    far = ("--curve-secret", str(keydir / "far.key_secret"),
           "--curve-clients", str(keydir / "clients"))  # fmt: skip
    return near, far


RELAY_IMPLS = ("py", "cpp")


def parse_relay_ends(text: str) -> tuple[str, str]:
    """``--relay-ends NEAR,FAR``: each ``py`` (python -m shmbridge relay) or ``cpp``
    (shmbridge-relay, cpp/relay/)."""
    parts = [x.strip() for x in text.split(",")]
    if len(parts) != 2 or any(x not in RELAY_IMPLS for x in parts):
        raise ValueError(
            f"--relay-ends wants NEAR,FAR with each py or cpp (e.g. cpp,py), got {text!r}"
        )
    return parts[0], parts[1]


def relay_commands(ends: tuple[str, str], python: list, cpp_relay: str) -> dict:
    """The argv start of the near and far ends for ``--relay-ends`` (RelayPair ``commands``)."""
    cmd = {"py": [*python, "-m", "shmbridge", "relay"], "cpp": [cpp_relay]}
    return {"near": cmd[ends[0]], "far": cmd[ends[1]]}


class NotRelayable(Exception):
    """The case cannot be run through a relay as written (e.g. nobody declares the message)."""


@dataclass
class RelayEnd:
    end: str  # near | far
    argv: list
    log_path: Path
    err_path: Path
    popen: subprocess.Popen | None = None
    returncode: int | None = None
    lines: list = field(default_factory=list)

    def events(self) -> list:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return []
        out = []
        for raw in text.splitlines():
            try:
                obj = json.loads(raw)
            except ValueError:
                continue
            if isinstance(obj, dict):
                out.append(obj)
        return out


class RelayPair:
    """The two relay ends of one run."""

    def __init__(
        self,
        python: list,
        env: dict,
        name_a: str,
        name_b: str,
        req_args: list,
        rsp_args: list,
        rundir: Path,
        route: Route | None = None,
        commands: dict | None = None,
    ):
        """``commands``: the argv start of each end's implementation, before ``near|far``
        (default for both: ``python -m shmbridge relay``; the C++ ends: ``[shmbridge-relay]``,
        see ``relay_commands``)."""
        self.name_a, self.name_b = name_a, name_b
        self.env = env
        req = [_flags(a) for a in req_args]
        rsp = [_flags(a) for a in rsp_args]
        near_creates = not any("--create" in f for f in req)
        far_creates = not any("--create" in f for f in rsp)
        near = ["near", name_a]
        far = ["far", name_b]
        if near_creates:
            near.append("--create")  # as the far end declares it (R-RELAY-2)
        if far_creates:
            decl = next((f for f in req if "--create" in f), None)
            if decl is None:
                raise NotRelayable(
                    "no process creates a segment: the far end would need a "
                    "declaration and the case gives none"
                )
            far.append("--create")
            given = [k for k in DECL_FLAGS if k in decl]
            if not given:
                raise NotRelayable("the creating requester declares no dtype/shape or schemas")
            for k in given:
                far += [k, str(decl[k])]
        self.near_creates, self.far_creates = near_creates, far_creates
        route = route or loopback_route()
        near += ["--connect", route.endpoint, *route.near_flags]
        far += ["--bind", route.endpoint, *route.far_flags]
        prefix = {"near": list(route.near_prefix), "far": list(route.far_prefix)}
        default = [*python, "-m", "shmbridge", "relay"]
        cmd = {end: list((commands or {}).get(end) or default) for end in ("near", "far")}
        self.ends = {}
        for end, args in (("far", far), ("near", near)):
            log = rundir / f"relay-{end}.log"
            err = rundir / f"relay-{end}.err"
            self.ends[end] = RelayEnd(
                end,
                [*prefix[end], *cmd[end], *args, "--log", str(log)],
                log,
                err,
            )

    def start(self, cwd: Path, far_ready_s: float = 20.0) -> None:
        """The far end first, and the near end once the far end listens (its ``ready`` event,
        or its exit, or ``far_ready_s``): a near end that connects before the far end binds
        meets ZeroMQ's reconnect back-off (100 ms doubling to 1 s, RELAY.md §2), and its HELLOs
        are dropped until it reconnects (IMMEDIATE), so the link came up hundreds of ms after
        the near end's attach: a requester with a short timeout then saw its request withdrawn
        (R-RELAY-8) on a loaded machine."""
        for name in ("far", "near"):
            e = self.ends[name]
            e.log_path.unlink(missing_ok=True)
            with open(e.err_path, "wb") as err:
                e.popen = subprocess.Popen(
                    e.argv,
                    stdout=subprocess.DEVNULL,
                    stderr=err,
                    stdin=subprocess.DEVNULL,
                    cwd=cwd,
                    env=self.env,
                    start_new_session=True,
                )
            if name == "far":
                deadline = time.monotonic() + far_ready_s
                while time.monotonic() < deadline and e.popen.poll() is None:
                    if any(x.get("event") == "ready" for x in e.events()):
                        break
                    time.sleep(0.01)

    def listening(self) -> bool:
        """Both ends have started (their sockets exist) and a far end that creates its segment
        has it: then a requester that creates its segment gets the link up within a heartbeat
        of the near end's attach, not after the relays' Python start-up (a --wait-peer
        requester waits only for the near end's attach, and the near end takes nothing before
        the link is up, R-RELAY-8). An end that exited counts (its failure is reported)."""

        def logged(end: str, what: str) -> bool:
            e = self.ends[end]
            if e.popen is not None and e.popen.poll() is not None:
                return True
            return any(x.get("event") == what for x in e.events())

        return logged("near", "session") and (not self.far_creates or logged("far", "ready"))

    def segment_exists(self, role: str) -> bool:
        return (Path("/dev/shm") / (self.name_a if role == "requester" else self.name_b)).exists()

    def stop(self, timeout: float = 8.0) -> None:
        """SIGTERM: each end closes its segment handle, logs stats and exits 0 (R-RELAY-19)."""
        for e in self.ends.values():
            if e.popen is not None and e.popen.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(e.popen.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for e in self.ends.values():
            if e.popen is None:
                continue
            try:
                e.returncode = e.popen.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(e.popen.pid, signal.SIGKILL)
                e.popen.wait()
                e.returncode = None  # did not stop on SIGTERM
            e.lines = e.events()

    def kill(self) -> None:
        for e in self.ends.values():
            if e.popen is not None and e.popen.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(e.popen.pid, signal.SIGKILL)
                e.popen.wait()

    def command_lines(self) -> str:
        return "\n".join(f"relay {e.end}: {shlex.join(e.argv)}" for e in self.ends.values())


def findings(pair: RelayPair) -> list:
    """(name, ok, requirements, expected, actual) of the relay ends themselves."""
    out = []
    for e in pair.ends.values():
        stderr = ""
        with contextlib.suppress(OSError):
            stderr = e.err_path.read_text(errors="replace").strip()[-300:]
        out.append(
            (
                f"relay {e.end} exit",
                e.returncode == 0,
                ["R-RELAY-19"],
                "exits 0 on SIGTERM after logging stats",
                f"exit {e.returncode}" + (f"; stderr: {stderr}" if stderr else ""),
            )
        )
        bad = [x for x in e.lines if x.get("event") == "bad_frame"]
        out.append(
            (
                f"relay {e.end} frames",
                not bad,
                ["R-RELAY-6"],
                "no message fails W1-W11 between two conforming relay ends",
                f"{len(bad)} bad frame(s)" + (f": {json.dumps(bad[0])[:200]}" if bad else ""),
            )
        )
    near = pair.ends["near"].lines
    out.append(
        (
            "relay link up",
            any(x.get("event") == "up" for x in near),
            ["R-RELAY-8"],
            "the near end logs the link up (HELLO of the far end)",
            "up" if any(x.get("event") == "up" for x in near) else "never up",
        )
    )
    return out


# ---------------------------------------------------------------- matching the two segments


def _key(e: dict):
    """What a message is, whatever segment it crossed: v1 its checksum, v2 its per-field
    checksums and shapes (PEER.md §2, §7.5)."""
    if e.get("checksums") is not None:
        return (tuple(e.get("checksums") or ()), json.dumps(e.get("shapes")))
    return e.get("checksum")


def _rounds(events: list, first: str, second: str) -> list:
    """[(first event, the ok `second` event that completed it or None)] in log order: a send and
    the reply it received, or a take and the reply published for it."""
    out: list = []
    for e in events:
        if e.get("injected"):
            continue
        if e.get("op") == first and e.get("result") == "ok":
            out.append([e, None])
        elif e.get("op") == second and e.get("result") == "ok" and out and out[-1][1] is None:
            out[-1][1] = e
    return out


def match_rounds(req_events: list, rsp_events: list) -> tuple[dict | None, str]:
    """Pair every request the responder took (NAME_B) with a request the requester sent (NAME_A):
    the same content, taken after it was sent, in the same order, each sent request executed at
    most once (R-RELAY-9, R-RELAY-10, R-RELAY-16), every request whose reply the requester
    received executed, and that reply the one its responder published after (R-STATE-6 across the
    hop). Returns ({responder seq: requester seq}, "") or (None, why) when no such pairing
    exists. Repeated contents (an empty array) make the pairing ambiguous: it searches them all."""
    sends = _rounds(req_events, "send", "receive")
    takes = _rounds(rsp_events, "take", "reply")
    n, m = len(sends), len(takes)

    def can_match(i: int, j: int) -> bool:
        (s, got), (t, rep) = sends[i], takes[j]
        if _key(s) != _key(t) or t["t_return"] < s["t_call"]:
            return False
        if got is not None:
            return rep is not None and _key(rep) == _key(got) and rep["t_call"] <= got["t_return"]
        return True

    parent: dict = {(0, 0): None}
    todo = [(0, 0)]
    while todo:
        i, j = todo.pop()
        if (i, j) == (n, m):
            break
        nxt = []
        if i < n and j < m and can_match(i, j):
            nxt.append((i + 1, j + 1))
        if i < n and sends[i][1] is None:  # never executed (withdrawn, PEER_GONE, dropped)
            nxt.append((i + 1, j))
        for st in nxt:
            if st not in parent:
                parent[st] = (i, j)
                todo.append(st)
    if (n, m) not in parent:
        done = max(parent, key=lambda ij: ij[1] * (n + 1) + ij[0])
        i, j = done
        if i < n and j < m and _key(sends[i][0]) == _key(takes[j][0]) and sends[i][1]:
            s, got = sends[i]
            rep = takes[j][1]
            why = (
                f"the requester received for its send #{i + 1} (seq {s.get('seq')}) a reply "
                f"({_key(got)}) that is not the one the responder published for that request "
                f"({_key(rep) if rep else 'none'})"
            )
        elif j < m:
            t = takes[j][0]
            why = (
                f"the responder's take #{j + 1} (seq {t.get('seq')} on the responder's segment) "
                f"matches no request the requester sent and had not yet been executed, in order"
            )
        else:
            s, got = sends[i]
            why = (
                f"the requester received a reply to its send #{i + 1} (seq {s.get('seq')}) "
                f"that no responder published for that request"
            )
        return None, why + f" ({n} sends, {m} takes)"
    mapping: dict = {}
    st = (n, m)
    while parent[st] is not None:
        prev = parent[st]
        if prev[1] != st[1]:  # a matched pair
            mapping[takes[prev[1]][0].get("seq")] = sends[prev[0]][0].get("seq")
        st = prev
    return mapping, ""


def translate(lines: list, mapping: dict) -> list:
    """A responder's log with its seqs (NAME_B) replaced by the requester's (NAME_A) it was
    paired with; unpaired seqs get keys no requester event has."""
    out = []
    for e in lines:
        if "op" in e and e.get("seq") is not None:
            s = e["seq"]
            e = dict(e, seq=mapping.get(s, f"B{s}"))
        out.append(e)
    return out
