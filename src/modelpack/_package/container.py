"""The package container: a folder, or the same folder as a ``.mpk`` zip archive.

Reading is checked in this order, and a model runtime sees no byte before the
end: the archive's directory size, then every entry (names, links, special
files, encryption, compression method, overlaps, counts, declared sizes), then
the manifest (size cap, UTF-8 JSON without repeated keys or deep nesting,
schema version), then the listing (every file listed, nothing unlisted, sizes
within the caps), then the SHA-256 and size of every file, streamed, with the
compression ratio watched while inflating. The checks and their tests are in
``docs/security.md``.

Writing is in :mod:`.writer`.
"""

from __future__ import annotations

import hashlib
import io
import os
import struct
import tempfile
import threading
import zipfile
import zlib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from ..errors import ManifestError, ModelpackError, PackageError, PackageIntegrityError, PackageNotFoundError
from ..manifest import FileEntry, Manifest
from .guards import (
    check_central_directory,
    check_member_name,
    check_names,
    check_zip_members,
    list_folder,
    load_json,
    open_regular,
    read_capped,
    refuse,
)
from .limits import (
    IN_MEMORY_BYTES,
    IN_MEMORY_TOTAL,
    MANIFEST_NAME,
    MAX_COMPRESSION_RATIO,
    MAX_FILE_BYTES,
    MAX_FILES,
    MAX_JSON_DEPTH,
    MAX_MANIFEST_BYTES,
    MAX_SIGNATURE_BYTES,
    MAX_TOTAL_BYTES,
    RATIO_GRACE_BYTES,
    RESERVED_NAMES,
    SIGNATURE_NAME,
)

__all__ = ["FileSource", "Package", "open_package", "read_head", "read_manifest"]

#: A file's content as bytes, or its location on disk.
FileSource = bytes | Path
_CHUNK = 2**20

_ZIP_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError, OSError, ValueError,
               RuntimeError, struct.error, KeyError)


@dataclass
class Package:
    """A verified package, open for reading. Use :func:`open_package`.

    Files up to :data:`IN_MEMORY_BYTES` are held in memory as verified; larger
    ones are verified into a private temporary folder (archives) or verified in
    place (folders) and checked again whenever :meth:`read_bytes` reads them.
    Methods are safe to call from several threads.
    """

    path: Path
    manifest: Manifest
    manifest_bytes: bytes
    signature: bytes | None = None
    #: The id of the trusted key whose signature ``load`` checked, if it was asked to.
    trusted_signer: str | None = None
    _data: dict[str, bytes] = field(default_factory=dict, repr=False)
    _paths: dict[str, Path] = field(default_factory=dict, repr=False)
    _tmp: tempfile.TemporaryDirectory[str] | None = field(default=None, repr=False)
    _folder: Path | None = field(default=None, repr=False)
    _lock: threading.RLock = field(default_factory=threading.RLock, repr=False)
    _closed: bool = field(default=False, repr=False)

    @classmethod
    def from_memory(cls, manifest: Manifest, files: Mapping[str, bytes], *, path: Path | None = None) -> Package:
        """A package over files held in memory, trusted as given (nothing is verified).

        For packages this process has just built: a bare model file being loaded,
        or an export checked before it is written.
        """
        return cls(path=path if path is not None else Path(manifest.name), manifest=manifest,
                   manifest_bytes=b"", _data=dict(files))

    def read_bytes(self, name: str) -> bytes:
        """The content of a verified file.

        Example
        -------
        >>> with open_package("iris.mpk") as pkg:   # doctest: +SKIP
        ...     onnx_bytes = pkg.read_bytes(pkg.manifest.model.file)
        """
        with self._lock:
            self._check_open()
            if name in self._data:
                return self._data[name]
            path = self._paths.get(name)
        entry = self.manifest.file(name)
        if path is None:
            raise PackageIntegrityError(f"the package has no file {name!r}", package=str(self.path),
                                        fix="Check the name against `modelpack inspect`.")
        if entry is None:
            return path.read_bytes()
        buffer = io.BytesIO()
        with open_regular(path, self.path) as fh:  # verified again: it lives outside our memory
            _verify_stream(fh, entry, self.path, buffer)
        return buffer.getvalue()

    def local_path(self, name: str) -> Path:
        """A path on disk holding the verified file.

        All files of one package share one root folder, so a model file finds
        its external data beside it: the package folder itself for folder
        packages, a private temporary folder (removed by :meth:`close`) otherwise.
        """
        with self._lock:
            self._check_open()
            if name in self._paths:
                return self._paths[name]
            if name not in self._data:
                raise PackageIntegrityError(f"the package has no file {name!r}", package=str(self.path),
                                            fix="Check the name against `modelpack inspect`.")
            if self._folder is not None:
                return self._folder / name
            target = self._tmpdir() / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(self._data[name])
            self._paths[name] = target
            return target

    def close(self) -> None:
        """Drop the files held in memory and remove the temporary folder. Idempotent."""
        with self._lock:
            self._closed = True
            self._data.clear()
            self._paths.clear()
            if self._tmp is not None:
                self._tmp.cleanup()
                self._tmp = None

    def _tmpdir(self) -> Path:
        if self._tmp is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="modelpack-")
        return Path(self._tmp.name)

    def _check_open(self) -> None:
        if self._closed:
            raise PackageError("the package was closed", package=str(self.path),
                               fix="Open it again with modelpack.load() or open_package().")

    def _source(self, name: str) -> FileSource:
        with self._lock:
            self._check_open()
            return self._data[name] if name in self._data else self._paths[name]

    def __enter__(self) -> Package:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- reading ---------------------------------------------------------------------
