"""The control word and the pure transition function of PROTOCOL.md §4-§5.

This module is the *model*: no I/O, no shared memory. ``step(state, actor, op)`` says what one
operation does from a model state, following the transition table (T1-T8), the preconditions, the
``waits in`` phases and the evaluation order of blocking operations (R-WAIT-5). The hypothesis state
machine in the tests drives the real channel and this model side by side; they must agree.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace
from typing import Union

from .errors import ErrorCode

__all__ = [
    "INITIAL_WORD",
    "PHASE_MASK",
    "SEQ_BITS",
    "SEQ_MASK",
    "SEQ_SHIFT",
    "STATUS_MASK",
    "TRANSITIONS",
    "Failure",
    "ModelState",
    "Peer",
    "Phase",
    "Rule",
    "Transition",
    "Wait",
    "decode_word",
    "encode_word",
    "next_seq",
    "phase_of",
    "seq_of",
    "status_of",
    "step",
]

PHASE_MASK = 0xF
SEQ_SHIFT = 4
SEQ_BITS = 28
SEQ_MASK = (1 << SEQ_BITS) - 1
STATUS_MASK = 3
INITIAL_WORD = 0


class Phase(enum.IntEnum):
    """Phases of the control word (R-STATE-1); the value is the bits 0-3."""

    IDLE = 0x0
    REQUESTED = 0x1
    REPLIED = 0x2
    TAKEN = 0x4

    @property
    def status(self) -> int:
        return int(self) & STATUS_MASK


def encode_word(phase: Phase | int, seq: int) -> int:
    return ((seq & SEQ_MASK) << SEQ_SHIFT) | (int(phase) & PHASE_MASK)


def phase_of(word: int) -> Phase | None:
    """The phase of ``word`` or None if the phase bits are not in the table (R-STATE-1)."""
    try:
        return Phase(word & PHASE_MASK)
    except ValueError:
        return None


def seq_of(word: int) -> int:
    return (word >> SEQ_SHIFT) & SEQ_MASK


def status_of(word: int) -> int:
    return word & STATUS_MASK


def decode_word(word: int) -> tuple[Phase | None, int]:
    return phase_of(word), seq_of(word)


def next_seq(seq: int) -> int:
    """seq + 1, wrapping at 28 bits."""
    return (seq + 1) & SEQ_MASK


@dataclass(frozen=True)
class Rule:
    """One row of the §5 table (mirrors spec/transitions.json)."""

    id: str
    actor: str
    op: str
    frm: Phase
    guard: str
    waits_in: tuple[Phase, ...]
    to: Phase
    seq: str  # "increment" | "keep"
    order: str
    requirement: str


TRANSITIONS: tuple[Rule, ...] = (
    Rule(
        "T1",
        "requester",
        "send",
        Phase.IDLE,
        "none_pending",
        (),
        Phase.REQUESTED,
        "increment",
        "release",
        "R-STATE-2",
    ),
    Rule(
        "T2",
        "responder",
        "take",
        Phase.REQUESTED,
        "none",
        (Phase.IDLE, Phase.REPLIED),
        Phase.TAKEN,
        "keep",
        "acquire",
        "R-STATE-3",
    ),
    Rule(
        "T3",
        "responder",
        "reply",
        Phase.TAKEN,
        "held",
        (),
        Phase.REPLIED,
        "keep",
        "release",
        "R-STATE-3",
    ),
    Rule(
        "T4",
        "requester",
        "receive",
        Phase.REPLIED,
        "own",
        (Phase.REQUESTED, Phase.TAKEN),
        Phase.IDLE,
        "keep",
        "acquire",
        "R-STATE-6",
    ),
    Rule(
        "T5",
        "requester",
        "cancel",
        Phase.REQUESTED,
        "own",
        (),
        Phase.IDLE,
        "keep",
        "acq_rel",
        "R-TIME-2",
    ),
    Rule(
        "T6",
        "requester",
        "discard",
        Phase.REPLIED,
        "not_own",
        (),
        Phase.IDLE,
        "keep",
        "acquire",
        "R-REC-1",
    ),
    Rule(
        "T7",
        "requester",
        "reclaim",
        Phase.TAKEN,
        "peer_dead",
        (),
        Phase.IDLE,
        "keep",
        "acq_rel",
        "R-LIVE-3",
    ),
    Rule(
        "T8",
        "responder",
        "recover",
        Phase.TAKEN,
        "not_held",
        (),
        Phase.REPLIED,
        "keep",
        "release",
        "R-REC-2",
    ),
)
RULES: dict[str, Rule] = {r.id: r for r in TRANSITIONS}


class Peer(enum.IntEnum):
    """What a side sees in the other role's slot (§3.3, §7), reduced to what matters."""

    EMPTY = 0  # never attached: does not end a wait (R-LIVE-3)
    ATTACHED = 1  # attached and alive
    GONE = 2  # CLOSED, or ATTACHED with a dead process


