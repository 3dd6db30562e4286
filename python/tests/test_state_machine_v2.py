"""Stateful property test of protocol v2: the hypothesis RuleBasedStateMachine of
test_state_machine.py (the same rules: random, out-of-turn, close/reattach and rogue operations
with timeout 0, and the same pure model, shmbridge.protocol) drives a MessageRequester and a
MessageResponder on one v2 segment; implementation and model agree at every step and every
message received has the contents sent (R-VER-1: v2 inherits the state machine, R-STATE-1..10,
R-TIME-1..3, R-LIVE-3/4, R-REC-1/2, R-CLOSE-1/2, R-MSG-2 with R-FIELD-9/10)."""

from __future__ import annotations

from conftest import unique_name
from harness import ModelPair
from harness_v2 import SCHEMAS, MessagePair
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import initialize, rule
from test_state_machine import ChannelMachine


class MessageChannelMachine(ChannelMachine):
    """The v1 machine with its rules and model, on a v2 segment, plus a rule that runs a whole
    round (so that many rounds complete and their contents are checked) and rogue writes made
    rarer (a rogue write leaves the channel in a state where most operations fail)."""

    @initialize(
        initial_seq=st.sampled_from([0, 1, 2**28 - 2, 2**28 - 1]),
        schemas=st.sampled_from(sorted(SCHEMAS)),
    )
    def setup(self, initial_seq: int, schemas: str) -> None:  # type: ignore[override]
        self.real = MessagePair(unique_name("smv2"), schemas, initial_seq)  # type: ignore[assignment]
        self.model = ModelPair(initial_seq)

    @rule(value=st.integers(0, 100), error=st.sampled_from([None, "HANDLER_FAILED", "PEER_GONE"]))
    def full_round(self, value: int, error: str | None) -> None:
        self._do("requester", "send", value=value)
        self._do("responder", "take")
        if error is None:
            self._do("responder", "reply")
        else:
            self._do("responder", "reply_error", code=error)
        self._do("requester", "receive")

    @rule(
        phase=st.sampled_from([0, 1, 2, 4, 3, 15]),
        seq=st.integers(0, 2**28 - 1),
        keep_seq=st.booleans(),
        rogue=st.integers(0, 4),
    )
    def poke_word(self, phase: int, seq: int, keep_seq: bool, rogue: int) -> None:  # type: ignore[override]
        if rogue == 0:
            super().poke_word(phase, seq, keep_seq)


MessageChannelMachine.TestCase.settings = settings(
    max_examples=300,
    stateful_step_count=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestMessageChannelAgainstModel = MessageChannelMachine.TestCase
TestMessageChannelAgainstModel.__doc__ = (
    "R-VER-1 (R-STATE-1..10, R-WAIT-5, R-TIME-2, R-LIVE-3, R-REC-1/2, R-CLOSE-1/2): v2 handles "
    "== model"
)
