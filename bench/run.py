"""shmbridge benchmark harness: round trips of every pairing against the floors, the original
design and the alternatives, measured side by side in one run (python -m bench, or
python bench/run.py, from the repository root).

Everything is measured by real peer processes that time their own rounds (steady_clock /
perf_counter_ns) and print JSON; this harness only starts them, interleaves them and reports.
The measurement of one size is split into passes; every pass runs every system once at that size
(floors first), in a rotated order, so that the noise of a shared machine falls on all of them
alike. Ratios are taken between figures of the same run.

    python -m bench [--quick] [--build-dir build] [--out bench/results] [--sizes 64,4096,...]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "bench"
KiB, MiB = 1024, 1024 * 1024
SIZES_FULL = [64, 4 * KiB, 64 * KiB, MiB, 16 * MiB, 256 * MiB]
SIZES_QUICK = [64, 64 * KiB, MiB, 16 * MiB]
SPIN_BLOCKING_US = 100.0  # the library default (R-WAIT-1)
SPIN_SPIN_US = 1e6  # "spin mode": a budget longer than any round
PAIRINGS = [("cpp", "cpp"), ("cpp", "py"), ("py", "cpp"), ("py", "py")]
# The camera scenario (bench/README.md): a (480, 640, 3) uint8 frame + a float64 stamp -> up to
# 100 x 6 float32, in protocol v2 and squeezed into one v1 array; its work floor copies both.
CAMERA_REQUEST_BYTES = 480 * 640 * 3 + 8
CAMERA_REPLY_BYTES = 100 * 6 * 4
CAMERA_SYSTEMS = {"camera v2": "2", "camera v1 (one array)": "1"}
MODES = {"blocking": SPIN_BLOCKING_US, "spin": SPIN_SPIN_US}


def rounds_for(size: int, quick: bool) -> int:
    """Total timed rounds per system and size (split over the passes)."""
    table = {64: 4000, 4 * KiB: 4000, 64 * KiB: 2000, MiB: 600, 16 * MiB: 60, 256 * MiB: 8}
    n = table.get(size, max(8, int(600 * MiB / max(size, 1))))
    return max(4, n // 4) if quick else n


def original_rounds(size: int, quick: bool) -> int:
    if size >= 256 * MiB:
        return 4
    if size >= 16 * MiB:
        return 10
    return 20 if quick else 40


# ---------------------------------------------------------------------------------------------
# Environment
# ---------------------------------------------------------------------------------------------


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def git_commit() -> tuple[str, bool]:
    try:
        c = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"],
            cwd=REPO,
            text=True,
            capture_output=True,
            check=True,
        ).stdout.strip()
        dirty = (
            subprocess.run(
                ["git", "status", "--porcelain", "--", "cpp", "python"],
                cwd=REPO,
                text=True,
                capture_output=True,
            ).stdout.strip()
            != ""
        )
        return c, dirty
    except (OSError, subprocess.CalledProcessError):
        return "unknown", False


def machine_info() -> dict[str, Any]:
    import numpy

    try:
        load = os.getloadavg()
    except OSError:
        load = (0.0, 0.0, 0.0)
    return {
        "cpu_model": cpu_model(),
        "cores": os.cpu_count(),
        "kernel": platform.release(),
        "host": socket.gethostname(),
        "python": sys.version.split()[0],
        "numpy": numpy.__version__,
        "loadavg_start": list(load),
    }


def python_env(args: argparse.Namespace) -> dict[str, str]:
    """The environment for the Python peers: shmbridge importable (installed, or python/)."""
    env = dict(os.environ)
    probe = [sys.executable, "-c", "import shmbridge, shmbridge._native"]
    if args.pythonpath:
        env["PYTHONPATH"] = args.pythonpath + os.pathsep + env.get("PYTHONPATH", "")
    if subprocess.run(probe, env=env, capture_output=True).returncode == 0:
        return env
    alt = dict(env)
    alt["PYTHONPATH"] = str(REPO / "python") + os.pathsep + env.get("PYTHONPATH", "")
    if subprocess.run(probe, env=alt, capture_output=True).returncode == 0:
        return alt
    raise SystemExit(
        "bench: the shmbridge Python package is not importable; run `pip install .` "
        "from the repository root (or pass --pythonpath DIR)"
    )


@dataclass
class Tools:
    build: Path
    peer: Path
    floors: Path
    original: Path
    micro: Path | None
    env: dict[str, str]
    alternatives: dict[str, Any] = field(default_factory=dict)

    def peer_cmd(self, lang: str) -> list[str]:
        if lang == "cpp":
            return [str(self.peer)]
        if lang == "pybare":  # the Python floor: a responder with no library logic
            return [sys.executable, str(BENCH / "py" / "bare_peer.py")]
        return [sys.executable, str(BENCH / "py" / "bench_peer.py")]


def find_tools(args: argparse.Namespace) -> Tools:
    b = Path(args.build_dir).resolve() / "bench"
    need = {
        "bench_peer": b / "bench_peer",
        "bench_floors": b / "bench_floors",
        "bench_original": b / "bench_original",
    }
    missing = [k for k, p in need.items() if not p.exists()]
    if missing:
        raise SystemExit(
            f"bench: {', '.join(missing)} not found in {b}; build them with\n"
            f"  cmake -S . -B {args.build_dir} -G Ninja -DCMAKE_BUILD_TYPE=Release "
            f"-DSHMBRIDGE_BUILD_BENCH=ON && cmake --build {args.build_dir} -j2"
        )
    micro = b / "bench_micro"
    return Tools(
        b,
        need["bench_peer"],
        need["bench_floors"],
        need["bench_original"],
        micro if micro.exists() else None,
        python_env(args),
    )


# ---------------------------------------------------------------------------------------------
# Running peers
# ---------------------------------------------------------------------------------------------

_seq = 0


def seg_name() -> str:
    global _seq
    _seq += 1
    return f"shmbB{os.getpid() % 100000}_{_seq}"


class PeerError(RuntimeError):
    pass


def _kill(p: subprocess.Popen[str]) -> None:
    if p.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            p.send_signal(signal.SIGKILL)
        p.wait()


def _json_line(text: str, what: str) -> dict[str, Any]:
    for line in reversed(text.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            return json.loads(line)
    raise PeerError(f"{what}: no JSON result in its output")


def _pinner(cpu: int, env: dict[str, str]) -> Any:
    """preexec_fn pinning a peer to one CPU when SHMB_BENCH_PIN=1 (--pin)."""
    if env.get("SHMB_BENCH_PIN") != "1" or not hasattr(os, "sched_setaffinity"):
        return None
    return lambda: os.sched_setaffinity(0, {cpu})


def _spawn(cmd: list[str], env: dict[str, str], cpu: int) -> subprocess.Popen[str]:
    """A peer process with piped text output, pinned to ``cpu`` under --pin."""
    return subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=REPO,
        preexec_fn=_pinner(cpu, env),
    )


def run_pair(
    req_cmd: list[str], rsp_cmd: list[str] | None, env: dict[str, str], timeout: float, what: str
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Start the requester (creator), wait for READY, start the responder; collect both JSONs.
    With --pin the requester runs on CPU 0 and the responder on CPU 1."""
    req = _spawn(req_cmd, env, cpu=0)
    rsp = None
    try:
        assert req.stdout is not None
        line = req.stdout.readline()
        if line.strip() != "READY":
            _kill(req)
            raise PeerError(
                f"{what}: requester failed to start: {line.strip()} "
                f"{req.stderr.read().strip() if req.stderr else ''}"
            )
        if rsp_cmd:
            rsp = _spawn(rsp_cmd, env, cpu=1)
        out, err = req.communicate(timeout=timeout)
        if req.returncode != 0:
            raise PeerError(f"{what}: requester exited {req.returncode}: {err.strip()[-400:]}")
        res = _json_line(out, what)
        rres = None
        if rsp is not None:
            try:
                rout, _ = rsp.communicate(timeout=10)
                if rsp.returncode == 0:
                    rres = _json_line(rout, what + " responder")
            except (subprocess.TimeoutExpired, PeerError, ValueError):
                pass  # the responder's own figures are optional (original.py prints none)
        return res, rres
    except subprocess.TimeoutExpired as e:
        raise PeerError(f"{what}: timed out after {timeout:.0f} s") from e
    finally:
        _kill(req)
        if rsp is not None:
            _kill(rsp)