def _parse_manifest(raw: bytes, package: Path) -> Manifest:
    data = load_json(raw, package, max_depth=MAX_JSON_DEPTH)
    try:
        return Manifest.from_dict(data)
    except ManifestError as exc:
        exc.package = str(package)
        exc.args = (exc._format(),)
        raise
    except (TypeError, ValueError, AttributeError, RecursionError) as exc:
        raise ManifestError(f"modelpack.json cannot be read ({exc})", package=str(package),
                            fix="Rewrite the package with modelpack.pack().") from exc


def _check_entries(manifest: Manifest, package: Path) -> None:
    if len(manifest.files) > MAX_FILES:
        raise refuse(package, f"the manifest lists {len(manifest.files)} files; the limit is {MAX_FILES}")
    for entry in manifest.files:
        check_member_name(entry.path, package)
        if entry.path in RESERVED_NAMES:
            raise refuse(package, f"the manifest lists the reserved name {entry.path!r}")
        if not 0 <= entry.size <= MAX_FILE_BYTES:
            raise refuse(package, f"{entry.path} declares {entry.size} bytes; the limit is {MAX_FILE_BYTES}")
        if len(entry.sha256) != 64 or entry.sha256.strip("0123456789abcdef"):
            raise ManifestError(f"{entry.path} has a malformed sha256 {entry.sha256[:80]!r}",
                                package=str(package), fix="Rewrite the package with modelpack.pack().")
    if sum(f.size for f in manifest.files) > MAX_TOTAL_BYTES:
        raise refuse(package, f"the files add up to more than {MAX_TOTAL_BYTES} bytes")


def _check_listing(manifest: Manifest, names: set[str], package: Path) -> None:
    _check_entries(manifest, package)
    listed = {f.path for f in manifest.files}
    if len(listed) != len(manifest.files):
        raise refuse(package, "the manifest lists a file twice")
    check_names(listed, package)
    unlisted = names - listed - set(RESERVED_NAMES)
    if unlisted:
        raise refuse(package, f"files not listed in the manifest: {sorted(unlisted)[:5]}")
    missing = listed - names
    if missing:
        raise PackageIntegrityError(f"files listed in the manifest are missing: {sorted(missing)[:5]}",
                                    package=str(package),
                                    fix="The package is incomplete; copy it again or re-export it.")
    for name in (manifest.model.file, *manifest.model.external_data):
        if name not in listed:
            raise PackageIntegrityError(f"the model file {name!r} is not listed in the manifest",
                                        package=str(package), fix="Re-export the package.")


def _fits_in_memory(entry: FileEntry, budget: list[int]) -> bool:
    """Whether to hold a file in memory; takes its size from ``budget`` (bytes left) if so."""
    if entry.size <= IN_MEMORY_BYTES and entry.size <= budget[0]:
        budget[0] -= entry.size
        return True
    return False


def _verify_stream(stream: IO[bytes], entry: FileEntry, package: Path, sink: IO[bytes] | None,
                   compressed: int | None = None) -> None:
    """Hash ``stream`` while copying it to ``sink``, never reading past the declared size."""
    digest, total = hashlib.sha256(), 0
    limit = None if compressed is None else MAX_COMPRESSION_RATIO * compressed + RATIO_GRACE_BYTES
    while chunk := stream.read(min(_CHUNK, entry.size - total + 1)):
        total += len(chunk)
        if total > entry.size:
            raise PackageIntegrityError(f"{entry.path} is larger than the {entry.size} bytes the "
                                        "manifest says", package=str(package),
                                        fix="The package was changed after it was written; re-export it.")
        if limit is not None and total > limit:
            raise refuse(package, f"{entry.path} inflates more than {MAX_COMPRESSION_RATIO}:1 (zip bomb)")
        digest.update(chunk)
        if sink is not None:
            sink.write(chunk)
    if total != entry.size or digest.hexdigest() != entry.sha256:
        raise PackageIntegrityError(
            f"{entry.path} does not match its checksum in the manifest "
            f"({total} bytes, sha256 {digest.hexdigest()[:12]}…; expected {entry.size} bytes, "
            f"{entry.sha256[:12]}…)", package=str(package),
            fix="The file was changed or damaged after the package was written; re-export it "
                "or copy it again.")


