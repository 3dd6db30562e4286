"""dtype codes of PROTOCOL.md §3.2 (R-DTYPE-1); all little-endian."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any

import numpy as np

from .errors import DtypeMismatch

__all__ = ["CODE_OF_NUMPY", "ITEMSIZE", "DType", "dtype_code", "itemsize", "numpy_dtype"]


class DType(enum.IntEnum):
    """Wire dtype codes (equal to ``spec/dtypes.json``); the member name is the numpy name."""

    bool = 1
    int8 = 2
    uint8 = 3
    int16 = 4
    uint16 = 5
    int32 = 6
    uint32 = 7
    int64 = 8
    uint64 = 9
    float16 = 10
    float32 = 11
    float64 = 12
    complex64 = 13
    complex128 = 14

    @property
    def numpy(self) -> np.dtype[Any]:
        return _NUMPY[self]

    @property
    def itemsize(self) -> int:
        return _NUMPY[self].itemsize


_NUMPY: dict[DType, np.dtype[Any]] = {d: np.dtype(d.name).newbyteorder("<") for d in DType}
_BY_NUMPY: dict[np.dtype[Any], DType] = {v: k for k, v in _NUMPY.items()}
#: numpy dtype -> wire code, for hot paths that check an array's dtype (``.get``: None if not one)
CODE_OF_NUMPY: Mapping[np.dtype[Any], DType] = _BY_NUMPY
#: wire code -> itemsize: a dict lookup where ``DType(code).itemsize`` is an enum call (hot paths)
ITEMSIZE: dict[int, int] = {int(d): d.itemsize for d in DType}


def dtype_code(dtype: Any) -> DType:
    """The wire code for a numpy dtype-like (``np.float32``, ``"float32"``, ``DType.float32``, a
    code). Raises :class:`DtypeMismatch` for an unsupported dtype (R-DTYPE-1), including a
    non-little-endian one."""
    if isinstance(dtype, DType):
        return dtype
    if isinstance(dtype, np.dtype):  # an array's dtype, the common case: one dict lookup (a
        code = _BY_NUMPY.get(dtype)  # native-order dtype equals and hashes as its '<' twin)
        if code is not None:
            return code
    if isinstance(dtype, int) and not isinstance(dtype, (np.generic,)):
        try:
            return DType(dtype)
        except ValueError:
            raise DtypeMismatch(
                f"unsupported dtype code {dtype}: expected one of 1..14 (spec §3.2)"
            ) from None
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise DtypeMismatch(f"unsupported dtype {dtype!r}: expected a numpy dtype") from None
    if dt.byteorder == "=" or dt.byteorder == "|":
        dt = dt.newbyteorder("<") if np.little_endian or dt.itemsize == 1 else dt
    code = _BY_NUMPY.get(dt)
    if code is None:
        raise DtypeMismatch(
            f"unsupported dtype {dt.str}: expected one of "
            + ", ".join(d.name for d in DType)
            + " (little-endian)"
        )
    return code


def numpy_dtype(code: int) -> np.dtype[Any]:
    """The little-endian numpy dtype of a wire code (DtypeMismatch if unknown)."""
    return dtype_code(int(code)).numpy


def itemsize(code: int) -> int:
    return numpy_dtype(code).itemsize
