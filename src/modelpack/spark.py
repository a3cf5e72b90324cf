"""Score Spark DataFrames with a package: :func:`predict_udf` (a pandas UDF) and :func:`predict`.

:func:`predict_udf` is an iterator pandas UDF for ``select``/``withColumn``;
:func:`predict` adds one result column to a whole DataFrame through
``DataFrame.mapInArrow``, which hands each Python worker Arrow record batches.
Either way each Python worker opens the package once and keeps it in a cache
keyed by the package's SHA-256 and the load options (Spark reuses its Python
workers across tasks). The Spark result type is read from the manifest on the
driver, so nothing runs there.

Spark's Python workers run ``PYSPARK_PYTHON`` (else ``python3`` on their PATH),
which must be an interpreter where modelpack is installed. With a ``local[...]``
master the driver checks this once and says how to fix it; on a cluster, set
``PYSPARK_PYTHON`` (or ``spark.pyspark.python``) to the executors' environment.

Where the package lives:

* a URL (``s3://``, ``gs://``, ``https://``...): every worker fetches it
  (:func:`modelpack.fetch`), so the executors need the credentials;
* a local path with a ``local[...]`` master: the workers open that path;
* a local path on a cluster: it is shipped with ``SparkContext.addFile``, and each
  worker opens its copy from ``SparkFiles``.

Columns are matched to the model by name when the UDF is given one struct
column (``udf(struct(*cols))``); given several columns, they are taken in the
order of the model's inputs (its named columns, or its input names); given one
array column, each row is one feature vector of a single-input model.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Tuple, Union  # noqa: UP035 - PySpark reads typing names

import numpy as np

from ._workers import cached_model, prepare
from .batch import check_result
from .errors import InputError, ModelpackError, TaskError
from .manifest import Manifest, TensorSpec

if TYPE_CHECKING:
    import pandas as pd

    from ._model import Model
    from ._types import DeviceSpec, PathLike

__all__ = ["predict", "predict_udf", "result_type"]

# What a worker needs to open a package: (digest, kind, location, device, trusted raw keys).
_Where = tuple[str, str, str, str, "tuple[bytes, ...] | None"]
_CHECKED_PYTHONS: set[str] = set()
_PREDICT_ROLE = {"classification": "label", "regression": "value", "clustering": "cluster"}


def predict_udf(spark: Any, package: PathLike, *, result: str = "label", device: DeviceSpec = "cpu",
                ship: bool | None = None, trusted_keys: Sequence[Any] | None = None) -> Any:
    """A pandas UDF that scores Spark rows with ``package``, like MLflow's ``spark_udf``.

    Parameters
    ----------
    spark:
        The active ``SparkSession``.
    package:
        A package path (folder or ``.mpk``) or URL.
    result:
        ``"label"`` (labels or values), ``"proba"`` (an array of class probabilities in
        :attr:`Model.classes` order) or ``"all"`` (a struct of every model output).
    device:
        Device of the workers' sessions, as for :func:`modelpack.load`.
    ship:
        Send a local package to the executors with ``SparkContext.addFile``; by default
        only when the master is not ``local[...]`` (URLs are fetched by each worker).
    trusted_keys:
        Ed25519 public keys; when given, the package must be signed by one of them. It
        is checked here, before the UDF is made, and again by every worker that loads it
        (the keys travel to the workers as their raw bytes, not as paths).

    Example
    -------
    >>> from pyspark.sql.functions import struct
    >>> from modelpack.spark import predict_udf
    >>> churn = predict_udf(spark, "s3://models/churn.mpk", result="proba")   # doctest: +SKIP
    >>> df.withColumn("p", churn(struct(*feature_columns)))                   # doctest: +SKIP
    """
    from pyspark.sql.functions import pandas_udf

    check_result(result)
    where, manifest = _locate(spark, package, ship, device, trusted_keys)
    returns = result_type(manifest, result)
    names = _argument_names(manifest)

    def score_batches(batches: Any) -> Any:
        model = _model(where)
        for batch in batches:
            yield _output(model, _frame(batch, names, model), result)

    score_batches.__annotations__ = _udf_hints(result)
    return pandas_udf(score_batches, returns)  # type: ignore[call-overload]


def _udf_hints(result: str) -> dict[str, Any]:
    """Hints from which Spark infers an iterator UDF over batches of several columns.

    PySpark recognises these by their ``typing`` names, so the old spellings stay.
    """
    import pandas as pd

    column = Union[pd.Series, pd.DataFrame]  # noqa: UP007 - PySpark checks for typing.Union
    out = pd.DataFrame if result == "all" else pd.Series
    return {"batches": Iterator[Tuple[column, ...]], "return": Iterator[out]}  # type: ignore[valid-type]  # noqa: UP006


def predict(df: Any, package: PathLike, *, result: str = "label", column: str = "prediction",
            features: Sequence[str] | None = None, device: DeviceSpec = "cpu", ship: bool | None = None,
            trusted_keys: Sequence[Any] | None = None) -> Any:
    """``df`` with one column of results, computed on Arrow batches by ``DataFrame.mapInArrow``.

    The model reads the DataFrame's columns by name (its named columns or inputs), or
    the ``features`` columns in order; every column passes through unchanged. The new
    column has the type :func:`result_type` gives.

    Parameters
    ----------
    df:
        A Spark ``DataFrame``.
    package, device, ship, trusted_keys:
        As for :func:`predict_udf`.
    result:
        ``"label"``, ``"proba"`` or ``"all"`` (a struct of every output).
    column:
        The name of the added column.
    features:
        The columns given to the model, in this order (for a model without column names);
        by default the whole row, matched by name.

    Example
    -------
    >>> from modelpack.spark import predict
    >>> predict(df, "churn.mpk", result="proba", column="p").write.parquet("scored/")   # doctest: +SKIP
    """
    from pyspark.sql import types as T

    check_result(result)
    if column in df.columns:
        raise InputError(f"the DataFrame already has a column {column!r}", fix="Pass another column=.")
    chosen = None if features is None else list(features)
    missing = [c for c in chosen or () if c not in df.columns]
    if missing:
        raise InputError(f"features names columns the DataFrame does not have: {missing}",
                         fix=f"Choose among {df.columns[:20]}.")
    where, manifest = _locate(df.sparkSession, package, ship, device, trusted_keys)
    returns = result_type(manifest, result)
    schema = T.StructType([*df.schema.fields, T.StructField(column, returns)])

    def score_arrow(batches: Iterator[Any]) -> Iterator[Any]:
        model = _model(where)
        for batch in batches:
            yield _with_column(model, batch, chosen, result, (column, returns))

    return df.mapInArrow(score_arrow, schema)


def _with_column(model: Model, batch: Any, features: list[str] | None, result: str,
                 added: tuple[str, Any]) -> Any:
    """One Arrow record batch with the result column appended."""
    import pyarrow as pa
    from pyspark.sql.pandas.types import to_arrow_type

    column, returns = added
    chosen = batch if features is None else batch.select(features)
    # The batch goes to the model as Arrow (no pandas frame of the inputs); a model without
    # column names takes the chosen features positionally, as one matrix.
    positional = features is not None and _argument_names(model.manifest) is None
    data = np.column_stack([c.to_numpy(zero_copy_only=False) for c in chosen.columns]) if positional else chosen
    values = _output(model, data, result)
    kind = to_arrow_type(returns)
    if result == "all":
        array = pa.StructArray.from_arrays([pa.Array.from_pandas(values[f.name], type=kind.field(f.name).type)
                                            for f in returns.fields], fields=list(kind))
    else:
        array = pa.Array.from_pandas(values, type=kind)
    return pa.RecordBatch.from_arrays([*batch.columns, array], names=[*batch.schema.names, column])


# -- the driver side -----------------------------------------------------------------------
def _locate(spark: Any, package: PathLike, ship: bool | None, device: DeviceSpec,
            trusted_keys: Sequence[Any] | None) -> tuple[_Where, Manifest]:
    """Where the workers find the package, and its manifest; checked (and keys checked) here."""
    from ._package import is_url

    local = (spark.sparkContext.master or "").startswith("local")
    if local:
        _check_worker_python(spark.sparkContext)
    prepared = prepare(package, trusted_keys)
    device_name, keys = str(device), prepared.keys
    if is_url(package):
        return (prepared.digest, "url", str(package), device_name, keys), prepared.manifest
    if ship is None:
        ship = not local
    if not ship:
        return (prepared.digest, "path", str(prepared.path), device_name, keys), prepared.manifest
    spark.sparkContext.addFile(str(prepared.path), recursive=prepared.path.is_dir())
    return (prepared.digest, "sparkfile", prepared.path.name, device_name, keys), prepared.manifest


def _check_worker_python(sc: Any) -> None:
    """With a local master, make sure the workers' Python can import modelpack, once per interpreter.

    Spark starts its Python workers with ``PYSPARK_PYTHON`` (or ``python3`` on PATH),
    not with the driver's interpreter; a worker without modelpack would fail every task
    with a bare ``ModuleNotFoundError``.
    """
    python = getattr(sc, "pythonExec", None) or os.environ.get("PYSPARK_PYTHON") or "python3"
    if python in _CHECKED_PYTHONS or _same_interpreter(python):
        return
    try:
        found = subprocess.run([python, "-c", "import modelpack"], capture_output=True, timeout=60).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        found = False
    if not found:
        raise ModelpackError(f"Spark's Python workers run {python!r}, which cannot import modelpack",
                             fix=f"Set PYSPARK_PYTHON={sys.executable} (or spark.pyspark.python) before "
                                 "the SparkSession is created, or install modelpack for that interpreter.")
    _CHECKED_PYTHONS.add(python)


def _same_interpreter(python: str) -> bool:
    """Whether ``python`` names this very interpreter (links not followed: a virtual
    environment's python links to a base interpreter that lacks the environment's packages)."""
    import shutil

    found = shutil.which(python)
    return found is not None and Path(found).absolute() == Path(sys.executable).absolute()


def result_type(manifest: Manifest, result: str) -> Any:
    """The Spark SQL type of :func:`predict_udf`'s column for ``result``.

    Example
    -------
    >>> result_type(modelpack.inspect("iris.mpk"), "proba")   # doctest: +SKIP
    ArrayType(DoubleType(), True)
    """
    from pyspark.sql import types as T

    check_result(result)
    if result == "proba":
        if not manifest.classes or not any(o.role == "probabilities" for o in manifest.outputs):
            raise TaskError(f"result='proba' needs a classifier with probabilities; this is a "
                            f"{manifest.task} model", package=manifest.name, fix="Use result='label' or 'all'.")
        return T.ArrayType(T.DoubleType())
    if result == "label":
        return _label_type(manifest)
    fields = [T.StructField(o.name, _output_type(manifest, o)) for o in manifest.outputs]
    return T.StructType(fields)


def _label_type(manifest: Manifest) -> Any:
    if manifest.task == "classification" and manifest.classes:
        return _scalar_type(np.asarray(manifest.classes).dtype.name)
    role = _PREDICT_ROLE.get(manifest.task)
    specs = [o for o in manifest.outputs if role and o.role == role] or (
        list(manifest.outputs) if len(manifest.outputs) == 1 else [])
    if not specs:
        raise TaskError(f"the {manifest.task} model has outputs {[o.name for o in manifest.outputs]} and "
                        "none of them is its prediction", package=manifest.name, fix="Use result='all'.")
    return _output_type(manifest, specs[0])


def _output_type(manifest: Manifest, spec: TensorSpec) -> Any:
    from pyspark.sql import types as T

    if spec.kind == "sequence" and "map" in spec.dtype:  # ZipMap: probabilities, class order
        return T.ArrayType(T.DoubleType())
    if spec.kind != "tensor":
        raise TaskError(f"output {spec.name!r} is a {spec.kind}, which has no Spark type here",
                        package=manifest.name, fix="Score with result='label' or 'proba'.")
    element = _scalar_type(spec.dtype)
    shape = spec.shape
    if shape is not None and (len(shape) <= 1 or (len(shape) == 2 and shape[1] == 1)):
        return element
    return T.ArrayType(element)


def _scalar_type(dtype: str) -> Any:
    from pyspark.sql import types as T

    kinds = {"bool": T.BooleanType, "int8": T.ByteType, "int16": T.ShortType, "int32": T.IntegerType,
             "int64": T.LongType, "uint8": T.ShortType, "uint16": T.IntegerType, "uint32": T.LongType,
             "float16": T.FloatType, "float32": T.FloatType, "float64": T.DoubleType}
    if dtype in kinds:
        return kinds[dtype]()
    if dtype == "string" or dtype.startswith(("<U", "str", "object")):
        return T.StringType()
    return T.DoubleType()


def _argument_names(manifest: Manifest) -> list[str] | None:
    """The names given, in order, to plain column arguments (None: positional features)."""
    if len(manifest.inputs) == 1 and manifest.inputs[0].columns:
        return [c.name for c in manifest.inputs[0].columns]
    if len(manifest.inputs) > 1:
        return [s.name for s in manifest.inputs]
    return None


# -- the worker side ------------------------------------------------------------------------
def _model(where: _Where) -> Model:
    """The worker process's model for ``where``, opened on first use (cached by SHA-256)."""
    digest, kind, location, device, keys = where

    def local_copy() -> str:
        if kind == "url":
            from ._package import fetch

            return str(fetch(location))
        if kind == "sparkfile":
            from pyspark import SparkFiles

            return SparkFiles.get(location)
        return location

    return cached_model(digest, local_copy, {"device": device, "trusted_keys": keys})