def run_json(cmd: list[str], env: dict[str, str], timeout: float, what: str) -> dict[str, Any]:
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout, cwd=REPO)
    except subprocess.TimeoutExpired as e:
        raise PeerError(f"{what}: timed out after {timeout:.0f} s") from e
    if p.returncode != 0:
        raise PeerError(f"{what}: exited {p.returncode}: {p.stderr.strip()[-400:]}")
    return _json_line(p.stdout, what)


# ---------------------------------------------------------------------------------------------
# Statistics
# ---------------------------------------------------------------------------------------------


def pct(sorted_x: list[int], q: float) -> float:
    if not sorted_x:
        return float("nan")
    i = min(len(sorted_x) - 1, max(0, round(q * (len(sorted_x) - 1))))
    return float(sorted_x[i])


def summarize(samples: list[int]) -> dict[str, float]:
    x = sorted(samples)
    return {
        "n": len(x),
        "p50_ns": pct(x, 0.50),
        "p90_ns": pct(x, 0.90),
        "p99_ns": pct(x, 0.99),
        "max_ns": float(x[-1]) if x else float("nan"),
        "mean_ns": (sum(x) / len(x)) if x else float("nan"),
    }


# ---------------------------------------------------------------------------------------------
# The cells of one run
# ---------------------------------------------------------------------------------------------


