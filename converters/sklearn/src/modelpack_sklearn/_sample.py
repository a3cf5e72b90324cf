"""From the sample to the ONNX inputs: names, dtypes, shapes, columns.

Two layouts, chosen from the sample:

* one 2-D input ``X`` ``[N, n_features]`` for a numeric array or an all-numeric
  DataFrame (its column names recorded as the input's columns);
* one ``[N, 1]`` input per column, named as the column, for a DataFrame with string
  or categorical columns, or whenever the model holds a ``ColumnTransformer`` (whose
  selectors name columns, which skl2onnx resolves against input names).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from modelpack.plugin import ColumnSpec, InputError, MissingColumnError, ShapeError, TensorSpec

from ._estimators import encoder_categories, has_column_transformer

__all__ = ["InputPlan", "plan_inputs"]

_FIX_SAMPLE = "Pass sample= as a few rows of the training data (a 2-D array or a DataFrame)."


@dataclass(frozen=True)
class InputPlan:
    """How the sample maps to ONNX inputs."""

    data: Any  # what the source model predicts on: the array, or the frame cut to its columns
    initial_types: list[tuple[str, Any]]  # skl2onnx's (name, type) pairs, in input order
    inputs: tuple[TensorSpec, ...]
    columns: tuple[ColumnSpec, ...] | None


def plan_inputs(model: Any, sample: Any, dtype: str) -> InputPlan:
    """The inputs of ``model`` exported with floats in ``dtype``, as ``sample`` shows them."""
    if _is_dataframe(sample):
        return _from_frame(model, sample, dtype)
    return _from_array(model, _as_matrix(sample), dtype)


def _is_dataframe(data: Any) -> bool:
    cls = type(data)
    return cls.__name__ == "DataFrame" and cls.__module__.startswith("pandas")


# -- arrays ------------------------------------------------------------------------------------
def _as_matrix(sample: Any) -> np.ndarray:
    if sample is None:
        raise InputError("no sample given", input="sample", expected="a 2-D array or a DataFrame",
                         fix=_FIX_SAMPLE)
    if hasattr(sample, "toarray") and hasattr(sample, "nnz"):
        raise InputError("sparse matrices are not supported", input="sample", got=type(sample).__name__,
                         fix="Pass sample.toarray() (a few rows are enough).")
    try:
        arr = np.asarray(sample)
    except (ValueError, TypeError) as exc:
        raise InputError(f"cannot be read as an array ({exc})", input="sample",
                         got=type(sample).__name__, fix=_FIX_SAMPLE) from exc
    if arr.ndim != 2:
        fix = "For one row use X.reshape(1, -1), for one feature X.reshape(-1, 1)." if arr.ndim == 1 \
            else _FIX_SAMPLE
        raise ShapeError(f"wrong rank {arr.ndim}", input="sample", expected="a 2-D array [rows, features]",
                         got=f"{arr.dtype} array of shape {arr.shape}", fix=fix)
    if arr.shape[0] == 0:
        raise InputError("the sample has no rows", input="sample", got=f"shape {arr.shape}", fix=_FIX_SAMPLE)
    return arr


def _from_array(model: Any, arr: np.ndarray, dtype: str) -> InputPlan:
    _check_width(model, arr.shape[1])
    kind = _kind(arr.reshape(-1), "sample")
    tensor_dtype = "string" if kind == "string" else dtype
    data = arr.astype(object) if kind == "string" else arr
    names = getattr(model, "feature_names_in_", None)
    columns = tuple(ColumnSpec(str(n), tensor_dtype) for n in names) if names is not None else None
    spec = TensorSpec("X", tensor_dtype, ("N", arr.shape[1]), columns=columns)
    return InputPlan(data, [("X", _skl2onnx_type(tensor_dtype, arr.shape[1]))], (spec,), columns)


def _check_width(model: Any, width: int) -> None:
    expected = getattr(model, "n_features_in_", None)
    if expected is not None and expected != width:
        raise ShapeError(f"the model was fitted on {expected} features", input="sample",
                         expected=f"{expected} columns", got=f"{width} columns",
                         fix="Pass rows with the same features, in the same order, as in training.")


def _kind(values: np.ndarray, where: str) -> str:
    """numeric or string; anything else is refused."""
    if values.dtype.kind in "fiub":
        return "numeric"
    if values.dtype.kind in "US":
        return "string"
    if values.dtype.kind == "O":
        present = [v for v in values[:10_000] if v is not None and not (isinstance(v, float) and v != v)]
        if all(isinstance(v, str) for v in present):
            return "string"
        if all(isinstance(v, (int, float, np.number)) and not isinstance(v, bool) for v in present):
            return "numeric"
    raise InputError("holds values that are neither all numbers nor all strings", input=where,
                     got=f"{values.dtype} values such as {values[:3].tolist()!r:.80}",
                     fix="Pass a DataFrame with one dtype per column.")


# -- DataFrames --------------------------------------------------------------------------------
def _from_frame(model: Any, frame: Any, dtype: str) -> InputPlan:
    if len(frame) == 0:
        raise InputError("the sample has no rows", input="sample", fix=_FIX_SAMPLE)
    if not all(isinstance(c, str) for c in frame.columns):
        if all(_column_kind(frame.iloc[:, i], str(c)) == "numeric" for i, c in enumerate(frame.columns)):
            return _from_array(model, _as_matrix(frame.to_numpy()), dtype)
        raise InputError("a DataFrame with string columns needs string column names", input="sample",
                         got=f"columns {list(frame.columns)[:10]}",
                         fix="Rename them, e.g. df.columns = df.columns.astype(str), and refit.")
    frame = _model_columns(model, frame)
    kinds = {c: _column_kind(frame[c], c) for c in frame.columns}
    if all(k == "numeric" for k in kinds.values()) and not has_column_transformer(model):
        _check_width(model, frame.shape[1])
        columns = tuple(ColumnSpec(c, dtype, optype="continuous") for c in frame.columns)
        spec = TensorSpec("X", dtype, ("N", frame.shape[1]), columns=columns)
        return InputPlan(frame, [("X", _skl2onnx_type(dtype, frame.shape[1]))], (spec,), columns)
    categories = encoder_categories(model, list(frame.columns))
    columns = tuple(_column_spec(frame[c], c, kinds[c], dtype, categories.get(c)) for c in frame.columns)
    inputs = tuple(TensorSpec(c.name, c.dtype, ("N", 1), columns=(c,)) for c in columns)
    types = [(c.name, _skl2onnx_type(c.dtype, 1)) for c in columns]
    return InputPlan(frame, types, inputs, columns)


def _model_columns(model: Any, frame: Any) -> Any:
    """The frame cut to the model's training columns, in training order."""
    names = getattr(model, "feature_names_in_", None)
    if names is None:
        return frame
    missing = [str(n) for n in names if n not in frame.columns]
    if missing:
        raise MissingColumnError(f"the sample lacks column(s) {missing[:10]} the model was fitted on",
                                 input="sample", expected=f"columns {[str(n) for n in names][:20]}",
                                 got=f"{list(frame.columns)[:20]}",
                                 fix="Pass rows with every training column.")
    return frame[[str(n) for n in names]]