@dataclass(frozen=True)
class ModelState:
    """Model of one segment and its two role handles.

    ``word`` is the raw control word (it may hold a phase outside the table after a rogue write);
    ``pending`` the requester's outstanding seq, ``held`` the seq the responder took;
    ``requester``/``responder`` the liveness of each role's slot as its peer sees it;
    ``reply_code`` the code of the current reply; ``timed_out`` whether the requester's
    outstanding request timed out while TAKEN (vectors README D6); ``seen`` the seq the requester
    last observed, which may not move while it owns the payload in IDLE (R-STATE-8, D11).
    """

    word: int = INITIAL_WORD
    pending: int | None = None
    held: int | None = None
    timed_out: bool = False
    seen: int = 0
    requester: Peer = Peer.ATTACHED
    responder: Peer = Peer.ATTACHED
    reply_code: int = 0

    @property
    def phase(self) -> Phase | None:
        return phase_of(self.word)

    @property
    def seq(self) -> int:
        return seq_of(self.word)

    def with_word(self, phase: Phase, seq: int) -> ModelState:
        return replace(self, word=encode_word(phase, seq))


@dataclass(frozen=True)
class Transition:
    """The operation completes: ``rules`` were applied (in order), giving ``state``. ``result`` is
    None for success or the error the caller sees after the transition (an error reply, R-MSG-2;
    PEER_GONE / TIMEOUT after a withdraw or reclaim, R-LIVE-3, R-TIME-2)."""

    rules: tuple[str, ...]
    state: ModelState
    result: ErrorCode | None = None


@dataclass(frozen=True)
class Wait:
    """The operation must wait: the phase is one it ``waits in``. ``on_peer_gone`` and
    ``on_timeout`` say what happens if the peer is gone / the deadline passed (R-WAIT-5)."""

    phases: tuple[Phase, ...]
    on_peer_gone: Transition | Failure
    on_timeout: Transition | Failure


@dataclass(frozen=True)
class Failure:
    """The operation fails with ``code`` and changes nothing (R-STATE-7, R-STATE-8)."""

    code: ErrorCode
    reason: str = ""


Outcome = Union[Transition, Wait, Failure]


def _apply(state: ModelState, rule: str) -> ModelState:
    r = RULES[rule]
    seq = next_seq(state.seq) if r.seq == "increment" else state.seq
    return state.with_word(r.to, seq)


def _violation(state: ModelState) -> Failure:
    return Failure(
        ErrorCode.PROTOCOL_VIOLATION,
        f"word {state.word:#010x} holds a phase outside the table (R-STATE-1)",
    )


def _out_of_turn(reason: str) -> Failure:
    return Failure(ErrorCode.OUT_OF_TURN, reason)


def _send(s: ModelState) -> Outcome:
    rules: tuple[str, ...] = ()
    if s.pending is not None:
        # R-STATE-10: consume a late reply to our own timed-out request, then send. Without an
        # earlier timeout the caller still expects that reply: OUT_OF_TURN (D6).
        if s.timed_out and s.phase is Phase.REPLIED and s.seq == s.pending:
            s = replace(_apply(s, "T4"), pending=None, timed_out=False, seen=s.seq)
            rules = ("T4",)
        else:
            return _out_of_turn("send: a request is outstanding (precondition none pending)")
    if s.phase is None:
        return _violation(s)
    if s.phase is not Phase.IDLE:
        # R-STATE-8: with nothing pending the requester owns the word in IDLE; only it moves the
        # word out of IDLE, so any other phase is a rogue write.
        return Failure(
            ErrorCode.PROTOCOL_VIOLATION,
            f"send: nothing pending but the phase is {s.phase.name}, not IDLE (R-STATE-8)",
        )
    if s.seq != s.seen:
        return Failure(
            ErrorCode.PROTOCOL_VIOLATION,
            f"send: seq moved from {s.seen} to {s.seq} while IDLE (R-STATE-8)",
        )
    s2 = _apply(s, "T1")
    return Transition((*rules, "T1"), replace(s2, pending=s2.seq, timed_out=False, seen=s2.seq))


