"""``shmbridge`` command line: inspect and clean up segments (POSIX ``/dev/shm``), and entry points
to the conformance kit and the benchmarks of a source checkout.

    shmbridge info NAME [--json]          decode a segment's header, v1 or v2 (never writes to it)
    shmbridge ls [--json]                 list shmbridge segments with state and owner liveness

A segment whose name another process removed while it is still mapped (R-SEG-9, R-SEG-10; e.g.
by CPython's resource tracker after a legacy multiprocessing.shared_memory attach) is found
through /proc (Linux) and shown with state ``name-removed``, its holders and what to do; ``info``
then exits with SEGMENT_NOT_FOUND's code, as attaching by that name would fail.
    shmbridge rm NAME [--force]           unlink; refuses a live creator's segment without --force
    shmbridge clean --stale [--dry-run]   unlink every segment whose creator is dead (R-STALE-1)
    shmbridge conformance ARGS...         python -m conformance ARGS (from a source checkout)
    shmbridge bench ARGS...               python -m bench ARGS (from a source checkout)
    shmbridge relay near|far|keygen ...   carry a channel between hosts over ZeroMQ (spec/RELAY.md;
                                          needs the relay extra: pip install 'shmbridge[relay]')

Reading is done with plain reads of the OS object (no mapping, no slot claimed), so ``info`` and
``ls`` work on read-only, truncated or corrupt objects. Exit codes: 0 success, 2 usage, otherwise
the exit code of the error (spec/errors.json: 10 SEGMENT_NOT_FOUND, 11 ALREADY_EXISTS for a
refused ``rm``, 19 CORRUPT_HEADER for ``info`` on an invalid header, 20 INVALID_NAME, ...).
"""

from __future__ import annotations

import argparse
import json
import os
import stat
import struct
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .dtype import DType
from .errors import (
    AlreadyExists,
    CorruptHeader,
    Error,
    ErrorCode,
    InvalidArgument,
    SegmentNotFound,
    exit_code,
)
from .layout import (
    HEADER_SIZE,
    MAGIC,
    OFF_CREATOR,
    OFF_DECLARED,
    OFF_MESSAGE,
    OFF_REPLY_CODE,
    OFF_REQUESTER,
    OFF_RESPONDER,
    OFF_WORD,
    decode_header,
)
from .layout_v2 import MAX_HEADER_SIZE
from .layout_v2 import decode_header as decode_header_v2
from .liveness import process_alive
from .naming import validate_name
from .protocol import PHASE_MASK
from .segment import RemovedSegment, find_removed, name_removed_message

__all__ = ["main"]

SHM_DIR = Path(os.environ.get("SHMBRIDGE_SHM_DIR", "/dev/shm"))
_FIXED = struct.Struct("<8sHHIQQII")
_DESC = struct.Struct("<II8QQ")
_SLOT = struct.Struct("<IIQQ")
_PHASES = {0x0: "IDLE", 0x1: "REQUESTED", 0x2: "REPLIED", 0x4: "TAKEN"}
_SLOT_STATES = {0: "EMPTY", 1: "ATTACHED", 2: "CLOSED"}
ROLES = (("requester", OFF_REQUESTER), ("responder", OFF_RESPONDER), ("creator", OFF_CREATOR))


# ---------------------------------------------------------------------------------- reading


def _read_object(path: Path, follow: bool = False) -> tuple[bytes, int, os.stat_result]:
    """The first bytes (512, or a v2 header's up to 4608; fewer if the object is smaller), the
    object's size, its stat. ``follow``: open through a /proc link (a removed segment, R-SEG-10)."""
    nofollow = 0 if follow else getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(path, os.O_RDONLY | nofollow | getattr(os, "O_NONBLOCK", 0))
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise InvalidArgument(f"{path} is not a regular file")
        raw = os.pread(fd, MAX_HEADER_SIZE, 0)
    finally:
        os.close(fd)
    return raw, st.st_size, st


