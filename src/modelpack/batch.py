"""Predict a file or a folder in batches: Parquet, CSV or JSON in; Parquet, CSV or JSON out.

Files are read through Arrow datasets and fed to the model as Arrow tables (no
pandas in between); memory stays bounded by the batch, not the file: each batch
of results is appended to the output as soon as it is computed. A folder of
Parquet files is one dataset, and its hive partitions (``key=value``
sub-folders) are columns the model may read. Written to a folder (a destination
without a suffix), the results keep the input's layout: one Parquet file per
input file, at the same place under the same partition folders. A ``.json``
file holding one JSON array is read whole (write JSON Lines, ``.jsonl``, for
large inputs).

Result columns, by ``result=`` (the names of ``Model.predict(..., output="arrow")``):

* ``"label"``: ``prediction`` (``prediction_0``, ``prediction_1``... for several targets);
* ``"proba"``: ``proba_<class>`` per class, in :attr:`Model.classes` order;
* ``"all"``: every output of :meth:`Model.run`, one column per value: ``<output>``
  for one value per row, ``<output>_<j>`` (``<output>_<class>`` for probabilities)
  for several.

The output is written to a temporary sibling and moved into place at the end,
so a failed run leaves no partial file or folder.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._atomic import replacing_folder
from ._datasets import READERS, Writer, dataset, guarded, kind_of, read, rebatch, scan
from .errors import InputError, MissingColumnError, TaskError

if TYPE_CHECKING:
    import pyarrow as pa

    from ._model import Model
    from ._types import PathLike

__all__ = ["READERS", "RESULTS", "check_result", "predict_file", "score"]

RESULTS = ("label", "proba", "all")
DEFAULT_BATCH_SIZE = 65_536


def predict_file(model: Model, input: PathLike, output: PathLike, *, batch_size: int = DEFAULT_BATCH_SIZE,
                 result: str = "label", keep: Sequence[str] = (), progress: bool | None = None) -> int:
    """Predict every row of ``input`` and write the results to ``output``; return the row count.

    Parameters
    ----------
    model:
        A loaded model (:func:`modelpack.load`).
    input:
        A ``.parquet`` file or a folder of Parquet files (hive partitions read as
        columns), a ``.csv``, a ``.jsonl``/``.ndjson`` (JSON Lines) or a ``.json``
        file; columns are matched to the model's inputs by name.
    output:
        ``.parquet``, ``.csv``, ``.jsonl``/``.ndjson`` or ``.json`` (one JSON array); or
        a folder (no suffix): one Parquet file per input file, in the input's layout.
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
    reader, writer_kind = kind_of(source, "input"), kind_of(dest, "output")
    if not source.exists():
        raise InputError(f"no file at {source}", input=str(source), fix="Check the path.")
    if dest.resolve() == source.resolve() or source.resolve() in dest.resolve().parents:
        raise InputError("the output would overwrite the input", input=str(source),
                         fix="Write the results to another file or folder.")
    job = _Job(model, result, keep, batch_size)
    if writer_kind == "folder":
        return job.to_folder(source, reader, dest, progress)
    batches, total = read(source, reader, batch_size, _types(model))
    with Writer(dest, writer_kind) as writer, _progress(total, progress) as bar:
        for batch in batches:
            writer.write(job.scored(batch))
            bar.update(batch.num_rows)
        return writer.rows


def check_result(result: str) -> None:
    """Raise :class:`~modelpack.TaskError` unless ``result`` is one of :data:`RESULTS`."""
    if result not in RESULTS:
        raise TaskError(f"result={result!r} is not one of {', '.join(RESULTS)}",
                        fix="Pass result='label' (predictions), 'proba' (class probabilities) or 'all'.")


# -- results of one batch -----------------------------------------------------------------
def score(model: Model, frame: Any, result: str = "label") -> Any:
    """The result columns for one batch of rows (see the module documentation for names).

    A pandas DataFrame gives a DataFrame on its index; an Arrow table (or anything
    else ``predict`` takes) gives an Arrow table.

    Example
    -------
    >>> score(model, df, "proba").columns.tolist()   # doctest: +SKIP
    ['proba_setosa', 'proba_versicolor', 'proba_virginica']
    """
    check_result(result)
    output = "pandas" if type(frame).__module__.startswith("pandas") else "arrow"
    if result == "label":
        return model.predict(frame, output=output)
    if result == "proba":
        return model.predict_proba(frame, output=output)
    return model.run(frame, output=output)


