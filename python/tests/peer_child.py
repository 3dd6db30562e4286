"""Child-process peers for the cross-process tests (run as a script by test_processes.py)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import time

import numpy as np

import shmbridge as sb


def attach_responder(name: str, **kw: object) -> sb.Responder:
    deadline = time.monotonic() + 10
    while True:
        try:
            return sb.Responder.attach(name, **kw)  # type: ignore[arg-type]
        except sb.SegmentNotFound:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.005)


#: The v2 modes' schemas: a small camera (test_processes_v2.py).
CAMERA = (
    sb.Schema(image=(np.uint8, (12, 16, 3)), stamp=(np.float64, ())),
    sb.Schema(boxes=(np.float32, (sb.upto(10), 6))),
)


def detections(request: sb.MessageView) -> dict[str, np.ndarray]:  # type: ignore[type-arg]
    """The camera responder's reply: int(stamp) mod 11 rows (0 to the maximum 10) of the
    image's sum mod 97, so the requester can verify every reply."""
    n = int(request["stamp"]) % 11
    return {"boxes": np.full((n, 6), int(request["image"].sum()) % 97, np.float32)}


def main() -> int:
    mode, name = sys.argv[1], sys.argv[2]
    if mode == "msg-responder-serve":
        msg = sb.MessageResponder.attach(name, *CAMERA, timeout=10)
        print("ready", flush=True)
        n = msg.serve(detections)
        msg.close()
        print(f"served {n}", flush=True)
        return 0
    if mode == "msg-responder-hold":
        msg = sb.MessageResponder.attach(name, *CAMERA, timeout=10)
        taken = msg.take(timeout=10)
        print(f"taken {taken.seq}", flush=True)
        time.sleep(60)
        return 1
    if mode == "msg-requester-hold":
        held = sb.MessageRequester.attach(name, *CAMERA, timeout=10)
        print("ready", flush=True)
        time.sleep(60)
        held.close()
        return 1
    if mode == "responder-serve":
        rsp = attach_responder(name)

        def add1(a: np.ndarray) -> None:  # type: ignore[type-arg]
            a += 1

        print("ready", flush=True)
        n = rsp.serve(add1)
        rsp.close()
        print(f"served {n}", flush=True)
        return 0
    if mode == "responder-hold":
        rsp = attach_responder(name)
        req = rsp.take(timeout=10)
        print(f"taken {req.seq}", flush=True)
        time.sleep(60)
        return 1
    if mode == "requester-hold":
        req = sb.Requester.attach(name)
        print("ready", flush=True)
        time.sleep(60)
        req.close()
        return 1
    if mode == "idle":
        seconds = float(sys.argv[3])
        rsp = attach_responder(name)
        t0, w0 = os.times(), time.monotonic()
        with contextlib.suppress(sb.Timeout):
            rsp.take(timeout=seconds)
        t1, w1 = os.times(), time.monotonic()
        cpu = (t1.user - t0.user) + (t1.system - t0.system)
        print(json.dumps({"cpu": cpu, "wall": w1 - w0}), flush=True)
        rsp.close()
        return 0
    if mode == "attach-close":
        sb.Responder.attach(name).close()
        return 0
    if mode == "attach-exit":
        rsp = sb.Responder.attach(name)
        os._exit(0 if rsp else 1)  # no close, no atexit, no finalizers
    if mode == "attach-wrong-dtype":
        try:
            sb.Responder.attach(name, dtype=np.complex128)
        except sb.DtypeMismatch as e:
            return e.exit_code
        return 1
    if mode == "attach-exception":
        rsp = sb.Responder.attach(name)
        raise RuntimeError(f"crash with a Python exception while attached to {rsp.name}")
    if mode == "create-crash":
        req = sb.Requester.create(name, np.float32, (4,))
        print("created", flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
        req.close()
    raise SystemExit(f"unknown mode {mode}")


if __name__ == "__main__":
    sys.exit(main())
