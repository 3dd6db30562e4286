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


# wait_cas: the one native call of a blocking protocol step (R-WAIT-1, R-WAIT-3, R-STATE-2).
# Step of a take: match phase REQUESTED (0x1) -> set TAKEN (0x4) keeping the seq bits, waited in
# phase IDLE (0x0) or REPLIED (0x2).
_TAKE = (0xF, 0x1, 0xFFFFFFF0, 0x4, 0xF, 0x0, 0x2)
_LEFT, _WAITING = _native.WAIT_CAS_LEFT, _native.WAIT_CAS_WAITING


def test_r_state_2_wait_cas_changes_a_matching_word_at_once(buf: mmap.mmap) -> None:
    """R-STATE-2: a word that matches is changed by one CAS to (word & keep) | set; the result is
    the word replaced (< 2**32, WAIT_CAS_CHANGED == 0), without waiting."""
    assert _native.WAIT_CAS_CHANGED == 0 and _LEFT == 1 << 32 and _WAITING == 2 << 32
    _native.store_release(buf, 256, 0x51)  # REQUESTED, seq 5
    assert _native.wait_cas(buf, 256, 260, *_TAKE, 0.0, 0.0) == 0x51
    assert _native.load_acquire(buf, 256) == 0x54  # TAKEN, seq 5


def test_r_state_8_wait_cas_leaves_other_words_to_the_caller(buf: mmap.mmap) -> None:
    """A word neither matched nor waited in returns at once as WAIT_CAS_LEFT | word, unchanged
    (the caller decides: here TAKEN, and a phase outside the table)."""
    for word in (0x34, 0x3F):
        _native.store_release(buf, 256, word)
        t = time.perf_counter()
        assert _native.wait_cas(buf, 256, 260, *_TAKE, 1.0, 1.0) == _LEFT | word
        assert time.perf_counter() - t < 0.5
        assert _native.load_acquire(buf, 256) == word


def test_r_wait_1_wait_cas_budgets_run_out(buf: mmap.mmap) -> None:
    """R-WAIT-1/R-WAIT-4: a word waited in returns WAIT_CAS_WAITING | word after the spin budget
    and at most one OS wait of block_s; zero budgets check once."""
    _native.store_release(buf, 256, 0x22)  # REPLIED, seq 2: waited in
    assert _native.wait_cas(buf, 256, 260, *_TAKE, 0.0, 0.0) == _WAITING | 0x22
    t = time.perf_counter()
    assert _native.wait_cas(buf, 256, 260, *_TAKE, 0.005, 0.0) == _WAITING | 0x22
    assert 0.004 <= time.perf_counter() - t < 0.5
    t = time.perf_counter()
    assert _native.wait_cas(buf, 256, 260, *_TAKE, 0.0, 0.03) == _WAITING | 0x22
    assert 0.02 <= time.perf_counter() - t < 0.5
    assert _native.load_acquire(buf, 260) == 0  # counted out after the OS wait (R-WAIT-3)
    with pytest.raises(ValueError):
        _native.wait_cas(buf, 256, 260, *_TAKE, -1.0, 0.0)
    with pytest.raises(ValueError):
        _native.wait_cas(buf, 256, 260, 0xF, 2**32, 0, 0, 0, 0, 0, 0.0, 0.0)
    with pytest.raises(ValueError):
        _native.wait_cas(buf, 256, 4095, *_TAKE, 0.0, 0.0)  # waiters offset out of bounds


def test_r_wait_1_wait_cas_spins_through_waited_values_and_releases_the_gil(
    buf: mmap.mmap,
) -> None:
    """R-WAIT-1: while spinning, a change to another value waited in does not end the call
    (receive's REQUESTED -> TAKEN); the match that follows is changed in the same call. Another
    thread runs meanwhile (the GIL is released)."""
    receive = (0xFFFFFFFF, 0x72, 0xFFFFFFF0, 0x0, 0xFFFFFFFF, 0x71, 0x74)  # seq 7
    _native.store_release(buf, 256, 0x71)

    def responder() -> None:  # needs the GIL while the main thread spins
        time.sleep(0.002)
        _native.store_release(buf, 256, 0x74)
        time.sleep(0.002)
        _native.store_release(buf, 256, 0x72)

    th = threading.Thread(target=responder)
    th.start()
    result = _WAITING
    while result >= _WAITING:  # a loaded machine may run the thread after a 10 ms spin
        t = time.perf_counter()
        result = _native.wait_cas(buf, 256, 260, *receive, 0.01, 0.0)
        # Only a spent budget ends the call on a value waited in, never the change to 0x74.
        assert result < _WAITING or time.perf_counter() - t >= 0.009
    th.join()
    assert result == 0x72  # waited through 0x74, changed REPLIED #7 -> IDLE #7
    assert _native.load_acquire(buf, 256) == 0x70


def test_r_wait_3_wait_cas_blocks_counted_and_is_woken(buf: mmap.mmap) -> None:
    """R-WAIT-3: after the spin the call blocks in the OS counted in `waiters`; a cas_wake of the
    peer wakes it well before block_s, and it changes the matching word and wakes in turn."""
    _native.store_release(buf, 256, 0x10)  # IDLE, seq 1: waited in
    out: list[int] = []

    def taker() -> None:
        out.append(_native.wait_cas(buf, 256, 260, *_TAKE, 0.0, 5.0))

    th = threading.Thread(target=taker)
    th.start()
    while _native.load_acquire(buf, 260) == 0:
        time.sleep(0.001)
    t = time.perf_counter()
    assert _native.cas_wake(buf, 256, 260, 0x10, 0x21) == 0x10  # T1 with its wake
    th.join(5.0)
    assert time.perf_counter() - t < 1.0
    assert out == [0x21]
    assert _native.load_acquire(buf, 256) == 0x24
    assert _native.load_acquire(buf, 260) == 0
