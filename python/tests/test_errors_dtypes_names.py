"""Error taxonomy (R-ERR-1, R-ERR-2), dtype codes (R-DTYPE-1) and names (R-NAME-1, R-NAME-2)
against the machine-readable spec files."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from conftest import load_spec_json
from hypothesis import given
from hypothesis import strategies as st

import shmbridge
from shmbridge import errors
from shmbridge.dtype import DType, dtype_code, numpy_dtype
from shmbridge.naming import posix_name, validate_name, windows_names

API_CLASSES = {
    "SEGMENT_NOT_FOUND": ("SegmentNotFound", FileNotFoundError),
    "ALREADY_EXISTS": ("AlreadyExists", FileExistsError),
    "SHAPE_MISMATCH": ("ShapeMismatch", ValueError),
    "DTYPE_MISMATCH": ("DtypeMismatch", TypeError),
    "CAPACITY_EXCEEDED": ("CapacityExceeded", ValueError),
    "TIMEOUT": ("Timeout", TimeoutError),
    "PEER_GONE": ("PeerGone", ConnectionError),
    "OUT_OF_TURN": ("OutOfTurn", None),
    "VERSION_MISMATCH": ("VersionMismatch", None),
    "CORRUPT_HEADER": ("CorruptHeader", None),
    "INVALID_NAME": ("InvalidName", ValueError),
    "PERMISSION_DENIED": ("PermissionDenied", PermissionError),
    "ROLE_TAKEN": ("RoleTaken", None),
    "PROTOCOL_VIOLATION": ("ProtocolViolation", None),
    "STALE_SEGMENT": ("StaleSegment", None),
    "INVALID_ARGUMENT": ("InvalidArgument", ValueError),
    "OS_ERROR": ("OsError", OSError),
    "HANDLER_FAILED": ("HandlerFailed", None),
    "SCHEMA_MISMATCH": ("SchemaMismatch", KeyError),
}


def test_r_err_1_codes_names_exits_equal_errors_json() -> None:
    """R-ERR-1: names, numeric codes and exit codes are exactly spec/errors.json."""
    table = load_spec_json("errors.json")["errors"]
    assert [(e["code"], e["name"]) for e in table] == [(int(c), c.name) for c in errors.ErrorCode]
    for e in table:
        code = errors.ErrorCode[e["name"]]
        assert errors.exit_code(code) == e["exit"]
        assert errors.error_name(e["code"]) == e["name"]
        exc = errors.error_for(e["code"], "msg")
        assert exc.code == code and exc.name == e["name"] and exc.exit_code == e["exit"]
        cls_name, base = API_CLASSES[e["name"]]
        assert type(exc).__name__ == cls_name
        assert getattr(shmbridge, cls_name) is type(exc)
        assert isinstance(exc, shmbridge.Error)
        if base is not None:
            assert isinstance(exc, base)


def test_r_err_2_message_code_name_and_pickle() -> None:
    """R-ERR-2: every error carries code, name and message; it survives pickling (subprocesses)."""
    e = errors.Timeout("expected a reply within 1 s, found none; retry")
    assert "TIMEOUT" in str(e) and "expected" in str(e)
    e2 = pickle.loads(pickle.dumps(e))
    assert type(e2) is errors.Timeout and e2.message == e.message
    assert isinstance(errors.error_for(99), errors.ProtocolViolation)


def test_r_dtype_1_codes_equal_dtypes_json() -> None:
    """R-DTYPE-1: the dtype codes, names and itemsizes are exactly spec/dtypes.json."""
    table = load_spec_json("dtypes.json")["dtypes"]
    assert [(d["code"], d["name"]) for d in table] == [(int(d), d.name) for d in DType]
    for d in table:
        assert numpy_dtype(d["code"]).itemsize == d["itemsize"]
        assert dtype_code(np.dtype(d["name"])) == d["code"]
        assert numpy_dtype(d["code"]).byteorder in ("=", "|", "<")


@pytest.mark.parametrize("bad", [0, 15, 255, ">f4", ">i8", "U4", "object", "datetime64[s]"])
def test_r_dtype_1_unsupported_is_dtype_mismatch(bad: object) -> None:
    """R-DTYPE-1: an unsupported dtype passed by a caller is DTYPE_MISMATCH."""
    with pytest.raises(shmbridge.DtypeMismatch):
        dtype_code(bad)


@pytest.mark.parametrize("name", ["a", "SimpleShm", "x" * 30, "a.b-c_d", "0abc", "_x", "A-1.2"])
def test_r_name_1_valid(name: str) -> None:
    """R-NAME-1: 1..30 chars of [A-Za-z0-9_.-], not starting with '.' or '-'."""
    assert validate_name(name) == name
    assert validate_name("/" + name) == name  # one leading '/' accepted and ignored
    assert posix_name(name) == "/" + name  # R-NAME-2
    assert windows_names(name) == (f"Local\\{name}", f"Local\\{name}.req", f"Local\\{name}.rsp")


@pytest.mark.parametrize(
    "name", ["", "/", "//a", ".a", "-a", "x" * 31, "/" + "x" * 31, "a/b", "a b", "é", "a\0", "a:b"]
)
def test_r_name_1_invalid(name: str) -> None:
    """R-NAME-1: any other name is INVALID_NAME, before any OS object is touched."""
    with pytest.raises(shmbridge.InvalidName):
        validate_name(name)
    with pytest.raises(shmbridge.InvalidName):
        shmbridge.Requester.attach(name)


@given(st.text(max_size=40))
def test_r_name_1_property(name: str) -> None:
    """R-NAME-1: validation agrees with the rule for arbitrary strings."""
    import re

    canon = name[1:] if name.startswith("/") else name
    ok = re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,29}", canon) is not None
    try:
        validate_name(name)
        assert ok
    except shmbridge.InvalidName:
        assert not ok
