"""Arrow tables and record batches, polars frames: columns read without a detour through pandas.

A column becomes the numpy array its input needs, and only when an input needs it:

* numeric columns without nulls are viewed in place (one chunk) or concatenated;
* string, large_string, string_view and UTF-8 binary columns become object arrays of
  ``str``; dictionary columns are decoded through their dictionary (each distinct
  value is made a Python string once);
* a null is ``None`` in a string column, where the casting policy fills or refuses it
  (docs/casting.md), and NaN in a column for a float input, where a recorded refusal
  of NaN then applies; an integer or boolean input has no missing value, so a null
  there is refused;
* temporal, decimal, nested and extension columns are refused, naming the column and
  the cast that makes them acceptable.

Nothing here imports pyarrow or polars unless the caller passed such an object:
they are recognised by their type's module name.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np

from ..errors import DTypeError, InputError
from .casting import EXACT_INT, is_missing, numpy_dtype

__all__ = ["ArrowColumns", "PandasColumns", "PolarsColumns", "column_codes", "foreign_column", "frame_kind",
           "lazy_batches"]

_STRING = numpy_dtype("string")


def frame_kind(data: Any) -> str | None:
    """``"arrow"``, ``"polars"``, ``"lazy"`` (a polars LazyFrame), or None: by type name, no import."""
    cls = type(data)
    module, name = cls.__module__, cls.__name__
    if module.startswith("pyarrow") and name in ("Table", "RecordBatch"):
        return "arrow"
    if module.startswith("polars"):
        return {"DataFrame": "polars", "LazyFrame": "lazy"}.get(name)
    return None


class ArrowColumns(Mapping[str, Any]):
    """The columns of a ``pyarrow.Table`` or ``RecordBatch`` by name, converted on first use.

    ``target(name)`` is the numpy dtype of the input a column feeds, or None if
    the column feeds nothing (it is then never read). ``checked`` names the
    columns read as strings without a null: Arrow's type vouches for every value,
    so the casting policy need not look at each one again.
    """

    def __init__(self, table: Any, target: Callable[[str], np.dtype | None], package: str) -> None:
        self._init(table, [str(n) for n in table.column_names], int(table.num_rows), target, package)

    def _init(self, table: Any, names: list[str], rows: int, target: Callable[[str], np.dtype | None],
              package: str) -> None:
        self._table = table
        self._names = names
        self.rows = rows
        self._target = target
        self._package = package
        self.checked: set[str] = set()

    def __getitem__(self, name: str) -> Any:
        if name not in self._names:
            raise KeyError(name)
        if self._names.count(name) > 1:
            raise InputError(f"column {name!r} appears {self._names.count(name)} times", input=name,
                             package=self._package, fix="Rename or drop the repeated columns.")
        return self._converted(self._table.column(self._names.index(name)), name)

    def codes(self, name: str) -> tuple[np.ndarray, np.ndarray] | None:
        """Column ``name`` as its distinct strings and each row's int64 position among them, or None.

        None unless it is a string column that Arrow dictionary-encodes (once) or holds
        encoded; a null is one more distinct value, None, at the end.
        """
        if name not in self._names or self._names.count(name) > 1:
            return None
        return column_codes(self._column(name), name, self._package)

    def _column(self, name: str) -> Any:
        return self._table.column(self._names.index(name))

    def _converted(self, column: Any, name: str) -> np.ndarray:
        values = column_values(column, name, self._target(name), self._package)
        if values.dtype == _STRING and not _has_nulls(column):
            self.checked.add(name)
        return values

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)


class PolarsColumns(ArrowColumns):
    """The columns of a polars DataFrame: each one handed over to Arrow (no copy) when used."""

    def __init__(self, frame: Any, target: Callable[[str], np.dtype | None], package: str) -> None:
        self._init(frame, list(frame.columns), int(frame.height), target, package)

    def __getitem__(self, name: str) -> Any:
        if name not in self._names:
            raise KeyError(name)
        return self._converted(self._column(name), name)

    def _column(self, name: str) -> Any:
        series = self._table.get_column(name)
        try:
            return series.to_arrow()
        except Exception as exc:  # polars raises its own types (e.g. for Object columns)  # noqa: BLE001
            raise InputError(f"column {name!r} of polars type {series.dtype} has no Arrow form ({exc})",
                             input=name, package=self._package,
                             fix=f"Cast it to a number or string column first, e.g. pl.col({name!r}).cast(pl.Float64).") from exc


class PandasColumns(ArrowColumns):
    """A pandas frame's columns (from :func:`.frames.frame_columns`): Arrow-backed ones read through Arrow.

    pandas 3 keeps strings in Arrow; reading them as Arrow skips pandas' own
    conversion and the check of every value. Other columns are given as they are.
    """

    def __init__(self, columns: dict[str, Any], rows: int, target: Callable[[str], np.dtype | None],
                 package: str) -> None:
        self._init(columns, list(columns), rows, target, package)

    def __getitem__(self, name: str) -> Any:
        values = self._table[name]
        arrow = _arrow_of(values)
        return values if arrow is None else self._converted(arrow, name)

    def codes(self, name: str) -> tuple[np.ndarray, np.ndarray] | None:
        """As :meth:`ArrowColumns.codes`; also a Categorical's own codes, and an object column factorized."""
        values = self._table.get(name)
        arrow = _arrow_of(values)
        if arrow is not None:
            return column_codes(arrow, name, self._package)
        if type(values).__name__ == "Categorical" and hasattr(values, "codes"):
            return _categorical_codes(values)
        if getattr(values, "dtype", None) == _STRING and np.ndim(values) == 1 and len(values) >= _ENCODE_FROM:
            return _object_codes(np.asarray(values))
        return None


