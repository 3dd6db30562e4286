"""Loading the protocol v2 vectors (spec/vectors/headers_v2.json, messages_v2.json; format in
spec/vectors/README.md "Protocol v2 vectors") and turning their structured schemas into
shmbridge.Schema objects."""

from __future__ import annotations

from typing import Any

import numpy as np
from conftest import load_spec_json

from shmbridge import Schema, inplace, upto

HEADERS_V2 = load_spec_json("vectors/headers_v2.json")
MESSAGES_V2 = load_spec_json("vectors/messages_v2.json")
SCHEMAS = {s["id"]: s for s in MESSAGES_V2["schemas"]}


def np_dtype(name: str) -> np.dtype[Any]:
    """A vector's dtype name; "object" stands for a dtype the protocol does not support."""
    return np.dtype(name)


def field_spec(f: dict[str, Any]) -> Any:
    if "inplace" in f:
        return inplace(f["inplace"])
    shape = tuple(upto(e["upto"]) if isinstance(e, dict) else e for e in f["shape"])
    return (np_dtype(f["dtype"]), shape)


def schema(fields: list[dict[str, Any]] | None) -> Schema | None:
    """The structured form of a declared schema (a list keeps any order and name)."""
    if fields is None:
        return None
    return Schema([(f["name"], field_spec(f)) for f in fields])


def schema_pair(schema_id: str) -> tuple[Schema, Schema]:
    s = SCHEMAS[schema_id]
    req, rep = schema(s["request"]), schema(s["reply"])
    assert req is not None and rep is not None
    return req, rep


def ids(vs: list[dict[str, Any]]) -> list[str]:
    return [v["id"] for v in vs]