def _slot_info(raw: bytes, off: int) -> dict[str, Any]:
    if len(raw) < off + _SLOT.size:
        return {"pid": None, "state": "MISSING", "liveness": "unknown"}
    pid, state, start, inc = _SLOT.unpack_from(raw, off)
    sname = _SLOT_STATES.get(state, f"INVALID({state})")
    if state == 2:
        live = "closed"
    elif pid == 0:
        live = "empty" if state == 0 else "none"
    else:
        live = "alive" if process_alive(pid, start) else "dead"
    return {"pid": pid, "state": sname, "liveness": live, "start_time": start, "incarnation": inc}


def _desc_info(raw: bytes, off: int) -> dict[str, Any]:
    dtype, ndim, *rest = _DESC.unpack_from(raw, off)
    shape = list(rest[: min(ndim, 8)])
    try:
        dname = DType(dtype).name.lower()
    except ValueError:
        dname = f"invalid({dtype})"
    return {"dtype": dname, "dtype_code": dtype, "ndim": ndim, "shape": shape, "nbytes": rest[8]}


_GEOMETRY = struct.Struct("<IIQQQQ")
_RECORD = struct.Struct("<32sIIII8QQQ")
_GEOMETRY_KEYS = ("request_fields", "reply_fields", "request_area_offset", "request_area_size",
                  "reply_area_offset", "reply_area_size")  # fmt: skip


def _schema_info(raw: bytes) -> dict[str, Any]:
    """A v2 header's geometry block and schema records as stored (PROTOCOL.md §II.3), as far
    as the bytes read hold them (at most 16 records a side): shown even when invalid."""
    geometry = dict(zip(_GEOMETRY_KEYS, _GEOMETRY.unpack_from(raw, 0x040)))
    out: dict[str, Any] = {"geometry": geometry, "request_schema": [], "reply_schema": []}
    nreq = min(geometry["request_fields"], 16)
    (hsize,) = struct.unpack_from("<I", raw, 0x00C)
    stored = (min(hsize, len(raw)) - 0x200) // 128  # records inside the stated header_size
    for i in range(min(nreq + min(geometry["reply_fields"], 16), stored)):
        off = 0x200 + 128 * i
        name, dtype, ndim, mask, alias, *rest = _RECORD.unpack_from(raw, off)
        try:
            dname = DType(dtype).name
        except ValueError:
            dname = f"invalid({dtype})"
        rec = {
            "name": name.split(b"\0", 1)[0].decode("latin-1"),
            "dtype": dname,
            "dtype_code": dtype,
            "ndim": ndim,
            "max_shape": list(rest[: min(ndim, 8)]),
            "variable": [d for d in range(min(ndim, 32)) if mask >> d & 1],
            "alias": alias,
            "offset": rest[8],
            "max_nbytes": rest[9],
        }
        out["request_schema" if i < nreq else "reply_schema"].append(rec)
    for rec in out["reply_schema"]:  # in place onto request field alias - 1
        t = rec["alias"] - 1
        rec["inplace"] = out["request_schema"][t]["name"] if 0 <= t < nreq else None
    return out


def inspect(name: str) -> dict[str, Any]:
    """Everything ``info`` shows about segment ``name``: raw fields (even when invalid), the
    validation result and the derived state: live, stale, no-creator, initialising, corrupt,
    version-mismatch, truncated."""
    canonical = validate_name(name)
    path = SHM_DIR / canonical
    try:
        raw, size, st = _read_object(path)
    except FileNotFoundError:
        removed = find_removed(canonical) if Path("/dev/shm") == SHM_DIR else []
        if removed:
            return _inspect_removed(removed[0])
        raise SegmentNotFound(f"no segment named {canonical!r} ({path} does not exist)") from None
    except PermissionError as exc:
        raise _perm(canonical, exc) from None
    return _describe(canonical, str(path), raw, size, st)


