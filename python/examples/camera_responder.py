#!/usr/bin/env python3
"""The Python "model" of the camera example (protocol v2, spec/PROTOCOL.md Part II).

Attaches as the responder to the segment the C++ ``camera_requester`` created (``Camera``),
stating the schemas it expects (R-SCHEMA-10: a segment with other fields, dtypes or shapes is a
``SchemaMismatch`` naming the field), and answers every request

    request {image: uint8 (480, 640, 3), stamp: float64 ()}
    reply   {boxes: float32 (n, 6)}, 0 <= n <= 100

with the detections of the rule in cpp/examples/README.md (the one place it is written down;
``camera_rule.hpp`` is its C++ twin), which the requester checks value by value. Zero-copy: the
request's fields are read-only views of the shared memory (valid until the reply, R-FIELD-11) and
the detections are written straight into the reply field (``reply_field``), no array is copied.
Either side may start first: attach waits for the segment (R-ATTACH-1). Serves until the
requester closes the channel (PEER_GONE with reason CLOSED, R-LIVE-4); a requester that crashed
(PEER_GONE with reason DIED, R-LIVE-5) is reported as a crash.

    python python/examples/camera_responder.py [--name Camera] [--timeout SEC] [--quiet]

Exit codes: 0 after the requester closed; 16 (PEER_GONE) when the requester crashed; the spec's
exit code of the first other error (spec/errors.json: 10 SEGMENT_NOT_FOUND, 15 TIMEOUT,
28 SCHEMA_MISMATCH, ...); 2 for a usage error; 130 on Ctrl-C.
"""

from __future__ import annotations

import argparse
import math
import sys
import time

import numpy as np
import numpy.typing as npt

import shmbridge

HEIGHT, WIDTH, CHANNELS = 480, 640, 3
MAX_BOXES = 100

#: What this responder expects; attach checks them against the creator's, field by field.
REQUEST = shmbridge.Schema(image=(np.uint8, (HEIGHT, WIDTH, CHANNELS)), stamp=(np.float64, ()))
REPLY = shmbridge.Schema(boxes=(np.float32, (shmbridge.upto(MAX_BOXES), 6)))


def frame_sum(image: npt.NDArray[np.uint8]) -> int:
    """S, the sum of all image bytes, exactly (at most 921,600 x 255 < 2^28)."""
    return int(image.sum(dtype=np.uint64))


def count(s: int) -> int:
    """n = S mod 101 detections (0 to 100)."""
    return s % (MAX_BOXES + 1)


def write_detections(
    boxes: npt.NDArray[np.float32], image: npt.NDArray[np.uint8], stamp: float, s: int
) -> None:
    """Fill ``boxes`` (n, 6) with the detections of the rule: row i is
    [i, image[i mod 480, 7i mod 640, i mod 3], (S mod 1000 + i) mod 1000, i / 2, float32(stamp), n].
    """
    n = boxes.shape[0]
    i = np.arange(n)
    boxes[:, 0] = i
    boxes[:, 1] = image[i % HEIGHT, (7 * i) % WIDTH, i % CHANNELS]
    boxes[:, 2] = (s % 1000 + i) % 1000
    boxes[:, 3] = i / 2
    boxes[:, 4] = stamp  # rounded to float32 to nearest, as C++'s static_cast<float>
    boxes[:, 5] = n


def detect(image: npt.NDArray[np.uint8], stamp: float) -> npt.NDArray[np.float32]:
    """The detections of one frame as a new (n, 6) float32 array (what a requester compares
    the reply with)."""
    s = frame_sum(image)
    boxes = np.empty((count(s), 6), np.float32)
    write_detections(boxes, image, stamp, s)
    return boxes


def answer(request: shmbridge.MessageRequest) -> int:
    """Reply to one request in place; returns the number of detections."""
    image = request.request["image"]  # read-only view of the shared memory, no copy
    stamp = float(request.request["stamp"])
    s = frame_sum(image)
    boxes = request.reply_field("boxes", (count(s), 6))  # writable view of the reply field
    write_detections(boxes, image, stamp, s)
    request.reply()  # publishes the reply field as written (T3)
    return int(boxes.shape[0])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--name", default="Camera", help="segment name (default Camera)")
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

    # Attach with the expected schemas; the library waits for the C++ creator to create the
    # segment (R-ATTACH-1), at most --timeout (10 s when waiting for requests without a limit).
    wait = args.timeout if math.isfinite(args.timeout) else 10.0
    try:
        rsp = shmbridge.MessageResponder.attach(args.name, REQUEST, REPLY, timeout=wait)
    except shmbridge.Error as e:
        print(f"camera_responder.py: {e}", file=sys.stderr)
        return e.exit_code

    rounds = boxes = 0
    t0 = time.perf_counter()
    try:
        with rsp:
            if not args.quiet:
                print(f"attached to {args.name!r}: {rsp.request_schema} -> {rsp.reply_schema}")
            while True:
                try:
                    request = rsp.take(timeout=args.timeout)
                except shmbridge.PeerGone as e:
                    if e.reason is shmbridge.PeerGoneReason.DIED:
                        # R-LIVE-5: a crash is not an end of service; a supervisor must see it.
                        print(
                            f"camera_responder.py: the requester crashed after {rounds} "
                            f"requests: {e}",
                            file=sys.stderr,
                        )
                        return e.exit_code
                    break  # the requester closed: normal end of service
                # A handler error fails the round with its code (the requester sees it) and
                # is re-raised here (R-MSG-3).
                with request:
                    n = answer(request)
                if not args.quiet:
                    print(f"request #{request.seq}: {n} boxes", flush=True)
                rounds += 1
                boxes += n
    except shmbridge.Error as e:
        print(f"camera_responder.py: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("camera_responder.py: interrupted", file=sys.stderr)
        return 130
    dt = time.perf_counter() - t0
    print(
        f"served {rounds} requests ({boxes} boxes) in {dt:.3f} s; the requester closed the channel",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
