"""shmbridge: a C++ <-> Python channel moving n-d arrays through shared memory: protocol v1.1
(one array, ``Requester``/``Responder``) and protocol v2 (typed messages of named fields,
``MessageRequester``/``MessageResponder``, ``Schema``).

This is the Python implementation of spec/PROTOCOL.md, independent of the C++ library; only the
atomics and the cross-process wait/wake are native (``shmbridge._native``).
"""

from __future__ import annotations

from .channel import Options, Reply, Request, Requester, Responder, ViewEscapedWarning
from .dtype import DType, dtype_code
from .errors import (
    AlreadyExists,
    CapacityExceeded,
    CorruptHeader,
    DtypeMismatch,
    Error,
    ErrorCode,
    HandlerFailed,
    InvalidArgument,
    InvalidName,
    OsError,
    OutOfTurn,
    PeerGone,
    PeerGoneReason,
    PermissionDenied,
    ProtocolViolation,
    RoleTaken,
    SchemaMismatch,
    SegmentNotFound,
    ShapeMismatch,
    StaleSegment,
    Timeout,
    VersionMismatch,
    error_for,
    error_name,
    exit_code,
)
from .message import MessageRequest, MessageRequester, MessageResponder, MessageView
from .protocol import Phase
from .schema import Schema, inplace, upto
from .segment import SegmentBusyWarning, SegmentNameRemovedWarning

__version__ = "0.1.0"
PROTOCOL_VERSION = (1, 1)  # spec/PROTOCOL.md 1.1; the header still says 1.0 (R-LAYOUT-4)
PROTOCOL_VERSION_2 = (2, 0)  # spec/PROTOCOL.md Part II (MessageRequester/MessageResponder)

__all__ = [
    "PROTOCOL_VERSION",
    "PROTOCOL_VERSION_2",
    "AlreadyExists",
    "CapacityExceeded",
    "CorruptHeader",
    "DType",
    "DtypeMismatch",
    "Error",
    "ErrorCode",
    "HandlerFailed",
    "InvalidArgument",
    "InvalidName",
    "MessageRequest",
    "MessageRequester",
    "MessageResponder",
    "MessageView",
    "Options",
    "OsError",
    "OutOfTurn",
    "PeerGone",
    "PeerGoneReason",
    "PermissionDenied",
    "Phase",
    "ProtocolViolation",
    "Reply",
    "Request",
    "Requester",
    "Responder",
    "RoleTaken",
    "Schema",
    "SchemaMismatch",
    "SegmentBusyWarning",
    "SegmentNameRemovedWarning",
    "SegmentNotFound",
    "ShapeMismatch",
    "StaleSegment",
    "Timeout",
    "VersionMismatch",
    "ViewEscapedWarning",
    "__version__",
    "dtype_code",
    "error_for",
    "error_name",
    "exit_code",
    "inplace",
    "upto",
]
