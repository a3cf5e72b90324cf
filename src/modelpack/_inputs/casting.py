"""Casting one array to an input's dtype: the casts that keep every value, and errors for the rest.

The policy is written in docs/casting.md.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

from ..errors import DTypeError, InputError
from ..manifest import TensorSpec

__all__ = ["EXACT_INT", "as_array", "cast", "column_array", "describe", "expected", "numpy_dtype"]

_STRING = np.dtype(object)
# Integers up to these magnitudes are exactly representable in the float type.
EXACT_INT = {np.dtype(np.float16): 2**11, np.dtype(np.float32): 2**24, np.dtype(np.float64): 2**53}


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


def cast(arr: np.ndarray, spec: TensorSpec, target: np.dtype, package: str, *,
         missing_passes: bool = False, strings: bool = False) -> np.ndarray:
    """``arr`` as ``target``, or a DTypeError; ``missing_passes``: missing strings become None.

    ``strings``: ``arr`` is known to hold only ``str`` (read from an Arrow string
    column without nulls), so its values are not looked at one by one.
    """
    source = arr.dtype
    if source == target and (target != _STRING or strings):
        return arr
    if target == _STRING:
        return _to_strings(arr, spec, package, missing_passes)
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


def _to_strings(arr: np.ndarray, spec: TensorSpec, package: str, missing_passes: bool = False) -> np.ndarray:
    if missing_passes and (arr.dtype.kind in "iufb" or arr.dtype == _STRING):
        arr = _as_pmml_text(arr)  # a PMML field takes numbers by their text, as PMML evaluators do
    if arr.dtype.kind == "U":
        return arr.astype(object)
    if arr.dtype.kind == "S":
        return np.char.decode(arr, "utf-8").astype(object)
    if arr.dtype != _STRING:
        raise _dtype_error(spec, arr, package, ": numbers given for a string input")
    bad = _first_non_string(arr, missing_passes)
    if bad is _NONE:
        return arr
    fills = _fills(spec, arr)
    if fills is None and missing_passes:
        fills = [None]  # no recorded fill: missing values go on as None
    if fills is not None and is_missing(bad):
        arr = _filled(arr, fills, missing_passes)
        bad = _first_non_string(arr, missing_passes)
        if bad is _NONE:
            return arr
    if is_missing(bad):
        raise DTypeError(f"holds a missing value ({bad!r}) and the package records no value to fill it with",
                         input=spec.name, expected="strings", got=describe(arr), package=package,
                         fix="Fill it with the value the model was trained to see, e.g. "
                             "df[col].fillna('missing'), or export a pipeline whose SimpleImputer "
                             "fills this column (the package then records the fill).")
    raise DTypeError(f"holds non-string values such as {bad!r}", input=spec.name, expected="strings",
                     got=describe(arr), package=package,
                     fix="Convert them to text first, e.g. df[col].astype(str).")


_NONE = object()


def _as_pmml_text(arr: np.ndarray) -> np.ndarray:
    """Numbers and booleans as a PMML string field reads them: ``7`` and ``7.0`` are ``"7"``."""
    out = np.empty(arr.shape, dtype=object)
    flat = out.reshape(-1)
    for i, v in enumerate(arr.reshape(-1).tolist()):
        flat[i] = v if v.__class__ is str or is_missing(v) else _pmml_text(v)
    return out


def _pmml_text(value: Any) -> Any:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    return value  # anything else is refused below with the others


def _first_non_string(arr: np.ndarray, none_passes: bool = False) -> Any:
    # Every value, not a prefix: one number deep in a column would reach the runtime.
    if arr.size > 64 and _all_strings(arr):
        return _NONE
    return next((v for v in arr.reshape(-1).tolist() if v.__class__ is not str and not isinstance(v, str)
                 and not (none_passes and v is None)), _NONE)


def _all_strings(arr: np.ndarray) -> bool:
    """True if every value is a ``str``, by pandas' compiled check when pandas is loaded (never imported
    for it: an object column comes from pandas more often than not); False when it cannot say."""
    lib = getattr(getattr(sys.modules.get("pandas"), "_libs", None), "lib", None)
    check = getattr(lib, "is_string_array", None)
    if check is None:
        return False
    try:
        return bool(check(arr.reshape(-1), skipna=False))
    except (TypeError, ValueError):  # an internal whose signature moved: the Python loop answers
        return False


def is_missing(value: Any) -> bool:
    """None, NaN (float or numpy) or pandas' NA: what a DataFrame holds for a missing value."""
    return value is None or (isinstance(value, float) and value != value) or type(value).__name__ == "NAType"


def _fills(spec: TensorSpec, arr: np.ndarray) -> list[Any] | None:
    """The recorded fill value of each column of ``arr`` (None where there is none), or None."""
    if not spec.columns or all(c.missing_value_replacement is None for c in spec.columns):
        return None
    fills = [c.missing_value_replacement if c.missing_value_treatment in (None, "asValue") else None
             for c in spec.columns]
    if len(fills) == 1:
        return fills
    return fills if arr.ndim == 2 and arr.shape[1] == len(fills) else None


def _filled(arr: np.ndarray, fills: list[Any], missing_passes: bool = False) -> np.ndarray:
    """``arr`` with missing values replaced by each column's fill (None: left, or None if they pass)."""
    out = arr.copy()
    missing = np.frompyfunc(is_missing, 1, 1)(out).astype(bool)
    for j, fill in enumerate(fills):
        if fill is None and not missing_passes:
            continue
        if len(fills) == 1:
            out[missing] = fill
        else:
            out[missing[:, j], j] = fill
    return out


def _inexact(spec: TensorSpec, arr: np.ndarray, package: str, target: np.dtype) -> DTypeError:
    return _dtype_error(spec, arr, package, f": integers beyond {EXACT_INT[target]} are not exact in {target}")


def _to_float(arr: np.ndarray, spec: TensorSpec, target: np.dtype, package: str) -> np.ndarray:
    kind = arr.dtype.kind
    if kind == "f":
        return arr.astype(target)
    if kind in "iu":
        if arr.size and np.abs(arr).max() > EXACT_INT[target]:
            raise _inexact(spec, arr, package, target)
        return arr.astype(target)
    if kind == "O":
        # What numpy's astype would take without a word: numeric strings ("1.5") and
        # integers past the float's exact range. A numeric array is refused those, so an
        # object array (a DataFrame column of mixed Python values) is too.
        values = arr.reshape(-1).tolist()
        text = next((v for v in values if isinstance(v, (str, bytes))), None)
        if text is not None:
            raise _dtype_error(spec, arr, package, f": strings given for a numeric input, such as {text!r}")
        big = max((abs(int(v)) for v in values if isinstance(v, (int, np.integer)) and not isinstance(v, bool)),
                  default=0)
        if big > EXACT_INT[target]:
            raise _inexact(spec, arr, package, target)
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
