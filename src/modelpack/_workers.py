"""Packages for the workers of a cluster engine (Spark, Ray, Dask): checked once, opened once.

The driver checks a package once (:func:`prepare`: container and manifest, signature, identity)
before any task is sent, so a bad package fails there with its reason rather than
in every task. A worker process then opens each package once and keeps it in a
cache keyed by the package's SHA-256 and the load options (:func:`cached_model`):
engines that reuse their worker processes (Spark's Python workers, Dask's
workers) score every later task without opening it again.

A package's identity is the SHA-256 of its ``.mpk`` archive, or of the manifest of
a folder package (the manifest lists the SHA-256 of every file, and opening the
package checks them).
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:

    from ._model import Model
    from ._types import PathLike
    from .manifest import Manifest

__all__ = ["Prepared", "cached_model", "materialize", "opener", "package_digest", "prepare", "with_results"]

_MODELS: dict[tuple[str, str], tuple[Model, tuple[Any, ...]]] = {}
#: Models a worker process keeps, the least recently used dropped first (a long-lived worker
#: that scores many packages would otherwise hold every one it ever opened). A dropped model
#: is not closed: a task still scoring with it keeps it until it is done.
MAX_MODELS = 16
_PLAIN = (str, bytes, int, float, bool, type(None))
_LOCK = threading.RLock()  # cached_model holds it while materialize takes it
_scratch: Path | None = None


@dataclass(frozen=True)
class Prepared:
    """A package as the driver found it: where it is here, what it declares, who it is."""

    path: Path
    manifest: Manifest
    digest: str
    keys: tuple[bytes, ...] | None
    location: str  # the URL as given, or the local path

    def shipment(self, ship: bool) -> str | bytes:
        """What travels to the workers: the archive's bytes when shipped, else its location.

        Only a ``.mpk`` archive is sent as bytes; workers read a folder package (or a bare
        model file) at its location.
        """
        from ._package import ARCHIVE_SUFFIX

        archive = self.path.is_file() and self.path.suffix == ARCHIVE_SUFFIX
        return self.path.read_bytes() if ship and archive else self.location

    def load_args(self, load_args: Mapping[str, Any]) -> dict[str, Any]:
        """``load_args`` with the trusted keys as raw bytes (they travel; key files may not)."""
        return {**load_args, "trusted_keys": self.keys} if self.keys is not None else dict(load_args)


def prepare(package: PathLike, trusted_keys: Sequence[Any] | None = None) -> Prepared:
    """Check ``package`` on the driver (a URL is fetched first) and return what workers need.

    Example
    -------
    >>> prepare("churn.mpk").digest[:12]   # doctest: +SKIP
    '3ee8358edf90'
    """
    from ._load import inspect
    from ._package import fetch, is_url, open_package, raw_public_key, verify_signature

    url = is_url(package)
    path = Path(fetch(str(package)) if url else package).resolve()
    keys = None if trusted_keys is None else tuple(raw_public_key(k) for k in trusted_keys)
    if keys is None:
        manifest = inspect(path)
    else:
        with open_package(path) as opened:
            verify_signature(opened, keys)
            manifest = opened.manifest
    return Prepared(path, manifest, package_digest(path), keys, str(package) if url else str(path))


def package_digest(path: PathLike) -> str:
    """The SHA-256 that names a package: of its archive, or of a folder package's manifest.

    Example
    -------
    >>> len(package_digest("churn.mpk"))   # doctest: +SKIP
    64
    """
    from ._package import MANIFEST_NAME, checksum

    p = Path(path)
    target = p / MANIFEST_NAME if p.is_dir() else p
    return checksum(target, target)[0]


def cached_model(digest: str, where: Callable[[], PathLike], load_args: Mapping[str, Any]) -> Model:
    """This process's model for the package ``digest``, opened from ``where()`` on first use.

    ``where`` runs only on a miss, so a worker fetches or unpacks a package once.
    The package is checked against ``digest`` before and after it is opened: a path
    that holds another package (a file replaced under the same name, even while it
    was being opened) is refused rather than scored. The process keeps the
    :data:`MAX_MODELS` models used last.

    Example
    -------
    >>> model = cached_model(digest, lambda: "churn.mpk", {"device": "cpu"})   # doctest: +SKIP
    """
    from ._load import load
    from .errors import PackageIntegrityError

    key, held = _cache_key(load_args)
    with _LOCK:
        entry = _MODELS.pop((digest, key), None)  # put back last: the most recently used
        if entry is None:
            path = where()
            _check_digest(path, digest)
            model = load(path, **load_args)
            try:
                _check_digest(path, digest)  # replaced while it was being opened
            except PackageIntegrityError:
                model.close()
                raise
            entry = (model, held)
        _MODELS[(digest, key)] = entry
        while len(_MODELS) > MAX_MODELS:
            del _MODELS[next(iter(_MODELS))]
        return entry[0]


def _check_digest(path: PathLike, digest: str) -> None:
    from .errors import PackageIntegrityError

    if package_digest(path) != digest:
        raise PackageIntegrityError(f"the package at {path} is not the one the driver checked "
                                    f"(SHA-256 {digest[:12]}...)", package=str(path),
                                    fix="Do not replace a package while a job scores with it; "
                                        "write new versions under new names.")


def _cache_key(load_args: Mapping[str, Any]) -> tuple[str, tuple[Any, ...]]:
    """The load options as a cache key, and the objects the key names by identity.

    Trusted keys are keyed by their raw bytes (a key file may change; two key objects may
    print alike). Another option that is not a plain value (session options...) is keyed by
    its identity, and held with the model so that its address cannot name another object later.
    """
    from ._package import raw_public_key

    parts: list[tuple[str, Any]] = []
    held: list[Any] = []
    for name, value in sorted(load_args.items()):
        if name == "trusted_keys" and value is not None:
            parts.append((name, tuple(raw_public_key(k) for k in value)))
        elif _plain(value):
            parts.append((name, value))
        else:
            parts.append((name, f"object {type(value).__qualname__} at {id(value)}"))
            held.append(value)
    return repr(parts), tuple(held)


def _plain(value: Any) -> bool:
    """A value its repr describes in full (exact types: a subclass may print what it likes)."""
    if type(value) in (tuple, list):
        return all(_plain(v) for v in value)
    if type(value) is dict:
        return all(_plain(k) and _plain(v) for k, v in value.items())
    return type(value) in _PLAIN


def materialize(payload: bytes, digest: str) -> Path:
    """Write a shipped ``.mpk`` archive into this process's private folder; return its path.

    Example
    -------
    >>> materialize(data, package_digest("churn.mpk"))   # doctest: +SKIP
    PosixPath('/tmp/modelpack-workers-.../3ee8358edf90....mpk')
    """
    global _scratch
    from ._atomic import write_file

    with _LOCK:
        if _scratch is None:
            _scratch = Path(tempfile.mkdtemp(prefix="modelpack-workers-"))  # mode 0700
            atexit.register(shutil.rmtree, _scratch, ignore_errors=True)
        target = _scratch / f"{digest}.mpk"
        if not target.exists():
            write_file(target, payload)
    return target


def opener(location: str | bytes, digest: str) -> Callable[[], Path]:
    """How a worker gets a local copy of a package: shipped bytes, a URL or a path."""
    def where() -> Path:
        if isinstance(location, bytes):
            return materialize(location, digest)
        from ._package import fetch, is_url

        return Path(fetch(location)) if is_url(location) else Path(location)

    return where


def with_results(model: Model, frame: Any, result: str) -> Any:
    """``frame`` (pandas, or an Arrow table) with the result columns of :func:`modelpack.batch.score`
    added on the right, in the same format."""
    from .batch import score
    from .errors import InputError

    scores = score(model, frame, result)  # Arrow in, Arrow out: no pandas frame of the batch
    arrow = not hasattr(frame, "iloc")
    names = scores.column_names if arrow else list(scores.columns)
    clash = [c for c in names if c in (frame.column_names if arrow else frame.columns)]
    if clash:
        raise InputError(f"the data already has the result column(s) {clash}", package=model.manifest.name,
                         fix="Rename or drop those columns before scoring.")
    if arrow:
        for name in names:
            frame = frame.append_column(name, scores.column(name))
        return frame
    import pandas as pd

    return pd.concat([frame, scores], axis=1)
