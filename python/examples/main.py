#!/usr/bin/env python3
"""The Python side of the original demo, on shmbridge.

Attaches as the responder to the segment the C++ program created (``SimpleShm``, float32
(512, 512)), prints the shape and the unique values of each request, adds 1.0 in place (zero-copy:
no ``tobytes()``, no new array per round) and publishes the reply. Either side may start first:
attach waits for the segment (R-ATTACH-1). Serves until the requester closes the channel
(PEER_GONE with reason CLOSED is the normal end of service, R-LIVE-4); a requester that crashed
(PEER_GONE with reason DIED, R-LIVE-5) is reported as a crash.

    python python/examples/main.py [--name SimpleShm] [--timeout SEC] [--quiet]

Exit codes: 0 after the requester closed; 16 (PEER_GONE) when the requester crashed; the spec's
exit code of the first other error (spec/errors.json: 10 SEGMENT_NOT_FOUND, 15 TIMEOUT, ...); 2 for
a usage error; 130 on Ctrl-C.
"""

from __future__ import annotations

import argparse
import math
import sys
import time

import numpy as np

import shmbridge

SHAPE = (512, 512)
DTYPE = np.float32


def attach(name: str, timeout: float) -> shmbridge.Responder:
    """Attach; the library waits for the C++ creator to create the segment (R-ATTACH-1), at most
    ``timeout`` (10 s when waiting for requests without a limit)."""
    wait = timeout if math.isfinite(timeout) else 10.0
    return shmbridge.Responder.attach(name, dtype=DTYPE, shape=SHAPE, timeout=wait)


def describe(a: np.ndarray, limit: int = 8) -> str:  # type: ignore[type-arg]
    u = np.unique(a)
    shown = ", ".join(f"{v:g}" for v in u[:limit])
    more = f", ... ({u.size} in total)" if u.size > limit else ""
    return f"shape {a.shape}, unique values [{shown}{more}]"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--name", default="SimpleShm", help="segment name (default SimpleShm)")
    p.add_argument(
        "--timeout",
        type=float,
        default=math.inf,
        help="seconds to wait for the segment and for each request (default: wait "
        "for requests until the requester closes)",
    )
    p.add_argument("--quiet", action="store_true", help="print only the final summary")
    args = p.parse_args(argv)
    if args.timeout < 0 or math.isnan(args.timeout):
        p.error("--timeout must be >= 0")

    try:
        rsp = attach(args.name, args.timeout)
    except shmbridge.Error as e:
        print(f"main.py: {e}", file=sys.stderr)
        return e.exit_code

    rounds = 0
    t0 = time.perf_counter()
    try:
        with rsp:
            if not args.quiet:
                print(f"attached to {args.name!r}: {rsp.dtype.name} {rsp.shape}", flush=True)
            while True:
                try:
                    request = rsp.take(timeout=args.timeout)
                except shmbridge.PeerGone as e:
                    if e.reason is shmbridge.PeerGoneReason.DIED:
                        # R-LIVE-5: a crash is not an end of service; a supervisor must see it.
                        print(
                            f"main.py: the requester crashed after {rounds} requests: {e}",
                            file=sys.stderr,
                        )
                        return e.exit_code
                    break  # the requester closed: normal end of service
                with request:
                    if not args.quiet:
                        print(f"request #{request.seq}: {describe(request.array)}", flush=True)
                    request.array += np.float32(1.0)  # in place, zero-copy
                    request.reply()
                rounds += 1
    except shmbridge.Error as e:
        print(f"main.py: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("main.py: interrupted", file=sys.stderr)
        return 130
    dt = time.perf_counter() - t0
    print(f"served {rounds} requests in {dt:.3f} s; the requester closed the channel", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
