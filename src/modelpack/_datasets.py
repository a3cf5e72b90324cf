"""Files of rows through Arrow datasets: Parquet, CSV and JSON read in batches, results written back.

Reading never holds more than a batch (and, for Parquet, the row group being
decoded): datasets are scanned on one thread without read-ahead, and record
batches are re-cut into tables of exactly ``batch_size`` rows. A folder is a
Parquet dataset whose ``key=value`` sub-folders (hive partitions, as Spark
writes them) become columns. A ``.json`` file holding one JSON array is the
exception: it is parsed whole.

CSV and JSON Lines carry no types, and Arrow infers them from the first block
only: columns that feed the model are read with the type of their input
(float64 for float inputs, strings for string inputs), so a column whose first
rows look like integers and whose later rows hold decimals reads as one type,
and an empty CSV cell in a string column is a missing value, as pandas reads it.
(For JSON Lines, only the fields of the first record are typed so: Arrow reads a
typed field that no record holds as a column of nulls, which would hide a
missing column.)
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._atomic import replacing_file
from .errors import DTypeError, InputError, MissingColumnError, ModelpackError

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.dataset as ds

__all__ = ["READERS", "Writer", "dataset", "guarded", "kind_of", "read", "rebatch", "scan"]

READERS = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".json": "json", ".jsonl": "jsonl",
           ".ndjson": "jsonl"}


def kind_of(path: Path, what: str) -> str:
    """The format named by ``path``'s suffix: a folder reads as Parquet and, as an output, is one."""
    kind = READERS.get(path.suffix.lower())
    if kind is None and path.is_dir():
        kind = "parquet" if what == "input" else "folder"
    if kind is None and what == "output" and not path.suffix:
        kind = "folder"
    if kind is None:
        raise InputError(f"cannot tell the {what} format from the name {path.name!r}", input=str(path),
                         expected=".parquet, .csv, .jsonl, .ndjson or .json" + (
                             ", or a folder" if what == "output" else ""),
                         got=path.suffix or "no suffix",
                         fix=f"Name the {what} file with one of those suffixes.")
    return kind


def read(path: Path, kind: str, batch_size: int, types: Mapping[str, str] | None = None,
         ) -> tuple[Iterator[pa.Table], int | None]:
    """The batches of ``path`` as Arrow tables, and the row count when known in advance.

    ``types``: column name -> the manifest dtype of the input it feeds (for CSV and JSON).
    """
    if kind == "json" and _first_char(path) == "[":
        return guarded(path, _json_array(path, batch_size, types or {})), None
    if kind != "parquet":
        if kind != "csv":  # a typed JSON field the file lacks would be read as nulls: type only those it has
            keys = _first_keys(path)
            types = {k: v for k, v in (types or {}).items() if keys is not None and k in keys}
        return guarded(path, rebatch(_stream(path, kind, types or {}), batch_size)), None
    data = dataset(path, kind, types or {})
    return guarded(path, rebatch(scan(data), batch_size)), _count(path, data)


def _stream(path: Path, kind: str, types: Mapping[str, str]) -> Iterator[pa.RecordBatch]:
    """A CSV or JSON Lines file through Arrow's streaming reader, on one thread.

    A dataset scan of one such file held more memory as the file grew (measured:
    CSV of 1M and 2M rows, 300 and 402 MB); the streaming reader did not (176 and 174 MB).
    """
    import pyarrow.csv as csv
    import pyarrow.json as pj

    try:
        if kind == "csv":
            return iter(csv.open_csv(path, read_options=csv.ReadOptions(use_threads=False),
                                     convert_options=_csv_options(types)))
        if hasattr(pj, "open_json"):  # pyarrow 19 and later
            return iter(pj.open_json(path, read_options=pj.ReadOptions(use_threads=False),
                                     parse_options=_json_options(types)))
    except (OSError, ValueError) as exc:  # the first block is read to learn the columns
        raise _value_error(path, exc) if _bad_value(exc) else InputError(
            f"cannot read {path} as {kind} ({exc})", input=str(path),
            fix="Check that the file is in that format, or name it after its format.") from exc
    return scan(dataset(path, kind, types))


def dataset(path: Path, kind: str, types: Mapping[str, str]) -> ds.Dataset:
    """``path`` as an Arrow dataset of ``kind`` (a folder: hive partitions read as columns)."""
    import pyarrow.dataset as ds

    try:
        data = ds.dataset(path, format=_format(kind, types), partitioning="hive" if path.is_dir() else None)
        if path.is_dir():
            _check_inside(path, data)
            _check_files(data, [c for c in types if c in data.schema.names])
        return data
    except ModelpackError:
        raise
    except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
        if _bad_value(exc):  # the first block is read to learn the columns: a bad value there
            raise _value_error(path, exc) from exc
        raise InputError(f"cannot read {path} as {kind} ({exc})", input=str(path),
                         fix="Check that the file is in that format, or name it after its format.") from exc


