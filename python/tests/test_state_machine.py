"""Stateful property test: a hypothesis RuleBasedStateMachine drives a real requester and a real
responder handle on ONE segment with random, out-of-turn, close/reattach and rogue operations
(timeout 0); the pure model (shmbridge.protocol, the semantics of spec/transitions.json) predicts
every result, and implementation and model must agree at every step
(R-STATE-1..10, R-WAIT-5, R-TIME-1..3, R-LIVE-3/4, R-REC-1/2, R-CLOSE-1/2, R-MSG-2)."""

from __future__ import annotations

from typing import Any

from conftest import unique_name
from harness import ModelPair, RealPair, describe_word
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from shmbridge.errors import ErrorCode

ERROR_NAMES = [c.name for c in ErrorCode]


class ChannelMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.real: RealPair | None = None
        self.model: ModelPair | None = None
        self.trace: list[str] = []

    @initialize(
        initial_seq=st.sampled_from([0, 1, 2**28 - 2, 2**28 - 1]),
        dtype=st.sampled_from(["float32", "int16", "float64"]),
        shape=st.sampled_from([[4], [2, 3], [], [0, 2]]),
    )
    def setup(self, initial_seq: int, dtype: str, shape: list[int]) -> None:
        self.real = RealPair(unique_name("sm"), dtype, shape, initial_seq)
        self.model = ModelPair(initial_seq)

    def _do(self, actor: str, op: str, **step: Any) -> None:
        assert self.real is not None and self.model is not None
        if actor in ("requester", "responder") and op not in ("attach", "close"):
            handle = self.real.req if actor == "requester" else self.real.rsp
            if handle is None or handle.closed:
                return  # no handle for that role right now: nothing to compare
        real = self.real.apply(actor, op, step)
        model = self.model.apply(actor, op, step)
        self.trace.append(
            f"{actor} {op} {step} -> real {real} / model {model} word {self.real.word():#x}"
        )
        assert real == model, "\n".join(self.trace)
        self._compare()

    def _compare(self) -> None:
        assert self.real is not None and self.model is not None
        ctx = "\n".join(self.trace)
        assert describe_word(self.real.word()) == describe_word(self.model.word()), ctx
        if self.real.req is not None and not self.real.req.closed:
            assert self.real.pending() == self.model.pending(), ctx
        if self.real.rsp is not None and not self.real.rsp.closed:
            assert self.real.held() == self.model.held(), ctx
        assert self.real.value_errors == [], ctx

    @rule(value=st.integers(0, 100))
    def send(self, value: int) -> None:
        self._do("requester", "send", value=value)

    @rule()
    def receive(self) -> None:
        self._do("requester", "receive")

    @rule()
    def take(self) -> None:
        self._do("responder", "take")

    @rule()
    def reply(self) -> None:
        self._do("responder", "reply")

    @rule(code=st.sampled_from(ERROR_NAMES))
    def reply_error(self, code: str) -> None:
        self._do("responder", "reply_error", code=code)

    @rule(actor=st.sampled_from(["requester", "responder"]))
    def close(self, actor: str) -> None:
        self._do(actor, "close")

    @rule(actor=st.sampled_from(["requester", "responder"]))
    def attach(self, actor: str) -> None:
        self._do(actor, "attach")

    @rule(
        phase=st.sampled_from([0, 1, 2, 4, 3, 15]),
        seq=st.integers(0, 2**28 - 1),
        keep_seq=st.booleans(),
    )
    def poke_word(self, phase: int, seq: int, keep_seq: bool) -> None:
        """A rogue/naive writer stores the word (R-STATE-8)."""
        assert self.real is not None
        if keep_seq:
            seq = self.real.word() >> 4
        self._do("rogue", "poke_word", value=(seq << 4) | phase)

    @invariant()
    def agree(self) -> None:
        if self.real is not None:
            self._compare()

    def teardown(self) -> None:
        if self.real is not None:
            self.real.close()


ChannelMachine.TestCase.settings = settings(
    max_examples=500,
    stateful_step_count=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestChannelAgainstModel = ChannelMachine.TestCase
TestChannelAgainstModel.__doc__ = (
    "R-STATE-1..10, R-WAIT-5, R-TIME-2, R-LIVE-3, R-REC-1/2, R-CLOSE-1/2: real handles == model"
)