def _inspect_removed(r: RemovedSegment) -> dict[str, Any]:
    """R-SEG-10: a segment whose name was removed, read (read only) through a holder's
    descriptor when this user may open it."""
    info: dict[str, Any] = {"name": r.name, "path": f"/dev/shm/{r.name} (name removed)", "size": 0}
    try:
        raw, size, st = _read_object(Path(r.path), follow=True)
        info = _describe(r.name, info["path"], raw, size, st)
    except (OSError, Error):
        info.update(valid=False, error=None, slots={}, detail="header not readable by this user")
    info.update(state="name-removed", name_removed=True, held_by=list(r.holders),
                note=name_removed_message(r.name))  # fmt: skip
    return info


def _describe(
    canonical: str, path: str, raw: bytes, size: int, st: os.stat_result
) -> dict[str, Any]:
    info: dict[str, Any] = {
        "name": canonical,
        "path": path,
        "size": size,
        "mode": f"{st.st_mode & 0o777:04o}",
        "uid": st.st_uid,
    }
    if size < 8:
        info.update(state="truncated", valid=False, error="CORRUPT_HEADER",
                    detail=f"{size} bytes, smaller than the 512-byte header")  # fmt: skip
        return info
    magic = raw[:8]
    info["magic"] = magic.decode("latin-1")
    if len(raw) >= 0x28:
        _m, vmaj, vmin, hsize, cap, segsize, flags, max_dims = _FIXED.unpack_from(raw, 0)
        info.update(version=f"{vmaj}.{vmin}", header_size=hsize, capacity=cap,
                    segment_size=segsize, flags=flags, max_dims=max_dims)  # fmt: skip
    v2 = len(raw) >= 0x28 and info.get("version", "").startswith("2.")
    if len(raw) >= HEADER_SIZE:
        word, waiters = struct.unpack_from("<II", raw, OFF_WORD)
        if v2:  # protocol v2: geometry and schema table instead of declared/message (§II.3)
            info.update(protocol=2, **_schema_info(raw))
        else:
            info["declared"] = _desc_info(raw, OFF_DECLARED)
            info["message"] = _desc_info(raw, OFF_MESSAGE)
        info["word"] = {
            "value": f"{word:#010x}",
            "phase": _PHASES.get(word & PHASE_MASK, f"INVALID({word & PHASE_MASK:#x})"),
            "seq": word >> 4,
            "status": word & 3,
        }
        info["waiters"] = waiters
        (rc,) = struct.unpack_from("<I", raw, OFF_REPLY_CODE)
        try:
            info["reply_code"] = {"code": rc, "name": "OK" if rc == 0 else ErrorCode(rc).name}
        except ValueError:
            info["reply_code"] = {"code": rc, "name": f"UNKNOWN({rc})"}
    info["slots"] = {role: _slot_info(raw, off) for role, off in ROLES}
    try:
        if v2:
            decode_header_v2(raw, size)  # H1-H16, F1-F9 (R-SCHEMA-9)
        else:
            decode_header(raw, size)
        info["valid"], info["error"] = True, None
    except Error as exc:
        info["valid"], info["error"], info["detail"] = False, exc.name, str(exc)
    creator = info["slots"]["creator"]
    if info["valid"]:
        # live: creator alive; stale: creator dead (R-STALE-1); kept: the creator closed cleanly
        # and kept the segment (R-SEG-3); no-creator: the creator slot was never filled.
        info["state"] = {"alive": "live", "dead": "stale", "closed": "kept"}.get(
            creator["liveness"], "no-creator"
        )
    elif info["error"] == "SEGMENT_NOT_FOUND":
        info["state"] = "initialising" if creator["liveness"] != "dead" else "stale-initialising"
    elif info["error"] == "VERSION_MISMATCH":
        info["state"] = "version-mismatch"
    else:
        info["state"] = "truncated" if size < HEADER_SIZE else "corrupt"
    return info


def _perm(name: str, exc: OSError) -> Error:
    from .errors import PermissionDenied

    return PermissionDenied(
        f"cannot read segment {name!r}: {exc.strerror}; it belongs to another user (mode 0600)"
    )


