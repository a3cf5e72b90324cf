"""Writing a package: every file checksummed into the manifest, then one atomic replace.

The whole package is built in a temporary sibling of the destination and moved
into place in one step (:mod:`modelpack._atomic`), so the destination is at
every moment absent, the complete old package, or the complete new one. An
archive's entries carry fixed dates and modes, so the same content gives the
same bytes.
"""

from __future__ import annotations

import hashlib
import os
import stat
import zipfile
import zlib
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from .._atomic import replacing_file, replacing_folder, write_file
from ..errors import ModelpackError, PackageError
from ..manifest import FileEntry, Manifest
from .container import FileSource, Package
from .guards import check_member_name, check_names
from .limits import (
    ARCHIVE_SUFFIX,
    MANIFEST_NAME,
    MAX_COMPRESSION_RATIO,
    MAX_SIGNATURE_BYTES,
    RATIO_GRACE_BYTES,
    RESERVED_NAMES,
    SIGNATURE_NAME,
)

__all__ = ["as_source", "checksum", "write_package", "write_signature"]

_CHUNK = 2**20
_COMPRESSED_SUFFIXES = (".json", ".pmml", ".xml", ".txt", ".csv", ".npz")
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


def write_package(dest: str | os.PathLike[str], manifest: Manifest,
                  files: Mapping[str, FileSource]) -> Manifest:
    """Write ``files`` and the manifest (with their checksums filled in) to ``dest``.

    ``dest`` ending in ``.mpk`` gives an archive, anything else a folder. The
    package is built in a temporary sibling and moved into place in one step;
    an existing folder is replaced only if it is a package (or empty). A
    failed write leaves the destination as it was and no temporary file behind.

    Example
    -------
    >>> write_package("iris.mpk", manifest, {"model.onnx": onnx_bytes})  # doctest: +SKIP
    """
    dest = Path(dest)
    sources = {name: as_source(name, src, dest) for name, src in files.items()}
    for name in sources:
        check_member_name(name, dest, writing=True)
        if name in RESERVED_NAMES:
            raise PackageError(f"{name} is reserved", package=str(dest), fix="Rename that file.")
    check_names(sources, dest, writing=True)
    entries = tuple(FileEntry(name, *checksum(src, dest)) for name, src in sorted(sources.items()))
    manifest = manifest.replace(files=entries)
    payloads = [(MANIFEST_NAME, manifest.to_json()), *sorted(sources.items())]
    _write(dest, payloads, {e.path: e for e in entries}, archive=dest.suffix == ARCHIVE_SUFFIX)
    return manifest


def write_signature(package: Package, signature: bytes) -> None:
    """Add or replace ``modelpack.sig`` in an open package's location, atomically.

    An archive is rewritten from the package's verified files with the exact
    manifest bytes it was opened with, then moved over the old one.
    """
    if len(signature) > MAX_SIGNATURE_BYTES:
        raise PackageError(f"the signature is larger than {MAX_SIGNATURE_BYTES} bytes",
                           package=str(package.path), fix="Sign with fewer keys.")
    if package._folder is not None:
        _write_inside(package._folder / SIGNATURE_NAME, signature, package.path)
        return
    entries = {e.path: e for e in package.manifest.files}
    payloads = [(MANIFEST_NAME, package.manifest_bytes),
                *((name, package._source(name)) for name in sorted(entries)),
                (SIGNATURE_NAME, signature)]
    _write(package.path, payloads, entries, archive=True)


