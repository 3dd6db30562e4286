"""Ratios, targets, terminal tables (rich), JSON and PNG plots of one benchmark run."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

KiB, MiB = 1024, 1024 * 1024


def fmt_size(n: int) -> str:
    if n >= MiB and n % MiB == 0:
        return f"{n // MiB} MiB"
    if n >= KiB and n % KiB == 0:
        return f"{n // KiB} KiB"
    return f"{n} B"


def fmt_us(ns: float) -> str:
    if ns is None or math.isnan(ns):
        return "—"
    us = ns / 1e3
    if us >= 10000:
        return f"{us / 1e3:,.1f} ms"
    if us >= 100:
        return f"{us:,.0f} µs"
    return f"{us:.2f} µs"


def fmt_x(x: float | None, digits: int = 2) -> str:
    if x is None or math.isnan(x):
        return "—"
    if x >= 100:
        return f"{x:,.0f}×"
    return f"{x:.{digits}f}×"


def _median(v: list[float]) -> float | None:
    x = sorted(v)
    if not x:
        return None
    m = len(x) // 2
    return x[m] if len(x) % 2 else (x[m - 1] + x[m]) / 2


def _p50(v: list[int]) -> float:
    x = sorted(v)
    return float(x[len(x) // 2]) if x else float("nan")


def build(
    meta: dict[str, Any],
    sizes: list[int],
    cells: list[Any],
    floors_raw: dict[str, Any],
    pingpong: dict[str, dict[str, float]],
    idle: list[dict[str, Any]],
    micro: list[dict[str, Any]],
    skipped: dict[str, str],
) -> dict[str, Any]:
    from .run import summarize

    floors: dict[str, dict[str, float]] = {}
    per_pass: dict[str, dict[str, dict[str, float]]] = floors_raw.get("_passes", {})
    for size, d in floors_raw.items():
        if size.startswith("_"):
            continue
        d = dict(d)
        for mode, v in floors_raw.get("_proto4", {}).get(size, {}).items():
            d["proto4_" + mode] = v
        if size in floors_raw.get("_addonly", {}):
            d["addonly_blocking"] = floors_raw["_addonly"][size]
        f = {k + "_p50_ns": _p50(v) for k, v in d.items()}
        f["memcpy_gbps"] = int(size) / f["memcpy_cpp_p50_ns"] if f["memcpy_cpp_p50_ns"] else 0.0
        # The bare protocol round's bandwidth, by the rows' formula (2×payload / (p50 − add)):
        # what the machine allowed a channel in this run.
        moving = f.get("proto4_blocking_p50_ns", 0.0) - f["add_cpp_p50_ns"]
        if moving > 0 and f["memcpy_gbps"]:
            f["proto4_pct_of_memcpy_bw"] = 100.0 * 2 * int(size) / moving / f["memcpy_gbps"]
        floors[size] = f

    def work_floor(size: int, pairing: str) -> float:
        f = floors.get(str(size))
        if not f:
            return float("nan")
        rq, rs = pairing.split("→")
        copy = f["memcpy_cpp_p50_ns"] if rq == "cpp" else f["copy_py_p50_ns"]
        add = f["add_cpp_p50_ns"] if rs == "cpp" else f["add_py_p50_ns"]
        return 2 * copy + add

    def handoff(mode: str) -> float:
        k = "spin" if mode in ("spin", "busy-poll") else "spinfutex"
        return pingpong.get(k, {}).get("p50_ns", float("nan"))

    def paired(c: Any, floor_of: Any) -> float | None:
        """Median over passes of (p50 of the cell in pass i) / (floor measured in pass i)."""
        ratios = []
        for k, p50 in c.pass_p50.items():
            f = per_pass.get(str(c.size), {}).get(k)
            v = floor_of(f) if f else None
            if v:
                ratios.append(p50 / v)
        return _median(ratios)

    def paired_adjacent(c: Any, floor_of: Any) -> float | None:
        """As ``paired``, with the floor run just before the cell in pass i (Cell.adjacent_floor)
        in place of the one from the start of the pass; ``floor_of(adjacent, floors of pass i)``."""
        ratios = []
        for k, p50 in c.pass_p50.items():
            a = c.adjacent_floor.get(k)
            v = floor_of(a, per_pass.get(str(c.size), {}).get(k, {})) if a else None
            if v:
                ratios.append(p50 / v)
        return _median(ratios)

    def pass_addonly(f: dict[str, float], pairing: str) -> float | None:
        """The add-only floor of a pairing in one pass: the cross-process protocol round with
        the C++ add and no copies (bench_floors --kind addonly), with the add of the
        responder's language in place of the C++ add (both measured in the pass)."""
        try:
            resp_add = f["add_cpp"] if pairing.endswith("→cpp") else f["add_py"]
            return f["addonly_blocking"] - f["add_cpp"] + resp_add
        except KeyError:
            return None

    def pass_work(f: dict[str, float], pairing: str) -> float | None:
        rq, rs = pairing.split("→")
        try:
            copy = f["memcpy_cpp"] if rq == "cpp" else f["copy_py"]
            return 2 * copy + (f["add_cpp"] if rs == "cpp" else f["add_py"])
        except KeyError:
            return None

    orig = {
        c.size: summarize(c.samples)["p50_ns"]
        for c in cells
        if c.system == "original" and c.samples and not c.error
    }
    orig_pass = {c.size: c.pass_p50 for c in cells if c.system == "original" and c.pass_p50}

    def paired_speedup(c: Any) -> float | None:
        op = orig_pass.get(c.size, {})
        return _median([op[k] / v for k, v in c.pass_p50.items() if k in op and v])

    rows = []
    for c in cells:
        row: dict[str, Any] = {
            "key": c.key,
            "system": c.system,
            "pairing": c.pairing,
            "mode": c.mode,
            "size": c.size,
            "error": c.error,
            **c.extra,
        }
        if c.samples:
            st = summarize(c.samples)
            row.update(st)
            p50 = st["p50_ns"]
            wf = work_floor(c.size, c.pairing)
            ho = handoff(c.mode)
            row["gbps"] = c.size / p50
            row["work_floor_ns"] = wf
            row["handoff_floor_ns"] = ho
            row["x_work_floor"] = p50 / wf if wf == wf else None
            row["x_floor"] = p50 / (wf + ho) if wf == wf and ho == ho else None
            row["x_handoff"] = p50 / ho if ho == ho else None
            hk = "pingpong_spin" if c.mode in ("spin", "busy-poll") else "pingpong_spinfutex"
            row["pass_p50_ns"] = c.pass_p50
            row["x_work_floor_paired"] = paired(c, lambda f, p=c.pairing: pass_work(f, p))
            row["x_handoff_paired"] = paired(c, lambda f, k=hk: f.get(k))
            pk = "proto4_spin" if c.mode in ("spin", "busy-poll") else "proto4_blocking"
            row["x_protocol_floor_paired"] = paired(c, lambda f, k=pk: f.get(k))
            if (c.system.startswith("shmbridge") or c.zero_copy) and c.mode == "blocking":
                row["x_addonly_floor_paired"] = paired(c, lambda f, p=c.pairing: pass_addonly(f, p))
                addonly = [
                    pass_addonly(f, c.pairing) for f in per_pass.get(str(c.size), {}).values()
                ]
                row["addonly_floor_ns"] = _median([a for a in addonly if a]) if addonly else None
            # The floor run right before the cell in each pass, where there is one: the ratio
            # the targets use; the pass-start ratio stays beside it.
            if c.adjacent_floor and c.adjacent_floor_kind == "proto4":
                row["adjacent_floor_p50_ns"] = c.adjacent_floor
                row["x_protocol_floor_pass_start"] = row["x_protocol_floor_paired"]
                row["x_protocol_floor_paired"] = paired_adjacent(c, lambda a, f: a)
            elif c.adjacent_floor and c.adjacent_floor_kind == "addonly":
                row["adjacent_floor_p50_ns"] = c.adjacent_floor
                row["x_addonly_floor_pass_start"] = row.get("x_addonly_floor_paired")

                def adjacent_addonly(a: float, f: dict[str, float], p: str = c.pairing) -> Any:
                    return pass_addonly({**f, "addonly_blocking": a}, p)

                row["x_addonly_floor_paired"] = paired_adjacent(c, adjacent_addonly)
                addonly = [
                    adjacent_addonly(a, per_pass.get(str(c.size), {}).get(k, {}))
                    for k, a in c.adjacent_floor.items()
                ]
                row["addonly_floor_ns"] = _median([a for a in addonly if a]) if addonly else None
            o = orig.get(c.size)
            row["speedup_vs_original_merged"] = (o / p50) if o else None
            row["speedup_vs_original"] = paired_speedup(c) or row["speedup_vs_original_merged"]
            f = floors.get(str(c.size))
            if f and not c.zero_copy:  # no data moves in a zero-copy round
                rs = c.pairing.split("→")[1]
                add = f["add_cpp_p50_ns"] if rs == "cpp" else f["add_py_p50_ns"]
                moving = p50 - add
                row["channel_gbps"] = 2 * c.size / moving if moving > 0 else None
                row["pct_of_memcpy_bw"] = (
                    100.0 * row["channel_gbps"] / f["memcpy_gbps"] if row["channel_gbps"] else None
                )
        rows.append(row)
    camera_floors = camera_ratios(rows, cells, floors_raw.get("_camera", {}))
    result = {
        "meta": meta,
        "sizes": sizes,
        "floors": floors,
        "pingpong": pingpong,
        "results": rows,
        "idle": idle,
        "micro": micro,
        "skipped": skipped,
    }
    if camera_floors:
        result["camera_floors"] = camera_floors
    result["targets"] = targets(result)
    return result


