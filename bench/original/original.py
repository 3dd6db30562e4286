"""The ORIGINAL design's Python side (shared/seed), re-implemented faithfully as the baseline of
the benchmarks: poll the plain status int with time.sleep(0.01) for 1, read the payload, set 0,
compute ``data + 1.0`` (a fresh array), wait for 0, write it back with ``tobytes()``, set 2.

    python bench/original/original.py --name N [--rounds R] [--rows 512] [--cols 512]
    python bench/original/original.py --idle SECONDS --name N

The per-round print of the shape and the unique values of the seed is left out (it would only
make the baseline slower). ``--idle`` creates its own segment and polls for SECONDS for a request
that never comes, then prints the process CPU time spent (JSON).
"""

from __future__ import annotations

import argparse
import json
import os
import struct
import time
from multiprocessing import resource_tracker, shared_memory

import numpy as np

METADATA_SIZE = 64


class SharedMemoryHandler:
    def __init__(self, name: str, shape: tuple[int, int], create: bool = False) -> None:
        self.shape = shape
        self.dtype = np.float32
        self.metadata_size = METADATA_SIZE
        nbytes = int(np.prod(shape)) * 4
        self.shm = shared_memory.SharedMemory(
            name=name, create=create, size=METADATA_SIZE + nbytes if create else 0
        )
        if not create:
            # Python < 3.13 registers an attached segment with the resource tracker, which would
            # unlink the C++ side's segment at exit (a known flaw of the original, not measured).
            resource_tracker.unregister(self.shm._name, "shared_memory")  # type: ignore[attr-defined]

    def get_status(self) -> int:
        return struct.unpack_from("i", self.shm.buf, 0)[0]

    def set_status(self, value: int) -> None:
        struct.pack_into("i", self.shm.buf, 0, value)

    def read_from_cpp(self) -> np.ndarray:
        while self.get_status() != 1:  # wait for C++ to write
            time.sleep(0.01)
        ptr = self.metadata_size
        array = np.frombuffer(self.shm.buf[ptr:], dtype=self.dtype).reshape(self.shape)
        self.set_status(0)  # clear the status
        return array

    def write_to_cpp(self, array: np.ndarray) -> None:
        while self.get_status() != 0:  # wait for C++ to read
            time.sleep(0.01)
        self.shm.buf[self.metadata_size :] = array.tobytes()
        self.set_status(2)  # Python wrote


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--name", default="SimpleShm")
    ap.add_argument("--rounds", type=int, default=0, help="0 = serve until killed")
    ap.add_argument("--rows", type=int, default=512)
    ap.add_argument("--cols", type=int, default=512)
    ap.add_argument("--idle", type=float, default=0.0)
    a = ap.parse_args()
    shape = (a.rows, a.cols)
    if a.idle > 0:
        h = SharedMemoryHandler(a.name, shape, create=True)
        try:
            print("READY", flush=True)
            c0 = os.times()
            t0 = time.monotonic()
            while h.get_status() != 1 and time.monotonic() - t0 < a.idle:
                time.sleep(0.01)
            c1 = os.times()
            print(
                json.dumps(
                    {
                        "lang": "py",
                        "role": "original_idle",
                        "wall_s": time.monotonic() - t0,
                        "cpu_s": (c1.user - c0.user) + (c1.system - c0.system),
                    }
                )
            )
        finally:
            h.shm.close()
            h.shm.unlink()
        return 0
    h = SharedMemoryHandler(a.name, shape)
    n = 0
    while a.rounds == 0 or n < a.rounds:
        data = h.read_from_cpp()
        processed = data + 1.0
        h.write_to_cpp(processed)
        n += 1
    del data
    h.shm.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
