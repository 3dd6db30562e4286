"""The native helper shmbridge._native (R-STATE-4, R-WAIT-1, R-WAIT-3, R-WAIT-4)."""

from __future__ import annotations

import mmap
import threading
import time

import pytest

from shmbridge import _native


@pytest.fixture
def buf() -> mmap.mmap:
    return mmap.mmap(-1, 4096)


def test_r_state_4_atomics(buf: mmap.mmap) -> None:
    """R-STATE-4/R-STATE-2: acquire load, release store, CAS returning the value found,
    wrapping fetch_add."""
    assert _native.load_acquire(buf, 256) == 0
    _native.store_release(buf, 256, 0x12345678)
    assert _native.load_acquire(buf, 256) == 0x12345678
    assert buf[256:260] == bytes.fromhex("78563412")  # little-endian u32 in place
    assert _native.compare_exchange(buf, 256, 1, 2) == 0x12345678  # failed: value found
    assert _native.load_acquire(buf, 256) == 0x12345678
    assert _native.compare_exchange(buf, 256, 0x12345678, 7) == 0x12345678  # success
    assert _native.load_acquire(buf, 256) == 7
    assert _native.fetch_add(buf, 260, -1) == 0
    assert _native.load_acquire(buf, 260) == 0xFFFFFFFF
    assert _native.fetch_add(buf, 260, 1) == 0xFFFFFFFF
    assert _native.load_acquire(buf, 260) == 0
    _native.store_release64(buf, 0, int.from_bytes(b"SHMBRIDG", "little"))
    assert buf[:8] == b"SHMBRIDG"
    assert _native.load_acquire64(buf, 0) == int.from_bytes(b"SHMBRIDG", "little")


@pytest.mark.parametrize("offset", [-4, 4093, 4096, 2, 1, 2**40])
def test_bounds_and_alignment_checked(buf: mmap.mmap, offset: int) -> None:
    """Out-of-bounds or misaligned offsets raise ValueError instead of touching memory."""
    with pytest.raises(ValueError):
        _native.load_acquire(buf, offset)
    with pytest.raises(ValueError):
        _native.store_release(buf, offset, 1)
    with pytest.raises(ValueError):
        _native.wait(buf, offset, 0, 0.0)


def test_values_range_checked(buf: mmap.mmap) -> None:
    with pytest.raises(ValueError):
        _native.store_release(buf, 0, 2**32)
    with pytest.raises(ValueError):
        _native.compare_exchange(buf, 0, -1, 0)
    with pytest.raises(ValueError):
        _native.wait(buf, 0, 0, -1.0)


def test_read_only_buffer_rejected() -> None:
    """The helper only works on writable buffers (the shared mapping)."""
    with pytest.raises((BufferError, TypeError)):
        _native.load_acquire(b"\0" * 8, 0)


def test_r_wait_2_wait_times_out(buf: mmap.mmap) -> None:
    """R-WAIT-2: a wait returns False no later than its deadline plus a wake-up latency."""
    t = time.perf_counter()
    assert _native.wait(buf, 0, 0, 0.12) is False
    dt = time.perf_counter() - t
    assert 0.11 <= dt < 0.3
    assert _native.wait(buf, 0, 1, 5.0) is True  # value differs: returns at once


def test_r_wait_3_wake_and_gil_released(buf: mmap.mmap) -> None:
    """R-WAIT-3/R-WAIT-4: wake_all wakes a blocked waiter; the GIL is released while blocked
    (another thread keeps running)."""
    ticks = 0
    stop = False

    def spinner() -> None:
        nonlocal ticks
        while not stop:
            ticks += 1
            time.sleep(0.001)

    def waker() -> None:
        time.sleep(0.15)
        _native.store_release(buf, 0, 5)
        _native.wake_all(buf, 0)

    threads = [threading.Thread(target=spinner), threading.Thread(target=waker)]
    for th in threads:
        th.start()
    t = time.perf_counter()
    assert _native.wait(buf, 0, 0, 5.0) is True
    dt = time.perf_counter() - t
    stop = True
    for th in threads:
        th.join()
    assert 0.1 < dt < 1.0
    assert ticks > 20  # the other thread ran while we were blocked


