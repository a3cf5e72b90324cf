"""Packages at URLs: ``s3://``, ``gs://``, ``http(s)://``, ``file://`` and every fsspec protocol.

:func:`fetch` copies a package (a ``.mpk`` archive, a package folder, or a bare
``.onnx``/``.pmml`` file) into a private local folder and returns its path; it is
then opened like any local package, so the checksums, path rules and size limits
of :func:`~modelpack._package.container.open_package` apply unchanged. Nothing is parsed
while downloading: names are checked, bytes are counted against the package
limits, and that is all.

Downloads land in a folder of this process (mode 0700, removed at exit) unless
``cache_dir`` is given. A copy is reused only while the remote files keep the
same size and version marker (ETag, generation or modification time); where the
store gives no marker, the package is downloaded again.

Needs ``fsspec`` and the protocol's implementation: ``pip install 'modelpack[remote]'``
(fsspec and aiohttp for http), plus ``s3fs`` for S3 or ``gcsfs`` for Google Cloud Storage.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

from .._atomic import replacing_folder, replacing_path
from .._types import PathLike
from ..errors import ModelpackError, PackageError, PackageNotFoundError, UnsafePackageError
from .guards import check_member_name
from .limits import MAX_FILE_BYTES, MAX_FILES, MAX_TOTAL_BYTES

__all__ = ["fetch", "is_url", "resolve"]

_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+://")  # two letters at least: "C:\..." is a path
_CHUNK = 2**20
_VERSION_KEYS = ("ETag", "etag", "generation", "VersionId", "mtime", "LastModified", "Last-Modified",
                 "updated", "last_modified")
_EXTRAS = {"s3": "s3fs", "s3a": "s3fs", "gs": "gcsfs", "gcs": "gcsfs", "http": "aiohttp", "https": "aiohttp",
           "az": "adlfs", "abfs": "adlfs", "abfss": "adlfs"}
_session_dir: Path | None = None


def is_url(path: object) -> bool:
    """True for ``scheme://...`` strings; False for local paths, Windows ones included.

    Example
    -------
    >>> is_url("s3://models/churn.mpk"), is_url("churn.mpk"), is_url("C:\\\\models\\\\churn.mpk")
    (True, False, False)
    """
    return isinstance(path, str) and _URL.match(path) is not None


def resolve(path: PathLike, **fetch_args: Any) -> PathLike:
    """``path`` itself when local, else the local copy :func:`fetch` makes of the URL."""
    return fetch(path, **fetch_args) if is_url(path) else path  # type: ignore[arg-type]


def fetch(url: str, *, cache_dir: PathLike | None = None,
          storage_options: Mapping[str, Any] | None = None) -> Path:
    """Copy the package at ``url`` to a private local folder and return the local path.

    Parameters
    ----------
    url:
        ``s3://bucket/churn.mpk``, ``gs://...``, ``https://host/churn.mpk``,
        ``file:///srv/churn`` (a package folder), or any fsspec URL.
    cache_dir:
        Keep copies here across processes; by default they live in a folder of this
        process, removed at exit.
    storage_options:
        Passed to the fsspec filesystem (credentials, ``endpoint_url``, ``anon``...).

    Example
    -------
    >>> import modelpack
    >>> local = modelpack.fetch("s3://models/churn.mpk", storage_options={"anon": False})   # doctest: +SKIP
    >>> modelpack.load(local).predict(X)                                        # doctest: +SKIP
    """
    fs, root = _filesystem(url, storage_options)
    files, is_dir = _listing(fs, root, url)
    # The local name keeps the suffix (.mpk, .onnx) that load() goes by; never a query string.
    name = PurePosixPath(urlsplit(url).path.rstrip("/")).name or "package"
    check_member_name(name, url)
    base = Path(cache_dir) if cache_dir is not None else _private_dir()
    key = _cache_key(url, files)
    target = base / (key or _random_key()) / name
    if key and target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    _download(fs, files, target, is_dir, url)
    return target


# -- filesystem and listing ------------------------------------------------------------
def _filesystem(url: str, options: Mapping[str, Any] | None) -> tuple[Any, str]:
    scheme = url.split("://", 1)[0].lower()
    try:
        import fsspec
    except ImportError as exc:
        raise ModelpackError(f"loading from {scheme}:// URLs needs fsspec",
                             fix="Install it: pip install 'modelpack[remote]'.") from exc
    try:
        return fsspec.core.url_to_fs(url, **dict(options or {}))
    except ImportError as exc:
        extra = _EXTRAS.get(scheme, "the fsspec implementation of this protocol")
        raise ModelpackError(f"loading from {scheme}:// URLs needs {extra}, which is not installed",
                             fix=f"Install it: pip install {extra}.") from exc
    except ValueError as exc:  # unknown protocol
        raise ModelpackError(f"{scheme}:// is not a protocol fsspec knows ({exc})", package=url,
                             fix="Use s3://, gs://, http(s)://, file:// or another fsspec protocol.") from exc


def _listing(fs: Any, root: str, url: str) -> tuple[list[tuple[str, str, dict[str, Any]]], bool]:
    """[(name in the package, remote path, info)], and whether ``root`` is a folder."""
    # Filesystem objects are shared and cache listings: a long-lived process must see changes.
    fs.invalidate_cache()
    info = _call(url, fs.info, root)
    if info.get("type") != "directory":
        _check_size(url, info.get("size"), MAX_TOTAL_BYTES)
        return [("", root, info)], False
    found = _call(url, fs.find, root, detail=True)
    if len(found) > MAX_FILES:
        raise _refuse(url, f"the folder holds more than {MAX_FILES} files")
    prefix = root.rstrip("/") + "/"
    files = []
    for path, entry in sorted(found.items()):
        if entry.get("type") == "directory":
            continue
        name = path[len(prefix):] if path.startswith(prefix) else path
        files.append((check_member_name(name, url), path, entry))
        _check_size(url, entry.get("size"), MAX_FILE_BYTES)
    _check_size(url, sum(e.get("size") or 0 for _, _, e in files), MAX_TOTAL_BYTES)
    if not files:
        raise PackageNotFoundError(f"no package at {url} (an empty folder)", package=url,
                                   fix="Check the URL; a package is a folder with modelpack.json or a .mpk.")
    return files, True


def _check_size(url: str, size: Any, limit: int) -> None:
    if isinstance(size, int) and size > limit:
        raise _refuse(url, f"it declares {size} bytes, more than the limit of {limit}")


def _cache_key(url: str, files: list[tuple[str, str, dict[str, Any]]]) -> str | None:
    """A key that changes when any remote file does, or None when the store gives no marker."""
    parts = []
    for name, _, info in files:
        marker = next((str(info[k]) for k in _VERSION_KEYS if info.get(k) not in (None, "")), None)
        if marker is None or info.get("size") is None:
            return None
        parts.append((name, info["size"], marker))
    return hashlib.sha256(json.dumps([url, parts]).encode()).hexdigest()[:32]


# -- download ---------------------------------------------------------------------------------
def _download(fs: Any, files: list[tuple[str, str, dict[str, Any]]], target: Path, is_dir: bool,
              url: str) -> None:
    budget = MAX_TOTAL_BYTES
    if not is_dir:
        with replacing_path(target) as tmp:
            _copy(fs, files[0][1], tmp, url, budget)
        return
    with replacing_folder(target) as tmp:
        for name, remote, _ in files:
            local = tmp / name
            local.parent.mkdir(parents=True, exist_ok=True)
            budget -= _copy(fs, remote, local, url, budget)


def _copy(fs: Any, remote: str, local: Path, url: str, budget: int) -> int:
    """Stream one file, refusing it as soon as it passes the limits, whatever its listing said."""
    limit = min(budget, MAX_FILE_BYTES)
    total = 0
    with _call(url, fs.open, remote, "rb") as src, open(local, "wb") as out:
        while chunk := _call(url, src.read, _CHUNK):
            total += len(chunk)
            if total > limit:
                raise _refuse(url, f"{remote} is larger than the limit of {limit} bytes")
            out.write(chunk)
    return total


def _call(url: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Run one storage call; its errors become modelpack errors that name the URL and the fix."""
    try:
        return fn(*args, **kwargs)
    except ModelpackError:
        raise
    except FileNotFoundError as exc:
        raise PackageNotFoundError(f"no package at {url}", package=url,
                                   fix="Check the URL; a package is a .mpk file or a package folder.") from exc
    except PermissionError as exc:
        raise PackageError(f"access to {url} was refused ({exc})", package=url,
                           fix="Check the credentials, e.g. storage_options= or the AWS_*/GOOGLE_* "
                               "environment variables.") from exc
    except Exception as exc:  # network and store errors come in many dependency-specific types
        raise PackageError(f"cannot read {url} ({type(exc).__name__}: {exc})", package=url,
                           fix="Check the URL, the network and the storage options, then retry.") from exc


def _refuse(url: str, message: str) -> UnsafePackageError:
    return UnsafePackageError(message, package=url,
                              fix="Do not load this package; ask its author for a package written by modelpack.")


def _private_dir() -> Path:
    global _session_dir
    if _session_dir is None or not _session_dir.is_dir():
        _session_dir = Path(tempfile.mkdtemp(prefix="modelpack-remote-"))  # mode 0700
        atexit.register(shutil.rmtree, _session_dir, ignore_errors=True)
    return _session_dir


def _random_key() -> str:
    return os.urandom(16).hex()
