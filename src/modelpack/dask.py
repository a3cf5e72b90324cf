"""Score Dask DataFrames with a package: :func:`predict` adds the result columns per partition.

``predict(frame, "churn.mpk")`` is ``frame.map_partitions`` over
:func:`score_partition`: every worker process opens the package once, keeps it in a
cache keyed by the package's SHA-256 and the load options, and scores each
partition it is given. The result columns are those of ``modelpack predict``
(:mod:`modelpack.batch`): ``prediction``, ``proba_<class>`` or one column per
output value.

Where the package lives: a ``.mpk`` archive is read once on the driver and becomes
one task of the graph, so each worker receives its bytes once, on any machine of
the cluster; a folder package is read from its path by every worker (a shared file
system); a URL is fetched by every worker. The driver checks the package (and its
signature, with ``trusted_keys``) before anything is scheduled.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ._workers import cached_model, opener, prepare, with_results
from .batch import check_result

if TYPE_CHECKING:
    import pandas as pd

    from ._types import PathLike

__all__ = ["predict", "score_partition"]


def predict(frame: Any, package: PathLike, *, result: str = "label", meta: pd.DataFrame | None = None,
            ship: bool = True, trusted_keys: Sequence[Any] | None = None, **load_args: Any) -> Any:
    """A Dask ``DataFrame``: ``frame`` with the package's result columns added.

    Parameters
    ----------
    frame:
        A ``dask.dataframe.DataFrame`` whose columns the model reads by name.
    package:
        A package path (folder or ``.mpk``) or URL.
    result:
        ``"label"``, ``"proba"`` or ``"all"``, as for ``modelpack predict``.
    meta:
        The result's empty frame, as ``map_partitions`` takes it. By default it is found
        by scoring the first rows of the first partition on the driver (which computes
        that partition once).
    ship:
        Make a ``.mpk`` archive one task of the graph (default), or let every worker read
        its path (``False``).
    trusted_keys, load_args:
        The Ed25519 public keys of which one must have signed the package (checked here
        and by every worker), and the keywords of :func:`modelpack.load` for the workers.

    Example
    -------
    >>> import dask.dataframe as dd, modelpack.dask
    >>> frame = dd.read_parquet("s3://bucket/customers/")                     # doctest: +SKIP
    >>> modelpack.dask.predict(frame, "churn.mpk", result="proba").to_parquet("out/")   # doctest: +SKIP
    """
    import dask

    check_result(result)
    prepared = prepare(package, trusted_keys)
    options = prepared.load_args(load_args)
    if meta is None:
        here = cached_model(prepared.digest, lambda: prepared.path, options)
        meta = with_results(here, frame.head(5, npartitions=1), result).iloc[:0]
    shipment = prepared.shipment(ship)
    source = dask.delayed(shipment, pure=True) if isinstance(shipment, bytes) else shipment
    return frame.map_partitions(score_partition, source, prepared.digest, result, options, meta=meta)


def score_partition(partition: pd.DataFrame, package: str | bytes, digest: str, result: str = "label",
                    load_args: dict[str, Any] | None = None) -> pd.DataFrame:
    """One partition with the result columns added; the package opened once per worker process.

    Example
    -------
    >>> frame.map_partitions(score_partition, "churn.mpk", package_digest("churn.mpk"))   # doctest: +SKIP
    """
    model = cached_model(digest, opener(package, digest), load_args or {})
    return with_results(model, partition, result)
