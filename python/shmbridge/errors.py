"""Error taxonomy of PROTOCOL.md §8 (R-ERR-1, R-ERR-2): codes, names and exit codes equal
``spec/errors.json``; one exception subclass per code, named as in ``spec/API.md``."""

from __future__ import annotations

import enum
from typing import ClassVar

__all__ = [
    "EXIT_CODES",
    "AlreadyExists",
    "CapacityExceeded",
    "CorruptHeader",
    "DtypeMismatch",
    "Error",
    "ErrorCode",
    "InvalidArgument",
    "InvalidName",
    "OsError",
    "OutOfTurn",
    "PeerGone",
    "PeerGoneReason",
    "PermissionDenied",
    "ProtocolViolation",
    "RoleTaken",
    "SchemaMismatch",
    "SegmentNotFound",
    "ShapeMismatch",
    "StaleSegment",
    "Timeout",
    "VersionMismatch",
    "error_for",
    "error_name",
    "exit_code",
]


class ErrorCode(enum.IntEnum):
    """Numeric error codes (R-ERR-1). ``0`` (OK) is not an error and has no member."""

    SEGMENT_NOT_FOUND = 1
    ALREADY_EXISTS = 2
    SHAPE_MISMATCH = 3
    DTYPE_MISMATCH = 4
    CAPACITY_EXCEEDED = 5
    TIMEOUT = 6
    PEER_GONE = 7
    OUT_OF_TURN = 8
    VERSION_MISMATCH = 9
    CORRUPT_HEADER = 10
    INVALID_NAME = 11
    PERMISSION_DENIED = 12
    ROLE_TAKEN = 13
    PROTOCOL_VIOLATION = 14
    STALE_SEGMENT = 15
    INVALID_ARGUMENT = 16
    OS_ERROR = 17
    HANDLER_FAILED = 18
    SCHEMA_MISMATCH = 19


#: Process exit code of a command-line peer for each error (R-ERR-1): ``code + 9``.
EXIT_CODES: dict[ErrorCode, int] = {code: int(code) + 9 for code in ErrorCode}

#: Exit code for an unexpected internal failure / a usage error (R-ERR-1).
EXIT_INTERNAL = 1
EXIT_USAGE = 2


def error_name(code: int) -> str:
    """The spec name of ``code`` (``"TIMEOUT"``), or ``"UNKNOWN(n)"``."""
    try:
        return ErrorCode(code).name
    except ValueError:
        return f"UNKNOWN({code})"


def exit_code(code: int) -> int:
    """The process exit code for ``code`` (1 for an unknown code)."""
    try:
        return EXIT_CODES[ErrorCode(code)]
    except ValueError:
        return EXIT_INTERNAL


class PeerGoneReason(enum.Enum):
    """Why a peer is gone (R-LIVE-5): a supervisor restarts a peer that DIED, not one that
    CLOSED. The values are the names of the peers' event log (spec/PEER.md §2)."""

    CLOSED = "CLOSED"  #: the peer detached cleanly (its slot CLOSED with pid 0, or R-CLOSE-2)
    DIED = "DIED"  #: the peer's process is gone without closing (or R-REC-2 completed its round)


class Error(Exception):
    """Base of every shmbridge error. Carries ``code``, ``name``, ``exit_code`` and a message that
    states what was expected, what was found and what to do (R-ERR-2). ``reply_code`` is the
    reply_code of the reply the error was raised from (after T4, R-MSG-5), None for an error that
    did not come from a reply. ``field`` is the message field a protocol v2 check names
    (R-FIELD-7: checks C2-C8, X1-X6, S1-S7, E1-E8 and field access), None for every other
    error. ``check`` is the label of the Part II check table row that failed (``"H13"``,
    ``"S3"``; informative, for diagnostics and the shared vectors), None for other errors."""

    code: ClassVar[ErrorCode]

    def __init__(
        self,
        message: str = "",
        *,
        reply_code: int | None = None,
        field: str | None = None,
        check: str | None = None,
    ) -> None:
        super().__init__(message or self.default_message())
        self.message: str = message or self.default_message()
        self.reply_code: int | None = reply_code
        self.field: str | None = field
        self.check: str | None = check

    @classmethod
    def default_message(cls) -> str:
        return cls.code.name.lower().replace("_", " ")

    @property
    def name(self) -> str:
        return self.code.name

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.code]

    def __str__(self) -> str:
        return f"{self.code.name}: {self.message}"

    def __reduce__(self) -> tuple[type[Error], tuple[str], dict[str, object]]:
        # the state carries reply_code, field (and PeerGone.reason) across pickling
        return (type(self), (self.message,), dict(self.__dict__))