def list_segments() -> list[dict[str, Any]]:
    """Every object in /dev/shm whose first 8 bytes are SHMBRIDG (unreadable ones are skipped)."""
    out: list[dict[str, Any]] = []
    try:
        entries = sorted(os.scandir(SHM_DIR), key=lambda e: e.name)
    except FileNotFoundError:
        return out
    for e in entries:
        try:
            if not e.is_file(follow_symlinks=False):
                continue
            with open(e.path, "rb") as f:
                if f.read(8) != MAGIC:
                    continue
            out.append(inspect(e.name))
        except (OSError, Error):
            continue
    if Path("/dev/shm") == SHM_DIR:  # R-SEG-10: shmbridge segments whose name was removed
        out += [i for i in map(_inspect_removed, find_removed()) if i.get("magic") == "SHMBRIDG"]
    return out


# ---------------------------------------------------------------------------------- output


def _console() -> Any:
    from rich.console import Console

    # Piped output: wide enough that names and shapes are not folded (scripts should use --json).
    return Console(highlight=False, width=None if sys.stdout.isatty() else 200)


def _record_text(r: dict[str, Any]) -> str:
    if r.get("inplace"):
        return f"{r['name']} in place onto {r['inplace']}"
    dims = [f"<={m}" if d in r["variable"] else str(m) for d, m in enumerate(r["max_shape"])]
    return f"{r['name']}: {r['dtype']} ({', '.join(dims)}{',' if len(dims) == 1 else ''})"


def _schemas(info: dict[str, Any]) -> str:
    """A v2 segment's schemas on one line: request -> reply."""
    side = [", ".join(_record_text(r) for r in info[k]) or "(none)"
            for k in ("request_schema", "reply_schema")]  # fmt: skip
    return f"{side[0]} -> {side[1]}"


def _shape(d: dict[str, Any] | None) -> str:
    if not d:
        return "-"
    s = d["shape"]
    inner = ", ".join(str(x) for x in s) + ("," if len(s) == 1 else "")
    return f"{d['dtype']} ({inner})" + ("" if d["ndim"] <= 8 else f" ndim={d['ndim']}")


def _owners(info: dict[str, Any]) -> str:
    parts = []
    for role, _off in ROLES:
        s = info["slots"][role]
        if s.get("pid"):
            parts.append(f"{role[:3]} {s['pid']} {s['liveness']}")
        elif s["liveness"] == "closed":
            parts.append(f"{role[:3]} closed")
    return ", ".join(parts) or "-"


def print_info(info: dict[str, Any]) -> None:
    from rich.table import Table

    con = _console()
    t = Table(title=f"shmbridge segment {info['name']}", show_header=False, title_justify="left")
    t.add_column("field", style="bold")
    t.add_column("value")
    t.add_row("path", f"{info['path']} ({info['size']} bytes, mode {info.get('mode', '?')})")
    t.add_row("state", info["state"])
    if info.get("name_removed"):
        t.add_row("held by", "pid " + ", ".join(str(p) for p in info["held_by"]))
        t.add_row("note", info["note"])
    t.add_row("header", "valid" if info.get("valid") else f"{info.get('error')}: "
              f"{info.get('detail', '')}")  # fmt: skip
    for key in ("version", "capacity", "segment_size"):
        if key in info:
            t.add_row(key.replace("_", " "), str(info[key]))
    if "geometry" in info:
        g = info["geometry"]
        t.add_row("protocol", "v2 (typed messages)")
        for side in ("request", "reply"):
            for r in info[f"{side}_schema"]:
                t.add_row(f"{side} field", f"{_record_text(r)} at {r['offset']}, "
                          f"{r['max_nbytes']} bytes max")  # fmt: skip
            t.add_row(f"{side} area", f"{g[f'{side}_area_size']} bytes at "
                      f"{g[f'{side}_area_offset']} ({g[f'{side}_fields']} fields)")  # fmt: skip
    if "declared" in info:
        t.add_row("declared", _shape(info["declared"]) + f", {info['declared']['nbytes']} bytes")
        t.add_row("message", _shape(info["message"]))
    if "word" in info:
        w = info["word"]
        t.add_row("word", f"{w['phase']} seq {w['seq']} (status {w['status']}, {w['value']})")
        t.add_row("waiters", str(info["waiters"]))
        rc = info["reply_code"]
        t.add_row("reply_code", f"{rc['code']} {rc['name']}")
    con.print(t)
    s = Table(title="slots", title_justify="left")
    for col in ("role", "pid", "state", "process", "incarnation"):
        s.add_column(col)
    for role, _off in ROLES:
        if role not in info["slots"]:
            continue
        sl = info["slots"][role]
        s.add_row(role, str(sl.get("pid") or "-"), sl["state"], sl["liveness"],
                  str(sl.get("incarnation", "-")))  # fmt: skip
    con.print(s)


