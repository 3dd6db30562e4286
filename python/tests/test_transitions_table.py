"""The pure transition function (shmbridge.protocol) against spec/transitions.json (§5): it
agrees with every row and rejects every other (actor, op, phase, guard) combination
(R-STATE-1, R-STATE-2, R-STATE-7, R-STATE-8, R-WAIT-5, R-STATE-10)."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from conftest import load_spec_json

from shmbridge.errors import ErrorCode
from shmbridge.protocol import (
    PHASE_MASK,
    SEQ_BITS,
    SEQ_SHIFT,
    STATUS_MASK,
    TRANSITIONS,
    Failure,
    ModelState,
    Peer,
    Phase,
    Transition,
    Wait,
    encode_word,
    internal,
    resolve,
    step,
)

TABLE = load_spec_json("transitions.json")
ROWS: list[dict[str, Any]] = TABLE["transitions"]
PUBLIC = {
    ("requester", "send"),
    ("requester", "receive"),
    ("responder", "take"),
    ("responder", "reply"),
}
SEQ = 5


def test_word_encoding_matches_json() -> None:
    """R-STATE-1: phase bits, seq shift/width, status mask and phase values."""
    w = TABLE["word"]
    assert (w["phase_mask"], w["seq_shift"], w["seq_bits"], w["status_mask"], w["initial"]) == (
        PHASE_MASK,
        SEQ_SHIFT,
        SEQ_BITS,
        STATUS_MASK,
        0,
    )
    for name, p in TABLE["phases"].items():
        assert Phase[name] == p["bits"] and Phase[name].status == p["status"]
    assert encode_word(Phase.TAKEN, 2**28 + 3) == (3 << 4) | 4  # 28-bit wrap


def test_rules_mirror_transitions_json() -> None:
    """§5: the model's rule table is transitions.json, row by row."""
    assert len(TRANSITIONS) == len(ROWS)
    for rule, row in zip(TRANSITIONS, ROWS):
        assert (
            rule.id,
            rule.actor,
            rule.op,
            rule.frm.name,
            rule.guard,
            [p.name for p in rule.waits_in],
            rule.to.name,
            rule.seq,
            rule.order,
            rule.requirement,
        ) == (
            row["id"],
            row["actor"],
            row["op"],
            row["from"],
            row["guard"],
            row["waits_in"],
            row["to"],
            row["seq"],
            row["order"],
            row["requirement"],
        )


def _guard(row: dict[str, Any], s: ModelState) -> bool:
    """The guards of transitions.json, evaluated literally from their descriptions."""
    g = row["guard"]
    own = s.pending is not None and s.seq == s.pending
    held = s.held is not None and s.seq == s.held
    peer = s.responder if row["actor"] == "requester" else s.requester
    return {
        "none": True,
        "none_pending": s.pending is None,
        "own": own,
        "not_own": not own,
        "held": held,
        "not_held": not held,
        "peer_dead": peer is Peer.GONE,
    }[g]


def _precondition(op: str, s: ModelState) -> bool:
    pre = TABLE["preconditions"][op]
    return {
        "none_pending": s.pending is None,
        "responder_holds_nothing": s.held is None,
        "responder_holds_request": s.held is not None,
        "has_pending": s.pending is not None,
    }[pre]


def _states() -> list[ModelState]:
    out = []
    seq_choices: list[int | None] = [None, SEQ, SEQ - 1]
    for phase, pending, held, rq, rs, timed_out in itertools.product(
        list(Phase), seq_choices, seq_choices, list(Peer), list(Peer), [False, True]
    ):
        if timed_out and pending is None:
            continue
        out.append(
            ModelState(
                word=encode_word(phase, SEQ),
                pending=pending,
                held=held,
                requester=rq,
                responder=rs,
                timed_out=timed_out,
                seen=SEQ,
            )
        )
    return out


STATES = _states()


@pytest.mark.parametrize("actor,op", sorted(PUBLIC))
def test_public_ops_agree_with_every_row(actor: str, op: str) -> None:
    """§5 + R-WAIT-5 + R-STATE-7: for every phase and handle state, a public op transitions
    exactly when its row's phase and guard hold (after the precondition), waits exactly in
    `waits_in`, and otherwise fails with OUT_OF_TURN (or PROTOCOL_VIOLATION for a word no legal
    move of the other role produces, R-STATE-8), changing nothing."""
    (row,) = [r for r in ROWS if r["actor"] == actor and r["op"] == op]
    checked = 0
    for s in STATES:
        out = step(s, actor, op)
        phase = s.phase
        assert phase is not None
        late = (
            op == "send"
            and s.timed_out
            and s.pending is not None
            and phase is Phase.REPLIED
            and s.seq == s.pending
        )  # R-STATE-10
        if late:
            assert isinstance(out, Transition) and out.rules == ("T4", "T1")
            continue
        if not _precondition(op, s):
            assert isinstance(out, Failure) and out.code is ErrorCode.OUT_OF_TURN, (s, out)
            continue
        # R-STATE-8: a foreign seq on receive/reply, IDLE under an outstanding request, a
        # non-IDLE word under a requester with nothing pending, TAKEN under a responder that
        # holds nothing (spec/vectors D15).
        foreign = (
            (op == "receive" and (phase is Phase.IDLE or s.seq != s.pending))
            or (op == "reply" and s.seq != s.held)
            or (op == "send" and phase is not Phase.IDLE)
            or (op == "take" and phase is Phase.TAKEN)
        )
        if foreign:
            assert isinstance(out, Failure) and out.code is ErrorCode.PROTOCOL_VIOLATION
            continue
        if phase.name == row["from"] and _guard(row, s):
            assert isinstance(out, Transition) and out.rules == (row["id"],), (s, out)
            to = out.state
            assert to.phase is not None and to.phase.name == row["to"]
            expect_seq = (s.seq + 1) % 2**28 if row["seq"] == "increment" else s.seq
            assert to.seq == expect_seq
            checked += 1
        elif phase.name in row["waits_in"]:
            assert isinstance(out, Wait), (s, out)
            assert [p.name for p in out.phases] == row["waits_in"]
        else:
            assert isinstance(out, Failure) and out.code is ErrorCode.OUT_OF_TURN, (s, out)
    assert checked > 0