def _check_inside(folder: Path, data: ds.Dataset) -> None:
    """Every file of a folder is a file of that folder, read once.

    Arrow follows symbolic links: one to a file elsewhere would score (and copy into
    the results) rows from outside the folder, and a link to a folder above it is
    followed round and round, scoring the same rows many times.
    """
    root, seen = folder.resolve(), set()
    for fragment in data.get_fragments():
        real = Path(fragment.path).resolve()
        if real in seen or root not in real.parents:
            why = "a file read twice through a link" if real in seen else f"a link to {real}, outside the folder"
            raise InputError(f"{fragment.path} is {why}", input=str(folder),
                             fix="Remove symbolic links from the input folder, or score the file on its own.")
        seen.add(real)


def _check_files(data: ds.Dataset, needed: list[str]) -> None:
    """Every file of a folder holds the columns the model reads.

    A dataset reads a column that one file lacks as nulls there, which a model that
    imputes would score without a word.
    """
    import pyarrow.dataset as ds

    for fragment in data.get_fragments():
        held = set(fragment.physical_schema.names) | set(ds.get_partition_keys(fragment.partition_expression))
        missing = [c for c in needed if c not in held]
        if missing:
            raise MissingColumnError(f"{fragment.path} lacks the column(s) {missing} that the model reads",
                                     input=fragment.path,
                                     fix="Write every file of the folder with the model's columns, or score "
                                         "that file on its own.")


def scan(source: Any, schema: pa.Schema | None = None) -> Iterator[pa.RecordBatch]:
    """The record batches of a dataset or one of its fragments, read with bounded memory."""
    import pyarrow.dataset as ds

    # One thread: Arrow's per-thread allocator caches grew the peak with the file (measured).
    options = {"batch_readahead": 0, "fragment_readahead": 0, "use_threads": False}
    if isinstance(source, ds.Dataset):
        return iter(source.to_batches(**options))
    return iter(ds.Scanner.from_fragment(source, schema=schema, **options).to_batches())


def _format(kind: str, types: Mapping[str, str]) -> Any:
    import pyarrow.dataset as ds

    if kind == "parquet":
        # Pre-buffering would read whole row groups (all of them, ahead): memory must follow the batch.
        return ds.ParquetFileFormat(default_fragment_scan_options=ds.ParquetFragmentScanOptions(pre_buffer=False))
    if kind == "csv":
        return ds.CsvFileFormat(convert_options=_csv_options(types))
    return ds.JsonFileFormat(parse_options=_json_options(types))


def _csv_options(types: Mapping[str, str]) -> Any:
    import pyarrow.csv as csv

    return csv.ConvertOptions(column_types={name: _arrow_type(dtype) for name, dtype in types.items()},
                              strings_can_be_null=True, quoted_strings_can_be_null=True)


def _json_options(types: Mapping[str, str]) -> Any:
    import pyarrow as pa
    import pyarrow.json as pj

    schema = pa.schema([(name, _arrow_type(dtype)) for name, dtype in types.items()])
    return pj.ParseOptions(explicit_schema=schema, unexpected_field_behavior="infer")


def _arrow_type(dtype: str) -> pa.DataType:
    import pyarrow as pa

    if dtype == "string":
        return pa.string()
    if dtype.startswith("float"):
        return pa.float64()
    if dtype == "bool":
        return pa.bool_()
    return pa.int64() if dtype.startswith("int") else pa.uint64()


def _count(path: Path, data: ds.Dataset) -> int:
    try:
        return int(data.count_rows())
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read {path} as Parquet ({exc})", input=str(path),
                         fix="Check that the file is Parquet, or name it after its format.") from exc


def rebatch(batches: Iterator[pa.RecordBatch], size: int) -> Iterator[pa.Table]:
    """Re-cut record batches into tables of ``size`` rows (the last one shorter).

    A source of no rows still gives one empty table, if it has a schema, so the
    results have their columns.
    """
    import pyarrow as pa

    pending: list[pa.RecordBatch] = []
    rows, schema, given = 0, None, False
    for batch in batches:
        schema = batch.schema
        pending.append(batch)
        rows += batch.num_rows
        while rows >= size:
            table = pa.Table.from_batches(pending)
            yield table.slice(0, size)
            given = True
            rest = table.slice(size)
            pending, rows = rest.to_batches(), rest.num_rows
    if rows or (schema is not None and not given):
        yield pa.Table.from_batches(pending, schema=schema)


def guarded(path: Path, tables: Iterator[pa.Table]) -> Iterator[pa.Table]:
    """Arrow's parse errors become errors naming the file."""
    import pyarrow as pa

    try:
        yield from tables
    except pa.ArrowInvalid as exc:
        if _bad_value(exc):
            raise _value_error(path, exc) from exc
        raise InputError(f"cannot parse {path.name} ({exc})", input=str(path),
                         fix="Check the file's format and encoding (UTF-8); the files of a folder are read "
                             "with the first file's column types, so give each column one type in all.") from exc
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot parse {path.name} ({exc})", input=str(path),
                         fix="Check the file's format and encoding (UTF-8).") from exc


