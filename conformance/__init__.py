"""shmbridge cross-process conformance kit.

``python -m conformance run`` starts pairs of peers (spec/PEER.md) over the case catalogue in
``conformance/cases/*.toml`` and checks exit codes, event logs, merged histories (against
``spec/transitions.json``), time bounds and leftover segments. ``python -m conformance coverage``
writes ``spec/COVERAGE.md``.
"""

__all__ = ["REPO_ROOT"]

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