@dataclass
class Cell:
    key: str  # unique, e.g. "shmbridge cpp→py blocking"
    system: str  # shmbridge / original / pipe / zmq / iceoryx2
    pairing: str  # cpp→py, py→py, ...
    mode: str  # blocking / spin / poll-10ms / busy-poll / kernel
    size: int
    rounds: int
    samples: list[int] = field(default_factory=list)
    pass_p50: dict[str, float] = field(default_factory=dict)  # pass number -> p50 of that pass
    extra: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    zero_copy: bool = False  # the zero-copy round (bench_peer --zero-copy 1)
    bare: str = ""  # the side(s) run by bench/py/bare_peer.py: requester / responder / both
    # pass number -> p50 of the cross-process floor run just before this cell in that pass
    # (adjacent_floor_kind); see run_cells_pass.
    adjacent_floor: dict[str, float] = field(default_factory=dict)

    @property
    def adjacent_floor_kind(self) -> str | None:
        """The cross-process floor a blocking round of this cell is judged against: the
        add-only round (zero-copy) or the bare protocol round (copying); None for cells without
        one (other modes and systems, sizes above 16 MiB)."""
        if self.mode != "blocking" or self.size > 16 * MiB:
            return None
        if self.system not in ("shmbridge", "shmbridge zero-copy", "python floor"):
            return None
        return "addonly" if self.zero_copy else "proto4"

    def add(self, res: dict[str, Any], pass_no: int = 0) -> None:
        self.samples.extend(int(v) for v in res["samples_ns"])
        if res["samples_ns"]:
            self.pass_p50[str(pass_no)] = summarize(res["samples_ns"])["p50_ns"]
        for k in ("errors", "cpu_s", "wall_s", "minor_faults"):
            if k in res:
                self.extra[k] = self.extra.get(k, 0) + res[k]


def shmbridge_cells(size: int, quick: bool) -> list[Cell]:
    """The copying round in both modes and the zero-copy round (blocking) of every pairing."""
    out = []
    for rq, rs in PAIRINGS:
        out.append(
            Cell(
                f"shmbridge zero-copy {rq}→{rs} blocking",
                "shmbridge zero-copy",
                f"{rq}→{rs}",
                "blocking",
                size,
                rounds_for(size, quick),
                zero_copy=True,
            )
        )
    for mode in MODES:
        for rq, rs in PAIRINGS:
            out.append(
                Cell(
                    f"shmbridge {rq}→{rs} {mode}",
                    "shmbridge",
                    f"{rq}→{rs}",
                    mode,
                    size,
                    rounds_for(size, quick),
                )
            )
    return out


def python_floor_cells(size: int, quick: bool) -> list[Cell]:
    """The Python floors (bench/py/bare_peer.py: a side with no library logic) where a target
    with a Python side is judged: what any Python responder costs (cpp→py: the 64 B
    per-operation cost, the 1 MiB copying round) and any Python requester (py→cpp: the same, and
    the 1 MiB zero-copy round against the original), and both sides bare at 64 B (py→py p50)."""
    wanted = {
        64: [
            ("cpp→py", "responder", False),
            ("py→cpp", "requester", False),
            ("py→py", "both", False),
        ],
        MiB: [
            ("cpp→py", "responder", False),
            ("py→cpp", "requester", False),
            ("py→cpp", "requester", True),
        ],
    }
    return [
        Cell(
            f"python floor {pairing}{' zero-copy' if zero_copy else ''} blocking",
            "python floor",
            pairing,
            "blocking",
            size,
            rounds_for(size, quick),
            zero_copy=zero_copy,
            bare=bare,
        )
        for pairing, bare, zero_copy in wanted.get(size, [])
    ]


