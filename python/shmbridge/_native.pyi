"""Type stubs for the nanobind helper (python/shmbridge/_native.cpp)."""

from typing import Any

def load_acquire(buffer: Any, offset: int) -> int: ...
def store_release(buffer: Any, offset: int, value: int) -> None: ...
def compare_exchange(buffer: Any, offset: int, expected: int, desired: int) -> int: ...
def fetch_add(buffer: Any, offset: int, delta: int) -> int: ...
def load_acquire64(buffer: Any, offset: int) -> int: ...
def store_release64(buffer: Any, offset: int, value: int) -> None: ...

SPIN_YIELD_AFTER_US: int
SPIN_YIELD_EVERY_US: int

def spin(buffer: Any, offset: int, expected: int, budget_s: float) -> int: ...

class WaitEvents:
    def __init__(self, own: str, peer: str) -> None: ...
    def close(self) -> None: ...
    @property
    def closed(self) -> bool: ...
    @property
    def own(self) -> str: ...
    @property
    def peer(self) -> str: ...

def cas_wake(
    buffer: Any,
    offset: int,
    waiters_offset: int,
    expected: int,
    desired: int,
    events: WaitEvents | None = None,
) -> int: ...
def wait(
    buffer: Any, offset: int, expected: int, timeout_s: float, events: WaitEvents | None = None
) -> bool: ...
def wake_all(buffer: Any, offset: int, events: WaitEvents | None = None) -> int: ...

MAX_SPIN_SLICE_S: float
WAIT_CAS_CHANGED: int
WAIT_CAS_LEFT: int
WAIT_CAS_WAITING: int

def wait_cas(
    buffer: Any,
    offset: int,
    waiters_offset: int,
    match_mask: int,
    match_value: int,
    keep_mask: int,
    set_bits: int,
    wait_mask: int,
    wait_a: int,
    wait_b: int,
    spin_s: float,
    block_s: float,
    events: WaitEvents | None = None,
) -> int: ...
