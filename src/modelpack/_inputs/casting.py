"""Casting one array to an input's dtype: the casts that keep every value, and errors for the rest.

The policy is written in docs/casting.md.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import DTypeError, InputError
from ..manifest import TensorSpec

__all__ = ["as_array", "cast", "column_array", "describe", "expected", "numpy_dtype"]

_STRING = np.dtype(object)
# Integers up to these magnitudes are exactly representable in the float type.
_EXACT_INT = {np.dtype(np.float16): 2**11, np.dtype(np.float32): 2**24, np.dtype(np.float64): 2**53}


def numpy_dtype(name: str) -> np.dtype:
    """The numpy dtype that carries a manifest dtype name ("string" -> object)."""
    if name == "string":
        return _STRING
    try:
        return np.dtype(name)
    except TypeError:
        return _STRING


def describe(x: Any) -> str:
    arr = x if isinstance(x, np.ndarray) else None
    if arr is None:
        return type(x).__name__
    return f"{arr.dtype} array of shape {arr.shape}"


def expected(spec: TensorSpec) -> str:
    shape = "?" if spec.shape is None else "[" + ", ".join(
        str(d) if d is not None else "?" for d in spec.shape) + "]"
    return f"{spec.dtype} {shape}"


def column_array(values: Any, spec: TensorSpec, package: str) -> np.ndarray:
    if hasattr(values, "to_numpy"):  # pandas Series, including Arrow-backed strings
        if spec.dtype == "string" or getattr(values.dtype, "kind", "O") in "OUS" or str(values.dtype).startswith(("string", "str", "category")):
            return values.to_numpy(dtype=object)
        return values.to_numpy()
    return as_array(values, spec, package)


def as_array(values: Any, spec: TensorSpec, package: str) -> np.ndarray:
    if isinstance(values, np.ndarray):
        return values
    if hasattr(values, "__dlpack__") and not isinstance(values, (list, tuple)):
        try:
            return np.from_dlpack(values)
        except (TypeError, RuntimeError, BufferError):
            pass
    try:
        return np.asarray(values, dtype=object if spec.dtype == "string" else None)
    except (ValueError, TypeError) as exc:
        raise InputError(f"cannot be read as an array ({exc})", input=spec.name,
                         expected=expected(spec), got=type(values).__name__, package=package,
                         fix="Pass a numpy array, a list of numbers or a DataFrame column.") from exc


def cast(arr: np.ndarray, spec: TensorSpec, target: np.dtype, package: str) -> np.ndarray:
    source = arr.dtype
    if source == target and target != _STRING:
        return arr
    if target == _STRING:
        return _to_strings(arr, spec, package)
    if target.kind == "f":
        return _to_float(arr, spec, target, package)
    if target.kind in "iu":
        return _to_int(arr, spec, target, package)
    if target.kind == "b" and source.kind == "b":
        return arr.astype(target)
    raise _dtype_error(spec, arr, package)


def _dtype_error(spec: TensorSpec, arr: np.ndarray, package: str, why: str = "") -> DTypeError:
    return DTypeError(f"cannot be cast safely{why}", input=spec.name, expected=spec.dtype,
                      got=describe(arr), package=package,
                      fix=f"Convert it yourself if you accept the loss, e.g. X.astype({spec.dtype!r}).")


def _to_strings(arr: np.ndarray, spec: TensorSpec, package: str) -> np.ndarray:
    if arr.dtype.kind == "U":
        return arr.astype(object)
    if arr.dtype.kind == "S":
        return np.char.decode(arr, "utf-8").astype(object)
    if arr.dtype == _STRING:
        bad = [v for v in arr.reshape(-1)[:10_000] if not isinstance(v, str)]
        if bad:
            raise _dtype_error(spec, arr, package, f": holds non-string values such as {bad[0]!r} "
                                                   "(missing values must be filled first)")
        return arr
    raise _dtype_error(spec, arr, package, ": numbers given for a string input")


def _to_float(arr: np.ndarray, spec: TensorSpec, target: np.dtype, package: str) -> np.ndarray:
    kind = arr.dtype.kind
    if kind == "f":
        return arr.astype(target)
    if kind in "iu":
        if arr.size and np.abs(arr).max() > _EXACT_INT[target]:
            raise _dtype_error(spec, arr, package, f": integers beyond {_EXACT_INT[target]} are not "
                                                   f"exact in {target}")
        return arr.astype(target)
    if kind == "O":
        try:
            return arr.astype(np.float64).astype(target)
        except (ValueError, TypeError) as exc:
            raise _dtype_error(spec, arr, package, ": it holds values that are not numbers") from exc
    if kind == "b":
        return arr.astype(target)
    if kind in "US":
        raise _dtype_error(spec, arr, package, ": strings given for a numeric input")
    raise _dtype_error(spec, arr, package)


def _to_int(arr: np.ndarray, spec: TensorSpec, target: np.dtype, package: str) -> np.ndarray:
    kind = arr.dtype.kind
    if kind in "iubO":
        values = np.asarray(arr.tolist()) if kind == "O" else arr
        if values.dtype.kind not in "iub":
            raise _dtype_error(spec, arr, package, ": it holds values that are not integers")
        info = np.iinfo(target)
        if values.size and (values.min() < info.min or values.max() > info.max):
            raise _dtype_error(spec, arr, package, f": values beyond the range of {target}")
        return values.astype(target)
    raise _dtype_error(spec, arr, package, ": floats are not cast to integers")
