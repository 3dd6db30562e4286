#!/usr/bin/env python3
"""The camera example's requester in Python (protocol v2): the mirror of the C++
``camera_requester``, to run the exchange the other way (Python requester, C++ or Python
``camera_responder``).

Creates the segment ``Camera`` with the schemas of ``camera_responder.REQUEST`` and ``REPLY``,
sends round r's frame ``image[y, x, c] = (x + 2y + 3c + 7r) mod 256`` and ``stamp = r / 30.0``
with ``call`` (send + a copy of the reply: the convenient API; ``receive()`` gives zero-copy
views instead), and checks every value of every reply against the detection rule of
cpp/examples/README.md (``camera_responder.detect``).

    python python/examples/camera_requester.py [--rounds N] [--name Camera] [--timeout SEC]
                                               [--quiet] [--every N]

Exit codes: 0 all rounds verified; 1 a verification failure; 2 a usage error; the spec's exit
code (10..28) on a shmbridge error, e.g. 16 (PEER_GONE) when the responder closed or crashed (the
message says which, R-LIVE-5).
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import numpy.typing as npt
from camera_responder import CHANNELS, HEIGHT, REPLY, REQUEST, WIDTH, detect

import shmbridge


def frame_base() -> npt.NDArray[np.uint8]:
    """(x + 2y + 3c) mod 256: round r's frame is this plus 7r, mod 256."""
    y, x, c = np.indices((HEIGHT, WIDTH, CHANNELS))
    base: npt.NDArray[np.uint8] = ((x + 2 * y + 3 * c) % 256).astype(np.uint8)
    return base


def positive(text: str) -> int:
    v = int(text)
    if v <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, found {text}")
    return v


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=positive, default=10)
    p.add_argument("--name", default="Camera", help="segment name (default Camera)")
    p.add_argument("--timeout", type=float, default=5.0, help="seconds per wait (default 5)")
    p.add_argument("--quiet", action="store_true", help="print every Nth round only")
    p.add_argument("--every", type=positive, default=100, help="with --quiet (default 100)")
    args = p.parse_args(argv)
    if not args.timeout >= 0:
        p.error("--timeout must be >= 0")

    base = frame_base()
    frame = np.empty_like(base)
    micros: list[float] = []
    failures = boxes_seen = 0
    try:
        with shmbridge.MessageRequester.create(
            args.name, REQUEST, REPLY, timeout=args.timeout
        ) as req:
            print(f"camera: created {args.name}: {REQUEST} -> {REPLY}; waiting for a responder")
            for r in range(args.rounds):
                np.add(base, np.uint8(7 * r % 256), out=frame)  # wraps mod 256 (uint8)
                stamp = r / 30.0
                t0 = time.perf_counter()
                reply = req.call(image=frame, stamp=stamp)  # send + copies of the reply fields
                micros.append((time.perf_counter() - t0) * 1e6)
                boxes = reply["boxes"]  # float32 (n, 6)
                want = detect(frame, stamp)
                boxes_seen += boxes.shape[0]
                if boxes.shape != want.shape or not np.array_equal(boxes, want):
                    failures += 1
                    print(
                        f"round {r}: FAILED: expected {want.shape[0]} boxes, found shape "
                        f"{boxes.shape}",
                        flush=True,
                    )
                elif not args.quiet or r % args.every == 0 or r + 1 == args.rounds:
                    print(f"round {r}: ok, {want.shape[0]} boxes, {micros[-1]:.1f} us")
    except shmbridge.PeerGone as e:
        why = "crashed" if e.reason is shmbridge.PeerGoneReason.DIED else "closed"  # R-LIVE-5
        print(f"camera: the responder {why}: {e}", file=sys.stderr)
        return e.exit_code
    except shmbridge.Error as e:
        print(f"camera: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("camera: interrupted", file=sys.stderr)
        return 130
    done = len(micros)
    # Round 0 also waits for the responder to start: the mean and the median are of the rounds
    # after it, when there are any (as the C++ camera_requester).
    steady = micros[1:] or micros
    print(
        f"summary: rounds {done}, verified {done - failures}, failures {failures}, boxes "
        f"{boxes_seen}, mean round trip {np.mean(steady):.1f} us, median round trip "
        f"{np.median(steady):.1f} us",
        flush=True,
    )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