class _Job:
    """What every batch goes through: the features fed to the model, the kept columns beside the results."""

    def __init__(self, model: Model, result: str, keep: Sequence[str], batch_size: int) -> None:
        self.model, self.result, self.keep, self.batch_size = model, result, list(keep), batch_size
        named = {s.name for s in model.inputs} | {c.name for s in model.inputs for c in s.columns or ()}
        self.passed = [c for c in self.keep if c not in named]  # kept, not fed

    def scored(self, batch: pa.Table, partitions: Sequence[str] = ()) -> pa.Table:
        features = batch.drop_columns([c for c in self.passed if c in batch.column_names])
        results = score(self.model, features, self.result)
        return _with_kept(batch, results, [c for c in self.keep if c not in partitions])

    def to_folder(self, source: Path, reader: str, dest: Path, progress: bool | None) -> int:
        """One Parquet file of results per input file, at the same place under ``dest``."""
        import pyarrow.dataset as ds

        types = _types(self.model)
        with replacing_folder(dest, check=_replaceable) as tmp:
            if not source.is_dir():  # one file: one file of results in the folder
                batches, total = read(source, reader, self.batch_size, types)
                with _progress(total, progress) as bar:
                    return self._write(tmp / f"{source.stem}.parquet", batches, (), bar)
            data = dataset(source, reader, types)
            rows = 0
            with _progress(int(data.count_rows()), progress) as bar:
                for fragment in data.get_fragments():
                    where = Path(fragment.path)
                    batches = guarded(where, rebatch(scan(fragment, data.schema), self.batch_size))
                    partitions = list(ds.get_partition_keys(fragment.partition_expression))
                    rows += self._write(tmp / where.relative_to(source).with_suffix(".parquet"), batches,
                                        partitions, bar)
        return rows

    def _write(self, target: Path, batches: Iterator[pa.Table], partitions: Sequence[str], bar: Any) -> int:
        target.parent.mkdir(parents=True, exist_ok=True)
        with Writer(target, "parquet") as writer:
            for batch in batches:
                writer.write(self.scored(batch, partitions))
                bar.update(batch.num_rows)
            return writer.rows


def _replaceable(dest: Path) -> None:
    """A folder output replaces only an earlier one: a folder of Parquet files, nothing else."""
    if dest.is_dir() and not dest.is_symlink():
        others = [p for p in dest.rglob("*") if not p.is_dir() and p.suffix != ".parquet"]
        if not others:
            return
        why = f"it holds other files, such as {others[0].relative_to(dest)}"
    else:
        why = "it is not a folder"
    raise InputError(f"the output {dest} exists and would be replaced, but {why}", input=str(dest),
                     fix="Write the results to a new folder, or remove that one first.")


def _types(model: Model) -> dict[str, str]:
    """Column name -> the dtype of the input it feeds, for the formats that carry no types."""
    types = {}
    for spec in model.inputs:
        if spec.columns and len(spec.columns) > 1:
            types.update({c.name: spec.dtype for c in spec.columns})
        elif spec.shape is not None and len(spec.shape) <= 2 and (len(spec.shape) < 2 or spec.shape[-1] == 1):
            types[spec.columns[0].name if spec.columns else spec.name] = spec.dtype
    return types


def _with_kept(batch: pa.Table, results: pa.Table, keep: Sequence[str]) -> pa.Table:
    if not keep:
        return results
    missing = [c for c in keep if c not in batch.column_names]
    if missing:
        raise MissingColumnError(f"cannot keep column(s) {missing}: not in the input",
                                 expected=f"columns among {batch.column_names[:20]}", got=str(list(keep)),
                                 fix="Pass keep= with input column names.")
    clash = [c for c in keep if c in results.column_names]
    if clash:
        raise InputError(f"kept column(s) {clash} have the name of a result column",
                         fix="Rename those input columns, or do not keep them.")
    table = batch.select(list(keep))
    for name in results.column_names:
        table = table.append_column(name, results[name])
    return table


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