def is_camera(r: dict[str, Any]) -> bool:
    return str(r.get("system", "")).startswith("camera")


def camera_ratios(
    rows: list[dict[str, Any]], cells: list[Any], cam: dict[str, Any]
) -> dict[str, float]:
    """The camera rows' ratios (bench/README.md), replacing the per-size ones that do not apply:
    ×work floor = p50 / (copy of the request + copy of the largest reply in the requester's
    language), median of per-pass ratios; ×v1 (v2 rows) = median over passes of v2 p50 / v1 p50
    of the same pairing. Returns the camera floors (median of the passes), or {}."""
    passes: dict[str, dict[str, float]] = cam.get("passes", {})
    pass_p50 = {(c.system, c.pairing): c.pass_p50 for c in cells}
    for r in rows:
        if not is_camera(r) or "p50_ns" not in r:
            continue
        key = "copy_cpp" if r["pairing"].startswith("cpp") else "copy_py"
        floor = _median(cam.get(key, [])) or float("nan")
        mine = pass_p50.get((r["system"], r["pairing"]), {})
        r["work_floor_ns"] = floor
        r["x_work_floor"] = r["p50_ns"] / floor if floor == floor else None
        r["x_work_floor_paired"] = _median(
            [v / passes[k][key] for k, v in mine.items() if passes.get(k, {}).get(key)]
        )
        for k in ("x_floor", "x_handoff", "x_handoff_paired", "x_protocol_floor_paired"):
            r[k] = None
        if r["system"] == "camera v2":
            v1 = pass_p50.get(("camera v1 (one array)", r["pairing"]), {})
            r["x_v1_paired"] = _median([v / v1[k] for k, v in mine.items() if v1.get(k)])
    if not passes:
        return {}
    return {
        "copy_cpp_p50_ns": _median(cam.get("copy_cpp", [])) or float("nan"),
        "copy_py_p50_ns": _median(cam.get("copy_py", [])) or float("nan"),
    }