def _frame(batch: Any, names: list[str] | None, model: Model) -> Any:
    """One Arrow batch of UDF arguments as something ``Model`` takes."""
    import pandas as pd

    args = (batch,) if isinstance(batch, (pd.Series, pd.DataFrame)) else tuple(batch)
    if len(args) == 1 and isinstance(args[0], pd.DataFrame):
        return args[0]  # a struct column: its field names are the column names
    if len(args) == 1 and len(args[0]) and isinstance(args[0].iloc[0], (np.ndarray, list)):
        return np.stack([np.asarray(v) for v in args[0]])  # one feature vector per row
    if names is None:
        return np.column_stack([a.to_numpy() for a in args])
    if len(args) != len(names):
        raise InputError(f"the UDF was given {len(args)} column(s); the model takes {len(names)}",
                         expected=str(names[:20]), got=f"{len(args)} columns", package=model.manifest.name,
                         fix="Pass struct(*columns) to match by name, or the columns in this order.")
    return pd.DataFrame({n: a.reset_index(drop=True) for n, a in zip(names, args, strict=True)})


def _output(model: Model, frame: Any, result: str) -> pd.Series | pd.DataFrame:
    import pandas as pd

    if result == "label":
        return _series(model.predict(frame))
    if result == "proba":
        return _series(np.asarray(model.predict_proba(frame), dtype=np.float64))
    outputs = model.run(frame)
    columns = {}
    for spec in model.outputs:
        value = outputs[spec.name]
        if isinstance(value, list):  # ZipMap: one {class: probability} per row, to class order
            keys = model.classes.tolist() if model.classes is not None else list(value[0]) if value else []
            value = np.array([[row[k] for k in keys] for row in value], dtype=np.float64)
        columns[spec.name] = _series(np.asarray(value))
    return pd.DataFrame(columns)


def _series(values: np.ndarray) -> pd.Series:
    import pandas as pd

    if values.ndim == 2 and values.shape[1] == 1:
        values = values.reshape(-1)
    if values.ndim == 1:
        return pd.Series(values)
    return pd.Series(list(values.reshape(len(values), -1)))
