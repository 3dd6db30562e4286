"""Protocol v2 as the kit sees it from outside: the SPEC grammar of spec/PEER.md §7.2 and the
data rules of §7.3 (request fields per round) and §7.4 (derive), so the runner can recompute
what every v2 peer must have sent and published and compare it with what the peers logged.

Independent of the shmbridge package (like peerkit): a peer under test is checked against the
spec text, not against a library that might share its bug.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .peerkit import DTYPE_CODES, MASK64, hexsum, pattern

_NAME = re.compile(r"[A-Za-z0-9_]+")
_UINT = re.compile(r"0|[1-9][0-9]*")
EXTENT_MODES = ("rule", "zero", "max", "over")


class SpecError(ValueError):
    """A SPEC the grammar of PEER.md §7.2 does not admit."""


@dataclass(frozen=True)
class FieldSpec:
    """One field of a SPEC: ``extents`` holds (extent or maximum, variable) per dimension; an
    in-place reply field (``name:=target``) has ``target`` set and takes its dtype and extents
    from the request field it names (``resolve``)."""

    name: str
    dtype: str = ""
    extents: tuple[tuple[int, bool], ...] = ()
    target: str | None = None

    def has_variable(self) -> bool:
        return any(var for _, var in self.extents)


def parse(text: str) -> list[FieldSpec]:
    """PEER.md §7.2: ``name:dtype:extents`` (``N`` fixed, ``<=N`` variable) or ``name:=target``,
    separated by ``;``; the empty string is a schema with no fields."""
    out: list[FieldSpec] = []
    for part in text.split(";") if text else []:
        name, colon, rest = part.partition(":")
        if not colon or not _NAME.fullmatch(name):
            raise SpecError(f"bad field {part!r} in SPEC {text!r}")
        if rest.startswith("="):
            if not _NAME.fullmatch(rest[1:]):
                raise SpecError(f"bad in-place field {part!r} in SPEC {text!r}")
            out.append(FieldSpec(name, target=rest[1:]))
            continue
        dtype, colon, ext = rest.partition(":")
        if not colon or dtype not in DTYPE_CODES:
            raise SpecError(f"bad field {part!r} in SPEC {text!r}: want name:dtype:extents")
        extents = []
        for e in ext.split(",") if ext else []:
            var = e.startswith("<=")
            digits = e[2:] if var else e
            if not _UINT.fullmatch(digits) or int(digits) > MASK64:
                raise SpecError(f"bad extent {e!r} in SPEC {text!r}")
            extents.append((int(digits), var))
        out.append(FieldSpec(name, dtype, tuple(extents)))
    return out


def resolve(request: list[FieldSpec], reply: list[FieldSpec]) -> list[FieldSpec]:
    """The reply schema with every in-place field given its target's dtype and extents
    (R-SCHEMA-4); ``target`` stays set."""
    by_name = {f.name: f for f in request}
    out = []
    for f in reply:
        if f.target is not None:
            t = by_name.get(f.target)
            if t is None:
                raise SpecError(f"in-place field {f.name!r} targets no request field {f.target!r}")
            f = FieldSpec(f.name, t.dtype, t.extents, f.target)
        out.append(f)
    return out


def extent(mode: str, rule: int, maximum: int) -> int:
    """A variable extent by --extents / --reply-extents (§7.3); ``rule`` is the left operand of
    ``mod (M + 1)``, computed exactly."""
    if mode == "rule":
        return rule % (maximum + 1)
    return {"zero": 0, "max": maximum, "over": maximum + 1}[mode]


def shape_of(f: FieldSpec, k: int, mode: str, base: int) -> tuple[int, ...]:
    """Field k's shape: fixed extents as declared, variable extent d by ``mode`` with the rule
    operand ``base + 3 k + d``."""
    return tuple(extent(mode, base + 3 * k + d, m) if var else m
                 for d, (m, var) in enumerate(f.extents))


Logged = dict[str, tuple[tuple[int, ...], str]]  # field -> (shape, checksum hex), schema order


def request_fields(request: list[FieldSpec], rnd: int, seed: int, mode: str) -> Logged:
    """§7.3: what a requester sends in round ``rnd`` with ``--seed`` and ``--extents mode``, as
    the log shows it (shape and §3 checksum per field). ``over`` sends nothing (S7)."""
    out: Logged = {}
    for k, f in enumerate(request):
        shape = shape_of(f, k, mode, rnd + seed)
        out[f.name] = (shape, data_checksum(f.dtype, shape, rnd, seed + 29 * k))
    return out


def data_checksum(dtype: str, shape: tuple[int, ...], rnd: int, seed: int) -> str:
    """The §3 checksum of §3's pattern; a field with an extent 0 holds no byte (checksum 0),
    whatever its other extents (up to 2^64 - 1, which NumPy cannot shape)."""
    if 0 in shape:
        return f"{0:016x}"
    return hexsum(pattern(dtype, shape, rnd, seed))


def derive_base(taken: Logged) -> int:
    """§7.4: c = the §3 checksum of request field 0 (as taken) mod 61; 0 without fields."""
    for _shape, cs in taken.values():
        return int(cs, 16) % 61
    return 0


def derive_fields(reply: list[FieldSpec], c: int, mode: str) -> Logged:
    """§7.4 derive: reply field k's variable extent d by ``mode`` with operand ``c + 3 k + d``,
    element i ``(7 i + 29 k + c) mod 61`` cast as in §3; ``reply`` resolved (in-place fields
    have their target's dtype and extents)."""
    out: Logged = {}
    for k, f in enumerate(reply):
        shape = shape_of(f, k, mode, c)
        out[f.name] = (shape, data_checksum(f.dtype, shape, 0, 29 * k + c))
    return out


def logged(e: dict) -> Logged | None:
    """The ``shapes``/``checksums`` of a v2 event (PEER.md §7.5) in logged order, or None when
    they are absent or do not name the same fields."""
    shapes, sums = e.get("shapes"), e.get("checksums")
    if not isinstance(shapes, dict) or not isinstance(sums, dict) or list(shapes) != list(sums):
        return None
    try:
        return {k: (tuple(int(x) for x in shapes[k]), str(sums[k])) for k in shapes}
    except (TypeError, ValueError):
        return None


def show(fields: Logged | None) -> str:
    if fields is None:
        return "none"
    return "{" + ", ".join(f"{k}: {list(s)} {c}" for k, (s, c) in fields.items()) + "}"
