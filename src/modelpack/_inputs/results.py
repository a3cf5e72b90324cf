"""Results as tables: ``predict(..., output="pandas" | "arrow" | "polars")`` and the batch writer.

Column names, shared by :meth:`Model.predict` and :mod:`modelpack.batch`:

* ``predict``: ``prediction`` (``prediction_0``, ``prediction_1``... for several targets);
* ``predict_proba``: ``proba_<class>`` per class, in :attr:`Model.classes` order;
* ``run``: ``<output>`` for one value per row, ``<output>_<j>`` (``<output>_<class>``
  for probabilities) for several.

Numeric columns go to Arrow without a copy; the library of the output is imported
only when that output is asked for.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..errors import TaskError

__all__ = ["OUTPUTS", "as_table", "check_output", "columns_of", "joined"]

OUTPUTS = ("numpy", "pandas", "arrow", "polars")


def check_output(output: str) -> None:
    """Raise :class:`~modelpack.TaskError` unless ``output`` is one of :data:`OUTPUTS`."""
    if output not in OUTPUTS:
        raise TaskError(f"output={output!r} is not one of {', '.join(OUTPUTS)}",
                        fix="Pass output='numpy' (the default), 'pandas', 'arrow' or 'polars'.")


def columns_of(name: str, value: Any, labels: np.ndarray | None, *, always_split: bool = False) -> dict[str, Any]:
    """One result as named 1-D columns (see the module documentation for the names)."""
    if isinstance(value, list) and value and isinstance(value[0], dict):  # ZipMap: one dict per row
        keys = labels.tolist() if labels is not None else list(value[0])
        return {f"{name}_{k}": np.array([row[k] for row in value]) for k in keys}
    arr = np.asarray(value)
    if arr.ndim <= 1 or (arr.ndim == 2 and arr.shape[1] == 1 and not always_split):
        return {name: arr.reshape(len(arr)) if arr.ndim else arr}
    arr = arr.reshape(len(arr), -1)
    if labels is not None and len(labels) == arr.shape[1]:
        suffixes = [str(c) for c in labels.tolist()]
    else:
        suffixes = [str(j) for j in range(arr.shape[1])]
    return {f"{name}_{s}": arr[:, j] for j, s in enumerate(suffixes)}


def as_table(columns: Mapping[str, Any], output: str, index: Any = None) -> Any:
    """``columns`` as a pandas DataFrame (on ``index``), an Arrow Table or a polars DataFrame."""
    if output == "pandas":
        import pandas as pd

        return pd.DataFrame(dict(columns), index=index)
    import pyarrow as pa

    table = pa.table({name: _arrow_array(values) for name, values in columns.items()})
    if output == "polars":
        import polars as pl

        return pl.from_arrow(table)
    return table


def _arrow_array(values: Any) -> Any:
    import pyarrow as pa

    arr = np.asarray(values)
    if arr.dtype.kind == "O":  # labels as Python strings (or other objects): Arrow infers their type
        return pa.array(arr.tolist())
    return pa.array(np.ascontiguousarray(arr))  # numbers: a view of the numpy buffer


def joined(parts: Sequence[Any]) -> Any:
    """The results of consecutive batches as one: arrays end to end, ZipMap lists joined, dicts per key."""
    first = parts[0]
    if len(parts) == 1:
        return first
    if isinstance(first, dict):
        return {key: joined([p[key] for p in parts]) for key in first}
    if isinstance(first, list):
        return [row for part in parts for row in part]
    return np.concatenate(parts)
