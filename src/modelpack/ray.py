"""Score Ray Datasets with a package: :func:`predict` adds the result columns.

``predict(dataset, "churn.mpk")`` maps the dataset's batches through
:class:`Predictor`, a callable class run by a pool of Ray actors: each actor opens
the package once and scores every batch it is given, as pandas or Arrow batches.
The result columns are those of ``modelpack predict`` (:mod:`modelpack.batch`):
``prediction``, ``proba_<class>`` or one column per output value.

Where the package lives: a ``.mpk`` archive is read once on the driver and travels
to the actors through Ray's object store (``ray.put``), so any node of a cluster
gets it; a folder package is read from its path by every actor (a shared file
system); a URL is fetched by every actor. The driver checks the package (and its
signature, with ``trusted_keys``) before the first batch is scheduled.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ._workers import cached_model, opener, prepare, with_results
from .batch import check_result
from .errors import InputError

if TYPE_CHECKING:
    from ._model import Model
    from ._types import PathLike

__all__ = ["Predictor", "predict"]

_FORMATS = ("pandas", "pyarrow")


def predict(dataset: Any, package: PathLike, *, result: str = "label", batch_size: int | None = 4096,
            batch_format: str = "pandas", actors: int | tuple[int, int] | None = None,
            num_cpus: float | None = None, num_gpus: float | None = None, ship: bool = True,
            trusted_keys: Sequence[Any] | None = None, **load_args: Any) -> Any:
    """A Ray ``Dataset``: ``dataset`` with the package's result columns added.

    Parameters
    ----------
    dataset:
        A ``ray.data.Dataset`` whose columns the model reads by name (as a DataFrame).
    package:
        A package path (folder or ``.mpk``) or URL.
    result:
        ``"label"``, ``"proba"`` or ``"all"``, as for ``modelpack predict``.
    batch_size, batch_format:
        Rows per batch, and ``"pandas"`` or ``"pyarrow"`` batches.
    actors, num_cpus, num_gpus:
        The actor pool: its size (``n``, or ``(min, max)`` to let Ray scale it; Ray's
        default when None) and each actor's resources.
    ship:
        Send a ``.mpk`` archive through the object store (default); ``False`` lets every
        actor read it from its path.
    trusted_keys:
        Ed25519 public keys; the package must be signed by one of them (checked here and
        by every actor).
    load_args:
        Passed to :func:`modelpack.load` in every actor (``device``, ``engine``...).

    Example
    -------
    >>> import ray, modelpack.ray
    >>> ds = ray.data.read_parquet("s3://bucket/customers/")                  # doctest: +SKIP
    >>> modelpack.ray.predict(ds, "churn.mpk", result="proba").write_parquet("out/")   # doctest: +SKIP
    """
    import ray

    check_result(result)
    if batch_format not in _FORMATS:
        raise InputError(f"batch_format={batch_format!r} is not one of {', '.join(_FORMATS)}",
                         fix="Pass batch_format='pandas' or 'pyarrow'.")
    prepared = prepare(package, trusted_keys)
    shipment = prepared.shipment(ship)
    source = ray.put(shipment) if isinstance(shipment, bytes) else shipment
    arguments = {"result": result, "digest": prepared.digest, **prepared.load_args(load_args)}
    return dataset.map_batches(Predictor, fn_constructor_args=(source,), fn_constructor_kwargs=arguments,
                               batch_size=batch_size, batch_format=batch_format, compute=_pool(actors),
                               num_cpus=num_cpus, num_gpus=num_gpus)


def _pool(actors: int | tuple[int, int] | None) -> Any:
    from ray.data import ActorPoolStrategy

    if actors is None:
        return None
    if isinstance(actors, int):
        return ActorPoolStrategy(size=actors)
    return ActorPoolStrategy(min_size=actors[0], max_size=actors[1])


class Predictor:
    """A callable class for ``Dataset.map_batches``: the package opened once per actor.

    Parameters
    ----------
    package:
        A package path or URL, or a ``.mpk`` archive's bytes (or an object reference to them).
    result:
        ``"label"``, ``"proba"`` or ``"all"``.
    digest:
        The SHA-256 the package must have (:func:`predict` passes the one it checked).
    load_args:
        Passed to :func:`modelpack.load`.

    Example
    -------
    >>> ds.map_batches(Predictor, fn_constructor_args=("churn.mpk",),   # doctest: +SKIP
    ...                batch_format="pandas", compute=ray.data.ActorPoolStrategy(size=2))
    """

    def __init__(self, package: Any, *, result: str = "label", digest: str | None = None,
                 **load_args: Any) -> None:
        check_result(result)
        self.result = result
        self.model = _open(package, digest, load_args)

    def __call__(self, batch: Any) -> Any:
        """``batch`` (pandas or Arrow) with the result columns added, in the same format."""
        return with_results(self.model, batch, self.result)


def _open(package: Any, digest: str | None, load_args: dict[str, Any]) -> Model:
    from pathlib import Path

    import ray

    from ._package import checksum
    from ._workers import package_digest

    if isinstance(package, ray.ObjectRef):
        package = ray.get(package)
    if not isinstance(package, bytes):
        package = str(package)
    if digest is None:
        digest = (checksum(package, Path("shipped.mpk"))[0] if isinstance(package, bytes)
                  else package_digest(opener(package, "")()))
    return cached_model(digest, opener(package, digest), load_args)