def _folder_head(path: Path) -> tuple[set[str], bytes, Manifest]:
    """A folder's files, raw manifest and manifest, checked as far as reading no other file allows."""
    names = list_folder(path, MAX_FILES)
    if MANIFEST_NAME not in names:
        raise PackageError(f"{path} has no {MANIFEST_NAME}", package=str(path),
                           fix="Create a package with modelpack.pack() or modelpack.export().")
    raw = read_capped(path / MANIFEST_NAME, path, MAX_MANIFEST_BYTES, MANIFEST_NAME)
    manifest = _parse_manifest(raw, path)
    _check_listing(manifest, names, path)
    return names, raw, manifest


def _open_folder(path: Path) -> Package:
    names, raw, manifest = _folder_head(path)
    pkg = Package(path=path, manifest=manifest, manifest_bytes=raw, _folder=path)
    if SIGNATURE_NAME in names:
        pkg.signature = read_capped(path / SIGNATURE_NAME, path, MAX_SIGNATURE_BYTES, SIGNATURE_NAME)
    budget = [IN_MEMORY_TOTAL]
    for entry in manifest.files:
        file = path / entry.path
        buffer = io.BytesIO() if _fits_in_memory(entry, budget) else None
        with open_regular(file, path) as fh:
            _verify_stream(fh, entry, path, buffer)
        if buffer is None:
            pkg._paths[entry.path] = file
        else:
            pkg._data[entry.path] = buffer.getvalue()
    return pkg


@contextmanager
def _archive_errors(path: Path) -> Iterator[None]:
    """Turn what zipfile raises on a damaged archive into one clear error."""
    try:
        yield
    except ModelpackError:
        raise
    except UnicodeDecodeError as exc:  # a name flagged UTF-8 that is not
        raise refuse(path, f"an entry name is not UTF-8 ({exc})") from exc
    except _ZIP_ERRORS as exc:
        raise PackageIntegrityError(f"{path.name} is not a readable .mpk archive ({exc})",
                                    package=str(path),
                                    fix="The archive is damaged; copy it again or re-export it.") from exc


def _read_entry(zf: zipfile.ZipFile, info: zipfile.ZipInfo, path: Path, cap: int) -> bytes:
    if info.file_size > cap:
        raise refuse(path, f"{info.filename} is larger than {cap} bytes")
    with zf.open(info) as fh:
        raw = fh.read(cap + 1)
    if len(raw) > cap:
        raise refuse(path, f"{info.filename} is larger than {cap} bytes")
    return raw


def _archive_head(zf: zipfile.ZipFile, fh: IO[bytes], size: int,
                  path: Path) -> tuple[dict[str, zipfile.ZipInfo], bytes]:
    """The archive's checked members and raw manifest; ``zf`` must have just been opened."""
    members = check_zip_members(zf, path, max_files=MAX_FILES, max_file_bytes=MAX_FILE_BYTES)
    if MANIFEST_NAME not in members:
        raise PackageError(f"the archive has no {MANIFEST_NAME}", package=str(path),
                           fix="Create packages with modelpack.pack() or modelpack.export().")
    return members, _read_entry(zf, members[MANIFEST_NAME], path, MAX_MANIFEST_BYTES)


@contextmanager
def _zip(path: Path) -> Iterator[tuple[zipfile.ZipFile, IO[bytes], int]]:
    try:
        fh = open(path, "rb")
    except OSError as exc:
        raise PackageError(f"{path} cannot be read ({exc.strerror})", package=str(path),
                           fix="Check the file's permissions.") from exc
    with fh, _archive_errors(path):
        size = os.fstat(fh.fileno()).st_size
        check_central_directory(fh, size, path, MAX_FILES)
        fh.seek(0)
        with zipfile.ZipFile(fh) as zf:
            yield zf, fh, size


def _archive_checked(zf: zipfile.ZipFile, fh: IO[bytes], size: int,
                     path: Path) -> tuple[dict[str, zipfile.ZipInfo], bytes, Manifest]:
    """An archive's members, raw manifest and manifest, after every check that inflates no file."""
    members, raw = _archive_head(zf, fh, size, path)
    manifest = _parse_manifest(raw, path)
    _check_listing(manifest, set(members), path)
    _check_declared_sizes(manifest, members, size, path)
    return members, raw, manifest


