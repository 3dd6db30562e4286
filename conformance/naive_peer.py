"""A deliberately naive peer: the ORIGINAL design (shared/seed) on the v1 header layout.

Known-bad on purpose. It speaks the PEER.md command line and event log so the kit can run it, and
it writes/reads the same header layout, but the protocol is the original one:

* the status word is written with plain stores of 0 / 1 / 0 / 2 (``struct.pack_into``): no
  compare-and-swap, no phase check, no sequence number (R-STATE-1, R-STATE-2);
* it waits by polling with ``sleep(10 ms)`` (R-WAIT-1), reading ``word & 3``;
* it has no liveness slots and never notices a dead peer (R-LIVE-*), no role claim (R-STATE-5);
* its only timeout is a hard cap of 3 s on any wait, whatever ``--timeout`` says (R-WAIT-2);
* it validates nothing: not the header, the name, the shape or the dtype.

``python -m conformance run --known-bad`` runs it against the real peers and must see it fail.
"""

from __future__ import annotations

import mmap
import os
import struct
import sys
import time

import numpy as np

from . import peerkit as pk

HARD_CAP_S = 3.0
POLL_S = 0.010
EXIT = {"TIMEOUT": 15, "SEGMENT_NOT_FOUND": 10, "ALREADY_EXISTS": 11}


class NaiveError(Exception):
    def __init__(self, name):
        super().__init__(name)
        self.name = name


class Segment:
    def __init__(self, name, create, dtype=None, shape=None, capacity=None):
        self.path = pk.shm_path(name)
        self.creator = create
        if create:
            dt = pk.np_dtype(dtype)
            n = int(np.prod(shape, dtype=np.int64)) if shape else 1
            nbytes = n * dt.itemsize
            cap = capacity if capacity is not None else nbytes
            fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o666)  # original: no O_EXCL
            os.ftruncate(fd, pk.HEADER_SIZE + max(cap, 1))
            self.m = mmap.mmap(fd, pk.HEADER_SIZE + max(cap, 1))
            os.close(fd)
            m = self.m
            struct.pack_into("<HHIQQII", m, 0x008, 1, 0, 512, cap, 512 + cap, 0, 8)
            for off in (0x040, 0x090):
                struct.pack_into("<II", m, off, pk.DTYPE_CODES[dtype], len(shape))
                struct.pack_into("<8Q", m, off + 8, *(list(shape) + [0] * (8 - len(shape))))
                struct.pack_into("<Q", m, off + 72, nbytes)
            struct.pack_into("<I", m, 0x100, 0)
            m[0:8] = b"SHMBRIDG"
            self.dtype, self.shape = dtype, tuple(shape)
        else:
            try:
                fd = os.open(self.path, os.O_RDWR)
            except FileNotFoundError:
                raise NaiveError("SEGMENT_NOT_FOUND") from None
            size = os.fstat(fd).st_size
            self.m = mmap.mmap(fd, size)
            os.close(fd)
            code, ndim = struct.unpack_from("<II", self.m, 0x040)
            shape = struct.unpack_from("<8Q", self.m, 0x048)[:ndim]
            names = {v: k for k, v in pk.DTYPE_CODES.items()}
            self.dtype, self.shape = names.get(code, "uint8"), tuple(shape)
        self.np = pk.np_dtype(self.dtype)
        n = int(np.prod(self.shape, dtype=np.int64)) if self.shape else 1
        self.nbytes = n * self.np.itemsize

    # the original get_status/set_status: plain loads and stores
    def status(self) -> int:
        return struct.unpack_from("<I", self.m, 0x100)[0] & 3

    def set_status(self, v: int):
        struct.pack_into("<I", self.m, 0x100, v)

    def phase(self) -> str:
        return pk.phase_name(struct.unpack_from("<I", self.m, 0x100)[0])

    def view(self, shape=None, dtype=None):
        dt = pk.np_dtype(dtype) if dtype else self.np
        shape = self.shape if shape is None else shape
        n = int(np.prod(shape, dtype=np.int64)) if shape else 1
        avail = (len(self.m) - 512) // dt.itemsize
        return np.frombuffer(self.m, dtype=dt, count=min(n, avail), offset=512).reshape(-1)

    def wait_status(self, want: int):
        t0 = time.monotonic()
        while self.status() != want:
            if time.monotonic() - t0 > HARD_CAP_S:
                raise NaiveError("TIMEOUT")
            time.sleep(POLL_S)

    def close(self):
        try:
            self.m.close()
        except Exception:
            pass
        if self.creator:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass


