"""Missing values: what the exported model does with them, decided from the source model.

Two facts are recorded on the input columns, in the manifest fields PMML uses:

* a string column that a ``SimpleImputer`` fills first gets ``asValue`` and the
  imputer's fill value: skl2onnx only converts string imputers whose missing value
  is a string, so the graph's imputer is converted with a marker no data holds, and
  the loaded model puts the fill value in place of None/NaN/pd.NA;
* a numeric column where the source model raises on NaN gets ``returnInvalid``: the
  graph would compute a label from NaN probabilities instead, so the loaded model
  refuses NaN there, as the source model does. Found by asking the model itself, one
  column at a time, on a row of the sample.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import warnings
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import numpy as np

from modelpack.plugin import ColumnSpec

from ._estimators import column_readers
from ._sample import InputPlan

__all__ = ["refused_nan", "string_imputers", "string_markers", "with_missing_values"]

_NO_DATA_HOLDS = "\x00"
#: Columns probed one by one for NaN; wider inputs are probed up to here.
MAX_PROBED_COLUMNS = 512


def string_imputers(model: Any, plan: InputPlan) -> dict[str, tuple[Any, Any]]:
    """String input name -> (imputer, fill value), for the string inputs a SimpleImputer fills first."""
    strings = {s.name for s in plan.inputs if s.dtype == "string"}
    found = _imputers(model, [s.name for s in plan.inputs])
    return {c: pair for c, pair in found.items() if c in strings}


def _imputers(model: Any, columns: list[str]) -> dict[str, tuple[Any, Any]]:
    """Column name -> (imputer, its fill value), for ``columns`` a ``SimpleImputer`` fills first.

    Only imputers that read an input column unchanged and take NaN or None as
    missing: for those, replacing a missing value by the fill value before the
    graph gives exactly what the imputer computes.
    """
    from sklearn.impute import SimpleImputer

    found: dict[str, tuple[Any, Any]] = {}
    for reader, read in column_readers(model, columns):
        if not isinstance(reader, SimpleImputer) or not hasattr(reader, "statistics_") or reader.add_indicator:
            continue
        missing = reader.missing_values
        if not (missing is None or (isinstance(missing, float) and math.isnan(missing))):
            continue
        if len(reader.statistics_) == len(read) and all(isinstance(v, str) for v in reader.statistics_):
            found.update({col: (reader, value) for col, value in zip(read, reader.statistics_.tolist(), strict=True)})
    return found


def refused_nan(model: Any, plan: InputPlan) -> set[str]:
    """The float columns where ``model`` raises on NaN, asked one column at a time."""
    if not plan.columns:
        return set()
    method = next((getattr(model, m) for m in ("predict", "transform") if hasattr(model, m)), None)
    if method is None:
        return set()
    row = plan.data.iloc[:1].copy() if hasattr(plan.data, "iloc") else np.array(plan.data[:1], dtype=np.float64)
    floats = [j for j, c in enumerate(plan.columns) if c.dtype.startswith("float")][:MAX_PROBED_COLUMNS]
    refused = set()
    for j in floats:
        probe = row.copy()
        if hasattr(probe, "iloc"):
            probe[plan.columns[j].name] = np.nan
        else:
            probe[0, j] = np.nan
        if _raises_on_nan(method, probe):
            refused.add(plan.columns[j].name)
    return refused


def _raises_on_nan(method: Any, probe: Any) -> bool:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            method(probe)
    except ValueError as exc:
        return "nan" in str(exc).lower()
    except Exception:  # noqa: BLE001 - any other failure says nothing about NaN
        return False
    return False


def with_missing_values(plan: InputPlan, fills: Mapping[str, Any], refused: set[str]) -> InputPlan:
    """``plan`` with the fill values and the NaN refusals recorded on its columns."""
    if not fills and not refused:
        return plan

    def recorded(column: ColumnSpec) -> ColumnSpec:
        if column.name in fills:
            return dataclasses.replace(column, missing_value_treatment="asValue",
                                       missing_value_replacement=fills[column.name])
        if column.name in refused:
            return dataclasses.replace(column, missing_value_treatment="returnInvalid")
        return column

    inputs = tuple(dataclasses.replace(s, columns=tuple(recorded(c) for c in s.columns)) if s.columns else s
                   for s in plan.inputs)
    columns = tuple(recorded(c) for c in plan.columns) if plan.columns else plan.columns
    return dataclasses.replace(plan, inputs=inputs, columns=columns)


@contextlib.contextmanager
def string_markers(imputers: Iterable[Any]) -> Iterator[None]:
    """The imputers with a string marker for missing while skl2onnx reads them; then as they were."""
    kept = [(imp, imp.missing_values) for imp in {id(i): i for i in imputers}.values()]
    try:
        for imp, _ in kept:
            imp.missing_values = _NO_DATA_HOLDS
        yield
    finally:
        for imp, missing in kept:
            imp.missing_values = missing
