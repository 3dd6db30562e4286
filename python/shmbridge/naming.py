"""Segment names (PROTOCOL.md §2: R-NAME-1, R-NAME-2)."""

from __future__ import annotations

import re

from .errors import InvalidName

__all__ = ["MAX_NAME_LENGTH", "posix_name", "validate_name", "windows_names"]

MAX_NAME_LENGTH = 30
_NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,29}")


def validate_name(name: str) -> str:
    """Return the canonical name (one leading ``/`` dropped) or raise :class:`InvalidName`
    (R-NAME-1). Nothing touches the OS."""
    if not isinstance(name, str):
        raise InvalidName(f"segment name must be a str, found {type(name).__name__}")
    canonical = name[1:] if name.startswith("/") else name
    if _NAME_RE.fullmatch(canonical) is None:
        raise InvalidName(
            f"invalid segment name {name!r}: expected 1 to {MAX_NAME_LENGTH} characters from "
            "[A-Za-z0-9_.-], not starting with '.' or '-' (one leading '/' is allowed); "
            "choose another name"
        )
    return canonical


def posix_name(name: str) -> str:
    """The POSIX shm object name: ``"/" + name`` (R-NAME-2)."""
    return "/" + validate_name(name)


def windows_names(name: str) -> tuple[str, str, str]:
    """Windows mapping name and the requester / responder wait events (R-NAME-2, R-WAIT-1)."""
    n = validate_name(name)
    return (f"Local\\{n}", f"Local\\{n}.req", f"Local\\{n}.rsp")