def print_list(segs: list[dict[str, Any]], title: str) -> None:
    from rich.table import Table

    t = Table(title=title, title_justify="left")
    t.add_column("name", overflow="fold")
    for col in ("state", "declared", "word", "size", "owners"):
        t.add_column(col)
    for i in segs:
        word = f"{i['word']['phase']} #{i['word']['seq']}" if "word" in i else "-"
        declared = _schemas(i) if "geometry" in i else _shape(i.get("declared"))
        t.add_row(i["name"], i["state"], declared, word, str(i["size"]), _owners(i))
    _console().print(t)


# ---------------------------------------------------------------------------------- commands


def _unlink_same(info: dict[str, Any]) -> bool:
    """Unlink the object only if it is still the one inspected (same inode), so that a segment
    re-created under the name in the meantime is not removed."""
    path = Path(info["path"])
    try:
        st = os.stat(path, follow_symlinks=False)
        if st.st_ino != info["_ino"]:
            return False
        os.unlink(path)
    except FileNotFoundError:
        return False
    return True


def _inspect_with_inode(name: str) -> dict[str, Any]:
    info = inspect(name)
    if info.get("name_removed"):
        raise SegmentNotFound(f"nothing to remove: {info['note']}")
    info["_ino"] = os.stat(info["path"], follow_symlinks=False).st_ino
    return info


def _public(info: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in info.items() if not k.startswith("_")}


def cmd_info(a: argparse.Namespace) -> int:
    info = inspect(a.name)
    if a.json:
        print(json.dumps(info, indent=2))
    else:
        print_info(info)
    if info.get("name_removed"):  # R-SEG-10: attaching by this name fails
        return exit_code(ErrorCode.SEGMENT_NOT_FOUND)
    return 0 if info["valid"] else exit_code(ErrorCode[info["error"]])


def cmd_ls(a: argparse.Namespace) -> int:
    segs = list_segments()
    if a.json:
        print(json.dumps(segs, indent=2))
    elif segs:
        print_list(segs, f"shmbridge segments in {SHM_DIR}")
    else:
        print(f"no shmbridge segments in {SHM_DIR}")
    return 0


def cmd_rm(a: argparse.Namespace) -> int:
    info = _inspect_with_inode(a.name)
    creator = info["slots"]["creator"]
    if not a.force:
        if info.get("magic") != MAGIC.decode() and info["state"] != "initialising":
            raise CorruptHeader(
                f"{info['path']} is not a shmbridge segment (magic {info.get('magic')!r}); "
                "use --force to remove it anyway"
            )
        if creator["liveness"] == "alive":
            raise AlreadyExists(
                f"segment {info['name']!r} belongs to live creator pid {creator['pid']}; stop it "
                "first, or use --force (its peers keep their mapping, new ones cannot attach)"
            )
    removed = _unlink_same(info)
    if a.json:
        print(json.dumps({"name": info["name"], "removed": removed, "state": info["state"]}))
    else:
        print(f"{'removed' if removed else 'not removed (it changed meanwhile)'}: {info['path']} "
              f"({info['state']})")  # fmt: skip
    return 0 if removed else exit_code(ErrorCode.SEGMENT_NOT_FOUND)


