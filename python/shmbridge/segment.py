"""The OS shared-memory object (PROTOCOL.md §2: R-SEG-*, R-STALE-*; §3 R-LAYOUT-6).

POSIX: ``_posixshmem.shm_open("/" + name)`` + ``mmap``; never ``multiprocessing.shared_memory``
and never the resource tracker (R-SEG-3, CPython gh-82300): an attaching process cannot unlink.
Windows: a named file mapping ``Local\\name`` (written, untested here).
"""

from __future__ import annotations

import mmap
import os
import sys
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Callable

from . import _native
from .errors import (
    AlreadyExists,
    CorruptHeader,
    Error,
    OsError,
    PermissionDenied,
    SegmentNotFound,
    StaleSegment,
)
from .layout import (
    HEADER_SIZE,
    MAGIC,
    OFF_CREATOR,
    OFF_MAGIC,
    SLOT_PID,
    SLOT_START_TIME,
    check_host,
    validate_fixed,
)
from .layout_v2 import MAX_HEADER_SIZE, read_version
from .layout_v2 import decode_header as decode_header_v2
from .liveness import own_start_time, process_alive, slot_owner
from .naming import posix_name, validate_name, windows_names

__all__ = [
    "MAGIC_U64",
    "RemovedSegment",
    "Segment",
    "SegmentNameRemovedWarning",
    "Validator",
    "find_removed",
    "validate_any",
    "validate_v1",
]

MAGIC_U64 = int.from_bytes(MAGIC, "little")
_POSIX = os.name == "posix"

if _POSIX:
    import _posixshmem


# R-ATTACH-1: attach polls for a segment that does not exist yet (no OS offers a portable wait for
# a name to appear; not the data path): pauses of 2 ms doubling to 50 ms, never past the deadline.
_ATTACH_FIRST_PAUSE = 0.002
_ATTACH_MAX_PAUSE = 0.05


def _waited(start: float, deadline: float, now: float) -> str:
    """How long attach waited, for its SEGMENT_NOT_FOUND message."""
    if deadline <= start:
        return "after one check (timeout 0)"
    return f"after waiting {now - start:.3g} s"


#: Validates the header of a mapping of ``size`` bytes of segment ``name`` (raises the error).
Validator = Callable[[mmap.mmap, int, str], object]


def validate_v1(mm: mmap.mmap, size: int, name: str) -> object:
    """The v1 API's check at attach (R-LAYOUT-3..6; a v2 segment is R-VER-3's mismatch)."""
    return validate_fixed(mm[:HEADER_SIZE], size, name=name)  # a copy: no export outlives errors


def validate_any(mm: mmap.mmap, size: int, name: str) -> object:
    """R-VER-7: a header that validates as v1 (Part I) or as v2 (R-SCHEMA-9); any other
    version_major is VERSION_MISMATCH naming the versions supported."""
    head = mm[: min(size, len(mm), MAX_HEADER_SIZE)]
    if len(head) >= HEADER_SIZE and bytes(head[:8]) == MAGIC and read_version(head) == 2:
        return decode_header_v2(head, size, name=name)
    return validate_fixed(head, size, name=name)  # v1, or the mismatch of another version


class SegmentBusyWarning(ResourceWarning):
    """A segment was closed while zero-copy views into it were still alive (R-CLOSE-3); the
    mapping stays valid until the last view is gone."""


class SegmentNameRemovedWarning(RuntimeWarning):
    """R-SEG-9: another process removed the segment's name while it is mapped (issued once by the
    creator). Not an error: the channel keeps working for the peers already attached."""


def name_removed_message(name: str) -> str:
    """What happened and how to avoid it (R-SEG-9), for the creator's warning and the CLI."""
    return (
        f"the name of segment {name!r} was removed (shm_unlink) by another process while the "
        "segment is still mapped, typically CPython's resource tracker at the exit of a script "
        "that attached with multiprocessing.shared_memory.SharedMemory on Python < 3.13. The "
        "channel keeps working for the processes already attached, but no new peer can attach "
        "and `shmbridge info` no longer finds it by name. Attach with shmbridge (it never "
        "unlinks), or SharedMemory(name, track=False) on Python >= 3.13; restart the creator to "
        "publish the name again"
    )


