"""The input adapter: numpy, pandas, dicts and records in; the model's feeds out.

One :class:`InputAdapter` is built per loaded model from the manifest's inputs;
it maps whatever the caller passes to ``{input name: array}`` with the dtypes
and ranks the model declares, and raises :class:`~modelpack.InputError` (never
a runtime's error) when that cannot be done safely. The cast policy is written
in docs/casting.md: casts that keep every value are done, others raise.

A numpy array of the right dtype and rank for a single-input model takes a
path of a few attribute checks: this is the hot path of single-row predict.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable, Mapping, Sequence, Sized
from typing import Any

import numpy as np

from .._runtime.base import CodedColumn
from ..errors import InputError, MissingColumnError, ShapeError
from ..manifest import TensorSpec
from .arrow import ArrowColumns, PandasColumns, PolarsColumns, foreign_column, frame_kind
from .casting import EXACT_INT, as_array, cast, column_array, describe, expected, numpy_dtype
from .frames import frame_columns, frame_values, is_dataframe

__all__ = ["InputAdapter"]

_STRING = numpy_dtype("string")


class InputAdapter:
    """Turns caller data into the feeds of one model."""

    def __init__(self, inputs: Sequence[TensorSpec], package: str, *, missing_passes: bool = False,
                 coded: Iterable[str] = ()) -> None:
        self.specs = tuple(inputs)
        # String inputs the backend takes as their distinct values and codes (CodedColumn),
        # given so where a table holds them encoded or Arrow encodes them.
        self._coded = frozenset(coded)
        self.package = package
        # PMML has missing values of its own: a missing string goes to the evaluator as one.
        self._missing_passes = missing_passes
        self.names = tuple(s.name for s in self.specs)
        self._dtypes = {s.name: numpy_dtype(s.dtype) for s in self.specs}
        self._single = self.specs[0] if len(self.specs) == 1 else None
        # Hot path constants for the single-input case.
        s = self._single
        self._name = s.name if s else None
        self._dtype = self._dtypes[s.name] if s else None
        # Object arrays never take the hot path: their values are strings only once checked.
        self._hot_dtype = self._dtype if self._dtype is not None and self._dtype.kind != "O" else None
        self._rank = len(s.shape) if s and s.shape is not None else None
        self._width = s.shape[-1] if s and s.shape and isinstance(s.shape[-1], int) and len(s.shape) > 1 else None
        self._columns = {s.name: tuple(c.name for c in s.columns) for s in self.specs if s.columns}
        self._shapes = {s.name: s.shape for s in self.specs}
        # One [N, 1] input per column, as skl2onnx makes them: the inputs share their rows,
        # even where the graph leaves the batch dimension unnamed. (1-D inputs need not:
        # a sequence and its split sizes are both 1-D.)
        self._one_per_column = len(self.specs) > 1 and all(
            s.shape is not None and (len(s.shape) == 1 or (len(s.shape) == 2 and s.shape[1] == 1))
            for s in self.specs)
        self._per_column = len(self.specs) > 1 and all(
            s.shape is not None and len(s.shape) == 2 and s.shape[1] == 1 for s in self.specs)
        # The columns Index of the last DataFrame found to match the single 2-D input: rows
        # sliced from one frame share it, so the name check is done once, not per call.
        self._frame_columns: Any = None
        self._frame_wanted: Any = None
        self._last_names: tuple[Any, list[Any]] = (None, [])
        # One record of plain floats and strings, one input per field (PMML, skl2onnx
        # ColumnTransformers): (name, dtype, value type, is [N, 1]) per input, or None.
        self._record_plan = _record_plan(self.specs, self._dtypes)
        # Float columns where the source model refuses NaN (recorded as PMML's
        # "returnInvalid"): input name -> their positions on the last axis.
        # A position list of None means every column.
        refused = ((s, [j for j, c in enumerate(s.columns) if c.missing_value_treatment == "returnInvalid"])
                   for s in self.specs if s.columns and s.dtype.startswith("float"))
        self._nan_refused = [(s.name, None if len(p) == len(s.columns or ()) else p) for s, p in refused if p]
        # The single input refuses NaN in every column: the hot path checks it inline.
        self._nan_all = self._single is not None and self._nan_refused == [(self._single.name, None)]

    # -- entry point -------------------------------------------------------------
    def __call__(self, data: Any) -> dict[str, np.ndarray]:
        # The hot path first, with the NaN check inline: one row costs a few microseconds.
        if (data.__class__ is np.ndarray and data.dtype is self._hot_dtype and data.ndim == self._rank
                and self._single is not None and (self._width is None or data.shape[-1] == self._width)):
            if self._nan_refused and (not self._nan_all or _has_nan(data)):
                self._refuse_nan({self._name: data})  # type: ignore[dict-item]
            return {self._name: data}  # type: ignore[dict-item]
        if data.__class__ is dict and self._record_plan is not None:  # one record: it checks NaN itself
            feeds = self._planned_record(data)
            if feeds is not None:
                return feeds
        feeds = self._adapted(data)
        if self._nan_refused:
            self._refuse_nan(feeds)
        return feeds

    def _refuse_nan(self, feeds: Mapping[str, np.ndarray]) -> None:
        for name, positions in self._nan_refused:
            arr = feeds[name]
            part = arr if positions is None else arr[..., positions]
            if _has_nan(part):
                columns = self._columns[name]
                where = range(len(columns)) if positions is None else positions
                bad = next(columns[j] for j in where if np.isnan(arr[..., j]).any()) \
                    if arr.ndim and len(columns) > 1 else columns[0]
                raise InputError(f"column {bad!r} holds NaN, which the source model refuses (it would "
                                 "not have predicted on it)", input=name, package=self.package,
                                 fix="Fill missing values first (e.g. df.fillna(...) with the training "
                                     "median), or export a pipeline that imputes them (SimpleImputer).")

    def _adapted(self, data: Any) -> dict[str, np.ndarray]:
        if data.__class__ is np.ndarray and self._single is not None:  # (an exact match took the hot path)
            return {self._name: self.adapt(self._single, data)}  # type: ignore[dict-item]
        if self._single is not None:
            return self._feeds(data)
        if data.__class__ is list and len(data) == 1 and isinstance(data[0], Mapping):
            feeds = self._planned_record(data[0])  # a list of one record, as JSON bodies hold it
        else:
            feeds = self._planned_record(data) if isinstance(data, Mapping) else None
        if feeds is not None:  # one record: one row in every input by construction
            return feeds
        feeds = self._feeds(data)
        if not is_dataframe(data) and frame_kind(data) is None:  # a table's columns share one length
            self.check_named_dims(feeds)
        return feeds

    def check_named_dims(self, feeds: Mapping[str, np.ndarray]) -> None:
        """A dimension named alike in several inputs ("N") must have one size in ``feeds``."""
        seen: dict[str, tuple[str, int]] = {}
        for name, array in feeds.items():
            shape = self._shapes.get(name)
            if shape is None or len(shape) != array.ndim:
                continue
            for dim, size in zip(shape, array.shape, strict=True):
                if not isinstance(dim, str):
                    continue
                first = seen.setdefault(dim, (name, size))
                if first[1] != size:
                    raise ShapeError(f"dimension {dim!r} is {first[1]} in input {first[0]!r} but {size} here",
                                     input=name, package=self.package,
                                     fix="Send the same number of rows for every input.")

    def _feeds(self, data: Any) -> dict[str, np.ndarray]:
        if is_dataframe(data):
            return self._from_frame(data)
        kind = frame_kind(data)
        if kind is not None:
            return self._from_arrow(data, kind)
        if isinstance(data, Mapping):
            return self._from_mapping(data)
        if isinstance(data, (list, tuple)) and data and all(isinstance(r, Mapping) for r in data):
            return self._from_records(data)
        if (isinstance(data, np.ndarray) and self._one_per_column and data.ndim == 2
                and data.shape[1] == len(self.specs)):
            # One input per column (PMML fields, skl2onnx's per-column inputs): a matrix's
            # columns are taken in the inputs' order, as its single-input twin takes them.
            return {s.name: self.adapt(s, data[:, j]) for j, s in enumerate(self.specs)}
        if isinstance(data, tuple) and self._single is None and len(data) == len(self.specs):
            # Positional inputs, in the model's order, as a multi-input network takes them.
            return {s.name: self.adapt(s, self._given(v, s))
                    for s, v in zip(self.specs, data, strict=True)}
        if self._single is None:
            raise InputError(f"the model has {len(self.specs)} inputs {list(self.names)}",
                             expected="a dict of input name -> array, a DataFrame or records",
                             got=describe(data), package=self.package,
                             fix="Pass {name: array} with every input.")
        return {self._single.name: self.adapt(self._single, self._given(data, self._single))}

    # -- mappings, records, DataFrames ---------------------------------------------
    def _from_frame(self, df: Any) -> dict[str, np.ndarray]:
        columns = df.columns
        if columns is self._frame_columns or (
                self._rank == 2 and self._name not in columns and self._frame_matches(columns)):
            self._frame_columns = columns
            values = frame_values(df)
            if values.dtype is self._hot_dtype and (self._width is None or values.shape[1] == self._width):
                return {self._name: values}  # type: ignore[dict-item]
            return {self._name: self.adapt(self._single, values)}  # type: ignore[arg-type, dict-item]
        return self._from_columns(PandasColumns(frame_columns(df, self._names_of(columns), self._target_of), len(df),
                                                self._target_of, self.package), len(df), "column")

    def _from_arrow(self, data: Any, kind: str) -> dict[str, np.ndarray]:
        if kind == "lazy":  # Model collects a LazyFrame in batches; here it is one batch
            data, kind = data.collect(), "polars"
        columns = ArrowColumns(data, self._target_of, self.package) if kind == "arrow" \
            else PolarsColumns(data, self._target_of, self.package)
        return self._from_columns(columns, columns.rows, "column")

    def _target_of(self, column: str) -> np.dtype | None:
        """The dtype of the input that ``column`` feeds (None: it feeds none)."""
        dtype = self._dtypes.get(column)
        return dtype if dtype is not None or self._single is None else self._dtype

    def wanted_columns(self) -> list[str] | None:
        """The columns a table must hold (None: any, taken in order)."""
        if self._single is None:
            return list(self.names)
        return list(self._columns.get(self._single.name, ())) or None

    def _names_of(self, columns: Any) -> list[Any]:
        # Listing an Arrow-backed Index costs microseconds; an Index is immutable, and rows
        # sliced from one frame share it, so the list is kept for the last one seen.
        index, names = self._last_names
        if index is not columns:
            names = columns.tolist()
            self._last_names = (columns, names)  # one assignment: safe for threads
        return names

    def _frame_matches(self, columns: Any) -> bool:
        """True if the frame's columns are exactly the input's features, in order."""
        wanted = self._columns.get(self._name)  # type: ignore[arg-type]
        if wanted is None:  # no names recorded: positional, as scikit-learn takes arrays
            return self._width is None or len(columns) == self._width
        if self._frame_wanted is None:
            self._frame_wanted = type(columns)(list(wanted))
        return bool(len(columns) == len(wanted) and columns.equals(self._frame_wanted))

    def _from_mapping(self, data: Mapping[str, Any]) -> dict[str, np.ndarray]:
        feeds = self._planned_record(data)
        if feeds is not None:
            return feeds
        values = list(data.values())
        if values and all(_is_scalar(v) for v in values):  # one record: a dict of scalars
            return self._from_columns({k: [v] for k, v in data.items()}, 1, "field")
        if set(self.names) <= set(data):
            self._refuse_unknown(self.names, data, "input")
            if self._per_column:
                self._check_lengths(data, "input")
            return {s.name: self.adapt(s, self._given(data[s.name], s)) for s in self.specs}
        n = len(values[0]) if values and hasattr(values[0], "__len__") else 0
        return self._from_columns(data, n, "key")

    def _planned_record(self, record: Mapping[str, Any]) -> dict[str, np.ndarray] | None:
        """The feeds for one record of plain floats and strings, or None if it is not one.

        NaN is refused here, where the source model refuses it, on the Python floats:
        cheaper than looking into the arrays afterwards.
        """
        plan = self._record_plan
        if plan is None or len(record) != len(plan):
            return None
        feeds = {}
        nan = False
        for name, dtype, kind, column in plan:
            value = record.get(name)
            if value.__class__ is not kind and not (
                    value.__class__ is int and kind is float and -EXACT_INT[dtype] <= value <= EXACT_INT[dtype]):
                return None  # arrays, lists, other scalars, integers past the exact range: the general path
            nan = nan or value != value
            # Built in its final shape: a reshape would cost a third of the array's price.
            feeds[name] = np.array([[value]] if column else [value], dtype=dtype)
        if nan and self._nan_refused:
            self._refuse_nan(feeds)
        return feeds

    def _from_records(self, records: Sequence[Mapping[str, Any]]) -> dict[str, np.ndarray]:
        keys: dict[str, None] = {}
        for record in records:
            keys.update(dict.fromkeys(record))
        columns = {k: [r.get(k) for r in records] for k in keys}
        missing = [k for k in keys if any(k not in r for r in records)]
        if missing:
            raise MissingColumnError(f"record(s) lack the field(s) {missing[:5]}", package=self.package,
                                     fix="Give every record the same fields.")
        return self._from_columns(columns, len(records), "field")

    def _from_columns(self, columns: Mapping[str, Any], n: int, what: str) -> dict[str, np.ndarray]:
        # A DataFrame's columns are its own (extra ones are left out, as scikit-learn's
        # ColumnTransformer does); a dict's or a record's keys are the caller's words for
        # the inputs, so one that names nothing the model takes is a mistake.
        from_frame = what == "column"
        if not from_frame:
            self._check_lengths(columns, what)
        if set(self.names) <= set(columns):  # one input per column (skl2onnx, PMML)
            if not from_frame:
                self._refuse_unknown(self.names, columns, what)
            feeds: dict[str, Any] = {}
            codes = getattr(columns, "codes", None) if self._coded else None
            for s in self.specs:
                found = codes(s.name) if codes is not None and s.name in self._coded else None
                if found is not None:  # the casting policy applies to each distinct value once
                    try:
                        feeds[s.name] = CodedColumn(self.adapt(s, found[0]), found[1])
                        continue
                    except InputError:
                        pass  # refused: said again below of the whole column, as without codes
                values = self._column(columns[s.name], s, s.name)
                # (read after the column: converting it is what vouches for its strings)
                feeds[s.name] = self.adapt(s, values, strings=s.name in getattr(columns, "checked", ()))
            return feeds
        if self._single is not None and self._single.name in self._columns:
            wanted = self._columns[self._single.name]
            self._check_present(wanted, columns, what)
            if not from_frame:
                self._refuse_unknown(wanted, columns, what)
            stacked = self._stacked([self._column(columns[c], self._single, c) for c in wanted], n)
            return {self._single.name: self.adapt(self._single, stacked)}
        if self._single is not None and self._single.shape is not None and len(self._single.shape) == 2:
            if not from_frame:
                raise InputError(f"the {what}s {list(columns)[:10]} name no input, and the package records "
                                 "no feature names to place them by",
                                 expected=f"{{{self._single.name!r}: array}} or an array of shape "
                                          f"{expected(self._single)}",
                                 got=describe(columns), package=self.package,
                                 fix=f"Pass {{{self._single.name!r}: rows}}, or an array (or a DataFrame) "
                                     "whose columns are in training order.")
            # No names recorded: a frame's columns are taken in order, as scikit-learn takes arrays.
            stacked = self._stacked([self._column(v, self._single, str(k)) for k, v in columns.items()], n)
            return {self._single.name: self.adapt(self._single, stacked)}
        raise self._missing(self.names, columns, what)

    def _given(self, values: Any, spec: TensorSpec) -> np.ndarray:
        """The values given for one input: Arrow arrays and polars Series through Arrow."""
        found = self._foreign(values, spec, spec.name)
        return found if found is not None else as_array(values, spec, self.package)

    def _column(self, values: Any, spec: TensorSpec, name: str) -> np.ndarray:
        """One column's values: Arrow arrays and polars Series through Arrow, the rest as numpy takes them."""
        found = self._foreign(values, spec, name)
        return found if found is not None else column_array(values, spec, self.package)

    def _foreign(self, values: Any, spec: TensorSpec, name: str) -> np.ndarray | None:
        if values.__class__ is np.ndarray:
            return None
        return foreign_column(values, name, self._dtypes[spec.name], self.package)

    def _stacked(self, arrays: list[np.ndarray], n: int) -> np.ndarray:
        """Columns side by side: straight into the input's float dtype when they are all floats."""
        target = self._dtype
        if target is not None and target.kind == "f" and all(a.dtype.kind == "f" and a.size == n for a in arrays):
            out = np.empty((n, len(arrays)), dtype=target)
            for j, a in enumerate(arrays):
                out[:, j] = a.reshape(n)  # float to float rounds, as the cast policy allows
            return out
        return np.column_stack([a.reshape(n) for a in arrays]) if n else np.empty((0, len(arrays)))

    def _check_lengths(self, columns: Mapping[str, Any], what: str) -> None:
        lengths = {k: len(v) if isinstance(v, Sized) and not isinstance(v, (str, bytes)) else 1
                   for k, v in columns.items()}
        if len(set(lengths.values())) > 1:
            shown = dict(list(lengths.items())[:10])
            raise ShapeError(f"the {what}s hold different numbers of rows {shown}", package=self.package,
                             fix=f"Give every {what} the same number of values, one per row.")

    def _refuse_unknown(self, wanted: Sequence[str], given: Mapping[str, Any], what: str) -> None:
        unknown = [k for k in given if k not in wanted]
        if unknown:
            raise MissingColumnError(f"unknown {what}(s) {unknown[:10]}", expected=f"{what}s {list(wanted)[:20]}",
                                     got=f"{list(given)[:20]}", package=self.package,
                                     fix=_did_you_mean(unknown, wanted) + f"Drop the {what}s the model does not take.")

    def _check_present(self, wanted: Sequence[str], given: Mapping[str, Any], what: str) -> None:
        if any(c not in given for c in wanted):
            raise self._missing(wanted, given, what)

    def _missing(self, wanted: Sequence[str], given: Mapping[str, Any], what: str) -> MissingColumnError:
        missing = [c for c in wanted if c not in given]
        return MissingColumnError(
            f"missing {what}(s) {missing[:10]}", expected=f"{what}s {list(wanted)[:20]}",
            got=f"{list(given)[:20]}", package=self.package,
            fix=_did_you_mean(missing, given) + f"Pass every {what} the model was trained with.")

    # -- one array --------------------------------------------------------------------
    def adapt(self, spec: TensorSpec, arr: np.ndarray, *, strings: bool = False) -> np.ndarray:
        """Cast and reshape one array to ``spec``, or raise an InputError saying why not.

        ``strings``: ``arr`` holds only ``str`` already (see :func:`.casting.cast`).
        """
        given = arr
        arr = cast(arr, spec, self._dtypes[spec.name], self.package, missing_passes=self._missing_passes,
                   strings=strings)
        shape = spec.shape
        if shape is None:
            return arr
        if arr.ndim == len(shape) - 1 and len(shape) == 2 and shape[-1] == 1:
            arr = arr.reshape(-1, 1)  # a column given as a 1-D array
        if arr.ndim == len(shape) + 1 and arr.shape[-1] == 1 and len(shape) == 1:
            arr = arr.reshape(-1)
        if arr.ndim != len(shape):
            fix = ("For one row use X.reshape(1, -1)." if arr.ndim == 1 and len(shape) == 2
                   else f"Reshape the data to rank {len(shape)}.")
            raise ShapeError(f"wrong rank {arr.ndim}", input=spec.name, expected=expected(spec),
                             got=describe(given), package=self.package, fix=fix)
        for axis, (want, have) in enumerate(zip(shape, arr.shape, strict=True)):
            if isinstance(want, int) and want > 0 and want != have and axis > 0:
                raise ShapeError(f"axis {axis} has {have} values where the model takes {want}",
                                 input=spec.name, expected=expected(spec), got=describe(given),
                                 package=self.package,
                                 fix="Pass the same features the model was trained with.")
        return arr