def _take(s: ModelState) -> Outcome:
    if s.held is not None:
        return _out_of_turn("take: the responder already holds a request")
    if s.phase is None:
        return _violation(s)
    if s.phase is Phase.REQUESTED:
        s2 = _apply(s, "T2")
        return Transition(("T2",), replace(s2, held=s2.seq))
    if s.phase in RULES["T2"].waits_in:
        return Wait(
            RULES["T2"].waits_in,
            on_peer_gone=Failure(ErrorCode.PEER_GONE, "the requester is gone (R-LIVE-4)"),
            on_timeout=Failure(ErrorCode.TIMEOUT, "no request (R-TIME-3)"),
        )
    # TAKEN not held: R-REC-2 completed any predecessor's round at attach and no other responder
    # holds the role (R-STATE-5), so this TAKEN is a rogue write (R-STATE-8).
    return Failure(
        ErrorCode.PROTOCOL_VIOLATION,
        f"take: phase is {s.phase.name}, not held by this responder (R-STATE-8)",
    )


def _reply(s: ModelState, code: int) -> Outcome:
    if s.held is None:
        return _out_of_turn("reply: the responder holds no request")
    if s.phase is None:
        return _violation(s)
    if s.phase is Phase.TAKEN and s.seq == s.held:
        return Transition(("T3",), replace(_apply(s, "T3"), held=None, reply_code=code))
    if s.seq != s.held:
        # The seq moved while this responder owned the payload: no legal transition does that.
        return Failure(
            ErrorCode.PROTOCOL_VIOLATION,
            f"reply: seq moved to {s.seq} while request #{s.held} was held (R-STATE-8)",
        )
    return _out_of_turn(f"reply: phase is {s.phase.name}, expected TAKEN")


def _receive(s: ModelState) -> Outcome:
    if s.pending is None:
        return _out_of_turn("receive: no request outstanding")
    if s.phase is None:
        return _violation(s)
    if s.phase is Phase.IDLE:
        # R-STATE-8: only the requester itself moves the word to IDLE.
        return Failure(
            ErrorCode.PROTOCOL_VIOLATION,
            f"receive: IDLE while own request #{s.pending} is outstanding (R-STATE-8)",
        )
    if s.phase in (Phase.REQUESTED, Phase.TAKEN, Phase.REPLIED) and s.seq != s.pending:
        return Failure(
            ErrorCode.PROTOCOL_VIOLATION,
            f"receive: word seq {s.seq} differs from own request #{s.pending}",
        )
    if s.phase is Phase.REPLIED:
        code = s.reply_code
        s2 = replace(_apply(s, "T4"), pending=None, timed_out=False, seen=s.seq)
        return Transition(("T4",), s2, ErrorCode(code) if code else None)
    if s.phase is Phase.REQUESTED:
        cancelled = replace(_apply(s, "T5"), pending=None, timed_out=False, seen=s.seq)
        return Wait(
            RULES["T4"].waits_in,
            on_peer_gone=Transition(("T5",), cancelled, ErrorCode.PEER_GONE),
            on_timeout=Transition(("T5",), cancelled, ErrorCode.TIMEOUT),
        )
    if s.phase is Phase.TAKEN:
        reclaimed = replace(_apply(s, "T7"), pending=None, timed_out=False, seen=s.seq)
        return Wait(
            RULES["T4"].waits_in,
            on_peer_gone=Transition(("T7",), reclaimed, ErrorCode.PEER_GONE),
            # The request stays outstanding and is marked timed out (R-TIME-2, D6, D8).
            on_timeout=Transition((), replace(s, timed_out=True), ErrorCode.TIMEOUT),
        )
    return _out_of_turn(f"receive: phase is {s.phase.name}")


def step(state: ModelState, actor: str, op: str, *, code: int = 0) -> Outcome:
    """One public operation (``send``/``receive`` by the requester, ``take``/``reply`` by the
    responder; ``reply`` with ``code`` != 0 is an error reply). Implementation-internal ops
    (``cancel``, ``discard``, ``reclaim``, ``recover``) appear inside outcomes and in
    :func:`attach` / :func:`close`."""
    if actor == "requester" and op == "send":
        return _send(state)
    if actor == "requester" and op == "receive":
        return _receive(state)
    if actor == "responder" and op == "take":
        return _take(state)
    if actor == "responder" and op == "reply":
        return _reply(state, code)
    return _out_of_turn(f"{actor} has no operation {op!r}")