class SegmentNotFound(Error, FileNotFoundError):
    code = ErrorCode.SEGMENT_NOT_FOUND


class AlreadyExists(Error, FileExistsError):
    code = ErrorCode.ALREADY_EXISTS


class ShapeMismatch(Error, ValueError):
    code = ErrorCode.SHAPE_MISMATCH


class DtypeMismatch(Error, TypeError):
    code = ErrorCode.DTYPE_MISMATCH


class CapacityExceeded(Error, ValueError):
    code = ErrorCode.CAPACITY_EXCEEDED


class Timeout(Error, TimeoutError):
    code = ErrorCode.TIMEOUT


class PeerGone(Error, ConnectionError):
    """The other side is gone; ``reason`` says whether it CLOSED or DIED (R-LIVE-5)."""

    code = ErrorCode.PEER_GONE

    def __init__(
        self,
        message: str = "",
        *,
        reason: PeerGoneReason = PeerGoneReason.DIED,
        reply_code: int | None = None,
        field: str | None = None,
        check: str | None = None,
    ) -> None:
        super().__init__(message, reply_code=reply_code, field=field, check=check)
        self.reason: PeerGoneReason = reason


class OutOfTurn(Error):
    code = ErrorCode.OUT_OF_TURN


class VersionMismatch(Error):
    code = ErrorCode.VERSION_MISMATCH


class CorruptHeader(Error):
    code = ErrorCode.CORRUPT_HEADER


class InvalidName(Error, ValueError):
    code = ErrorCode.INVALID_NAME


class PermissionDenied(Error, PermissionError):
    code = ErrorCode.PERMISSION_DENIED


class RoleTaken(Error):
    code = ErrorCode.ROLE_TAKEN


class ProtocolViolation(Error):
    code = ErrorCode.PROTOCOL_VIOLATION


class StaleSegment(Error):
    code = ErrorCode.STALE_SEGMENT


class InvalidArgument(Error, ValueError):
    code = ErrorCode.INVALID_ARGUMENT


class OsError(Error, OSError):
    code = ErrorCode.OS_ERROR


class HandlerFailed(Error):
    """The responder's handler failed with a non-shmbridge error (R-MSG-3)."""

    code = ErrorCode.HANDLER_FAILED


class SchemaMismatch(Error, KeyError):
    """Protocol v2: the fields given or expected differ from the schema. A ``KeyError`` so that a
    message mapping raises it for an unknown field name (PROTOCOL.md R-FIELD-12)."""

    code = ErrorCode.SCHEMA_MISMATCH


_BY_CODE: dict[ErrorCode, type[Error]] = {
    cls.code: cls
    for cls in (
        SegmentNotFound,
        AlreadyExists,
        ShapeMismatch,
        DtypeMismatch,
        CapacityExceeded,
        Timeout,
        PeerGone,
        OutOfTurn,
        VersionMismatch,
        CorruptHeader,
        InvalidName,
        PermissionDenied,
        RoleTaken,
        ProtocolViolation,
        StaleSegment,
        InvalidArgument,
        OsError,
        HandlerFailed,
        SchemaMismatch,
    )
}


def error_class(code: int | ErrorCode) -> type[Error]:
    """The exception class for ``code``; unknown codes map to :class:`ProtocolViolation`."""
    try:
        return _BY_CODE[ErrorCode(code)]
    except ValueError:
        return ProtocolViolation


def error_for(
    code: int | ErrorCode, message: str = "", *, field: str | None = None, check: str | None = None
) -> Error:
    """Build the :class:`Error` subclass for ``code`` (API.md ``error_for``); ``field`` names the
    message field a protocol v2 check concerns (R-FIELD-7), ``check`` its check label."""
    try:
        return _BY_CODE[ErrorCode(code)](message, field=field, check=check)
    except ValueError:
        return ProtocolViolation(f"unknown error code {int(code)}: {message}")