def _arrow_of(values: Any) -> Any:
    """The Arrow array behind a pandas extension array (ArrowExtensionArray, ArrowStringArray), or None."""
    arrow = getattr(values, "_pa_array", None)
    return arrow if arrow is not None and type(arrow).__module__.startswith("pyarrow") else None


def _categorical_codes(values: Any) -> tuple[np.ndarray, np.ndarray] | None:
    """A pandas Categorical of strings as (categories, codes), a missing value last as None."""
    categories = np.asarray(values.categories, dtype=object)
    if not all(v.__class__ is str for v in categories.tolist()):
        return None  # numbers, or anything else: the column is read whole, under the casting policy
    codes = np.asarray(values.codes).astype(np.int64)
    return _missing_last(categories, codes, codes < 0)


def _object_codes(values: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """An object column (pandas before 3, or dtype=object) as (distinct values, codes), by pandas' factorize.

    None where the first rows are mostly distinct (hashing them twice would cost
    more than it saves), or where a value pandas counts as missing is not one to
    the casting policy (NaT): the column is then read whole, as before.
    """
    import pandas as pd

    head = values[:_SAMPLE_ROWS]
    try:
        if len(pd.unique(head)) * 2 > len(head):
            return None
        codes, uniques = pd.factorize(values, use_na_sentinel=True)
    except TypeError:  # unhashable values (lists): the casting policy refuses them as before
        return None
    codes = np.asarray(codes, dtype=np.int64)
    missing = codes < 0
    if missing.any() and not all(is_missing(v) for v in values[missing].tolist()):
        return None
    return _missing_last(np.asarray(uniques, dtype=object), codes, missing)


def _missing_last(categories: np.ndarray, codes: np.ndarray, missing: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(categories, codes) with the ``missing`` rows coded as one more category, None, at the end."""
    if not missing.any():
        return categories, codes
    codes[missing] = len(categories)
    return np.append(categories, np.array([None], dtype=object)), codes


_SAMPLE_ROWS = 1024


def foreign_column(values: Any, name: str, target: np.dtype | None, package: str) -> np.ndarray | None:
    """A pyarrow Array or ChunkedArray, or a polars Series, given as one column: its values; else None."""
    module = type(values).__module__
    if module.startswith("pyarrow") and hasattr(values, "null_count") and hasattr(values, "type"):
        return column_values(values, name, target, package)
    if module.startswith("polars") and type(values).__name__ == "Series":
        return PolarsColumns(values.to_frame(name), lambda _: target, package)[name]
    return None


def lazy_batches(frame: Any, columns: list[str] | None, rows: int, package: str = "") -> Iterator[Any]:
    """A polars LazyFrame collected ``rows`` at a time (only ``columns`` if it has them all).

    The query is the caller's: an error polars raises while running it is an InputError.
    """
    try:
        if columns is not None and set(columns) <= set(frame.collect_schema().names()):
            frame = frame.select(columns)
        empty = True
        for batch in frame.collect_batches(chunk_size=rows):
            empty = False
            yield batch
        if empty:  # still one frame, so the result has its columns and types
            yield frame.head(0).collect()
    except Exception as exc:  # polars' own error types  # noqa: BLE001
        if not type(exc).__module__.startswith("polars"):
            raise
        raise InputError(f"the LazyFrame's query failed in polars ({type(exc).__name__}: {exc})",
                         package=package, fix="Run lf.collect() to see the same error, and fix the query.") from exc


# -- one column ---------------------------------------------------------------------------------
def column_values(column: Any, name: str, target: np.dtype | None, package: str) -> np.ndarray:
    """One Arrow column (Array or ChunkedArray) as the numpy array an input of ``target`` takes."""
    import pyarrow as pa
    import pyarrow.types as pat

    typ = column.type
    if isinstance(typ, pa.BaseExtensionType):
        raise _refused(name, typ, package, "it has an extension type",
                       f"Pass its storage instead, e.g. table.column({name!r}).storage (or cast it).")
    if pat.is_dictionary(typ):
        return _decoded(column, name, target, package)
    if target is None:
        target = _STRING if _is_text(typ) else np.dtype(np.float64)
    if _is_text(typ) or pat.is_binary(typ) or pat.is_large_binary(typ) or pat.is_binary_view(typ):
        return _strings(column, name, target, package)
    if pat.is_null(typ):
        return _all_null(len(column), name, target, package)
    if pat.is_integer(typ) or pat.is_floating(typ) or pat.is_boolean(typ):
        return _numbers(column, name, typ, target, package)
    raise _refused(name, typ, package, *_why_not(name, typ))


def column_codes(column: Any, name: str, package: str) -> tuple[np.ndarray, np.ndarray] | None:
    """A string (or string dictionary) Arrow column as (distinct values, int64 codes), else None.

    The values are ``str``, and None for a null (one more value, at the end). A
    column with few rows, or that Arrow cannot encode as one dictionary, gives None.
    """
    import pyarrow as pa
    import pyarrow.types as pat

    typ = column.type
    given = pat.is_dictionary(typ)
    if not (_is_text(typ) or (given and _is_text(typ.value_type))) or (not given and len(column) < _ENCODE_FROM):
        return None
    try:
        if getattr(column, "num_chunks", 1) != 1:
            column = column.combine_chunks()  # one dictionary, not one per chunk
        elif hasattr(column, "num_chunks"):
            column = column.chunk(0)
        encoded = column if given else column.dictionary_encode()
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    values = column_values(encoded.dictionary, name, _STRING, package)
    codes = _indices(encoded, len(values), name, package).astype(np.int64)
    if not encoded.null_count:
        return values, codes
    return _missing_last(values, codes, _to_numpy(encoded.is_null()))


def _indices(chunk: Any, size: int, name: str, package: str) -> np.ndarray:
    """A dictionary chunk's indices (0 for a null), checked to point into its ``size`` values.

    A caller can build a dictionary array whose indices point anywhere
    (``DictionaryArray.from_arrays(..., safe=False)``); numpy would wrap a negative one.
    """
    indices = _to_numpy(chunk.indices.fill_null(0) if chunk.null_count else chunk.indices)
    if chunk.null_count == len(indices):
        return indices  # every row is null: no index is read
    if int(indices.min()) < 0 or int(indices.max()) >= size:
        raise InputError(f"column {name!r} is a dictionary array whose indices point outside its "
                         f"{size} value(s)", input=name, package=package,
                         fix="Build it with pyarrow.DictionaryArray.from_arrays(..., safe=True), or pass "
                             "the decoded values.")
    return indices


def _has_nulls(column: Any) -> bool:
    """Nulls in the column, or in the dictionary a dictionary column's indices point into."""
    if column.null_count:
        return True
    chunks = column.chunks if hasattr(column, "chunks") else [column]
    return any(getattr(c, "dictionary", None) is not None and c.dictionary.null_count for c in chunks)


def _is_text(typ: Any) -> bool:
    import pyarrow.types as pat

    return bool(pat.is_string(typ) or pat.is_large_string(typ) or pat.is_string_view(typ))


def _numbers(column: Any, name: str, typ: Any, target: np.dtype, package: str) -> np.ndarray:
    import pyarrow.types as pat

    if target == _STRING:
        raise DTypeError(f"column {name!r} ({typ}): numbers given for a string input", input=name,
                         expected="strings", got=str(typ), package=package,
                         fix=f"Convert it to text first, e.g. pyarrow.compute.cast(col, pa.string()) "
                             f"or pl.col({name!r}).cast(pl.String).")
    nulls = column.null_count
    if not nulls and pat.is_floating(typ) and target.kind == "f" and getattr(column, "num_chunks", 1) > 1:
        # Many chunks (a Parquet file's row groups): each is copied once, straight into the input's dtype.
        out = np.empty(len(column), dtype=target)
        start = 0
        for chunk in column.chunks:
            out[start:start + len(chunk)] = _to_numpy(chunk)
            start += len(chunk)
        return out
    if not nulls:
        return _to_numpy(column)
    if target.kind != "f":
        raise DTypeError(f"column {name!r} holds {nulls} null(s), which a {target} input cannot hold",
                         input=name, expected=f"{target} without nulls", got=f"{typ} with nulls",
                         package=package,
                         fix=f"Fill them first, e.g. table.set_column(...) with pyarrow.compute.fill_null, "
                             f"or pl.col({name!r}).fill_null(...).")
    if pat.is_floating(typ):
        return _to_numpy(column)  # Arrow gives NaN for a null float
    values = _to_numpy(column.fill_null(0 if pat.is_integer(typ) else False))
    if values.dtype.kind in "iu" and values.size and np.abs(values).max() > EXACT_INT[target]:
        raise DTypeError(f"column {name!r}: integers beyond {EXACT_INT[target]} are not exact in {target}",
                         input=name, expected=str(target), got=str(typ), package=package,
                         fix=f"Cast it yourself if you accept the loss, e.g. pl.col({name!r}).cast(pl.Float64).")
    out = values.astype(target)
    out[_to_numpy(column.is_null())] = np.nan
    return out


def _to_numpy(column: Any) -> np.ndarray:
    """The column's values: a view of its buffer for one chunk of numbers without nulls, else a copy."""
    if hasattr(column, "num_chunks") and column.num_chunks == 1:
        column = column.chunk(0)
    dtype = _FIXED.get(str(column.type))
    if dtype is not None and not column.null_count and not hasattr(column, "num_chunks"):
        # Read straight from the buffer: Arrow's own to_numpy costs microseconds per call
        # and imports pandas to look up options, though no data goes through it.
        return np.frombuffer(column.buffers()[1], dtype=dtype, count=len(column), offset=column.offset * dtype.itemsize)
    return np.asarray(column.to_numpy(zero_copy_only=False))


_FIXED: dict[str, np.dtype] = {name: np.dtype(name) for name in ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64")}
_FIXED.update({"halffloat": np.dtype(np.float16), "float": np.dtype(np.float32), "double": np.dtype(np.float64)})


def _strings(column: Any, name: str, target: np.dtype, package: str) -> np.ndarray:
    import pyarrow as pa

    if target != _STRING:
        sample = next((v for v in column.drop_null().slice(0, 1).to_pylist()), None)
        raise DTypeError(f"column {name!r} ({column.type}): strings given for a numeric input, such as {sample!r}",
                         input=name, expected=str(target), got=str(column.type), package=package,
                         fix=f"Parse it into numbers first, e.g. pl.col({name!r}).cast(pl.Float64) or "
                             "pyarrow.compute.cast(col, pa.float64()).")
    if not _is_text(column.type):
        try:  # binary: UTF-8 text, as numpy bytes arrays are read
            column = column.cast(pa.string())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise DTypeError(f"column {name!r} holds bytes that are not UTF-8 text", input=name,
                             expected="strings", got=str(column.type), package=package,
                             fix="Decode the bytes to text yourself.") from exc
    # Few distinct values (categories, codes) are the rule: each becomes one Python
    # string, shared by its rows, instead of one string per row.
    found = column_codes(column, name, package)
    if found is not None and len(found[0]) * 2 <= len(column):
        values, codes = found
        return values[codes]  # None where the column holds a null
    return _to_numpy(column)  # object array of str, None for nulls


_ENCODE_FROM = 256


def _all_null(n: int, name: str, target: np.dtype, package: str) -> np.ndarray:
    if target == _STRING:
        return np.full(n, None, dtype=object)
    if target.kind == "f":
        return np.full(n, np.nan, dtype=target)
    raise DTypeError(f"column {name!r} holds only nulls, which a {target} input cannot hold", input=name,
                     expected=str(target), got="null", package=package, fix="Fill the column first.")


def _decoded(column: Any, name: str, target: np.dtype | None, package: str) -> np.ndarray:
    """A dictionary column through its dictionary: each distinct value is converted once."""
    chunks = column.chunks if hasattr(column, "chunks") else [column]
    parts = []
    for chunk in chunks:
        values = column_values(chunk.dictionary, name, target, package)
        indices = _indices(chunk, len(values), name, package)
        part = values[indices] if len(values) else np.empty(len(indices), dtype=values.dtype)
        if chunk.null_count:
            missing = _to_numpy(chunk.is_null())
            if part.dtype == _STRING:
                part[missing] = None
            elif part.dtype.kind == "f":
                part[missing] = np.nan
            else:
                raise DTypeError(f"column {name!r} holds {chunk.null_count} null(s), which a {part.dtype} "
                                 "input cannot hold", input=name, package=package, fix="Fill them first.")
        parts.append(part)
    if not parts:
        return np.empty(0, dtype=target or _STRING)
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def _refused(name: str, typ: Any, package: str, why: str, fix: str) -> DTypeError:
    return DTypeError(f"column {name!r} of Arrow type {typ} cannot feed the model: {why}", input=name,
                      expected="numbers, booleans or strings", got=str(typ), package=package, fix=fix)


def _why_not(name: str, typ: Any) -> tuple[str, str]:
    import pyarrow.types as pat

    if pat.is_nested(typ):
        return ("it is nested (lists, structs and maps hold several values per row)",
                f"Make one column per value, e.g. pyarrow.compute.list_element(col, i) or "
                f"pl.col({name!r}).list.get(i), or struct fields with .struct.field(...).")
    if pat.is_decimal(typ):
        return ("decimals are not cast to floats silently",
                f"Cast it yourself if you accept the rounding, e.g. pl.col({name!r}).cast(pl.Float64) or "
                "pyarrow.compute.cast(col, pa.float64()).")
    if pat.is_temporal(typ):
        return ("dates, times and durations are not numbers to a model",
                f"Turn it into the numbers the model was trained on, e.g. pl.col({name!r}).dt.epoch() "
                "or pyarrow.compute.cast(col, pa.int64()).")
    return ("no model input takes this type", "Cast it to a number or string column first.")
