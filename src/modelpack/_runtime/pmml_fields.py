"""Input fields as the PMML evaluator and the compiled PMML model both take them.

One 1-D column per field (a 2-D input of a model exported from an array is split
into its fields); numbers as doubles with NaN for missing; a string field's values
as text, integral floats read back from a CSV as the integers they were, None for
missing.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..errors import MissingColumnError, ShapeError

__all__ = ["field_columns", "number_column", "text_column"]


def field_columns(feeds: Mapping[str, Any], fields: Sequence[str], matrices: Mapping[str, Sequence[str]],
                  package: str) -> tuple[int, dict[str, np.ndarray]]:
    """(rows, one 1-D column per field fed): 2-D inputs split into their fields, lengths checked."""
    accepted = set(fields) | set(matrices)
    if not accepted.issuperset(feeds):
        unknown = [k for k in feeds if k not in accepted]
        hints = [h for k in unknown for h in difflib.get_close_matches(k, list(fields), n=1)]
        raise MissingColumnError(f"unexpected input(s) {unknown}", expected=f"fields {list(fields)}",
                                 package=package, fix=f"Did you mean {hints}? " if hints else "Pass the model's fields.")
    columns = {k: _column(k, v, package) for k, v in feeds.items() if k not in matrices}
    for name in matrices.keys() & feeds.keys():
        matrix, names = np.asarray(feeds[name]), matrices[name]
        if matrix.ndim != 2 or matrix.shape[1] != len(names):
            raise ShapeError(f"wrong shape {matrix.shape}", input=name, expected=f"[N, {len(names)}]",
                             package=package, fix=f"Pass the columns {list(names)}.")
        # Fields the document does not use (pruned by its producer) are not fed.
        columns.update({f: matrix[:, j] for j, f in enumerate(names) if f in fields})
    lengths = {len(c) for c in columns.values()}
    if len(lengths) > 1:
        raise ShapeError(f"the fields have different lengths {sorted(lengths)}", package=package,
                         fix="Pass the same number of rows for every field.")
    return (lengths.pop() if lengths else 0), columns


def _column(name: str, value: Any, package: str) -> np.ndarray:
    column = np.asarray(value)
    if column.ndim == 2 and column.shape[1] == 1:
        column = column[:, 0]
    if column.ndim != 1:
        raise ShapeError(f"wrong shape {column.shape}", input=name, expected="a 1-D array or [N, 1]",
                         package=package, fix="Pass one column per field.")
    return column


def number_column(name: str, column: np.ndarray, package: str) -> np.ndarray:
    """A field's values as doubles, NaN where missing."""
    if column.dtype.kind in "fiub":
        return column.astype(np.float64, copy=False)
    try:
        return np.array([math.nan if _missing(v) else float(v) for v in column.tolist()], dtype=np.float64)
    except (TypeError, ValueError) as exc:
        from ..errors import DTypeError

        raise DTypeError("holds values that are not numbers", input=name, expected="numbers (NaN if missing)",
                         got=f"{column.dtype} array", package=package,
                         fix="Convert the column to numbers; use NaN or None for missing values.") from exc


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and value != value) or type(value).__name__ == "NAType"


def text_column(column: np.ndarray) -> list[Any]:
    """A field's values as PMML reads strings: integral floats as integers, None where missing."""
    if column.dtype.kind == "U":
        return column.tolist()
    return [_text(v) for v in column.tolist()]


def _text(value: Any) -> Any:
    if value.__class__ is str or value.__class__ is bool:
        return value
    if _missing(value):
        return None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # 1.0 read back from a CSV is the category "1"
    return value.decode() if isinstance(value, bytes) else str(value)