def cmd_clean(a: argparse.Namespace) -> int:
    if not a.stale:
        raise InvalidArgument("clean removes only stale segments: pass --stale")
    stale = [s for s in list_segments() if s["state"] == "stale"]
    removed = []
    for s in stale:
        s["_ino"] = os.stat(s["path"], follow_symlinks=False).st_ino
        if a.dry_run:
            removed.append(s)
            continue
        # Re-check right before unlinking: the creator slot may have been reclaimed.
        again = inspect(s["name"])
        if again["state"] == "stale" and _unlink_same(s):
            removed.append(s)
    if a.json:
        print(json.dumps({"dry_run": a.dry_run, "removed": [_public(s) for s in removed]}))
    elif removed:
        print_list(removed, ("would remove" if a.dry_run else "removed") + " (creator dead)")
    else:
        print("no stale segments")
    return 0


def _delegate(module: str, args: Sequence[str]) -> int:
    """Run ``python -m MODULE ARGS`` from the source checkout that holds ``MODULE/``: the current
    directory or one of its parents, or the checkout this package was imported from
    ($SHMBRIDGE_SOURCE_DIR, if set, is the only place looked at)."""
    if os.environ.get("SHMBRIDGE_SOURCE_DIR"):
        candidates = [Path(os.environ["SHMBRIDGE_SOURCE_DIR"])]
    else:
        candidates = [Path.cwd(), *Path.cwd().parents, *Path(__file__).resolve().parents]
    for root in candidates:
        if (root / module / "__init__.py").is_file() and (root / module / "__main__.py").is_file():
            env = dict(os.environ)
            env["PYTHONPATH"] = os.pathsep.join(p for p in (str(root), env.get("PYTHONPATH")) if p)
            return subprocess.call([sys.executable, "-m", module, *args], cwd=root, env=env)
    print(
        f"shmbridge {module}: the `{module}` package was not found. It is part of the shmbridge "
        f"source repository ({module}/), not of the installed package: run this command from a "
        f"checkout (or python -m {module} there).",
        file=sys.stderr,
    )
    return 2


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="shmbridge", description="Inspect and clean up shmbridge shared-memory segments."
    )
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("info", help="decode a segment's header")
    s.add_argument("name")
    s.add_argument("--json", action="store_true")
    s = sub.add_parser("ls", help="list shmbridge segments in /dev/shm")
    s.add_argument("--json", action="store_true")
    s = sub.add_parser("rm", help="unlink a segment (refuses a live creator's without --force)")
    s.add_argument("name")
    s.add_argument("--force", action="store_true")
    s.add_argument("--json", action="store_true")
    s = sub.add_parser("clean", help="unlink segments whose creator is dead")
    s.add_argument("--stale", action="store_true", help="segments whose creator is dead")
    s.add_argument("--dry-run", action="store_true")
    s.add_argument("--json", action="store_true")
    sub.add_parser(
        "conformance", help="python -m conformance ... (source checkout)", add_help=False
    )
    sub.add_parser("bench", help="python -m bench ... (source checkout)", add_help=False)
    sub.add_parser("relay", help="near|far|keygen: a channel between hosts (spec/RELAY.md)",
                   add_help=False)  # fmt: skip
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in ("conformance", "bench"):
        return _delegate(args[0], args[1:])
    if args and args[0] == "relay":
        from .relay.cli import main as relay_main

        return relay_main(args[1:])
    parser = build_parser()
    a = parser.parse_args(args)
    handler = {"info": cmd_info, "ls": cmd_ls, "rm": cmd_rm, "clean": cmd_clean}[a.cmd]
    try:
        return handler(a)
    except Error as exc:
        print(f"shmbridge {a.cmd}: {exc}", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:
        print(f"shmbridge {a.cmd}: OS_ERROR: {exc}", file=sys.stderr)
        return exit_code(ErrorCode.OS_ERROR)


if __name__ == "__main__":
    raise SystemExit(main())
