"""Input adaptation: numpy, pandas, dicts and records in; the model's feeds out.

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
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .errors import DTypeError, InputError, MissingColumnError, ShapeError
from .manifest import TensorSpec

__all__ = ["InputAdapter", "numpy_dtype"]

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


def _describe(x: Any) -> str:
    arr = x if isinstance(x, np.ndarray) else None
    if arr is None:
        return type(x).__name__
    return f"{arr.dtype} array of shape {arr.shape}"


def _expected(spec: TensorSpec) -> str:
    shape = "?" if spec.shape is None else "[" + ", ".join(
        str(d) if d is not None else "?" for d in spec.shape) + "]"
    return f"{spec.dtype} {shape}"


class InputAdapter:
    """Turns caller data into the feeds of one model."""

    def __init__(self, inputs: Sequence[TensorSpec], package: str) -> None:
        self.specs = tuple(inputs)
        self.package = package
        self.names = tuple(s.name for s in self.specs)
        self._dtypes = {s.name: numpy_dtype(s.dtype) for s in self.specs}
        self._single = self.specs[0] if len(self.specs) == 1 else None
        # Hot path constants for the single-input case.
        s = self._single
        self._name = s.name if s else None
        self._dtype = self._dtypes[s.name] if s else None
        self._rank = len(s.shape) if s and s.shape is not None else None
        self._width = s.shape[-1] if s and s.shape and isinstance(s.shape[-1], int) and len(s.shape) > 1 else None
        self._columns = {s.name: tuple(c.name for c in s.columns) for s in self.specs if s.columns}
        # The columns Index of the last DataFrame found to match the single 2-D input: rows
        # sliced from one frame share it, so the name check is done once, not per call.
        self._frame_columns: Any = None
        self._frame_wanted: Any = None
        self._last_names: tuple[Any, list[Any]] = (None, [])
        # One record of plain floats and strings, one input per field (PMML, skl2onnx
        # ColumnTransformers): (name, dtype, value type, is [N, 1]) per input, or None.
        self._record_plan = _record_plan(self.specs, self._dtypes)

    # -- entry point -------------------------------------------------------------
    def __call__(self, data: Any) -> dict[str, np.ndarray]:
        if data.__class__ is np.ndarray and self._single is not None:
            if (data.dtype is self._dtype and data.ndim == self._rank
                    and (self._width is None or data.shape[-1] == self._width)):
                return {self._name: data}  # type: ignore[dict-item]
            return {self._name: self.adapt(self._single, data)}  # type: ignore[dict-item]
        if _is_dataframe(data):
            return self._from_frame(data)
        if isinstance(data, Mapping):
            return self._from_mapping(data)
        if isinstance(data, (list, tuple)) and data and all(isinstance(r, Mapping) for r in data):
            return self._from_records(data)
        if isinstance(data, tuple) and self._single is None and len(data) == len(self.specs):
            # Positional inputs, in the model's order, as a multi-input network takes them.
            return {s.name: self.adapt(s, _as_array(v, s, self.package))
                    for s, v in zip(self.specs, data, strict=True)}
        if self._single is None:
            raise InputError(f"the model has {len(self.specs)} inputs {list(self.names)}",
                             expected="a dict of input name -> array, a DataFrame or records",
                             got=_describe(data), package=self.package,
                             fix="Pass {name: array} with every input.")
        return {self._single.name: self.adapt(self._single, _as_array(data, self._single, self.package))}

    # -- mappings, records, DataFrames ---------------------------------------------
    def _from_frame(self, df: Any) -> dict[str, np.ndarray]:
        columns = df.columns
        if columns is self._frame_columns or (
                self._rank == 2 and self._name not in columns and self._frame_matches(columns)):
            self._frame_columns = columns
            values = _frame_values(df)
            if values.dtype is self._dtype and (self._width is None or values.shape[1] == self._width):
                return {self._name: values}  # type: ignore[dict-item]
            return {self._name: self.adapt(self._single, values)}  # type: ignore[arg-type, dict-item]
        return self._from_columns(_frame_columns(df, self._names_of(columns)), len(df), "column")

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
            return {s.name: self.adapt(s, _as_array(data[s.name], s, self.package)) for s in self.specs}
        n = len(values[0]) if values and hasattr(values[0], "__len__") else 0
        return self._from_columns(data, n, "key")

    def _planned_record(self, record: Mapping[str, Any]) -> dict[str, np.ndarray] | None:
        """The feeds for one record of plain floats and strings, or None if it is not one."""
        plan = self._record_plan
        if plan is None or len(record) != len(plan):
            return None
        feeds = {}
        for name, dtype, kind, column in plan:
            value = record.get(name)
            if value.__class__ is not kind:  # arrays, lists, other scalars: the general path
                return None
            # Built in its final shape: a reshape would cost a third of the array's price.
            feeds[name] = np.array([[value]] if column else [value], dtype=dtype)
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
        if set(self.names) <= set(columns):  # one input per column (skl2onnx, PMML)
            return {s.name: self.adapt(s, _column_array(columns[s.name], s, self.package))
                    for s in self.specs}
        if self._single is not None and self._single.name in self._columns:
            wanted = self._columns[self._single.name]
            self._check_present(wanted, columns, what)
            stacked = np.column_stack([_column_array(columns[c], self._single, self.package).reshape(n)
                                       for c in wanted]) if n else np.empty((0, len(wanted)))
            return {self._single.name: self.adapt(self._single, stacked)}
        if self._single is not None and self._single.shape is not None and len(self._single.shape) == 2:
            # No names recorded: columns are taken in order, as scikit-learn does with arrays.
            stacked = np.column_stack([np.asarray(v) for v in columns.values()])
            return {self._single.name: self.adapt(self._single, stacked)}
        raise self._missing(self.names, columns, what)

    def _check_present(self, wanted: Sequence[str], given: Mapping[str, Any], what: str) -> None:
        if any(c not in given for c in wanted):
            raise self._missing(wanted, given, what)

    def _missing(self, wanted: Sequence[str], given: Mapping[str, Any], what: str) -> MissingColumnError:
        missing = [c for c in wanted if c not in given]
        hints = {m: difflib.get_close_matches(m, [str(g) for g in given], n=1) for m in missing}
        hint = "; ".join(f"did you mean {h[0]!r} for {m!r}?" for m, h in hints.items() if h)
        return MissingColumnError(
            f"missing {what}(s) {missing[:10]}", expected=f"{what}s {list(wanted)[:20]}",
            got=f"{list(given)[:20]}", package=self.package,
            fix=(hint + " " if hint else "") + f"Pass every {what} the model was trained with.")

    # -- one array --------------------------------------------------------------------
    def adapt(self, spec: TensorSpec, arr: np.ndarray) -> np.ndarray:
        """Cast and reshape one array to ``spec``, or raise an InputError saying why not."""
        given = arr
        arr = _cast(arr, spec, self._dtypes[spec.name], self.package)
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
            raise ShapeError(f"wrong rank {arr.ndim}", input=spec.name, expected=_expected(spec),
                             got=_describe(given), package=self.package, fix=fix)
        for axis, (want, have) in enumerate(zip(shape, arr.shape, strict=True)):
            if isinstance(want, int) and want > 0 and want != have and axis > 0:
                raise ShapeError(f"axis {axis} has {have} values where the model takes {want}",
                                 input=spec.name, expected=_expected(spec), got=_describe(given),
                                 package=self.package,
                                 fix="Pass the same features the model was trained with.")
        return arr


def _frame_values(df: Any) -> np.ndarray:
    """``df.to_numpy()``, without its fixed cost when the frame is one numpy block.

    ``to_numpy`` costs several microseconds even for one row, more than the whole
    ONNX Runtime call of a small model.
    """
    block = _one_block(df)
    return np.ascontiguousarray(block.T) if block is not None else df.to_numpy()


def _frame_columns(df: Any, names: list[Any] | None = None) -> dict[str, Any]:
    """The frame's columns by name, in order: numpy rows of its blocks, or extension arrays.

    Selecting a Series costs tens of microseconds per column in pandas 3, more than
    a small model's run; the blocks behind the frame hold the same data. A frame
    whose internals look unfamiliar takes the public path. ``names`` is
    ``df.columns.tolist()``, if the caller has it already.
    """
    names = df.columns.tolist() if names is None else names
    try:
        if len(set(names)) == len(names):
            found: list[Any] = [None] * len(names)
            for block in df._mgr.blocks:
                values, locs = block.values, block.mgr_locs.as_array
                if type(values) is np.ndarray and values.ndim == 2 and len(values) == len(locs):
                    for row, loc in enumerate(locs):
                        found[loc] = values[row]
                elif getattr(values, "ndim", 0) == 1 and len(locs) == 1 and hasattr(values, "to_numpy"):
                    found[locs[0]] = values  # an extension array (Arrow strings, nullable ints)
                else:
                    break
            else:
                if all(v is not None and len(v) == len(df) for v in found):
                    return {str(c): v for c, v in zip(names, found, strict=True)}
    except (AttributeError, TypeError, IndexError):
        pass
    return {str(c): df[c] for c in names}


def _one_block(df: Any) -> np.ndarray | None:
    """The frame's data as one ``(columns, rows)`` numpy array, if pandas holds it so.

    A frame of one dtype usually holds its data as one 2-D block whose rows are the
    columns in order. Anything else (several blocks, reordered locations, extension
    arrays, a pandas whose internals moved) gives None, and the public path is taken.
    """
    try:
        blocks = df._mgr.blocks
        if len(blocks) == 1:
            block = blocks[0]
            values, locs = block.values, block.mgr_locs
            if (type(values) is np.ndarray and values.ndim == 2 and locs.is_slice_like
                    and locs.as_slice == slice(0, len(df.columns), 1)):
                return values
    except AttributeError:
        pass
    return None


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
    return value.__class__ in _SCALARS or (np.ndim(value) == 0 and not isinstance(value, (list, tuple)))


def _is_dataframe(data: Any) -> bool:
    cls = type(data)
    return cls.__name__ == "DataFrame" and cls.__module__.startswith("pandas")


def _column_array(values: Any, spec: TensorSpec, package: str) -> np.ndarray:
    if hasattr(values, "to_numpy"):  # pandas Series, including Arrow-backed strings
        if spec.dtype == "string" or getattr(values.dtype, "kind", "O") in "OUS" or str(values.dtype).startswith(("string", "str", "category")):
            return values.to_numpy(dtype=object)
        return values.to_numpy()
    return _as_array(values, spec, package)


def _as_array(values: Any, spec: TensorSpec, package: str) -> np.ndarray:
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
                         expected=_expected(spec), got=type(values).__name__, package=package,
                         fix="Pass a numpy array, a list of numbers or a DataFrame column.") from exc


def _cast(arr: np.ndarray, spec: TensorSpec, target: np.dtype, package: str) -> np.ndarray:
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
                      got=_describe(arr), package=package,
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