def main(argv=None) -> int:
    a = pk.parse_args(sys.argv[1:] if argv is None else argv, prog="naive_peer")
    if a.print_clock:
        pk.EventLog.__new__(pk.EventLog)
        sys.stdout.write('{"event":"clock","t":%d}\n' % pk.now_ns())
        return 0
    log = pk.EventLog(a.label, "naive", a.role, a.name)
    f = a.faults
    seg = None
    rounds_ok = verified = mismatches = 0
    error = None

    def phase():
        return seg.phase() if seg else None

    def op_event(op, rnd, t0, result, cs=None, **kw):
        log.event(op, rnd, t0, pk.now_ns(), result, None, phase(), cs, **kw)

    def point(when, where, rnd):
        if when == "after" and f.corrupt and f.corrupt[2] == where and rnd <= 1:
            field, value, _ = f.corrupt
            v = pk.corrupt_header(a.name, field, value)
            log.event("corrupt", rnd, pk.now_ns(), pk.now_ns(), "ok", field=field, value=v)
        if when == "before":
            f.jitter()
        f.delay(when, where, rnd)
        if when == "after":
            f.jitter()
        if f.crash_due(when, where, rnd):
            die_and_log(rnd)

    def die_and_log(rnd):
        pk.die(log, f.crash_mode, rnd)

    try:
        t0 = pk.now_ns()
        try:
            seg = Segment(a.name, a.create, a.dtype, a.shape_t, a.capacity)
        except NaiveError as e:
            op_event("create" if a.create else "attach", 0, t0, e.name)
            raise
        op_event("create" if a.create else "attach", 0, t0, "ok")
        point("after", "ready", 0)
        if a.wait_peer:
            pk.wait_peer(a.name, a.role, 10.0)
        if a.role == "requester":
            rnd = 1
            while rnd <= a.rounds:
                data = pk.pattern(seg.dtype, seg.shape, rnd, a.seed)
                if rnd == 1 and a.out_of_turn == "receive":
                    t0 = pk.now_ns()
                    try:
                        seg.wait_status(2)
                        seg.set_status(0)
                        op_event("receive", rnd, t0, "ok", injected=True)
                    except NaiveError as e:
                        op_event("receive", rnd, t0, e.name, injected=True)
                # write(): wait until status 0, copy, store 1
                point("before", "send", rnd)
                t0 = pk.now_ns()
                if rnd == 1 and (a.wrong_shape or a.wrong_dtype):
                    bad = pk.pattern(pk.wrong_dtype(seg.dtype) if a.wrong_dtype else seg.dtype,
                                     pk.wrong_shape(seg.shape) if a.wrong_shape else seg.shape, rnd, a.seed)
                    seg.wait_status(0)
                    raw = bad.reshape(-1).view(np.uint8)
                    seg.m[512:512 + min(raw.size, len(seg.m) - 512)] = raw.tobytes()[: len(seg.m) - 512]
                    seg.set_status(1)
                    op_event("send", rnd, t0, "ok", pk.hexsum(bad), injected=True)
                    seg.wait_status(2)
                    seg.set_status(0)
                    t0 = pk.now_ns()
                seg.wait_status(0)
                seg.view()[:] = data.reshape(-1)
                seg.set_status(1)
                op_event("send", rnd, t0, "ok", pk.hexsum(data))
                point("after", "send", rnd)
                if rnd == 1 and a.out_of_turn == "send":
                    t1 = pk.now_ns()
                    try:
                        seg.wait_status(0)
                        seg.view()[:] = data.reshape(-1)
                        seg.set_status(1)
                        op_event("send", rnd, t1, "ok", pk.hexsum(data), injected=True)
                    except NaiveError as e:
                        op_event("send", rnd, t1, e.name, injected=True)
                # read(): wait until status 2, copy out, store 0
                point("before", "receive", rnd)
                t0 = pk.now_ns()
                try:
                    seg.wait_status(2)
                except NaiveError as e:
                    op_event("receive", rnd, t0, e.name)
                    if a.retry_after_timeout and e.name == "TIMEOUT":
                        rnd += 1  # the original user's retry: write the next request at once
                        continue
                    raise
                out = seg.view().copy().reshape(seg.shape)
                seg.set_status(0)
                good = np.array_equal(out, pk.expected_reply(a.op, data)) if a.op != "checksum" \
                    else pk.checksum(out) == pk.checksum(data)
                op_event("receive", rnd, t0, "ok", pk.hexsum(out), verified=bool(good))
                point("after", "receive", rnd)
                rounds_ok += 1
                verified += int(good)
                mismatches += int(not good)
                rnd += 1
        else:
            rnd = 0
            while a.rounds == 0 or rnd < a.rounds:
                rnd += 1
                if rnd == 1 and a.out_of_turn == "reply":
                    t0 = pk.now_ns()
                    seg.wait_status(0)
                    seg.set_status(2)
                    op_event("reply", rnd, t0, "ok", injected=True)
                point("before", "take", rnd)
                t0 = pk.now_ns()
                try:
                    seg.wait_status(1)
                except NaiveError as e:
                    op_event("take", rnd, t0, e.name)
                    raise
                arr = seg.view().reshape(seg.shape)
                seg.set_status(0)  # "clear the status": the ambiguous zero
                op_event("take", rnd, t0, "ok", pk.hexsum(arr))
                point("after", "take", rnd)
                if rnd == 1 and a.out_of_turn == "take":
                    t1 = pk.now_ns()
                    try:
                        seg.wait_status(1)
                        seg.set_status(0)
                        op_event("take", rnd, t1, "ok", injected=True)
                    except NaiveError as e:
                        op_event("take", rnd, t1, e.name, injected=True)
                pk.apply_op(a.op, arr)
                point("before", "reply", rnd)
                t0 = pk.now_ns()
                seg.wait_status(0)
                seg.set_status(2)
                op_event("reply", rnd, t0, "ok", pk.hexsum(arr))
                point("after", "reply", rnd)
                rounds_ok += 1
                verified += 1
        if a.hold_ms:
            time.sleep(a.hold_ms / 1000)
    except NaiveError as e:
        error = e.name
    except Exception as e:  # noqa: BLE001
        sys.stderr.write(f"naive peer: internal failure: {e!r}\n")
        error = "INTERNAL"
    if seg:
        t0 = pk.now_ns()
        seg.close()
        log.event("close", 0, t0, pk.now_ns(), "ok")
    code = 0 if error is None else EXIT.get(error, 1)
    if error is None and mismatches:
        code = 3
    log.summary(rounds_ok, verified, mismatches, code, error)
    return code


if __name__ == "__main__":
    sys.exit(main())
