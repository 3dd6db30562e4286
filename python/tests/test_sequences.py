"""spec/vectors/sequences.json replayed on real handles (one fresh segment each) and on the pure
model, every step with timeout 0 (R-STATE-*, R-TIME-*, R-REC-*, R-CLOSE-*, R-MSG-*, R-WAIT-5)."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import load_spec_json, unique_name
from harness import ModelPair, RealPair, describe_word

SEQUENCES = load_spec_json("vectors/sequences.json")["sequences"]


def _check(pair: RealPair | ModelPair, seq: dict[str, Any], where: str) -> None:
    for i, step in enumerate(seq["steps"]):
        result = pair.apply(step["actor"], step["op"], step)
        exp = step["expect"]
        got: dict[str, Any] = {"result": result, **describe_word(pair.word())}
        if "pending" in exp:
            got["pending"] = pair.pending()
        if "held" in exp:
            got["held"] = pair.held()
        assert got == exp, (
            f"{where} {seq['id']} step {i} ({step['actor']} {step['op']}): expected {exp}, "
            f"got {got}"
        )


def test_sequences_present() -> None:
    """The shared sequence vectors exist."""
    assert len(SEQUENCES) >= 20


@pytest.mark.parametrize("seq", SEQUENCES, ids=[s["id"] for s in SEQUENCES])
def test_sequence_on_real_handles(seq: dict[str, Any]) -> None:
    """Each sequence (its `requirements` list says which R-* it covers) on real handles."""
    pair = RealPair(unique_name("seq"), seq["dtype"], seq["shape"], seq.get("initial_seq", 0))
    try:
        _check(pair, seq, "real")
        assert pair.value_errors == []
    finally:
        pair.close()


@pytest.mark.parametrize("seq", SEQUENCES, ids=[s["id"] for s in SEQUENCES])
def test_sequence_on_model(seq: dict[str, Any]) -> None:
    """Each sequence on the pure transition model (shmbridge.protocol)."""
    _check(ModelPair(seq.get("initial_seq", 0)), seq, "model")