def _open_archive(path: Path) -> Package:
    with _zip(path) as (zf, fh, size):
        members, raw, manifest = _archive_checked(zf, fh, size, path)
        pkg = Package(path=path, manifest=manifest, manifest_bytes=raw)
        if SIGNATURE_NAME in members:
            pkg.signature = _read_entry(zf, members[SIGNATURE_NAME], path, MAX_SIGNATURE_BYTES)
        try:
            budget = [IN_MEMORY_TOTAL]
            for entry in manifest.files:
                _extract_verified(zf, members[entry.path], entry, pkg, budget)
        except BaseException:
            pkg.close()
            raise
        return pkg


def _check_declared_sizes(manifest: Manifest, members: dict[str, zipfile.ZipInfo], size: int,
                          path: Path) -> None:
    for entry in manifest.files:
        if members[entry.path].file_size != entry.size:
            raise PackageIntegrityError(
                f"{entry.path} holds {members[entry.path].file_size} bytes; the manifest says {entry.size}",
                package=str(path), fix="The package was changed after it was written; re-export it.")
    total = sum(f.size for f in manifest.files)
    if total > MAX_COMPRESSION_RATIO * size + RATIO_GRACE_BYTES:
        raise refuse(path, f"{size} bytes of archive claim to inflate to {total} bytes (zip bomb)")


def _extract_verified(zf: zipfile.ZipFile, info: zipfile.ZipInfo, entry: FileEntry, pkg: Package,
                      budget: list[int]) -> None:
    if _fits_in_memory(entry, budget):
        buffer = io.BytesIO()
        with zf.open(info) as fh:
            _verify_stream(fh, entry, pkg.path, buffer, info.compress_size)
        pkg._data[entry.path] = buffer.getvalue()
        return
    target = pkg._tmpdir() / entry.path
    target.parent.mkdir(parents=True, exist_ok=True)
    with zf.open(info) as fh, open(target, "wb") as out:
        _verify_stream(fh, entry, pkg.path, out, info.compress_size)
    pkg._paths[entry.path] = target


def _resolve(path: str | os.PathLike[str]) -> Path:
    p = Path(path)
    if not p.exists():
        raise PackageNotFoundError(f"no package at {p}", package=str(p),
                                   fix="Check the path; packages are folders or .mpk files.")
    if not (p.is_dir() or p.is_file()):
        raise PackageError(f"{p} is neither a folder nor a file", package=str(p),
                           fix="Pass a package folder or a .mpk archive.")
    return p


def open_package(path: str | os.PathLike[str]) -> Package:
    """Open and fully verify a package; the caller must ``close()`` it.

    Example
    -------
    >>> with open_package("iris.mpk") as pkg:   # doctest: +SKIP
    ...     pkg.manifest.name
    'iris'
    """
    p = _resolve(path)
    return _open_folder(p) if p.is_dir() else _open_archive(p)


def read_manifest(path: str | os.PathLike[str]) -> Manifest:
    """A package's manifest, without verifying checksums or starting a runtime.

    The container checks (names, links, limits, listing, declared sizes) still run.

    Example
    -------
    >>> read_manifest("churn.mpk").task  # doctest: +SKIP
    'classification'
    """
    return read_head(path)[0]


def read_head(path: str | os.PathLike[str]) -> tuple[Manifest, bytes | None]:
    """A package's manifest and signature file (None if unsigned), as :func:`read_manifest` reads them."""
    p = _resolve(path)
    if p.is_dir():
        names, _, manifest = _folder_head(p)
        _check_folder_files(manifest, p)  # what open_package finds while reading, found without it
        signature = (read_capped(p / SIGNATURE_NAME, p, MAX_SIGNATURE_BYTES, SIGNATURE_NAME)
                     if SIGNATURE_NAME in names else None)
        return manifest, signature
    with _zip(p) as (zf, fh, size):
        members, _, manifest = _archive_checked(zf, fh, size, p)
        signature = (_read_entry(zf, members[SIGNATURE_NAME], p, MAX_SIGNATURE_BYTES)
                     if SIGNATURE_NAME in members else None)
    return manifest, signature


def _check_folder_files(manifest: Manifest, path: Path) -> None:
    """Each listed file is a regular file, no hard link, of its declared size (nothing is read)."""
    for entry in manifest.files:
        with open_regular(path / entry.path, path) as fh:
            size = os.fstat(fh.fileno()).st_size
        if size != entry.size:
            raise PackageIntegrityError(f"{entry.path} holds {size} bytes; the manifest says {entry.size}",
                                        package=str(path),
                                        fix="The package was changed after it was written; re-export it.")
