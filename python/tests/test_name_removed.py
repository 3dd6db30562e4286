"""R-SEG-9, R-SEG-10: a segment whose name another process removed while it is mapped.

The way it happens in the field: a script attaches the way the original design did,
``multiprocessing.shared_memory.SharedMemory(name="SimpleShm")``; CPython's resource tracker then
unlinks the name when that script exits (CPython gh-82300; only ``track=False``, Python >= 3.13,
avoids it). The live channel keeps working, but nobody can attach by name any more."""

from __future__ import annotations

import _posixshmem
import json
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest

import shmbridge
from shmbridge import SegmentNameRemovedWarning, cli

LEGACY_ATTACH = """
import sys
from multiprocessing import shared_memory
shm = shared_memory.SharedMemory(name=sys.argv[1])  # the original design's attach
print(bytes(shm.buf[:8]).decode())
shm.close()  # no unlink(): the resource tracker removes the name at exit all the same
"""


def legacy_attach_and_exit(name: str) -> None:
    out = subprocess.run(
        [sys.executable, "-c", LEGACY_ATTACH, name], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "SHMBRIDG"


def pair(name: str, **kw: float) -> tuple[shmbridge.Requester, shmbridge.Responder]:
    req = shmbridge.Requester.create(name, np.float32, (4,), **kw)
    rsp = shmbridge.Responder.attach(name, dtype=np.float32, shape=(4,))
    return req, rsp


def round_trip(req: shmbridge.Requester, rsp: shmbridge.Responder) -> None:
    req.send(np.arange(4, dtype=np.float32))
    with rsp.take(timeout=5) as request:
        request.array += 1.0
    assert (req.receive_copy(timeout=5) == np.arange(4, dtype=np.float32) + 1).all()


def test_r_seg_9_legacy_attacher_removes_the_name_and_the_creator_notices(segname: str) -> None:
    req, rsp = pair(segname)
    assert not req.name_removed and not rsp.name_removed
    legacy_attach_and_exit(segname)
    assert not os.path.exists(f"/dev/shm/{segname}")  # what the resource tracker did
    with pytest.warns(SegmentNameRemovedWarning, match="track=False"):
        assert req.name_removed
    assert not rsp.name_removed  # only the creator tracks its name
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once only
        assert req.name_removed
    round_trip(req, rsp)  # not an error: the channel keeps working
    with pytest.raises(shmbridge.SegmentNotFound):
        shmbridge.Responder.attach(segname, dtype=np.float32, shape=(4,), timeout=0)
    rsp.close()
    req.close()  # its unlink finds no name: not an error


def test_r_seg_9_waiting_creator_notices_with_its_liveness_probe(segname: str) -> None:
    req, rsp = pair(segname, spin=0, liveness_interval=0.01)
    req.send(np.zeros(4, np.float32))
    _posixshmem.shm_unlink("/" + segname)
    warned = pytest.warns(SegmentNameRemovedWarning, match="resource tracker")
    with warned, pytest.raises(shmbridge.Timeout):
        req.receive(timeout=0.1)  # nobody asked: the wait's liveness probe noticed
    assert req.name_removed
    rsp.close()
    req.close()


def test_r_seg_9_new_segment_under_the_name_does_not_hide_the_removal(segname: str) -> None:
    req, rsp = pair(segname)
    _posixshmem.shm_unlink("/" + segname)
    with pytest.warns(SegmentNameRemovedWarning):
        assert req.name_removed
    other = shmbridge.Requester.create(segname, np.uint8, (8,))
    assert req.name_removed and not other.name_removed
    other.close()
    rsp.close()
    req.close()
    assert not os.path.exists(f"/dev/shm/{segname}")


def test_r_seg_10_info_and_ls_find_a_segment_whose_name_was_removed(
    segname: str, capsys: pytest.CaptureFixture[str]
) -> None:
    req, rsp = pair(segname)
    legacy_attach_and_exit(segname)
    assert cli.main(["info", segname, "--json"]) == 10  # SEGMENT_NOT_FOUND: cannot attach
    info = json.loads(capsys.readouterr().out)
    assert info["state"] == "name-removed" and info["name_removed"] is True
    assert os.getpid() in info["held_by"]
    assert info["declared"]["shape"] == [4] and info["declared"]["dtype"] == "float32"
    assert info["slots"]["creator"]["pid"] == os.getpid()
    assert "track=False" in info["note"] and "resource tracker" in info["note"]

    assert cli.main(["info", segname]) == 10
    text = capsys.readouterr().out
    assert "name-removed" in text and "track=False" in text

    assert cli.main(["ls", "--json"]) == 0
    listed = [s for s in json.loads(capsys.readouterr().out) if s["name"] == segname]
    assert [s["state"] for s in listed] == ["name-removed"]

    assert cli.main(["rm", segname]) == 10  # nothing to remove, says why
    capsys.readouterr()
    rsp.close()
    req.close()
    assert cli.main(["info", segname]) == 10  # gone for good: plain SEGMENT_NOT_FOUND
    assert "name removed" not in capsys.readouterr().out


def test_segment_bytes_reads_the_own_mapping_after_the_name_is_gone(segname: str) -> None:
    """spec/API.md ``segment_bytes`` (diagnostics; the conformance peer's PEER.md §2 header
    fields): a copy of the handle's own mapping, readable after the name was removed (R-SEG-9)."""
    from shmbridge.layout import MAGIC, OFF_DECLARED, OFF_MAGIC

    req, rsp = pair(segname)
    _posixshmem.shm_unlink("/" + segname)
    assert rsp.segment_bytes(OFF_MAGIC, 8) == MAGIC
    assert req.segment_bytes(OFF_DECLARED, 80) == rsp.segment_bytes(OFF_DECLARED, 80)
    assert rsp.segment_bytes(0, 0) == b""
    with pytest.raises(shmbridge.InvalidArgument, match="segment_bytes"):
        rsp.segment_bytes(rsp.segment_size, 1)
    with pytest.raises(shmbridge.InvalidArgument, match="segment_bytes"):
        rsp.segment_bytes(-1, 1)
    rsp.close()
    with pytest.raises(shmbridge.InvalidArgument, match="closed"):
        rsp.segment_bytes(0, 8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SegmentNameRemovedWarning)
        req.close()
