"""Predict a file in batches: Parquet, CSV or JSON in; Parquet, CSV or JSON out.

Memory stays bounded by the batch, not the file: Parquet is scanned with
``pyarrow.dataset`` (no pre-buffering, no read-ahead, one thread, row groups
re-cut to ``batch_size`` rows), CSV and JSON Lines are read in pandas chunks, and each batch of results
is appended to the output as soon as it is computed. A ``.json`` file holding
one JSON array is the exception: it is read whole (write JSON Lines,
``.jsonl``, for large inputs).

Result columns, by ``result=``:

* ``"label"``: ``prediction`` (``prediction_0``, ``prediction_1``... for several targets);
* ``"proba"``: ``proba_<class>`` per class, in :attr:`Model.classes` order;
* ``"all"``: every output of :meth:`Model.run`, one column per value: ``<output>``
  for one value per row, ``<output>_<j>`` (``<output>_<class>`` for probabilities)
  for several.

The output is written to a temporary sibling and moved into place at the end,
so a failed run leaves no partial file.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ._atomic import replacing_file
from .errors import InputError, MissingColumnError, TaskError

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

    from ._model import Model
    from ._types import PathLike

__all__ = ["RESULTS", "check_result", "predict_file", "score"]

RESULTS = ("label", "proba", "all")
READERS = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".json": "json", ".jsonl": "jsonl",
           ".ndjson": "jsonl"}
DEFAULT_BATCH_SIZE = 65_536


def predict_file(model: Model, input: PathLike, output: PathLike, *, batch_size: int = DEFAULT_BATCH_SIZE,
                 result: str = "label", keep: Sequence[str] = (), progress: bool | None = None) -> int:
    """Predict every row of ``input`` and write the results to ``output``; return the row count.

    Parameters
    ----------
    model:
        A loaded model (:func:`modelpack.load`).
    input:
        A ``.parquet`` file or folder of Parquet files, a ``.csv``, a ``.jsonl``/``.ndjson``
        (JSON Lines) or a ``.json`` file; columns are matched to the model's inputs by name.
    output:
        ``.parquet``, ``.csv``, ``.jsonl``/``.ndjson`` or ``.json`` (one JSON array).
    batch_size:
        Rows per batch: bounds the memory used.
    result:
        ``"label"``, ``"proba"`` or ``"all"`` (see the module documentation).
    keep:
        Input columns copied to the output before the results (e.g. an id). They
        are not fed to the model unless it names them as inputs.
    progress:
        Show a progress bar (needs tqdm); None shows it when stderr is a terminal.

    Example
    -------
    >>> import modelpack
    >>> from modelpack.batch import predict_file
    >>> with modelpack.load("churn.mpk") as m:                               # doctest: +SKIP
    ...     predict_file(m, "customers.parquet", "scores.parquet", result="proba", keep=["id"])
    1000000
    """
    check_result(result)
    if batch_size < 1:
        raise InputError(f"batch_size must be at least 1, not {batch_size}", fix="Pass a positive batch size.")
    source, dest = Path(input), Path(output)
    reader, writer_kind = _kind(source, "input"), _kind(dest, "output")
    if not source.exists():
        raise InputError(f"no file at {source}", input=str(source), fix="Check the path.")
    if dest.resolve() == source.resolve():
        raise InputError("the output would overwrite the input", input=str(source),
                         fix="Write the results to another file.")
    batches, total = _read(source, reader, batch_size)
    with _Writer(dest, writer_kind) as writer, _progress(total, progress) as bar:
        rows = 0
        for frame in batches:
            writer.write(_with_kept(frame, score(model, _features(model, frame, keep), result), keep))
            rows += len(frame)
            bar.update(len(frame))
    return rows


def check_result(result: str) -> None:
    """Raise :class:`~modelpack.TaskError` unless ``result`` is one of :data:`RESULTS`."""
    if result not in RESULTS:
        raise TaskError(f"result={result!r} is not one of {', '.join(RESULTS)}",
                        fix="Pass result='label' (predictions), 'proba' (class probabilities) or 'all'.")


# -- results of one batch -----------------------------------------------------------------
def score(model: Model, frame: pd.DataFrame, result: str = "label") -> pd.DataFrame:
    """The result columns for one batch of rows (see the module documentation for names).

    Example
    -------
    >>> score(model, df, "proba").columns.tolist()   # doctest: +SKIP
    ['proba_setosa', 'proba_versicolor', 'proba_virginica']
    """
    import pandas as pd

    check_result(result)
    if result == "label":
        columns = _columns("prediction", model.predict(frame), None)
    elif result == "proba":
        columns = _columns("proba", model.predict_proba(frame), model.classes, always_split=True)
    else:
        columns = {}
        outputs = model.run(frame)
        for spec in model.outputs:
            labels = model.classes if spec.role == "probabilities" else None
            columns.update(_columns(spec.name, outputs[spec.name], labels))
    return pd.DataFrame(columns, index=frame.index)


def _columns(name: str, value: Any, labels: np.ndarray | None, always_split: bool = False) -> dict[str, Any]:
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


def _features(model: Model, frame: pd.DataFrame, keep: Sequence[str]) -> pd.DataFrame:
    """The batch without the kept columns that the model does not name as inputs (ids)."""
    if not keep:
        return frame
    named = {s.name for s in model.inputs} | {c.name for s in model.inputs for c in s.columns or ()}
    passed = [c for c in keep if c not in named and c in frame.columns]
    return frame.drop(columns=passed) if passed else frame


def _with_kept(frame: pd.DataFrame, results: pd.DataFrame, keep: Sequence[str]) -> pd.DataFrame:
    if not keep:
        return results
    import pandas as pd

    missing = [c for c in keep if c not in frame.columns]
    if missing:
        raise MissingColumnError(f"cannot keep column(s) {missing}: not in the input",
                                 expected=f"columns among {list(frame.columns)[:20]}", got=str(list(keep)),
                                 fix="Pass keep= with input column names.")
    clash = [c for c in keep if c in results.columns]
    if clash:
        raise InputError(f"kept column(s) {clash} have the name of a result column",
                         fix="Rename those input columns, or do not keep them.")
    return pd.concat([frame[list(keep)], results], axis=1)


# -- reading ------------------------------------------------------------------------------
def _kind(path: Path, what: str) -> str:
    kind = READERS.get(path.suffix.lower())
    if kind is None and what == "input" and path.is_dir():
        kind = "parquet"  # a folder of Parquet files, as Spark and pandas write them
    if kind is None:
        raise InputError(f"cannot tell the {what} format from the name {path.name!r}", input=str(path),
                         expected=".parquet, .csv, .jsonl, .ndjson or .json", got=path.suffix or "no suffix",
                         fix=f"Name the {what} file with one of those suffixes.")
    return kind


def _read(path: Path, kind: str, batch_size: int) -> tuple[Iterator[pd.DataFrame], int | None]:
    """The batches of ``path`` as DataFrames, and the row count when known in advance."""
    import pandas as pd

    if kind == "parquet":
        return _parquet(path, batch_size)
    if kind == "csv":
        return _guarded(path, pd.read_csv(path, chunksize=batch_size)), None
    if kind == "json" and _first_char(path) == "[":
        return _guarded(path, _json_array(path, batch_size)), None
    return _guarded(path, pd.read_json(path, lines=True, chunksize=batch_size)), None


def _parquet(path: Path, batch_size: int) -> tuple[Iterator[pd.DataFrame], int | None]:
    import pyarrow.dataset as ds

    # Pre-buffering would read whole row groups (all of them, ahead): memory must follow the batch.
    parquet = ds.ParquetFileFormat(default_fragment_scan_options=ds.ParquetFragmentScanOptions(pre_buffer=False))
    try:
        dataset = ds.dataset(path, format=parquet)
        total = dataset.count_rows()
    except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
        raise InputError(f"cannot read {path} as Parquet ({exc})", input=str(path),
                         fix="Check that the file is Parquet, or name it after its format.") from exc
    # One thread: Arrow's per-thread allocator caches grew the peak with the file (measured).
    scan = dataset.to_batches(batch_size=batch_size, batch_readahead=0, fragment_readahead=0, use_threads=False)
    return (table.to_pandas(use_threads=False) for table in _rebatch(scan, batch_size)), total


def _rebatch(batches: Iterator[pa.RecordBatch], size: int) -> Iterator[pa.Table]:
    """Re-cut record batches (one per row group at most) into tables of ``size`` rows."""
    import pyarrow as pa

    pending: list[pa.RecordBatch] = []
    rows = 0
    for batch in batches:
        pending.append(batch)
        rows += batch.num_rows
        while rows >= size:
            table = pa.Table.from_batches(pending)
            yield table.slice(0, size)
            rest = table.slice(size)
            pending, rows = rest.to_batches(), rest.num_rows
    if rows:
        yield pa.Table.from_batches(pending)


def _guarded(path: Path, frames: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
    """Parser errors of pandas become InputErrors naming the file."""
    try:
        yield from frames
    except (ValueError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot parse {path.name} ({exc})", input=str(path),
                         fix="Check the file's format and encoding (UTF-8).") from exc


def _first_char(path: Path) -> str:
    with open(path, "rb") as fh:
        while chunk := fh.read(4096):
            stripped = chunk.lstrip()
            if stripped:
                return chr(stripped[0])
    return ""


def _json_array(path: Path, batch_size: int) -> Iterator[pd.DataFrame]:
    import pandas as pd

    with open(path, encoding="utf-8") as fh:
        records = json.load(fh)
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise InputError(f"{path.name} is not a JSON array of objects", input=str(path),
                         fix="Write one object per row: [{\"a\": 1, ...}, ...] or JSON Lines.")
    for start in range(0, len(records), batch_size):
        yield pd.DataFrame.from_records(records[start:start + batch_size], index=range(start, min(
            start + batch_size, len(records))))


# -- writing ------------------------------------------------------------------------------
class _Writer:
    """Appends result batches to a temporary file, moved onto the destination on success."""

    def __init__(self, dest: Path, kind: str) -> None:
        self.dest, self.kind = dest, kind
        self._parquet: Any = None
        self._schema: pa.Schema | None = None
        self._rows_written = 0

    def __enter__(self) -> _Writer:
        self._replacing = replacing_file(self.dest)
        self.fh = self._replacing.__enter__()
        if self.kind == "json":
            self.fh.write(b"[")
        return self

    def write(self, frame: pd.DataFrame) -> None:
        if self.kind == "parquet":
            self._write_parquet(frame)
        elif self.kind == "csv":
            self.fh.write(frame.to_csv(index=False, header=self._rows_written == 0).encode())
        elif len(frame):
            text = frame.to_json(orient="records", lines=self.kind == "jsonl", force_ascii=False)
            if self.kind == "json":
                text = ("," if self._rows_written else "") + text[1:-1]
            self.fh.write(text.encode())
        self._rows_written += len(frame)

    def _write_parquet(self, frame: pd.DataFrame) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.Table.from_pandas(frame, preserve_index=False)
        if self._parquet is None:
            self._schema = table.schema
            self._parquet = pq.ParquetWriter(self.fh, table.schema)
        elif table.schema != self._schema:
            try:  # a later batch may infer another type for the same column (int, then float)
                table = table.cast(self._schema)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError, ValueError) as exc:
                raise InputError(f"a batch's columns do not match the first batch's ({exc})",
                                 fix="Give the input columns one type throughout.") from exc
        self._parquet.write_table(table)

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        try:
            if exc_type is None:
                self._finish()
            if self._parquet is not None:
                self._parquet.close()
        except BaseException as failure:
            self._replacing.__exit__(type(failure), failure, failure.__traceback__)
            raise
        self._replacing.__exit__(exc_type, exc, tb)  # replaces the destination only on success

    def _finish(self) -> None:
        if self.kind == "json":
            self.fh.write(b"]\n")
        elif self.kind == "jsonl" and self._rows_written:
            self.fh.write(b"\n")
        elif self.kind == "parquet" and self._parquet is None:
            import pyarrow as pa
            import pyarrow.parquet as pq

            pq.write_table(pa.table({}), self.fh)  # no rows: still a valid Parquet file


class _NoBar:
    def update(self, n: int) -> None:
        """Nothing to show."""

    def __enter__(self) -> _NoBar:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


def _progress(total: int | None, progress: bool | None) -> Any:
    if progress is False:
        return _NoBar()
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return _NoBar()
    return tqdm(total=total, unit="rows", unit_scale=True, file=sys.stderr, disable=None if progress is None else False)