def _did_you_mean(names: Sequence[Any], candidates: Iterable[Any]) -> str:
    """``"did you mean 'b' for 'a'? "`` for each of ``names`` with a near miss among ``candidates``."""
    pool = [str(c) for c in candidates]
    hints = {n: difflib.get_close_matches(str(n), pool, n=1) for n in names}
    hint = "; ".join(f"did you mean {h[0]!r} for {n!r}?" for n, h in hints.items() if h)
    return hint + " " if hint else ""


def _has_nan(arr: np.ndarray) -> bool:
    if arr.size <= 64:  # a few rows: Python floats cost less than a numpy reduction's set-up
        values = arr.ravel().tolist()
        total = sum(values)  # NaN propagates; so does inf - inf, hence the second look
        return total != total and any(v != v for v in values)
    return bool(math.isnan(arr.min()))  # one pass: NaN propagates through min


def _record_plan(specs: Sequence[TensorSpec], dtypes: Mapping[str, np.dtype]) -> list[Any] | None:
    plan = []
    for spec in specs:
        dtype, shape = dtypes[spec.name], spec.shape
        kind = float if dtype.kind == "f" else str if dtype == _STRING else None
        if kind is None or shape is None or not (len(shape) == 1 or (len(shape) == 2 and shape[1] == 1)):
            return None
        plan.append((spec.name, dtype, kind, len(shape) == 2))
    return plan


_SCALARS = frozenset({int, float, str, bool, bytes, type(None)})


def _is_scalar(value: Any) -> bool:
    # The exact-type test answers the common cases without np.ndim's cost per call.
    if value.__class__ in _SCALARS:
        return True
    # Lists first: np.ndim of a ragged list raises instead of answering.
    return not isinstance(value, (list, tuple)) and np.ndim(value) == 0