def as_source(name: str, source: Any, dest: Path) -> FileSource:
    """``source`` as bytes or a Path; anything else is refused (a str could be either)."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source)
    if isinstance(source, os.PathLike):
        return Path(source)
    raise PackageError(f"file {name!r} is given as {type(source).__name__}", package=str(dest),
                       fix="Pass the content as bytes or its location as a pathlib.Path.")


def checksum(source: FileSource, dest: Path) -> tuple[str, int]:
    """SHA-256 (hex) and size of a source (bytes, or a file read in chunks); ``dest`` names it in errors."""
    sha, size = hashlib.sha256(), 0
    for chunk in _chunks(source, dest):
        sha.update(chunk)
        size += len(chunk)
    return sha.hexdigest(), size


def _chunks(source: FileSource, dest: Path) -> Iterator[bytes]:
    if isinstance(source, bytes):
        yield source
        return
    try:
        with open(source, "rb") as fh:
            while chunk := fh.read(_CHUNK):
                yield chunk
    except OSError as exc:
        raise PackageError(f"{source} cannot be read ({exc.strerror})", package=str(dest),
                           fix="Check that the file exists and is readable.") from exc


def _copy(name: str, source: FileSource, out: IO[bytes], entry: FileEntry | None, dest: Path) -> None:
    """Copy a source, checking that a file on disk still has the checksum written for it."""
    sha, size = hashlib.sha256(), 0
    for chunk in _chunks(source, dest):
        out.write(chunk)
        if entry is not None and isinstance(source, Path):
            sha.update(chunk)
            size += len(chunk)
    changed = (sha.hexdigest(), size) != (entry.sha256, entry.size) if entry is not None else False
    if changed and isinstance(source, Path):
        raise PackageError(f"{name} ({source}) changed while the package was being written",
                           package=str(dest), fix="Write the package again once the file is final.")


def _compress_type(name: str, source: FileSource, dest: Path) -> int:
    """Deflate text-like files, unless so compressible that a reader would take them for a bomb."""
    if not name.endswith(_COMPRESSED_SUFFIXES):
        return zipfile.ZIP_STORED
    size = len(source) if isinstance(source, bytes) else source.stat().st_size
    if size <= RATIO_GRACE_BYTES:
        return zipfile.ZIP_DEFLATED
    compressor, packed = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -15), 0
    for chunk in _chunks(source, dest):
        packed += len(compressor.compress(chunk))
    packed += len(compressor.flush())
    fits = size <= MAX_COMPRESSION_RATIO // 2 * packed + RATIO_GRACE_BYTES
    return zipfile.ZIP_DEFLATED if fits else zipfile.ZIP_STORED


def _write(dest: Path, payloads: Sequence[tuple[str, FileSource]], entries: Mapping[str, FileEntry], *,
           archive: bool) -> None:
    """Write ``payloads`` (name, content) as an archive or a folder at ``dest``, atomically."""
    try:
        if archive:
            _write_archive(dest, payloads, entries)
        else:
            _write_folder(dest, payloads, entries)
    except ModelpackError:
        raise
    except OSError as exc:
        raise PackageError(f"{dest} could not be written ({exc})", package=str(dest),
                           fix="Check the free space and the permissions of the destination's "
                               "folder.") from exc


def _write_archive(dest: Path, payloads: Sequence[tuple[str, FileSource]],
                   entries: Mapping[str, FileEntry]) -> None:
    if dest.is_dir():
        raise PackageError(f"{dest} is a folder", package=str(dest),
                           fix="Remove it, or write a folder package by leaving out the .mpk suffix.")
    with replacing_file(dest) as fh, zipfile.ZipFile(fh, "w", allowZip64=True) as zf:
        for name, payload in payloads:
            info = zipfile.ZipInfo(name, date_time=_ZIP_EPOCH)
            info.external_attr = (stat.S_IFREG | 0o644) << 16
            info.compress_type = _compress_type(name, payload, dest)
            with zf.open(info, "w", force_zip64=True) as out:
                _copy(name, payload, out, entries.get(name), dest)


def _write_folder(dest: Path, payloads: Sequence[tuple[str, FileSource]],
                  entries: Mapping[str, FileEntry]) -> None:
    with replacing_folder(dest, check=_check_replaceable) as tmp:
        for name, payload in payloads:
            target = tmp / name
            target.parent.mkdir(parents=True, exist_ok=True)
            with open(target, "wb") as out:
                _copy(name, payload, out, entries.get(name), dest)


def _check_replaceable(dest: Path) -> None:
    """Only a package folder (or an empty one) may be replaced: never a user's folder."""
    if dest.is_dir() and not dest.is_symlink():
        if (dest / MANIFEST_NAME).is_file() or not any(dest.iterdir()):
            return
        raise PackageError(f"{dest} is a folder that is not a package; it will not be replaced",
                           package=str(dest), fix="Choose another destination, or remove that folder.")
    raise PackageError(f"{dest} exists and is not a package folder", package=str(dest),
                       fix="Choose another destination, or remove that file or link.")


def _write_inside(target: Path, data: bytes, package: Path) -> None:
    """Replace one file inside a package folder."""
    try:
        write_file(target, data, scratch=package.parent)
    except OSError as exc:
        raise PackageError(f"{target} could not be written ({exc})", package=str(package),
                           fix="Check the free space and the folder's permissions.") from exc
