"""``shmbridge relay``: the local protocol across hosts over ZeroMQ (spec/RELAY.md).

The near end runs on the requester's host as the responder of its segment, the far end on the
responder's host as the requester of its segment; neither program changes. Needs pyzmq (the
``relay`` extra: ``pip install 'shmbridge[relay]'``); :mod:`.wire` does not.
"""

from __future__ import annotations

from .wire import WireCorrupt, WireError, WireVersion

__all__ = ["WireCorrupt", "WireError", "WireVersion"]