def _os_error(exc: OSError, what: str, name: str) -> Error:
    if isinstance(exc, PermissionError):
        return PermissionDenied(
            f"{what} {name!r}: the OS refused access ({exc.strerror}); expected a segment owned by "
            "this user (mode 0600); run both peers as the same user"
        )
    return OsError(f"{what} {name!r}: errno {exc.errno} ({exc.strerror})")


def _win_mmap(size: int, tagname: str) -> mmap.mmap:  # pragma: no cover - Windows only
    kwargs: dict[str, Any] = {"tagname": tagname}
    return mmap.mmap(-1, size, **kwargs)


def _map(fd: int, size: int) -> mmap.mmap:
    flags = mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0)  # pre-touch the pages
    return mmap.mmap(fd, size, flags=flags, prot=mmap.PROT_READ | mmap.PROT_WRITE)


class Segment:
    """One mapping of a named segment. ``created`` is True only for the creator, which alone may
    unlink (R-SEG-3)."""

    def __init__(
        self, name: str, mm: mmap.mmap, size: int, created: bool, keep: bool = False
    ) -> None:
        self.name = name
        self.mm: mmap.mmap | None = mm
        self.size = size
        self.created = created
        self.keep = keep
        self._unlinked = False
        self._fd = -1  # POSIX creator: its descriptor of the object (R-SEG-9)

    def name_removed(self) -> bool:
        """R-SEG-9 (POSIX, creator only): the name no longer designates this still-mapped
        segment because another process removed it. Linux: fstat of the creator's descriptor
        reports st_nlink == 0; macOS (st_nlink is always 0 there): shm_open of the name fails.
        False for an attacher, on Windows and after this creator unlinked it itself."""
        if not self.created or self._unlinked or self._fd < 0:
            return False
        if sys.platform == "darwin":  # pragma: no cover - macOS
            try:
                os.close(_posixshmem.shm_open(posix_name(self.name), os.O_RDONLY, 0))
            except FileNotFoundError:
                return True
            return False
        return os.fstat(self._fd).st_nlink == 0

    # -- creation ---------------------------------------------------------------------------

    @classmethod
    def create(
        cls,
        name: str,
        size: int,
        header: bytes,
        *,
        reclaim_stale: bool = True,
        keep: bool = False,
        deadline: float = 0.0,
        tables: Sequence[tuple[int, bytes]] = (),
    ) -> Segment:
        """Create the object with O_CREAT|O_EXCL, mode 0600, size it (R-SEG-1), write ``header``
        (magic excluded; 512 bytes in v1, ``header_size`` in v2) and ``tables`` (offset, bytes:
        v2's initial message tables, R-SCHEMA-8), and publish the magic last with release
        semantics (R-SEG-6)."""
        check_host()
        name = validate_name(name)
        if len(header) < HEADER_SIZE or size < len(header):
            raise ValueError("segment smaller than the header")
        if not _POSIX:  # pragma: no cover - Windows, untested here
            return cls._create_windows(name, size, header, tables)
        oname = posix_name(name)
        for _attempt in range(8):
            try:
                fd = _posixshmem.shm_open(oname, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
            except FileExistsError:
                cls._check_existing(name, reclaim_stale, deadline)
                continue  # reclaimed: try again
            except OSError as exc:
                raise _os_error(exc, "cannot create segment", name) from None
            try:
                os.ftruncate(fd, size)
                mm = _map(fd, size)
            except OSError as exc:
                os.close(fd)
                _posixshmem.shm_unlink(oname)
                raise _os_error(exc, "cannot size/map segment", name) from None
            seg = cls(name, mm, size, created=True, keep=keep)
            seg._fd = fd  # kept open for R-SEG-9 (closed by close())
            seg._publish(header, tables)
            return seg
        raise AlreadyExists(f"segment {name!r} keeps being re-created by another process")

    def _publish(self, header: bytes, tables: Sequence[tuple[int, bytes]] = ()) -> None:
        mm = self.mm
        assert mm is not None
        mm[8 : len(header)] = header[8:]
        for off, data in tables:
            mm[off : off + len(data)] = data
        _native.store_release64(mm, OFF_MAGIC, MAGIC_U64)

    @classmethod
    def _check_existing(cls, name: str, reclaim_stale: bool, deadline: float) -> None:
        """An object exists under ``name``: raise AlreadyExists / StaleSegment / CorruptHeader /
        VersionMismatch, or unlink it (stale and reclaiming, R-STALE-2) and return."""
        oname = posix_name(name)
        while True:
            try:
                fd = _posixshmem.shm_open(oname, os.O_RDWR, 0)
            except FileNotFoundError:
                return  # vanished meanwhile: retry the create
            except OSError as exc:
                raise _os_error(exc, "cannot open existing segment", name) from None
            try:
                size = os.fstat(fd).st_size
                if 0 < size < HEADER_SIZE:
                    # No creator leaves this size (it sizes the object at once, R-SEG-1): a
                    # truncated object, never reclaimed (R-STALE-2, spec/vectors D16).
                    raise CorruptHeader(
                        f"segment {name!r} exists and is {size} bytes, smaller than the "
                        f"{HEADER_SIZE}-byte header; remove it (rm /dev/shm/{name}) if no peer "
                        "uses it"
                    )
                if size >= HEADER_SIZE:
                    mm = mmap.mmap(
                        fd,
                        min(size, MAX_HEADER_SIZE),  # a v2 header may be longer (R-VER-7)
                        flags=mmap.MAP_SHARED,
                        prot=mmap.PROT_READ | mmap.PROT_WRITE,
                    )
                else:
                    mm = None
            finally:
                os.close(fd)
            try:
                if mm is not None and _native.load_acquire64(mm, OFF_MAGIC) != 0:
                    validate_any(mm, size, name)  # Corrupt / Version, either version (R-VER-7)
                    pid, _state, start = slot_owner(mm, OFF_CREATOR)
                    if process_alive(pid, start):
                        raise AlreadyExists(
                            f"segment {name!r} exists and its creator (pid {pid}) is alive; "
                            "expected a free name: choose another name or stop that process"
                        )
                    cls._reclaim(mm, name, pid, reclaim_stale)  # stale (R-STALE-1)
                    return
                # Magic still zero: a creator is initialising it, or died doing so. Its header
                # cannot be validated, so it is never reclaimed (R-STALE-2), as in C++.
                if time.monotonic() >= deadline:
                    raise CorruptHeader(
                        f"segment {name!r} exists but its magic is still zero after the create "
                        "deadline (its creator died while initialising it); expected an "
                        f"initialised segment: remove it (shmbridge rm {name}) if no peer uses it"
                    )
            finally:
                if mm is not None:
                    mm.close()
            time.sleep(0.001)

    @staticmethod
    def _reclaim(mm: mmap.mmap, name: str, pid: int, reclaim_stale: bool) -> None:
        """R-STALE-2/3: ``mm`` maps a stale segment whose creator slot held ``pid`` (not a live
        process) when it was inspected. Unlink it only after a CAS of that pid to our own pid
        succeeded, so that two concurrent reclaimers never unlink each other's fresh segment; if
        the CAS fails, another reclaimer claimed it first and the caller retries the create.
        The claim follows R-LIVE-1: start_time = 0 (release), CAS pid, then our own stamp, so
        another reclaimer never sees our pid next to the dead creator's stamp."""
        if not reclaim_stale:
            raise StaleSegment(
                f"segment {name!r} was left by a dead creator; reclaiming is off. Remove it with: "
                f"rm /dev/shm/{name}"
            )
        _native.store_release64(mm, OFF_CREATOR + SLOT_START_TIME, 0)
        if _native.compare_exchange(mm, OFF_CREATOR + SLOT_PID, pid, os.getpid()) != pid:
            return
        _native.store_release64(mm, OFF_CREATOR + SLOT_START_TIME, own_start_time())
        oname = posix_name(name)
        try:
            _posixshmem.shm_unlink(oname)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise _os_error(exc, "cannot remove stale segment", name) from None

    @classmethod
    def _create_windows(
        cls, name: str, size: int, header: bytes, tables: Sequence[tuple[int, bytes]]
    ) -> Segment:  # pragma: no cover
        mapping, _req, _rsp = windows_names(name)
        mm = _win_mmap(size, mapping)
        if _native.load_acquire64(mm, OFF_MAGIC) != 0:
            mm.close()
            raise AlreadyExists(f"segment {name!r} exists (Windows mapping {mapping})")
        seg = cls(name, mm, size, created=True)
        seg._publish(header, tables)
        return seg

    # -- attach -----------------------------------------------------------------------------

    @classmethod
    def attach(cls, name: str, *, deadline: float, validate: Validator = validate_v1) -> Segment:
        """Open and map an existing segment; wait while it does not exist yet or is still being
        initialised (size 0 or magic 0, R-SEG-6) until ``deadline`` (time.monotonic), polling
        every 2 ms doubling to 50 ms (R-ATTACH-1), then SEGMENT_NOT_FOUND. The header is
        validated by ``validate`` (the API's version: R-LAYOUT-*, or R-SCHEMA-9). Never registers
        anything that unlinks (R-SEG-3)."""
        check_host()
        name = validate_name(name)
        if not _POSIX:  # pragma: no cover
            if validate is not validate_v1:  # pragma: no cover - Windows
                raise OsError(
                    f"cannot attach to {name!r}: protocol v2 on Windows is not implemented in the "
                    "Python package yet (the v1 API is); use a POSIX host"
                )
            return cls._attach_windows(name)
        oname = posix_name(name)
        start = time.monotonic()
        pause = _ATTACH_FIRST_PAUSE
        while True:
            try:
                fd = _posixshmem.shm_open(oname, os.O_RDWR, 0)
            except FileNotFoundError:
                now = time.monotonic()
                if now >= deadline:
                    raise SegmentNotFound(
                        f"no segment named {name!r} (expected /dev/shm/{name}) "
                        f"{_waited(start, deadline, now)}; start the creator first, check the "
                        "name, or give attach a longer timeout"
                    ) from None
                time.sleep(min(pause, deadline - now))
                pause = min(2 * pause, _ATTACH_MAX_PAUSE)
                continue
            except OSError as exc:
                raise _os_error(exc, "cannot open segment", name) from None
            try:
                size = os.fstat(fd).st_size
                mm = _map(fd, size) if size >= HEADER_SIZE else None
            except OSError as exc:
                raise _os_error(exc, "cannot map segment", name) from None
            finally:
                os.close(fd)
            if size != 0 and size < HEADER_SIZE:
                raise CorruptHeader(
                    f"segment {name!r} is {size} bytes, smaller than the {HEADER_SIZE}-byte header"
                )
            if mm is not None and _native.load_acquire64(mm, OFF_MAGIC) != 0:
                try:
                    validate(mm, size, name)
                except BaseException:
                    mm.close()
                    raise
                return cls(name, mm, size, created=False)
            if mm is not None:
                mm.close()
            now = time.monotonic()
            if now >= deadline:
                raise SegmentNotFound(
                    f"segment {name!r} exists but its creator has not finished initialising it "
                    f"(size {size}, magic still zero) {_waited(start, deadline, now)}; start the "
                    "creator or give attach a longer timeout"
                )
            time.sleep(min(pause, deadline - now))
            pause = min(2 * pause, _ATTACH_MAX_PAUSE)

    @classmethod
    def _attach_windows(cls, name: str) -> Segment:  # pragma: no cover
        mapping, _req, _rsp = windows_names(name)
        mm = _win_mmap(HEADER_SIZE, mapping)
        _capacity, size = validate_fixed(mm[:HEADER_SIZE], 1 << 62)
        mm.close()
        mm = _win_mmap(size, mapping)
        return cls(name, mm, size, created=False)

    # -- close ------------------------------------------------------------------------------

    def close(self) -> None:
        """Unmap (deferred while zero-copy views are alive, R-CLOSE-3) and, creator only, unlink
        (R-SEG-3). Idempotent."""
        mm, self.mm = self.mm, None
        fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)
        if mm is not None:
            try:
                mm.close()
            except BufferError:
                # Views still export the mapping: leave it mapped; it is unmapped when the last
                # view (which keeps the mmap object alive) is garbage collected.
                warnings.warn(
                    f"segment {self.name!r} closed while zero-copy views into it are alive; the "
                    "mapping stays valid until they are gone",
                    SegmentBusyWarning,
                    stacklevel=3,
                )
        self.unlink()

    def unlink(self) -> None:
        if self.created and not self.keep and not self._unlinked and _POSIX:
            self._unlinked = True
            try:
                _posixshmem.shm_unlink(posix_name(self.name))
            except FileNotFoundError:
                pass
            except OSError as exc:
                raise _os_error(exc, "cannot unlink segment", self.name) from None