def _column_kind(column: Any, name: str) -> str:
    dtype = column.dtype
    if str(dtype) == "category":
        return _kind(np.asarray(column.cat.categories.to_numpy(dtype=object)), name)
    if getattr(dtype, "kind", "O") in "fiub":
        return "numeric"
    return _kind(column.to_numpy(dtype=object), name)


def _column_spec(column: Any, name: str, kind: str, dtype: str,
                 categories: tuple[Any, ...] | None) -> ColumnSpec:
    if kind == "string":
        tensor_dtype = "string"
    elif getattr(column.dtype, "kind", "f") in "iu":
        tensor_dtype = "int64"
    else:
        tensor_dtype = dtype  # floats, and booleans, which skl2onnx reads as floats
    optype = "categorical" if categories is not None or kind == "string" else (
        "continuous" if tensor_dtype.startswith("float") else None)
    return ColumnSpec(name, tensor_dtype, optype=optype, categories=categories)


def _skl2onnx_type(dtype: str, width: int) -> Any:
    from skl2onnx.common.data_types import (
        DoubleTensorType,
        FloatTensorType,
        Int64TensorType,
        StringTensorType,
    )

    types = {"float32": FloatTensorType, "float64": DoubleTensorType, "int64": Int64TensorType,
             "string": StringTensorType}
    return types[dtype]([None, width])