def _row(result: dict[str, Any], key: str, size: int) -> dict[str, Any] | None:
    for r in result["results"]:
        if r["key"] == key and r["size"] == size and "p50_ns" in r:
            return r
    return None


ALL_PAIRINGS = ("cpp→cpp", "cpp→py", "py→cpp", "py→py")


def _pass_ratio(num: dict[str, Any], den: dict[str, Any]) -> float | None:
    """Median over passes of (p50 of ``num`` in pass i) / (p50 of ``den`` in pass i)."""
    dp = den.get("pass_p50_ns", {})
    return _median([v / dp[k] for k, v in num.get("pass_p50_ns", {}).items() if dp.get(k)])


def targets(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The targets of the benchmark issues with measured value, limit and met / not met. The
    issue 14 targets come first; "(info)" rows are context, not targets."""
    out: list[dict[str, Any]] = []

    def add(name: str, value: float | None, limit: float, better: str, detail: str) -> None:
        met = None if value is None else (value <= limit if better == "le" else value >= limit)
        out.append(
            {
                "target": name,
                "value": value,
                "limit": limit,
                "better": better,
                "met": met,
                "detail": detail,
            }
        )

    def per_pass(r: dict[str, Any], key: str) -> str:
        """The detail of a paired ratio: the per-pass p50s it was taken from."""
        ps = ", ".join(fmt_us(v) for _, v in sorted(r.get("pass_p50_ns", {}).items()))
        return f"p50 per pass {ps}; ratio = median of per-pass ratios ({key})"

    def floor_key(r: dict[str, Any], name: str, start_key: str) -> str:
        """Which floor a paired ratio used: the run just before the cell, where there was one
        (with the ratio to the pass-start floor beside it), else the pass-start run."""
        if r.get("adjacent_floor_p50_ns"):
            return (
                f"{name} run just before the cell in each pass; against the pass-start run: "
                f"{fmt_x(r.get(start_key))}"
            )
        return f"{name} of the same pass"

    def add_vs_floor(name: str, r: dict[str, Any], floor: dict[str, Any], limit: float) -> None:
        """A row against a floor row of the same run: the median of the per-pass ratios."""
        add(
            name,
            _pass_ratio(r, floor) or r["p50_ns"] / floor["p50_ns"],
            limit,
            "le",
            f"p50 {fmt_us(r['p50_ns'])} vs floor {fmt_us(floor['p50_ns'])}; median of per-pass "
            "ratios",
        )

    orig = _row(result, "original (sleep 10 ms)", MiB)
    # 1. The copying round at 1 MiB, every pairing.
    for pairing in ALL_PAIRINGS:
        r = _row(result, f"shmbridge {pairing} blocking", MiB)
        add(
            f"1 MiB {pairing} copying round ≤ 1.15× work floor",
            (r.get("x_work_floor_paired") or r["x_work_floor"]) if r else None,
            1.15,
            "le",
            f"p50 {fmt_us(r['p50_ns'])} vs work floor {fmt_us(r['work_floor_ns'])}; "
            + per_pass(r, "work floor of the same pass")
            if r
            else "not measured",
        )
    for pairing in ALL_PAIRINGS:
        r = _row(result, f"shmbridge {pairing} blocking", MiB)
        if r and r.get("x_protocol_floor_paired"):
            add(
                f"(info) 1 MiB {pairing} copying round vs the bare protocol round across two "
                "processes (4 CAS, copies, add; no library): the measured floor that includes "
                "the cross-core transfers the work floor leaves out",
                r["x_protocol_floor_paired"],
                1.15,
                "le",
                per_pass(r, floor_key(r, "proto4", "x_protocol_floor_pass_start")),
            )
    floor = _row(result, "python floor cpp→py blocking", MiB)
    r = _row(result, "shmbridge cpp→py blocking", MiB)
    if r and floor:
        add_vs_floor(
            "(info) 1 MiB cpp→py copying round vs the bare Python responder (bench/py/bare_peer.py:"
            " the least any Python responder does): the floor of the pairings with a Python "
            "responder",
            r,
            floor,
            1.15,
        )
    rq_floor = _row(result, "python floor py→cpp blocking", MiB)
    r = _row(result, "shmbridge py→cpp blocking", MiB)
    if rq_floor:
        add(
            "(info) 1 MiB bare Python requester → C++ responder, copying round (bench/py/"
            "bare_peer.py: the least any Python requester does) vs the work floor: the floor of "
            "the pairings with a Python requester",
            rq_floor.get("x_work_floor_paired") or rq_floor["x_work_floor"],
            1.15,
            "le",
            per_pass(rq_floor, "work floor of the same pass"),
        )
    if r and rq_floor:
        add_vs_floor(
            "(info) 1 MiB py→cpp copying round vs the bare Python requester's",
            r,
            rq_floor,
            1.15,
        )
    # 2. The zero-copy round at 1 MiB, every pairing.
    for pairing in ALL_PAIRINGS:
        z = _row(result, f"shmbridge zero-copy {pairing} blocking", MiB)
        add(
            f"1 MiB {pairing} zero-copy round ≤ 1.3× add-only floor",
            z.get("x_addonly_floor_paired") if z else None,
            1.3,
            "le",
            f"p50 {fmt_us(z['p50_ns'])} vs add-only floor {fmt_us(z.get('addonly_floor_ns'))}; "
            + per_pass(z, floor_key(z, "add-only floor", "x_addonly_floor_pass_start"))
            if z
            else "not measured",
        )
    for pairing in ALL_PAIRINGS:
        z = _row(result, f"shmbridge zero-copy {pairing} blocking", MiB)
        r = _row(result, f"shmbridge {pairing} blocking", MiB)
        add(
            f"(info) 1 MiB {pairing} zero-copy: times faster than the copying round (about 3×)",
            (_pass_ratio(r, z) or r["p50_ns"] / z["p50_ns"]) if z and r else None,
            3.0,
            "ge",
            f"{fmt_us(r['p50_ns'])} / {fmt_us(z['p50_ns'])}; median of per-pass ratios"
            if z and r
            else "not measured",
        )
    for pairing in ALL_PAIRINGS:
        z = _row(result, f"shmbridge zero-copy {pairing} blocking", MiB)
        add(
            f"1 MiB {pairing} zero-copy ≥ 400× faster than the original",
            z["speedup_vs_original"] if z else None,
            400,
            "ge",
            f"p50 {fmt_us(z['p50_ns'])} vs original {fmt_us(orig['p50_ns'])}; median of per-pass "
            "ratios"
            if z and orig
            else "not measured",
        )
    fz = _row(result, "python floor py→cpp zero-copy blocking", MiB)
    z = _row(result, "shmbridge zero-copy py→cpp blocking", MiB)
    if fz:
        add(
            "(info) 1 MiB bare Python requester → C++ responder, zero-copy (bench/py/bare_peer.py: "
            "the least any Python requester does): times faster than the original, the most a "
            "Python requester reaches",
            fz.get("speedup_vs_original"),
            400,
            "ge",
            f"p50 {fmt_us(fz['p50_ns'])} vs original {fmt_us(orig['p50_ns'])}; median of "
            "per-pass ratios"
            if orig
            else "original not measured",
        )
    if fz and z:
        add_vs_floor(
            "(info) 1 MiB py→cpp zero-copy round vs the bare Python requester's",
            z,
            fz,
            1.15,
        )
    # 3. Python's per-operation cost at 64 B.
    floor = _row(result, "python floor cpp→py blocking", 64)
    r = _row(result, "shmbridge cpp→py blocking", 64)
    add(
        "64 B cpp→py blocking ≤ 1.4× the bare-Python-responder floor",
        (_pass_ratio(r, floor) or r["p50_ns"] / floor["p50_ns"]) if r and floor else None,
        1.4,
        "le",
        f"p50 {fmt_us(r['p50_ns'])} vs floor {fmt_us(floor['p50_ns'])} (bench/py/bare_peer.py: "
        "wait_cas, a += 1, cas_wake); median of per-pass ratios"
        if r and floor
        else "not measured",
    )
    rq_floor = _row(result, "python floor py→cpp blocking", 64)
    r = _row(result, "shmbridge py→cpp blocking", 64)
    if r and rq_floor:
        add_vs_floor(
            "(info) 64 B py→cpp blocking vs the bare-Python-requester floor (limit: the cpp→py "
            "target's)",
            r,
            rq_floor,
            1.4,
        )
    r = _row(result, "shmbridge py→py blocking", 64)
    add(
        "64 B py→py blocking p50 ≤ 4 µs",
        r["p50_ns"] / 1e3 if r else None,
        4.0,
        "le",
        per_pass(r, "absolute") if r else "not measured",
    )
    fpp = _row(result, "python floor py→py blocking", 64)
    if fpp:
        add(
            "(info) 64 B py→py floor: bare Python requester and responder (bench/py/bare_peer.py)"
            " p50",
            fpp["p50_ns"] / 1e3,
            4.0,
            "le",
            per_pass(fpp, "absolute"),
        )
    if fpp and r:
        add_vs_floor(
            "(info) 64 B py→py blocking vs its floor (both sides bare; limit: the cpp→py target's)",
            r,
            fpp,
            1.4,
        )
    # 4. Nothing else regresses.
    for row in result["idle"]:
        if row.get("system") == "shmbridge" and row.get("mode") == "blocking":
            add(
                f"idle responder {row['lang']} blocking ≤ 1 % of a core",
                row.get("cpu_pct"),
                1.0,
                "le",
                f"{row.get('cpu_s', float('nan')):.3f} s CPU in {row.get('wall_s', 0):.1f} s",
            )
    for size in (16 * MiB, 256 * MiB):
        for pairing in ALL_PAIRINGS:
            r = _row(result, f"shmbridge {pairing} blocking", size)
            if r:
                add(
                    f"{fmt_size(size)} {pairing} blocking ≥ 70 % of memcpy bandwidth",
                    r.get("pct_of_memcpy_bw"),
                    70.0,
                    "ge",
                    f"channel {r.get('channel_gbps') or 0:.2f} GB/s (2×payload / (p50 − add))",
                )
        bare_pct = result["floors"].get(str(size), {}).get("proto4_pct_of_memcpy_bw")
        if bare_pct is not None:
            add(
                f"(info) {fmt_size(size)} bare protocol round across two processes (C++: 4 CAS, "
                "copies, add; no library) as % of memcpy bandwidth: what the machine allowed "
                "any channel in this run",
                bare_pct,
                70.0,
                "ge",
                "same formula as the rows; bench_floors pingpong --kind proto4",
            )
            for pairing in ALL_PAIRINGS:
                r = _row(result, f"shmbridge {pairing} blocking", size)
                if r and r.get("x_protocol_floor_paired"):
                    add(
                        f"(info) {fmt_size(size)} {pairing} copying round vs the bare protocol "
                        "round",
                        r["x_protocol_floor_paired"],
                        1.15,
                        "le",
                        per_pass(r, floor_key(r, "proto4", "x_protocol_floor_pass_start")),
                    )
    ice_sizes = sorted(
        r["size"] for r in result["results"] if r["key"] == "iceoryx2" and "p50_ns" in r
    )
    for size in ice_sizes:
        ice = _row(result, "iceoryx2", size)
        assert ice is not None
        for pairing in ALL_PAIRINGS:
            r = _row(result, f"shmbridge {pairing} blocking", size)
            if r:
                add(
                    f"{fmt_size(size)} {pairing} blocking vs iceoryx2 Python (busy-poll): time "
                    "ratio ≤ 1",
                    _pass_ratio(r, ice) or r["p50_ns"] / ice["p50_ns"],
                    1.0,
                    "le",
                    f"{fmt_us(r['p50_ns'])} vs {fmt_us(ice['p50_ns'])}",
                )
    if not ice_sizes:
        add(
            "vs iceoryx2 Python",
            None,
            1.0,
            "le",
            result["skipped"].get("iceoryx2", "iceoryx2 not measured"),
        )
    # Context from the earlier benchmark issue (floors of the hand-off itself).
    for pairing, limit in (("cpp→cpp", 1.5), ("cpp→py", 3.0), ("py→cpp", 3.0)):
        r = _row(result, f"shmbridge {pairing} blocking", 64)
        add(
            f"(info) 64 B {pairing} blocking vs raw spin-then-futex ping-pong (earlier target "
            f"{limit}×)",
            (r.get("x_handoff_paired") or r["x_handoff"]) if r else None,
            limit,
            "le",
            per_pass(r, "spinfutex ping-pong of the same pass") if r else "not measured",
        )
    r = _row(result, "shmbridge cpp→cpp blocking", 64)
    if r and r.get("x_protocol_floor_paired"):
        add(
            "(info) 64 B cpp→cpp blocking vs the bare protocol round (4 CAS, no library)",
            r["x_protocol_floor_paired"],
            1.5,
            "le",
            per_pass(r, floor_key(r, "proto4", "x_protocol_floor_pass_start")),
        )
    if floor:
        add(
            "(info) 64 B Python floor (C++ requester, bare Python responder) vs raw "
            "spin-then-futex ping-pong",
            floor.get("x_handoff_paired") or floor["x_handoff"],
            3.0,
            "le",
            per_pass(floor, "spinfutex ping-pong of the same pass"),
        )
    for r in result["results"]:
        if r["system"] != "camera v2" or "p50_ns" not in r:
            continue
        v1 = _row(result, f"camera v1 (one array) {r['pairing']}", r["size"])
        add(
            f"(info) camera {r['pairing']} v2 vs its work floor (copy of the frame + stamp and "
            "of 100×6 float32)",
            r.get("x_work_floor_paired") or r.get("x_work_floor"),
            1.3,
            "le",
            per_pass(r, "camera work floor of the same pass"),
        )
        add(
            f"(info) camera {r['pairing']} v2 vs the same exchange squeezed into one v1 array",
            r.get("x_v1_paired"),
            1.0,
            "le",
            f"p50 {fmt_us(r['p50_ns'])} vs {fmt_us(v1['p50_ns']) if v1 else '—'}; median of "
            "per-pass ratios",
        )
    if not result["sizes"]:  # --camera only: the per-size targets were not measured
        out = [g for g in out if "camera" in g["target"]]
    return out


# ---------------------------------------------------------------------------------------------


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower()[:40]


def write(result: dict[str, Any], out: Path, tag: str, plots: bool = True) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    m = result["meta"]
    stamp = m["date"][:16].replace("-", "").replace(":", "").replace("T", "-")
    base = (
        f"{stamp}_{m['commit']}_{slug(m['machine']['cpu_model'])}-{m['machine']['cores']}c"
        f"_{m['mode']}{'_' + slug(tag) if tag else ''}"
    )
    paths = [out / f"{base}.json", out / f"{base}.md"]
    paths[0].write_text(json.dumps(result, indent=1, default=float) + "\n")
    paths[1].write_text(markdown(result))
    if plots:
        try:
            paths += plot(result, out, base)
        except ImportError as e:
            print(f"bench: no plots ({e}); pip install matplotlib")
    return paths


def plot(result: dict[str, Any], out: Path, base: str) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    m = result["meta"]
    paths = []
    floors = result["floors"]
    fsizes = sorted(int(s) for s in floors)
    for mode in ("blocking", "spin"):
        fig, ax = plt.subplots(figsize=(9, 6))
        systems: dict[str, list[tuple[int, float]]] = {}
        for r in result["results"]:
            if "p50_ns" not in r:
                continue
            if (r["system"].startswith("shmbridge") and r["mode"] != mode) or is_camera(r):
                continue  # the camera scenario is one point, in its own table
            label = r["key"]
            systems.setdefault(label, []).append((r["size"], r["p50_ns"] / 1e3))
        for label, pts in sorted(systems.items()):
            pts.sort()
            style = "-o" if label.startswith("shmbridge") else "--s"
            ax.plot([p[0] for p in pts], [p[1] for p in pts], style, label=label, markersize=4)
        if fsizes:
            for key, style, color, label in (
                ("work_cpp_p50_ns", ":", "black", "floor: work C++ (memcpy+add+memcpy)"),
                ("work_py_p50_ns", ":", "gray", "floor: work numpy (copyto+add+copyto)"),
                ("memcpy_cpp_p50_ns", "-.", "silver", "floor: memcpy"),
            ):
                ax.plot(
                    fsizes,
                    [floors[str(s)][key] / 1e3 for s in fsizes],
                    style,
                    color=color,
                    label=label,
                )
        ao = [x for x in fsizes if "addonly_blocking_p50_ns" in floors[str(x)]]
        if ao and mode == "blocking":
            ax.plot(
                ao,
                [floors[str(x)]["addonly_blocking_p50_ns"] / 1e3 for x in ao],
                ":",
                color="purple",
                label="floor: add-only round across 2 processes (zero-copy rows' floor)",
            )
        key = f"proto4_{mode}_p50_ns"
        ps = [x for x in fsizes if key in floors[str(x)]]
        if ps:
            ax.plot(
                ps,
                [floors[str(x)][key] / 1e3 for x in ps],
                ":",
                color="green",
                label="floor: bare protocol round across 2 processes (no library)",
            )
        pp = result["pingpong"].get("spinfutex" if mode == "blocking" else "spin")
        if pp:
            ax.axhline(
                pp["p50_ns"] / 1e3,
                color="brown",
                linestyle=":",
                linewidth=1,
                label=f"floor: raw {'spin-then-futex' if mode == 'blocking' else 'spin'} ping-pong",
            )
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("payload (bytes)")
        ax.set_ylabel("round-trip latency p50 (µs)")
        ax.set_title(
            f"shmbridge round trip, {mode} mode — {m['machine']['cpu_model']}, "
            f"{m['machine']['cores']} cores\n{m['date']} commit {m['commit']}",
            fontsize=9,
        )
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7, loc="upper left")
        fig.tight_layout()
        p = out / f"{base}_latency_{mode}.png"
        fig.savefig(p, dpi=110)
        plt.close(fig)
        paths.append(p)
    return paths


# ---------------------------------------------------------------------------------------------


CAMERA_TITLE = (
    "Camera scenario, blocking: (480, 640, 3) uint8 + float64 stamp → n ≤ 100 × 6 float32 "
    "(n = 0..100), protocol v2 vs the same exchange squeezed into one v1 uint8 array; work floor "
    "= copy of the request + copy of 100×6 float32 in the requester's language; ratios are "
    "medians of per-pass ratios"
)


def camera_table(result: dict[str, Any]) -> list[list[str]]:
    """Header + one row per pairing of the camera scenario ([] when it was not measured)."""
    rows = {(r["system"], r["pairing"]): r for r in result["results"] if is_camera(r)}
    if not rows:
        return []
    f = result.get("camera_floors", {})
    out = [
        [
            "pairing",
            "v2 p50",
            "v2 p90",
            "v2 p99",
            "v1 p50",
            "work floor",
            "v2 ×work floor",
            "v1 ×work floor",
            "v2 / v1",
        ]
    ]
    for pairing in ("cpp→cpp", "cpp→py", "py→cpp", "py→py"):
        v2 = rows.get(("camera v2", pairing), {})
        v1 = rows.get(("camera v1 (one array)", pairing), {})
        if not v2 and not v1:
            continue
        nan = float("nan")
        floor = f.get("copy_cpp_p50_ns" if pairing.startswith("cpp") else "copy_py_p50_ns", nan)
        out.append(
            [
                pairing,
                fmt_us(v2.get("p50_ns", nan)) if "p50_ns" in v2 else f"error {v2.get('error')}",
                fmt_us(v2.get("p90_ns", nan)),
                fmt_us(v2.get("p99_ns", nan)),
                fmt_us(v1.get("p50_ns", nan)) if "p50_ns" in v1 else f"error {v1.get('error')}",
                fmt_us(floor),
                fmt_x(v2.get("x_work_floor_paired") or v2.get("x_work_floor")),
                fmt_x(v1.get("x_work_floor_paired") or v1.get("x_work_floor")),
                fmt_x(v2.get("x_v1_paired")),
            ]
        )
    return out


def print_tables(result: dict[str, Any]) -> None:
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        print(json.dumps(result["targets"], indent=1, default=float))
        return
    con = Console(width=160)
    m = result["meta"]
    pinned = "peers pinned to CPU 0/1" if m.get("pinned") else "not pinned"
    con.print(
        f"[bold]shmbridge benchmarks[/] {m['date']}  commit {m['commit']}"
        f"{' (+uncommitted cpp/python changes)' if m.get('dirty_tree') else ''}  "
        f"{m['machine']['cpu_model']}, {m['machine']['cores']} cores, "
        f"kernel {m['machine']['kernel']}, mode {m['mode']}, {m['passes']} interleaved "
        f"passes, {pinned}, load {m['machine'].get('loadavg_start', ['?'])[0]:.2f}→"
        f"{m['machine'].get('loadavg_end', ['?'])[0]:.2f}"
    )

    t = Table(title="Floors (p50, same run)", show_lines=False)
    for h in (
        "payload",
        "memcpy C++",
        "add C++",
        "work C++",
        "copyto numpy",
        "a += 1 numpy",
        "work numpy",
        "memcpy GB/s",
        "protocol round, spin",
        "protocol round, 100 µs+futex",
        "add-only round (no copies), 100 µs+futex",
    ):
        t.add_column(h, justify="right")
    for s in sorted(result["floors"], key=int):
        f = result["floors"][s]
        t.add_row(
            fmt_size(int(s)),
            fmt_us(f["memcpy_cpp_p50_ns"]),
            fmt_us(f["add_cpp_p50_ns"]),
            fmt_us(f["work_cpp_p50_ns"]),
            fmt_us(f["copy_py_p50_ns"]),
            fmt_us(f["add_py_p50_ns"]),
            fmt_us(f["work_py_p50_ns"]),
            f"{f['memcpy_gbps']:.1f}",
            fmt_us(f.get("proto4_spin_p50_ns", float("nan"))),
            fmt_us(f.get("proto4_blocking_p50_ns", float("nan"))),
            fmt_us(f.get("addonly_blocking_p50_ns", float("nan"))),
        )
    con.print(t)

    t = Table(title="Raw cross-process ping-pong of a 32-bit word (2 forked C++ processes)")
    for h in ("kind", "p50", "p90", "p99", "max"):
        t.add_column(h, justify="right")
    for k, st in result["pingpong"].items():
        t.add_row(
            k,
            fmt_us(st["p50_ns"]),
            fmt_us(st["p90_ns"]),
            fmt_us(st["p99_ns"]),
            fmt_us(st["max_ns"]),
        )
    con.print(t)

    t = Table(
        title="Round trip requester → responder (+1.0) → requester, per payload. ×work "
        "floor, ×handoff and the speedup are medians of per-pass ratios (floor and system "
        "measured in the same pass); ×(work+handoff) uses the merged p50s",
        show_lines=False,
    )
    for h in (
        "payload",
        "system",
        "mode",
        "p50",
        "p90",
        "p99",
        "max",
        "GB/s",
        "×work floor",
        "×add-only floor",
        "×protocol floor",
        "×(work+handoff)",
        "×handoff",
        "speedup vs original",
    ):
        t.add_column(h, justify="right" if h not in ("system", "mode") else "left")
    last = None
    for r in sorted(
        (r for r in result["results"] if not is_camera(r)),
        key=_row_order,
    ):
        if last is not None and r["size"] != last:
            t.add_section()
        last = r["size"]
        if "p50_ns" not in r:
            t.add_row(
                fmt_size(r["size"]),
                r["key"],
                r["mode"],
                "[red]error[/]",
                "",
                "",
                "",
                "",
                "",
                "",
                "",
                "",
                "",
                (r.get("error") or "")[:40],
            )
            continue
        name = _shown_name(r)
        t.add_row(
            fmt_size(r["size"]),
            name,
            r["mode"],
            fmt_us(r["p50_ns"]),
            fmt_us(r["p90_ns"]),
            fmt_us(r["p99_ns"]),
            fmt_us(r["max_ns"]),
            f"{r['gbps']:.2f}",
            fmt_x(r.get("x_work_floor_paired") or r.get("x_work_floor")),
            fmt_x(r.get("x_addonly_floor_paired")),
            fmt_x(r.get("x_protocol_floor_paired")),
            fmt_x(r.get("x_floor")),
            fmt_x(r.get("x_handoff_paired") or r.get("x_handoff"), 1),
            fmt_x(r.get("speedup_vs_original"), 0),
        )
    con.print(t)

    cam = camera_table(result)
    if cam:
        t = Table(title=CAMERA_TITLE)
        for h in cam[0]:
            t.add_column(h, justify="left" if h == "pairing" else "right")
        for row in cam[1:]:
            t.add_row(*row)
        con.print(t)

    t = Table(title="Idle: CPU time of a responder waiting for a request that never comes")
    for h in ("system", "lang", "mode", "wall", "CPU", "% of a core", "outcome"):
        t.add_column(h, justify="right")
    for r in result["idle"]:
        t.add_row(
            r.get("system", ""),
            r.get("lang", ""),
            r.get("mode", ""),
            f"{r.get('wall_s', float('nan')):.2f} s",
            f"{r.get('cpu_s', float('nan')):.3f} s",
            f"{r.get('cpu_pct', float('nan')):.2f} %",
            r.get("outcome", r.get("error", "")),
        )
    con.print(t)

    if result["micro"]:
        t = Table(title="Micro-benchmarks (Google Benchmark, bench_micro)")
        t.add_column("benchmark")
        t.add_column("time", justify="right")
        t.add_column("GB/s", justify="right")
        for b in result["micro"]:
            if "error" in b:
                t.add_row("error", b["error"][:80], "")
                continue
            bps = b.get("bytes_per_second")
            t.add_row(b["name"], fmt_us(b["real_time_ns"]), f"{bps / 1e9:.2f}" if bps else "")
        con.print(t)

    t = Table(title="Targets")
    for h in ("target", "measured", "limit", "met", "detail"):
        t.add_column(h, justify="left" if h in ("target", "detail") else "right")
    for g in result["targets"]:
        v = g["value"]
        vs = "—" if v is None else (f"{v:.2f} {_unit(g)}" if v < 1000 else f"{v:,.0f} {_unit(g)}")
        met = (
            "[yellow]n/a[/]"
            if g["met"] is None
            else ("[green]yes[/]" if g["met"] else "[red]no[/]")
        )
        t.add_row(g["target"], vs, f"{g['limit']:g}", met, g["detail"])
    con.print(t)
    for k, why in result["skipped"].items():
        con.print(f"[yellow]skipped {k}[/]: {why}")


def _unit(target: dict[str, Any]) -> str:
    """The unit of a target's value: %, µs (an absolute p50), else a ratio."""
    name = target["target"]
    return "%" if "%" in name else "µs" if "p50 ≤" in name else "×"


def _shown_name(r: dict[str, Any]) -> str:
    """A result row's system column: the shmbridge rows without their mode (its own column)."""
    return (
        r["key"].replace(f" {r['mode']}", "") if r["system"].startswith("shmbridge") else r["key"]
    )


def _row_order(r: dict[str, Any]) -> tuple[int, bool, str, str]:
    return (r["size"], not r["system"].startswith("shmbridge"), r["mode"], r["key"])


def markdown(result: dict[str, Any]) -> str:
    """A compact Markdown rendering (results table, idle, targets) of one run."""
    m = result["meta"]
    lines = [
        f"# shmbridge benchmarks — {m['date']}, commit {m['commit']}",
        "",
        f"{m['machine']['cpu_model']}, {m['machine']['cores']} cores, kernel "
        f"{m['machine']['kernel']}; mode {m['mode']}, {m['passes']} interleaved passes, "
        f"{'peers pinned to CPU 0/1' if m.get('pinned') else 'not pinned'}; load average "
        f"{m['machine'].get('loadavg_start', [0])[0]:.1f} → "
        f"{m['machine'].get('loadavg_end', [0])[0]:.1f}; spin budgets {m.get('spin_us')} µs.",
        "",
        "Ratios ×work floor, ×protocol floor, ×handoff and the speedup are medians of "
        "per-pass ratios (floor measured in the same pass).",
    ]
    if result["sizes"]:
        lines += [
            "",
            "| payload | system | mode | p50 | p90 | p99 | max | GB/s | ×work floor "
            "| ×add-only floor | ×protocol floor | ×handoff | speedup vs original |",
            "|---|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
        ]
    for r in sorted(
        (r for r in result["results"] if not is_camera(r)),
        key=_row_order,
    ):
        if "p50_ns" not in r:
            lines.append(
                f"| {fmt_size(r['size'])} | {r['key']} | {r['mode']} | error: "
                f"{(r.get('error') or '')[:60]} ||||||||||"
            )
            continue
        name = _shown_name(r)
        lines.append(
            f"| {fmt_size(r['size'])} | {name} | {r['mode']} | {fmt_us(r['p50_ns'])} | "
            f"{fmt_us(r['p90_ns'])} | {fmt_us(r['p99_ns'])} | {fmt_us(r['max_ns'])} | "
            f"{r['gbps']:.2f} | {fmt_x(r.get('x_work_floor_paired') or r.get('x_work_floor'))} | "
            f"{fmt_x(r.get('x_addonly_floor_paired'))} | "
            f"{fmt_x(r.get('x_protocol_floor_paired'))} | "
            f"{fmt_x(r.get('x_handoff_paired') or r.get('x_handoff'), 1)} | "
            f"{fmt_x(r.get('speedup_vs_original'), 0)} |"
        )
    cam = camera_table(result)
    if cam:
        lines += ["", f"{CAMERA_TITLE}.", "", "| " + " | ".join(cam[0]) + " |"]
        lines.append("|---|" + "--:|" * (len(cam[0]) - 1))
        lines += ["| " + " | ".join(row) + " |" for row in cam[1:]]
    if result["floors"]:  # none in a --camera only run
        lines += [
            "",
            "| floor | "
            + " | ".join(fmt_size(int(s)) for s in sorted(result["floors"], key=int))
            + " |",
            "|---|" + "--:|" * len(result["floors"]),
        ]
        for k, label in (
            ("memcpy_cpp", "memcpy C++"),
            ("add_cpp", "add C++"),
            ("work_cpp", "work C++"),
            ("copy_py", "copyto numpy"),
            ("add_py", "a += 1 numpy"),
            ("work_py", "work numpy"),
            ("proto4_spin", "protocol round, spin"),
            ("proto4_blocking", "protocol round, 100 µs + futex"),
            ("addonly_blocking", "add-only round (no copies), 100 µs + futex"),
        ):
            lines.append(
                f"| {label} | "
                + " | ".join(
                    fmt_us(result["floors"][s].get(k + "_p50_ns", float("nan")))
                    for s in sorted(result["floors"], key=int)
                )
                + " |"
            )
    lines += ["", "| ping-pong (32-bit word, 2 processes) | p50 | p90 | p99 |", "|---|--:|--:|--:|"]
    for k, st in result["pingpong"].items():
        lines.append(
            f"| {k} | {fmt_us(st['p50_ns'])} | {fmt_us(st['p90_ns'])} | {fmt_us(st['p99_ns'])} |"
        )
    if result["idle"]:
        lines += [
            "",
            "| idle responder | mode | wall | CPU | % of a core |",
            "|---|---|--:|--:|--:|",
        ]
        for r in result["idle"]:
            lines.append(
                f"| {r.get('system')} {r.get('lang')} | {r.get('mode')} | "
                f"{r.get('wall_s', float('nan')):.1f} s | {r.get('cpu_s', float('nan')):.3f} s"
                f" | {r.get('cpu_pct', float('nan')):.2f} % |"
            )
    lines += ["", "| target | measured | limit | met | detail |", "|---|--:|--:|---|---|"]
    for g in result["targets"]:
        v = g["value"]
        vs = "—" if v is None else f"{v:,.2f} {_unit(g)}"
        met = "n/a" if g["met"] is None else ("yes" if g["met"] else "**no**")
        lines.append(f"| {g['target']} | {vs} | {g['limit']:g} | {met} | {g['detail']} |")
    for k, why in result["skipped"].items():
        lines.append(f"\nskipped {k}: {why}")
    return "\n".join(lines) + "\n"


def rebuild(path: Path, plots: bool = True) -> None:
    """Recompute the targets of a saved result, rewrite it, print the tables, redo the plots."""
    result = json.loads(path.read_text())
    result["targets"] = targets(result)
    path.write_text(json.dumps(result, indent=1, default=float) + "\n")
    path.with_suffix(".md").write_text(markdown(result))
    print_tables(result)
    if plots:
        plot(result, path.parent, path.name[: -len(".json")])


if __name__ == "__main__":
    import sys

    for arg in sys.argv[1:]:
        rebuild(Path(arg))
