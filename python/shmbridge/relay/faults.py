"""Test-only fault hook of the relay ends (spec/RELAY.md §12, not a user feature): with
``SHMBRIDGE_RELAY_CRASH_AT=POINT[@R]`` in its environment an end kills itself with SIGKILL the
R-th time (default 1) it reaches POINT, after logging ``{"event": "crash", "point": ...}``. The
points are the transitions of a round through the relay that no peer flag can reach, so that
tests can kill -9 an end at each of them deterministically (python/tests/test_relay_kill_matrix.py).
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass

from ..errors import InvalidArgument
from .link import Log

__all__ = ["ENV", "POINTS", "CrashPlan"]

ENV = "SHMBRIDGE_RELAY_CRASH_AT"

# Every point, in the order a round reaches it; the prefix names the end that checks it.
POINTS: dict[str, str] = {
    "near.taken": "the near end took the local request (T2), its REQ not yet sent",
    "near.req_sent": "the near end sent the REQ (the far end may not have it yet)",
    "near.rep_received": "the near end received the round's valid REP, T3 not yet published",
    "near.replied": "the near end published the reply (T3), the requester may not have it yet",
    "far.req_received": "the far end accepted a new REQ, its local send (T1) not yet done",
    "far.sent": "the far end sent the request on its segment (T1), the responder may not have it",
    "far.reply_taken": "the far end received the local reply (T4), its REP not yet sent",
    "far.rep_sent": "the far end sent the REP (the near end may not have it yet)",
}


@dataclass
class CrashPlan:
    """Where an end dies (``point`` None: never) and how often it has been there."""

    point: str | None = None
    at: int = 1
    hits: int = 0
    log: Log | None = None

    @classmethod
    def from_env(cls, end: str, log: Log) -> CrashPlan:
        """The plan of ``end`` (``near``/``far``) from ``SHMBRIDGE_RELAY_CRASH_AT``; a value
        that names another end's point leaves this end alone (one variable for both)."""
        text = os.environ.get(ENV, "").strip()
        if not text:
            return cls()
        point, _, rounds = text.partition("@")
        if point not in POINTS:
            raise InvalidArgument(
                f"{ENV}={text!r}: expected POINT[@R] with POINT one of {', '.join(POINTS)}; "
                "unset it (it is a test hook)"
            )
        try:
            at = int(rounds) if rounds else 1
        except ValueError:
            at = 0
        if at < 1:
            raise InvalidArgument(
                f"{ENV}={text!r}: expected R, the visit to die at, a whole number >= 1; "
                f"found {rounds!r}"
            )
        if not point.startswith(end + "."):
            return cls()
        return cls(point, at, 0, log)

    def reached(self, point: str) -> None:
        """Called at ``point``: SIGKILL this process on the planned visit (no cleanup at all)."""
        assert point in POINTS, point
        if point != self.point:
            return
        self.hits += 1
        if self.hits == self.at:
            if self.log is not None:
                self.log.event("crash", point=point, hit=self.hits)
            os.kill(os.getpid(), signal.SIGKILL)
