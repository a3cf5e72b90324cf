"""Sample files (``samples/*.npz``): written with numpy, read without trusting them.

A package's samples are attacker-controlled like every file in it, whatever their
checksums say. :func:`numpy.load` would allocate the array an ``.npy`` header
declares before reading a byte of it (a 100-byte header can ask for terabytes),
and leaves the zip's own traps to :mod:`zipfile`. :func:`read_samples` reads the
header, checks that the dtype holds no Python objects and that the declared shape
is exactly the bytes that follow, and only then makes the array from those bytes.

Example
-------
>>> import numpy as np
>>> data = write_samples({"X": np.arange(6, dtype=np.float32).reshape(3, 2)})
>>> read_samples(data, "samples/inputs.npz", "pkg.mpk")["X"].shape
(3, 2)
"""

from __future__ import annotations

import io
import math
import zipfile
from collections.abc import Mapping
from typing import Any

import numpy as np

from .._package.limits import MAX_COMPRESSION_RATIO, RATIO_GRACE_BYTES
from ..errors import PackageError

__all__ = ["MAX_SAMPLE_ROWS", "read_samples", "write_samples"]

MAX_SAMPLE_ROWS = 1_000  # rows kept in samples/ (fidelity is measured on the whole sample)
_MAX_ARRAYS = 1_000
_MAX_HEADER_BYTES = 10_000  # numpy's own default: a longer header is parsed slowly


def write_samples(arrays: Mapping[str, Any]) -> bytes:
    """The ``.npz`` bytes of ``arrays``, cut to :data:`MAX_SAMPLE_ROWS` rows."""
    buffer = io.BytesIO()
    # Strings are stored as fixed-width unicode: object arrays would need pickle to load.
    np.savez_compressed(buffer, **{k: _storable(v) for k, v in arrays.items()})  # type: ignore[arg-type]
    return buffer.getvalue()


def _storable(value: Any) -> np.ndarray:
    arr = np.asarray(value)
    if arr.dtype == object:
        arr = arr.astype(str)
    return arr[:MAX_SAMPLE_ROWS] if arr.ndim else arr


def read_samples(data: bytes, name: str, package: str) -> dict[str, np.ndarray]:
    """The arrays of the sample file ``name``, refusing anything that is not plain arrays."""
    def bad(problem: str) -> PackageError:
        return PackageError(f"{name} {problem}", package=package,
                            fix="Re-export the package (its samples are damaged or hostile), "
                                "or load it without verify.")
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, ValueError, OSError) as exc:
        raise bad(f"is not an .npz archive ({exc})") from exc
    with archive:
        infos = archive.infolist()
        if len(infos) > _MAX_ARRAYS:
            raise bad(f"holds {len(infos)} arrays; the limit is {_MAX_ARRAYS}")
        if sum(i.file_size for i in infos) > max(MAX_COMPRESSION_RATIO * len(data), RATIO_GRACE_BYTES):
            raise bad("declares more bytes than its size allows (a zip bomb)")
        arrays: dict[str, np.ndarray] = {}
        for info in infos:
            key = info.filename.removesuffix(".npy")
            if not info.filename.endswith(".npy") or key in arrays:
                raise bad(f"holds {info.filename!r}, which is not one array of its own")
            try:
                raw = archive.read(info)
            except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
                raise bad(f"cannot be read at {info.filename!r} ({exc})") from exc
            try:
                arrays[key] = _array(raw)
            except _NotPlain as exc:
                raise bad(f"array {key!r} {exc}") from exc
    return arrays


class _NotPlain(ValueError):
    """What keeps an .npy file from being read as a plain array."""


def _array(raw: bytes) -> np.ndarray:
    fh = io.BytesIO(raw)
    readers = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
    try:
        version = np.lib.format.read_magic(fh)
        if version not in readers:
            raise ValueError(f".npy version {version[0]}.{version[1]} is not read")
        shape, fortran, dtype = readers[version](fh, max_header_size=_MAX_HEADER_BYTES)
    except (ValueError, SyntaxError, TypeError, EOFError) as exc:
        raise _NotPlain(f"has no readable .npy header ({exc})") from exc
    if dtype.hasobject:
        raise _NotPlain("holds Python objects, which only pickle could read")
    count = math.prod(shape)
    body = memoryview(raw)[fh.tell():]
    if count * dtype.itemsize != len(body):
        raise _NotPlain(f"declares shape {shape} of {dtype} ({count * dtype.itemsize} bytes) "
                        f"over {len(body)} bytes")
    array = np.frombuffer(body, dtype=dtype).copy()
    return array.reshape(shape[::-1]).T if fortran else array.reshape(shape)