def test_r_wait_1_spin_returns_the_change_and_releases_the_gil(buf: mmap.mmap) -> None:
    """R-WAIT-1: the native spin returns the new value as soon as the word changes, returns the
    unchanged value when its budget runs out, and lets other threads run while it spins."""
    assert _native.spin(buf, 256, 1, 1.0) == 0  # already different: at once
    t = time.perf_counter()
    assert _native.spin(buf, 256, 0, 0.005) == 0  # budget runs out, value unchanged
    assert 0.004 <= time.perf_counter() - t < 0.5

    def writer() -> None:
        time.sleep(0.003)  # needs the GIL while the main thread spins
        _native.store_release(buf, 256, 9)

    th = threading.Thread(target=writer)
    th.start()
    word = 0
    t = time.perf_counter()
    while word == 0 and time.perf_counter() - t < 5.0:
        word = _native.spin(buf, 256, 0, 1.0)  # <= 10 ms per call
    th.join()
    assert word == 9


def test_r_wait_3_cas_wake_wakes_counted_waiters_only_on_success(buf: mmap.mmap) -> None:
    """R-STATE-2/R-WAIT-3: cas_wake returns the value found; on success with a waiter counted
    in `waiters` it wakes it; a failed CAS changes nothing and wakes nobody."""
    assert _native.cas_wake(buf, 256, 260, 5, 6) == 0  # failed: the value found
    assert _native.load_acquire(buf, 256) == 0
    woke_at: list[float] = []

    def waiter() -> None:
        _native.fetch_add(buf, 260, 1)  # counted in, as wait.block does
        _native.wait(buf, 256, 0, 5.0)
        woke_at.append(time.perf_counter())
        _native.fetch_add(buf, 260, -1)

    th = threading.Thread(target=waiter)
    th.start()
    while _native.load_acquire(buf, 260) == 0:
        time.sleep(0.001)
    time.sleep(0.05)  # the waiter is in FUTEX_WAIT (or about to find the word changed)
    t = time.perf_counter()
    assert _native.cas_wake(buf, 256, 260, 0, 0x11) == 0  # success
    th.join(5.0)
    assert woke_at and woke_at[0] - t < 0.04  # woken, not the 50 ms slice running out
    assert _native.load_acquire(buf, 256) == 0x11
    with pytest.raises(ValueError):
        _native.cas_wake(buf, 256, 4095, 0, 1)  # waiters offset out of bounds


def test_r_wait_1_spin_yield_constants_mirror_cpp() -> None:
    """R-WAIT-1: the native spin yields the CPU after 20 us without a change, then every 5 us,
    the same constants as C++ SpinYield (cpp/include/shmbridge/wait.hpp, tested there)."""
    assert _native.SPIN_YIELD_AFTER_US == 20
    assert _native.SPIN_YIELD_EVERY_US == 5


def test_r_wait_1_wait_events_object(buf: mmap.mmap) -> None:
    """R-WAIT-1 (Windows events): the helper's WaitEvents object keeps the two event names of one
    handle and is accepted, or None, by every wait and wake; close() is idempotent. On POSIX it
    holds no OS handle (futex / os_sync wait on the word itself)."""
    ev = _native.WaitEvents("Local\\sbev.req", "Local\\sbev.rsp")
    assert (ev.own, ev.peer, ev.closed) == ("Local\\sbev.req", "Local\\sbev.rsp", False)
    assert _native.wait(buf, 256, 1, 0.01, ev) is True  # word is 0, not 1: no wait
    assert _native.wait(buf, 256, 0, 0.01, None) is False  # timed out
    assert _native.wake_all(buf, 256, ev) >= 0
    assert _native.cas_wake(buf, 256, 260, 0, 5, ev) == 0
    assert _native.load_acquire(buf, 256) == 5
    ev.close()
    ev.close()
    assert ev.closed
    with pytest.raises(TypeError):
        _native.wait(buf, 256, 0, 0.01, "Local\\sbev.req")  # names are no longer accepted