def camera_cells(quick: bool) -> list[Cell]:
    """The camera scenario in every pairing, blocking mode (the library default)."""
    return [
        Cell(
            f"{system} {rq}→{rs}",
            system,
            f"{rq}→{rs}",
            "blocking",
            CAMERA_REQUEST_BYTES,
            rounds_for(MiB, quick),
        )
        for system in CAMERA_SYSTEMS
        for rq, rs in PAIRINGS
    ]


def camera_floors_pass(tools: Tools, rounds: int, fl: dict[str, Any], pass_no: int) -> None:
    """The camera work floor of this pass in each language: one copy of the request
    (CAMERA_REQUEST_BYTES) + one copy of the largest reply (CAMERA_REPLY_BYTES), C++ memcpy and
    numpy copyto; kept under fl["_camera"] (the per-size floors do not list it)."""
    cam = fl.setdefault("_camera", {"passes": {}, "copy_cpp": [], "copy_py": []})
    cur = {"copy_cpp": 0.0, "copy_py": 0.0}
    for size in (CAMERA_REQUEST_BYTES, CAMERA_REPLY_BYTES):
        r, p = copy_floors(tools, size, rounds)
        cur["copy_cpp"] += summarize(r["memcpy_ns"])["p50_ns"]
        cur["copy_py"] += summarize(p["copy_ns"])["p50_ns"]
    cam["passes"][str(pass_no)] = cur
    cam["copy_cpp"].append(cur["copy_cpp"])
    cam["copy_py"].append(cur["copy_py"])


def run_camera(
    tools: Tools, quick: bool, passes: int, budget: float, fl: dict[str, Any]
) -> list[Cell]:
    """The camera cells, interleaved in passes as the sizes are, each pass after its floors."""
    cells = camera_cells(quick)
    for i in range(passes):
        log(f"camera scenario: pass {i + 1}/{passes}")
        try:
            camera_floors_pass(tools, 200 if quick else 600, fl, i)
        except PeerError as e:
            log(f"camera floors failed: {e}")
        run_cells_pass(cells, tools, passes, budget, i)
    return cells