def resolve(outcome: Outcome, state: ModelState, actor: str) -> Transition | Failure:
    """Resolve an outcome with timeout 0 (R-WAIT-5: peer liveness first, then the deadline)."""
    if isinstance(outcome, Wait):
        peer = state.responder if actor == "requester" else state.requester
        return outcome.on_peer_gone if peer is Peer.GONE else outcome.on_timeout
    return outcome


def guard_holds(rule: Rule, state: ModelState) -> bool:
    """Whether ``rule``'s guard holds in ``state`` (for the table-agreement test)."""
    g = rule.guard
    if g == "none":
        return True
    if g == "none_pending":
        return state.pending is None
    if g == "own":
        return state.pending is not None and state.seq == state.pending
    if g == "not_own":
        return state.pending is None or state.seq != state.pending
    if g == "held":
        return state.held is not None and state.seq == state.held
    if g == "not_held":
        return state.held is None or state.seq != state.held
    if g == "peer_dead":
        peer = state.responder if rule.actor == "requester" else state.requester
        return peer is Peer.GONE
    raise ValueError(f"unknown guard {g!r}")


def internal(state: ModelState, rule_id: str) -> Transition | Failure:
    """Apply an implementation-internal transition (T5-T8) if its phase and guard hold."""
    r = RULES[rule_id]
    if state.phase is not r.frm or not guard_holds(r, state):
        return _out_of_turn(f"{r.op}: not allowed from word {state.word:#x}")
    s2 = _apply(state, rule_id)
    if r.actor == "requester":
        s2 = replace(s2, pending=None, timed_out=False, seen=s2.seq)
    if rule_id == "T8":
        s2 = replace(s2, reply_code=int(ErrorCode.PEER_GONE))
    return Transition((rule_id,), s2)


def attach(state: ModelState, role: str) -> Transition | Failure:
    """A new handle for ``role`` attaches (restart, R-REC-1 / R-REC-2) with timeout 0. The
    previous handle of that role must be gone (closed)."""
    if role == "requester":
        if state.requester is Peer.ATTACHED:
            return Failure(ErrorCode.ROLE_TAKEN, "a live requester holds the slot")
        s = replace(state, requester=Peer.ATTACHED, pending=None, timed_out=False, seen=state.seq)
        ph = s.phase
        if ph is None:
            # R-STATE-11: attach does not judge the word; the first operation reports it.
            return Transition((), s)
        if ph is Phase.REQUESTED:  # the orphan request counts as our own for T5
            return Transition(("T5",), s.with_word(Phase.IDLE, s.seq))
        if ph is Phase.REPLIED:
            return Transition(("T6",), s.with_word(Phase.IDLE, s.seq))
        if ph is Phase.TAKEN:
            if s.responder is Peer.GONE:
                return Transition(("T7",), s.with_word(Phase.IDLE, s.seq))
            return Failure(ErrorCode.TIMEOUT, "the responder still holds an orphan request")
        return Transition((), s)
    if role == "responder":
        if state.responder is Peer.ATTACHED:
            return Failure(ErrorCode.ROLE_TAKEN, "a live responder holds the slot")
        s = replace(state, responder=Peer.ATTACHED, held=None)
        # A phase outside the table is not the attaching responder's to repair: its first take
        # reports PROTOCOL_VIOLATION (R-STATE-8).
        if s.phase is Phase.TAKEN:
            return Transition(
                ("T8",),
                replace(s.with_word(Phase.REPLIED, s.seq), reply_code=int(ErrorCode.PEER_GONE)),
            )
        return Transition((), s)
    raise ValueError(role)


def close(state: ModelState, role: str) -> Transition:
    """A handle closes cleanly (R-CLOSE-1, R-CLOSE-2). Idempotent."""
    if role == "requester":
        if state.requester is not Peer.ATTACHED:
            return Transition((), state)
        return Transition((), replace(state, requester=Peer.GONE, pending=None, timed_out=False))
    if role == "responder":
        if state.responder is not Peer.ATTACHED:
            return Transition((), state)
        s = state
        rules: tuple[str, ...] = ()
        if s.held is not None and s.phase is Phase.TAKEN and s.seq == s.held:
            s = replace(_apply(s, "T3"), reply_code=int(ErrorCode.PEER_GONE))
            rules = ("T3",)
        return Transition(rules, replace(s, responder=Peer.GONE, held=None))
    raise ValueError(role)