def unlink(name: str) -> bool:
    """Remove the OS object ``name`` (an administrative tool, e.g. for a stale segment). Returns
    False if it did not exist."""
    if not _POSIX:  # pragma: no cover
        return False
    try:
        _posixshmem.shm_unlink(posix_name(name))
    except FileNotFoundError:
        return False
    return True


def exists(name: str) -> bool:
    if sys.platform.startswith("linux"):
        return os.path.exists(f"/dev/shm/{validate_name(name)}")
    if not _POSIX:  # pragma: no cover
        return False
    try:
        fd = _posixshmem.shm_open(posix_name(name), os.O_RDONLY, 0)
    except FileNotFoundError:
        return False
    os.close(fd)
    return True


@dataclass(frozen=True)
class RemovedSegment:
    """R-SEG-10: a shared-memory object whose name was removed while processes still hold it."""

    name: str  #: the name it had
    holders: tuple[int, ...]  #: pids that map it or hold a descriptor of it
    path: str  #: opens it: /proc/PID/fd/N, or /proc/PID/map_files/... (root); "" if none


def find_removed(name: str | None = None) -> list[RemovedSegment]:
    """R-SEG-10 (Linux): objects of /dev/shm that were unlinked while still held, found through
    the ``/dev/shm/NAME (deleted)`` entries of /proc/PID/maps and /proc/PID/fd (processes of other
    users are skipped: their /proc entries are not readable). Empty elsewhere."""
    if not sys.platform.startswith("linux"):
        return []
    prefix, suffix = "/dev/shm/", " (deleted)"
    found: dict[tuple[str, int], tuple[set[int], list[str]]] = {}

    def note(seg: str, ino: int, pid: int, path: str) -> None:
        holders, paths = found.setdefault((seg, ino), (set(), []))
        holders.add(pid)
        if path:
            paths.append(path)

    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        pid = int(entry)
        try:
            with open(f"/proc/{pid}/maps", encoding="utf-8", errors="replace") as f:
                maps = f.read().splitlines()
        except OSError:
            continue
        for line in maps:
            fields = line.split(maxsplit=5)
            if len(fields) < 6 or not (fields[5].startswith(prefix) and fields[5].endswith(suffix)):
                continue
            seg = fields[5][len(prefix) : -len(suffix)]
            if name is None or seg == name:
                note(seg, int(fields[4]), pid, f"/proc/{pid}/map_files/{fields[0]}")
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            path = f"/proc/{pid}/fd/{fd}"
            try:
                target = os.readlink(path)
                if not (target.startswith(prefix) and target.endswith(suffix)):
                    continue
                seg = target[len(prefix) : -len(suffix)]
                if name is None or seg == name:
                    note(seg, os.stat(path).st_ino, pid, path)
            except OSError:
                continue
    out = []
    for (seg, _ino), (holders, paths) in sorted(found.items()):
        # A descriptor opens for any reader of the same user; map_files only for root.
        paths.sort(key=lambda p: "/map_files/" in p)
        readable = next((p for p in paths if os.access(p, os.R_OK)), "")
        out.append(RemovedSegment(seg, tuple(sorted(holders)), readable))
    return out