@pytest.mark.parametrize(
    "row", [r for r in ROWS if (r["actor"], r["op"]) not in PUBLIC], ids=lambda r: r["id"]
)
def test_internal_transitions_agree_with_rows(row: dict[str, Any]) -> None:
    """T5-T8 (R-TIME-2, R-REC-1, R-LIVE-3, R-REC-2): allowed exactly from `from` with the guard;
    anything else is OUT_OF_TURN."""
    for s in STATES:
        out = internal(s, row["id"])
        if s.phase is not None and s.phase.name == row["from"] and _guard(row, s):
            assert isinstance(out, Transition)
            assert out.state.phase is not None and out.state.phase.name == row["to"]
            assert out.state.seq == s.seq
        else:
            assert isinstance(out, Failure) and out.code is ErrorCode.OUT_OF_TURN


@pytest.mark.parametrize(
    "actor,op",
    [
        (a, o)
        for a in ("requester", "responder")
        for o in (
            "send",
            "take",
            "reply",
            "receive",
            "cancel",
            "discard",
            "reclaim",
            "recover",
            "bogus",
        )
        if (a, o) not in PUBLIC
    ],
)
def test_other_actor_op_pairs_are_out_of_turn(actor: str, op: str) -> None:
    """R-STATE-5/R-STATE-7: only the role owner performs its role's public transitions."""
    for s in STATES[:50]:
        out = step(s, actor, op)
        assert isinstance(out, Failure) and out.code is ErrorCode.OUT_OF_TURN


@pytest.mark.parametrize("bits", [b for b in range(16) if b not in (0, 1, 2, 4)])
def test_phase_outside_table_is_protocol_violation(bits: int) -> None:
    """R-STATE-1, R-STATE-8: a phase outside the table is PROTOCOL_VIOLATION (after the
    precondition)."""
    w = (SEQ << 4) | bits
    assert step(ModelState(word=w, seen=SEQ), "requester", "send") == Failure(
        ErrorCode.PROTOCOL_VIOLATION, step(ModelState(word=w, seen=SEQ), "requester", "send").reason
    )  # type: ignore[union-attr]
    for actor, op, s in [
        ("requester", "send", ModelState(word=w, seen=SEQ)),
        ("responder", "take", ModelState(word=w)),
        ("responder", "reply", ModelState(word=w, held=SEQ)),
        ("requester", "receive", ModelState(word=w, pending=SEQ)),
    ]:
        out = step(s, actor, op)
        assert isinstance(out, Failure) and out.code is ErrorCode.PROTOCOL_VIOLATION


def test_wait_resolution_order() -> None:
    """R-WAIT-5, R-LIVE-3, R-TIME-2: with timeout 0, liveness is checked before the deadline;
    receive withdraws (T5) in REQUESTED and reclaims (T7) in TAKEN on PEER_GONE, withdraws on
    TIMEOUT in REQUESTED and keeps the request (timed out) in TAKEN."""
    req = ModelState(word=encode_word(Phase.REQUESTED, SEQ), pending=SEQ)
    gone = req.__class__(**{**req.__dict__, "responder": Peer.GONE})
    r = resolve(step(gone, "requester", "receive"), gone, "requester")
    assert isinstance(r, Transition) and r.rules == ("T5",) and r.result is ErrorCode.PEER_GONE
    r = resolve(step(req, "requester", "receive"), req, "requester")
    assert isinstance(r, Transition) and r.rules == ("T5",) and r.result is ErrorCode.TIMEOUT
    tk = ModelState(word=encode_word(Phase.TAKEN, SEQ), pending=SEQ, held=SEQ)
    r = resolve(step(tk, "requester", "receive"), tk, "requester")
    assert isinstance(r, Transition) and r.rules == () and r.result is ErrorCode.TIMEOUT
    assert r.state.timed_out and r.state.pending == SEQ
    idle = ModelState(requester=Peer.GONE)
    r = resolve(step(idle, "responder", "take"), idle, "responder")
    assert isinstance(r, Failure) and r.code is ErrorCode.PEER_GONE