def _bad_value(exc: Exception) -> bool:
    text = str(exc)
    return "conversion error" in text or "changed from" in text


def _value_error(path: Path, exc: Exception) -> DTypeError:
    return DTypeError(f"{path.name}: a column read with its input's type holds a value of another type ({exc})",
                      input=str(path),
                      fix="Fix or drop those rows: a column the model reads as numbers holds numbers or empty "
                          "cells only.")


def _first_keys(path: Path) -> set[str] | None:
    """The keys of the first JSON Lines record; None if the first MiB holds no whole record."""
    with open(path, "rb") as fh:
        head = fh.read(1 << 20)
    first, newline, _ = head.lstrip().partition(b"\n")
    try:
        record = json.loads(first) if newline or len(head) < 1 << 20 else None
    except ValueError:
        return None
    return set(record) if isinstance(record, dict) else None


def _first_char(path: Path) -> str:
    with open(path, "rb") as fh:
        while chunk := fh.read(4096):
            stripped = chunk.lstrip()
            if stripped:
                return chr(stripped[0])
    return ""


def _json_array(path: Path, batch_size: int, types: Mapping[str, str]) -> Iterator[pa.Table]:
    import pyarrow as pa

    with open(path, encoding="utf-8") as fh:
        try:
            records = json.load(fh)
        except json.JSONDecodeError as exc:
            raise InputError(f"cannot parse {path.name} ({exc})", input=str(path),
                             fix="Check that the file holds one JSON array of objects.") from exc
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise InputError(f"{path.name} is not a JSON array of objects", input=str(path),
                         fix="Write one object per row: [{\"a\": 1, ...}, ...] or JSON Lines.")
    names = list(dict.fromkeys(k for r in records for k in r))
    for start in range(0, max(len(records), 1), batch_size):
        part = records[start:start + batch_size]
        yield pa.table({name: pa.array([r.get(name) for r in part],
                                       type=_arrow_type(types[name]) if name in types else None)
                        for name in names})


# -- writing ------------------------------------------------------------------------------
class Writer:
    """Appends result tables to a temporary file, moved onto the destination on success."""

    def __init__(self, dest: Path, kind: str) -> None:
        self.dest, self.kind = dest, kind
        self._writer: Any = None
        self._schema: pa.Schema | None = None
        self.rows = 0

    def __enter__(self) -> Writer:
        self._replacing = replacing_file(self.dest)
        self.fh = self._replacing.__enter__()
        if self.kind == "json":
            self.fh.write(b"[")
        return self

    def write(self, table: pa.Table) -> None:
        if self.kind in ("parquet", "csv"):
            self._write_columnar(table)
        else:
            self._write_json(table)
        self.rows += table.num_rows

    def _write_columnar(self, table: pa.Table) -> None:
        import pyarrow as pa
        import pyarrow.csv as csv
        import pyarrow.parquet as pq

        if self._writer is None:
            self._schema = table.schema
            self._writer = (pq.ParquetWriter(self.fh, table.schema) if self.kind == "parquet"
                            else csv.CSVWriter(self.fh, table.schema))
        elif table.schema != self._schema:
            try:  # a later batch may infer another type for the same column (int, then float)
                table = table.cast(self._schema)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError, ValueError) as exc:
                raise InputError(f"a batch's columns do not match the first batch's ({exc})",
                                 fix="Give the input columns one type throughout.") from exc
        self._writer.write_table(table)

    def _write_json(self, table: pa.Table) -> None:
        rows = [json.dumps({k: _json_value(v) for k, v in row.items()}, ensure_ascii=False, allow_nan=False)
                for row in table.to_pylist()]
        if not rows:
            return
        if self.kind == "json":
            text = ("," if self.rows else "") + ",".join(rows)
        else:
            text = "\n".join(rows) + "\n"
        self.fh.write(text.encode())

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        try:
            if exc_type is None:
                self._finish()
            if self._writer is not None:
                self._writer.close()
        except BaseException as failure:
            self._replacing.__exit__(type(failure), failure, failure.__traceback__)
            raise
        self._replacing.__exit__(exc_type, exc, tb)  # replaces the destination only on success

    def _finish(self) -> None:
        if self.kind == "json":
            self.fh.write(b"]\n")
        elif self.kind == "parquet" and self._writer is None:
            import pyarrow as pa
            import pyarrow.parquet as pq

            pq.write_table(pa.table({}), self.fh)  # no rows: still a valid Parquet file


def _json_value(value: Any) -> Any:
    # JSON has no NaN: a missing number is null, as pandas writes it.
    return None if isinstance(value, float) and math.isnan(value) else value
