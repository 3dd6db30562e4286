"""Property tests of protocol v2 (hypothesis): random schema pairs (0 to 4 fields a side, 0-d to
3-d, fixed and variable extents, in-place reply fields) are declared, created and attached, and
random messages within them round-trip exactly, bit for bit, through a real segment in both
directions: copying and zero-copy sends, replies copied, prepared or left in place
(R-SCHEMA-1..7, R-FIELD-1, R-FIELD-4..6, R-FIELD-8, R-FIELD-11)."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
from conftest import unique_name
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import shmbridge as sb
from shmbridge import Schema, inplace, upto
from shmbridge.dtype import DType

EXAMPLES = int(os.environ.get("HYPOTHESIS_V2_EXAMPLES", "150"))
NAMES = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,6}", fullmatch=True)
EXTENT = st.one_of(st.integers(0, 4), st.integers(0, 4).map(upto))
OWN = st.tuples(
    st.sampled_from([d.name for d in DType]),
    st.lists(EXTENT, min_size=0, max_size=3).map(tuple),
)


@st.composite
def schema_pairs(draw: st.DrawFn) -> tuple[Schema, Schema]:
    req_names = draw(st.lists(NAMES, max_size=4, unique=True))
    request = Schema([(n, draw(OWN)) for n in req_names])
    rep_names = draw(st.lists(NAMES, max_size=4, unique=True))
    targets = list(req_names)
    reply: list[tuple[str, Any]] = []
    for n in rep_names:
        if targets and draw(st.booleans()):
            reply.append((n, inplace(targets.pop(draw(st.integers(0, len(targets) - 1))))))
        else:
            reply.append((n, draw(OWN)))
    return request, Schema(reply)


def concrete_shape(draw: st.DrawFn, shape: tuple[Any, ...]) -> tuple[int, ...]:
    return tuple(
        draw(st.integers(0, e.maximum)) if isinstance(e, sb.schema.Upto) else e for e in shape
    )


def array_for(draw: st.DrawFn, dtype: str, shape: tuple[int, ...]) -> np.ndarray[Any, Any]:
    dt = np.dtype(dtype)
    # any bit pattern (NaNs, signed zeros, denormals): the round trip must be exact
    raw = draw(st.binary(min_size=dt.itemsize * int(np.prod(shape)),
                         max_size=dt.itemsize * int(np.prod(shape))))  # fmt: skip
    if dt == np.bool_:
        return np.frombuffer(bytes(b & 1 for b in raw), np.bool_).reshape(shape)
    return np.frombuffer(raw, dt).reshape(shape)


def same(a: np.ndarray[Any, Any], b: np.ndarray[Any, Any]) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


@st.composite
def rounds(draw: st.DrawFn) -> tuple[Schema, Schema, list[dict[str, Any]]]:
    request, reply = draw(schema_pairs())
    plans = []
    for _ in range(draw(st.integers(1, 3))):
        req = {f.name: array_for(draw, np.dtype(f.dtype).name, concrete_shape(draw, f.shape))
               for f in request}  # fmt: skip
        rep: dict[str, Any] = {}
        for f in reply:
            if f.target is not None:
                rep[f.name] = draw(st.sampled_from(["omit", "copy"]))
            else:
                arr = array_for(draw, np.dtype(f.dtype).name, concrete_shape(draw, f.shape))
                rep[f.name] = (draw(st.sampled_from(["copy", "field", "buffer"])), arr)
        plans.append({"request": req, "reply": rep, "zero_copy": draw(st.booleans())})
    return request, reply, plans


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(case=rounds())
def test_r_schema_1_r_field_1_random_schemas_and_messages_round_trip_exactly(
    case: tuple[Schema, Schema, list[dict[str, Any]]],
) -> None:
    """R-SCHEMA-1..7, R-FIELD-1, R-FIELD-4..6, R-FIELD-8: every request and every reply arrives
    with the same dtype, shape and bytes; an in-place field left out of the reply arrives as
    the request field as taken."""
    request, reply, plans = case
    event(f"fields {len(request)} + {len(reply)}")
    fields = list(request) + [f for f in reply if f.target is None]
    event("with an in-place reply field" if any(f.target for f in reply) else "no in-place")
    event("with a variable extent" if any(isinstance(e, sb.schema.Upto) for f in fields
                                           for e in f.shape) else "fixed extents only")  # fmt: skip
    event("with a 0-d field" if any(len(f.shape) == 0 for f in fields) else "no 0-d field")
    name = unique_name("prop")
    req = sb.MessageRequester.create(name, request, reply, timeout=2.0, spin=0.0)
    try:
        rsp = sb.MessageResponder.attach(name, request, reply, timeout=2.0, spin=0.0)
        try:
            assert (req.request_schema, req.reply_schema) == (request, reply)
            for plan in plans:
                one_round(req, rsp, request, reply, plan)
        finally:
            rsp.close()
    finally:
        req.close()


def one_round(
    req: sb.MessageRequester,
    rsp: sb.MessageResponder,
    request: Schema,
    reply: Schema,
    plan: dict[str, Any],
) -> None:
    sent = plan["request"]
    if plan["zero_copy"]:
        with req.request_buffer({k: a.shape for k, a in sent.items()}) as buf:
            for k, a in sent.items():
                buf[k][...] = a
    else:
        req.send(sent)
    expected: dict[str, np.ndarray[Any, Any]] = {}
    with rsp.take() as r:
        got = r.request
        assert list(got) == list(request.names)
        for k, a in sent.items():
            assert same(got[k], a), k
        copies: dict[str, Any] = {}
        buffers: dict[str, Any] = {}
        for f in reply:
            how = plan["reply"][f.name]
            if f.target is not None:
                if how == "copy":  # the same shape, other content
                    t = sent[f.target]
                    copies[f.name] = t[::-1].copy() if t.ndim else t.copy()
                    expected[f.name] = copies[f.name]
                else:
                    expected[f.name] = sent[f.target]
                continue
            how, arr = how
            expected[f.name] = arr
            if how == "copy":
                copies[f.name] = arr
            elif how == "field":
                r.reply_field(f.name, arr.shape)[...] = arr
            else:
                buffers[f.name] = arr
        if buffers:
            # a view of every own field (in-place ones default to the request's shape): those
            # prepared by reply_field before are prepared again and refilled
            views = r.reply_buffer({f.name: expected[f.name].shape for f in reply if not f.target})
            for f in reply:
                if f.target is None and plan["reply"][f.name][0] in ("buffer", "field"):
                    views[f.name][...] = expected[f.name]
        r.reply(copies)
    out = req.receive_copy()
    assert list(out) == list(reply.names)
    for k, a in expected.items():
        assert same(out[k], a), k