def run_cells_pass(cells: list[Cell], tools: Tools, passes: int, budget: float, i: int) -> None:
    """Pass i of these cells, in an order rotated by i; a failing cell is not run again."""
    k = i % len(cells)
    for c in cells[k:] + cells[:k]:
        if c.error:
            continue
        per = max(2, c.rounds // passes)
        warm = max(2, min(200, per // 5)) if c.system != "original" else 2
        try:
            kind = c.adjacent_floor_kind
            if kind:
                # The floor right before the cell: this VM's cross-core speed changes within
                # seconds (the two vCPUs move between caches), so a floor taken at the start
                # of the pass can come from another state than the cell (bench/README.md).
                r = pingpong_floor(tools, kind, c.size, SPIN_BLOCKING_US)
                c.adjacent_floor[str(i)] = summarize(r)["p50_ns"]
            run_cell_pass(c, tools, per, warm, budget, i)
        except PeerError as e:
            c.error = str(e)
            log(f"ERROR {e}")


def _unlink_segment(name: str) -> None:
    """A peer killed on a timeout cannot unlink its segment: remove it (POSIX shm of `name`)."""
    with contextlib.suppress(OSError):
        Path("/dev/shm", name).unlink()


def run_cell_pass(
    c: Cell, tools: Tools, rounds: int, warmup: int, budget: float, pass_no: int = 0
) -> None:
    name = seg_name()
    try:
        _run_cell_pass(c, tools, rounds, warmup, budget, pass_no, name)
    finally:
        _unlink_segment(name)


def _run_cell_pass(
    c: Cell, tools: Tools, rounds: int, warmup: int, budget: float, pass_no: int, name: str
) -> None:
    timeout = 120 + rounds * max(1.0, c.size / MiB) * 0.05
    if c.system in ("shmbridge", "shmbridge zero-copy", "python floor"):
        rq, rs = c.pairing.split("→")
        if c.bare in ("requester", "both"):
            rq = "pybare"  # the bare Python requester (bench/py/bare_peer.py)
        if c.bare in ("responder", "both"):
            rs = "pybare"  # the bare Python responder
        spin = str(MODES[c.mode])
        req = [
            *tools.peer_cmd(rq),
            "requester",
            "--name",
            name,
            "--bytes",
            str(c.size),
            "--rounds",
            str(rounds),
            "--warmup",
            str(warmup),
            "--spin-us",
            spin,
            "--timeout",
            "60",
            "--max-seconds",
            str(budget),
        ]
        if c.zero_copy:
            req += ["--zero-copy", "1"]
        rsp = [
            *tools.peer_cmd(rs),
            "responder",
            "--name",
            name,
            "--spin-us",
            spin,
            "--timeout",
            "60",
        ]
        res, rres = run_pair(req, rsp, tools.env, timeout, c.key)
        c.add(res, pass_no)
        if rres:
            c.extra["responder_cpu_s"] = c.extra.get("responder_cpu_s", 0) + rres.get("cpu_s", 0)
            c.extra["responder_minor_faults"] = c.extra.get("responder_minor_faults", 0) + rres.get(
                "minor_faults", 0
            )
    elif c.system in CAMERA_SYSTEMS:
        rq, rs = c.pairing.split("→")
        common = ["--protocol", CAMERA_SYSTEMS[c.system], "--name", name]
        common += ["--spin-us", str(MODES[c.mode]), "--timeout", "60"]
        req = [*tools.peer_cmd(rq), "camera-requester", *common, "--rounds", str(rounds)]
        req += ["--warmup", str(warmup), "--max-seconds", str(budget)]
        res, _ = run_pair(
            req, [*tools.peer_cmd(rs), "camera-responder", *common], tools.env, timeout, c.key
        )
        c.add(res, pass_no)
    elif c.system == "original":
        rows, cols = (512, 512) if c.size == MiB else (1, c.size // 4)
        req = [
            str(tools.original),
            "--name",
            name,
            "--rounds",
            str(rounds),
            "--warmup",
            str(min(warmup, 3)),
            "--rows",
            str(rows),
            "--cols",
            str(cols),
        ]
        rsp = [
            sys.executable,
            str(BENCH / "original" / "original.py"),
            "--name",
            name,
            "--rounds",
            str(rounds + min(warmup, 3)),
            "--rows",
            str(rows),
            "--cols",
            str(cols),
        ]
        res, _ = run_pair(req, rsp, tools.env, timeout + rounds * 0.5, c.key)
        c.add(res, pass_no)
    else:  # alternatives: python requester + spawned python responder in one command
        cmd = [
            sys.executable,
            str(BENCH / "py" / "alt_peers.py"),
            c.system,
            "--bytes",
            str(c.size),
            "--rounds",
            str(rounds),
            "--warmup",
            str(warmup),
            "--max-seconds",
            str(budget),
        ]
        c.add(run_json(cmd, tools.env, timeout, c.key), pass_no)


def floors_pass(
    size: int, rounds: int, tools: Tools, fl: dict[str, Any], pass_no: int = 0, pp_rounds: int = 0
) -> None:
    """memcpy / add / work floors of C++ and numpy at `size` (one pass), and the raw ping-pong
    floors (spin, spinfutex) of this pass, so that every ratio can be taken within one pass."""
    per_pass = fl.setdefault("_passes", {}).setdefault(str(size), {})
    cur: dict[str, float] = {}
    for kind in ("spin", "spinfutex") if pp_rounds else ():
        r = run_json(
            [
                str(tools.floors),
                "pingpong",
                "--kind",
                kind,
                "--rounds",
                str(pp_rounds),
                "--spin-us",
                str(SPIN_BLOCKING_US),
            ],
            tools.env,
            120,
            f"pingpong {kind}",
        )
        cur["pingpong_" + kind] = summarize(r["samples_ns"])["p50_ns"]
    # The bare protocol round at this size (4 CAS, copy in/out, add; no library), with the
    # waiting policy of each mode: the cross-process floor of a round.
    if size <= 16 * MiB:
        for mode, spin in MODES.items():
            samples = pingpong_floor(tools, "proto4", size, spin)
            cur["proto4_" + mode] = summarize(samples)["p50_ns"]
            fl.setdefault("_proto4", {}).setdefault(str(size), {}).setdefault(mode, []).extend(
                samples
            )
    # The zero-copy round's floor at this size: the protocol round with the responder's add and
    # no copies (bench_floors --kind addonly), blocking policy.
    samples = pingpong_floor(tools, "addonly", size, SPIN_BLOCKING_US)
    cur["addonly_blocking"] = summarize(samples)["p50_ns"]
    fl.setdefault("_addonly", {}).setdefault(str(size), []).extend(samples)
    r, p = copy_floors(tools, size, rounds)
    d = fl.setdefault(
        str(size),
        {k: [] for k in ("memcpy_cpp", "add_cpp", "work_cpp", "copy_py", "add_py", "work_py")},
    )
    d["memcpy_cpp"] += r["memcpy_ns"]
    d["add_cpp"] += r["add_ns"]
    d["work_cpp"] += r["work_ns"]
    d["copy_py"] += p["copy_ns"]
    d["add_py"] += p["add_ns"]
    d["work_py"] += p["work_ns"]
    for k, v in (
        ("memcpy_cpp", r["memcpy_ns"]),
        ("add_cpp", r["add_ns"]),
        ("copy_py", p["copy_ns"]),
        ("add_py", p["add_ns"]),
    ):
        cur[k] = summarize(v)["p50_ns"]
    per_pass[str(pass_no)] = cur


def pingpong_floor(tools: Tools, kind: str, size: int, spin_us: float) -> list[int]:
    """The samples of one cross-process floor run at ``size``: proto4 (the bare protocol round:
    4 CAS, copy in/out, add) or addonly (the same with the add only), waiting as ``spin_us``."""
    if kind == "proto4":
        rounds = 2000 if size <= 64 * KiB else 200 if size <= MiB else 20
    else:
        rounds = 2000 if size <= 64 * KiB else 200 if size <= MiB else 20 if size <= 16 * MiB else 4
    r = run_json(
        [
            str(tools.floors),
            "pingpong",
            "--kind",
            kind,
            "--bytes",
            str(size),
            "--rounds",
            str(rounds),
            "--spin-us",
            str(spin_us),
        ],
        tools.env,
        600,
        f"{kind} {size}",
    )
    samples: list[int] = r["samples_ns"]
    return samples


def copy_floors(tools: Tools, size: int, rounds: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """The C++ (bench_floors copy) and numpy (alt_peers.py pyfloor) copy/add/work samples of
    `size` bytes."""
    r = run_json(
        [str(tools.floors), "copy", "--bytes", str(size), "--rounds", str(rounds)],
        tools.env,
        600,
        f"floors copy {size}",
    )
    p = run_json(
        [
            sys.executable,
            str(BENCH / "py" / "alt_peers.py"),
            "pyfloor",
            "--bytes",
            str(size),
            "--rounds",
            str(rounds),
        ],
        tools.env,
        600,
        f"floors numpy {size}",
    )
    return r, p


def pingpong_floors(tools: Tools, rounds: int, passes: int) -> dict[str, dict[str, float]]:
    kinds = ["spin", "futex", "spinfutex", "spinyield", "proto4"]
    samples: dict[str, list[int]] = {k: [] for k in kinds}
    for i in range(passes):
        order = kinds[i % len(kinds) :] + kinds[: i % len(kinds)]
        for k in order:
            r = run_json(
                [
                    str(tools.floors),
                    "pingpong",
                    "--kind",
                    k,
                    "--rounds",
                    str(rounds // passes),
                    "--spin-us",
                    str(SPIN_BLOCKING_US),
                ],
                tools.env,
                300,
                f"pingpong {k}",
            )
            samples[k] += r["samples_ns"]
    return {k: summarize(v) for k, v in samples.items()}


def run_idle(tools: Tools, seconds: float) -> list[dict[str, Any]]:
    """CPU time of a responder waiting `seconds` for a request that never comes; all cells run
    at the same time (CPU time is per process), each reports its own getrusage/os.times delta,
    and the harness adds the child's total rusage (including start-up) from wait4."""
    procs = []
    names = []
    for lang in ("cpp", "py"):
        for mode, spin in MODES.items():
            names.append(seg_name())
            cmd = [
                *tools.peer_cmd(lang),
                "idle",
                "--name",
                names[-1],
                "--seconds",
                str(seconds),
                "--spin-us",
                str(spin),
                "--bytes",
                str(MiB),
            ]
            procs.append(({"system": "shmbridge", "lang": lang, "mode": mode}, cmd))
    procs.append(
        (
            {"system": "original", "lang": "py", "mode": "poll-10ms"},
            [
                sys.executable,
                str(BENCH / "original" / "original.py"),
                "--idle",
                str(seconds),
                "--name",
                seg_name(),
            ],
        )
    )
    running = []
    for meta, cmd in procs:
        p = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=tools.env, cwd=REPO
        )
        running.append((meta, p))
    out = []
    deadline = time.monotonic() + seconds + 60
    for meta, p in running:
        row = dict(meta)
        try:
            while p.poll() is None and time.monotonic() < deadline:
                time.sleep(0.05)
            if p.poll() is None:
                _kill(p)
                row["error"] = "did not finish"
                out.append(row)
                continue
            so = p.stdout.read() if p.stdout else ""
            res = _json_line(so, f"idle {meta}")
            row.update(
                wall_s=res["wall_s"],
                cpu_s=res["cpu_s"],
                cpu_pct=100.0 * res["cpu_s"] / max(res["wall_s"], 1e-9),
                outcome=res.get("outcome", ""),
            )
        except (PeerError, ValueError) as e:
            row["error"] = str(e)
        out.append(row)
    for n in names:
        _unlink_segment(n)
    return out


def run_micro(tools: Tools, quick: bool) -> list[dict[str, Any]]:
    if tools.micro is None:
        return []
    # A plain number of seconds: accepted by Google Benchmark 1.7 (Debian 12) and later.
    cmd = [
        str(tools.micro),
        "--benchmark_format=json",
        "--benchmark_min_time=0.02" if quick else "--benchmark_min_time=0.2",
    ]
    if quick:
        cmd.append("--benchmark_filter=steady|relax|cas|futex|decide")
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=300)
    if p.returncode != 0:
        return [{"error": p.stderr.strip()[-300:]}]
    data = json.loads(p.stdout)
    return [
        {
            "name": b["name"],
            "real_time_ns": b["real_time"]
            if b.get("time_unit") == "ns"
            else b["real_time"] * {"us": 1e3, "ms": 1e6, "s": 1e9}.get(b.get("time_unit"), 1),
            "bytes_per_second": b.get("bytes_per_second"),
        }
        for b in data.get("benchmarks", [])
    ]


# ---------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument(
        "--quick", action="store_true", help="CI mode: sizes up to 16 MiB, fewer rounds, idle 3 s"
    )
    ap.add_argument("--build-dir", default=os.environ.get("SHMBRIDGE_BUILD_DIR", "build"))
    ap.add_argument("--out", default=str(BENCH / "results"))
    ap.add_argument("--sizes", help="comma-separated payload sizes in bytes")
    ap.add_argument("--passes", type=int, help="interleaved passes per size (default 3, quick 1)")
    ap.add_argument("--idle-seconds", type=float)
    ap.add_argument(
        "--cell-seconds",
        type=float,
        help="time budget of one system's timed rounds per pass (default 3, quick 0.4)",
    )
    ap.add_argument("--pythonpath", help="prepended to PYTHONPATH of the Python peers")
    ap.add_argument(
        "--pin",
        action="store_true",
        help="pin the requester to CPU 0 and the "
        "responder to CPU 1 (all systems and the ping-pong floor): removes the "
        "scheduler's choice of putting both peers on one core",
    )
    ap.add_argument(
        "--camera",
        choices=["on", "off", "only"],
        default="on",
        help="the camera scenario (v2 vs v1, 4 pairings): with the sizes (on, the default), "
        "not at all (off), or alone (only: no sizes, idle or micro-benchmarks)",
    )
    ap.add_argument("--no-alternatives", action="store_true")
    ap.add_argument("--no-plots", action="store_true")
    ap.add_argument("--tag", default="", help="appended to the result file names")
    return ap.parse_args(argv)


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    quick = args.quick
    sizes = (
        [int(s) for s in args.sizes.split(",")]
        if args.sizes
        else SIZES_QUICK
        if quick
        else SIZES_FULL
    )
    if args.camera == "only":
        sizes = []
    passes = args.passes or (1 if quick else 3)
    idle_s = args.idle_seconds or (3.0 if quick else 10.0)
    tools = find_tools(args)
    if args.pin:
        if (os.cpu_count() or 1) < 2 or not hasattr(os, "sched_setaffinity"):
            raise SystemExit("bench: --pin needs 2 CPUs and sched_setaffinity")
        tools.env["SHMB_BENCH_PIN"] = "1"
    else:
        tools.env.pop("SHMB_BENCH_PIN", None)
    # Time budget of the timed rounds of one system in one pass (a pathological cell, e.g. two
    # spinning processes on an oversubscribed machine, stops early instead of taking minutes).
    budget = args.cell_seconds or (0.4 if quick else 3.0)
    t_start = time.monotonic()
    now = _dt.datetime.now(_dt.timezone.utc)
    commit, dirty = git_commit()
    meta = {
        "date": now.isoformat(timespec="seconds"),
        "commit": commit,
        "dirty_tree": dirty,
        "mode": "quick" if quick else "full",
        "passes": passes,
        "machine": machine_info(),
        "spin_us": MODES,
        "pinned": bool(args.pin),
    }
    skipped: dict[str, str] = {}
    alts: list[str] = []
    if not args.no_alternatives:
        try:
            probe = run_json(
                [sys.executable, str(BENCH / "py" / "alt_peers.py"), "probe"],
                tools.env,
                120,
                "probe",
            )
        except PeerError as e:
            probe = {
                "zmq": {"ok": False, "reason": str(e)},
                "iceoryx2": {"ok": False, "reason": str(e)},
                "pipe": {"ok": True},
            }
        for name in ("pipe", "zmq", "iceoryx2"):
            if probe.get(name, {}).get("ok"):
                alts.append(name)
            else:
                skipped[name] = probe.get(name, {}).get("reason", "unavailable")
                log(f"skipping {name}: {skipped[name]}")
    meta["alternatives"] = {k: v for k, v in (probe.items() if not args.no_alternatives else [])}

    log(
        f"{meta['machine']['cpu_model']}, {meta['machine']['cores']} cores, commit {commit}; "
        f"sizes {sizes}, {passes} passes"
    )
    log("raw ping-pong floors")
    pingpong = pingpong_floors(tools, 20000 if not quick else 2000, passes)

    cells: list[Cell] = []
    floors_raw: dict[str, Any] = {}
    for size in sizes:
        sc = shmbridge_cells(size, quick) + python_floor_cells(size, quick)
        if size <= 256 * MiB and (not quick or size == MiB or size == 64):
            sc.append(
                Cell(
                    "original (sleep 10 ms)",
                    "original",
                    "cpp→py",
                    "poll-10ms",
                    size,
                    original_rounds(size, quick),
                )
            )
        for a in alts:
            if a == "iceoryx2" and size > 16 * MiB:
                continue  # default iceoryx2 pools; measured up to 16 MiB
            sc.append(
                Cell(
                    f"{a}",
                    a,
                    "py→py",
                    "busy-poll" if a == "iceoryx2" else "kernel",
                    size,
                    rounds_for(size, quick),
                )
            )
        cells += sc
        fl_rounds = max(20 * passes if size >= 16 * MiB else 20, min(2000, rounds_for(size, quick)))
        for i in range(passes):
            log(f"size {size}: pass {i + 1}/{passes}")
            try:
                floors_pass(
                    size,
                    max(4, fl_rounds // passes),
                    tools,
                    floors_raw,
                    i,
                    3000 if size <= MiB else 0,
                )
            except PeerError as e:
                log(f"floors failed: {e}")
            run_cells_pass(sc, tools, passes, budget, i)

    if args.camera != "off":
        cells += run_camera(tools, quick, passes, budget, floors_raw)

    idle: list[dict[str, Any]] = []
    micro: list[dict[str, Any]] = []
    if args.camera != "only":
        log("idle CPU")
        idle = run_idle(tools, idle_s)
        log("micro-benchmarks")
        try:
            micro = run_micro(tools, quick)
        except (subprocess.TimeoutExpired, OSError, ValueError) as e:
            micro = [{"error": str(e)}]
    meta["duration_s"] = round(time.monotonic() - t_start, 1)
    with contextlib.suppress(OSError):
        meta["machine"]["loadavg_end"] = list(os.getloadavg())

    from . import report  # rich/matplotlib only needed here

    result = report.build(meta, sizes, cells, floors_raw, pingpong, idle, micro, skipped)
    paths = report.write(result, Path(args.out), args.tag, plots=not args.no_plots)
    report.print_tables(result)
    for p in paths:
        log(f"wrote {p.relative_to(REPO) if p.is_relative_to(REPO) else p}")
    bad = [
        c.key
        for c in cells
        if c.error and (c.system.startswith("shmbridge") or c.system in CAMERA_SYSTEMS)
    ]
    if bad:
        log(f"{len(bad)} shmbridge cell(s) failed")
        return 1
    return 0


if __name__ == "__main__":
    # `python bench/run.py` (not as a module): make `bench` importable.
    sys.path.insert(0, str(REPO))
    from bench.run import main as _main

    raise SystemExit(_main())
