"""The package container: a folder, or the same folder as a ``.mpk`` zip archive.

Reading is checked in this order, and a model runtime sees no byte before the
end: path rules and limits on every entry (names, links, counts, sizes), then
the manifest (size cap, JSON, schema version), then the SHA-256 and size of
every file against the manifest, streamed, with the compression ratio watched
while inflating. Files that the manifest does not list are refused.

Writing builds the whole package in a temporary sibling of the destination and
finishes with :func:`os.replace`, so the destination is at every moment absent,
the complete old package, or the complete new one.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import stat
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, Iterator, Mapping, Union

from .errors import (ManifestError, PackageError, PackageIntegrityError, PackageNotFoundError,
                     UnsafePackageError)
from .manifest import FileEntry, Manifest

__all__ = ["Package", "inspect", "open_package", "write_package"]

MANIFEST_NAME = "modelpack.json"
SIGNATURE_NAME = "modelpack.sig"
ARCHIVE_SUFFIX = ".mpk"

# Safety limits. A package over any of them is refused before it is parsed.
MAX_FILES = 10_000
MAX_MANIFEST_BYTES = 16 * 2**20
MAX_FILE_BYTES = 64 * 2**30
MAX_TOTAL_BYTES = 128 * 2**30
MAX_COMPRESSION_RATIO = 1_000  # deflate peaks near 1032:1; more than that is a bomb
IN_MEMORY_BYTES = 256 * 2**20  # larger files stay on disk and are handed over by path
_CHUNK = 2**20

FileSource = Union[bytes, Path]


def _refuse(package: Path | str, message: str) -> UnsafePackageError:
    return UnsafePackageError(message, package=str(package),
                              fix="Do not load this package; ask its author for a package written "
                                  "by modelpack.")


def check_member_name(name: str, package: Path | str) -> str:
    """Refuse names that could escape the package or clash on another system."""
    if not name or "\x00" in name or "\\" in name or name.startswith("/") or (
            len(name) > 1 and name[1] == ":"):
        raise _refuse(package, f"entry {name!r} has an absolute, drive or backslash path")
    parts = PurePosixPath(name).parts
    if any(p in ("..", ".", "") for p in parts) or name.endswith("/"):
        raise _refuse(package, f"entry {name!r} leaves the package folder or is not normalised")
    return name


@dataclass
class Package:
    """A verified package, open for reading. Use :func:`open_package`."""

    path: Path
    manifest: Manifest
    manifest_bytes: bytes
    signature: bytes | None = None
    _data: dict[str, bytes] = field(default_factory=dict, repr=False)
    _paths: dict[str, Path] = field(default_factory=dict, repr=False)
    _tmp: tempfile.TemporaryDirectory[str] | None = field(default=None, repr=False)

    def read_bytes(self, name: str) -> bytes:
        """The content of a verified file."""
        if name in self._data:
            return self._data[name]
        if name in self._paths:
            return self._paths[name].read_bytes()
        raise PackageIntegrityError(f"the package has no file {name!r}", package=str(self.path),
                                    fix="Check the name against `modelpack inspect`.")

    def local_path(self, name: str) -> Path:
        """A path on disk holding the verified file (extracting it if needed)."""
        if name not in self._paths:
            target = self._tmpdir() / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(self.read_bytes(name))
            self._paths[name] = target
        return self._paths[name]

    def _tmpdir(self) -> Path:
        if self._tmp is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="modelpack-")
        return Path(self._tmp.name)

    def close(self) -> None:
        self._data.clear()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> Package:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- reading ---------------------------------------------------------------------
def _parse_manifest(raw: bytes, package: Path) -> Manifest:
    try:
        return Manifest.from_json(raw)
    except ManifestError as exc:
        exc.package = str(package)
        exc.args = (exc._format(),)
        raise


def _check_listing(manifest: Manifest, names: set[str], package: Path) -> None:
    listed = {f.path for f in manifest.files}
    for name in listed:
        check_member_name(name, package)
    if len(listed) != len(manifest.files):
        raise _refuse(package, "the manifest lists a file twice")
    unlisted = names - listed - {MANIFEST_NAME, SIGNATURE_NAME}
    if unlisted:
        raise _refuse(package, f"files not listed in the manifest: {sorted(unlisted)[:5]}")
    missing = listed - names
    if missing:
        raise PackageIntegrityError(f"files listed in the manifest are missing: {sorted(missing)[:5]}",
                                    package=str(package),
                                    fix="The package is incomplete; copy it again or re-export it.")
    if sum(f.size for f in manifest.files) > MAX_TOTAL_BYTES:
        raise _refuse(package, f"the files add up to more than {MAX_TOTAL_BYTES} bytes")
    for name in (manifest.model.file, *manifest.model.external_data):
        if name not in listed:
            raise PackageIntegrityError(f"the model file {name!r} is not listed in the manifest",
                                        package=str(package), fix="Re-export the package.")


def _verify_stream(stream: IO[bytes], entry: FileEntry, package: Path, sink: IO[bytes] | None,
                   compressed: int | None = None) -> bytes | None:
    """Hash ``stream`` while reading it, never reading past the declared size."""
    digest = hashlib.sha256()
    total = 0
    keep = io.BytesIO() if sink is None and entry.size <= IN_MEMORY_BYTES else None
    while chunk := stream.read(min(_CHUNK, entry.size - total + 1)):
        total += len(chunk)
        if total > entry.size:
            raise PackageIntegrityError(f"{entry.path} is larger than the {entry.size} bytes the "
                                        "manifest says", package=str(package),
                                        fix="The package was changed after it was written; re-export it.")
        if compressed is not None and total > MAX_COMPRESSION_RATIO * max(compressed, 1) + _CHUNK:
            raise _refuse(package, f"{entry.path} inflates more than {MAX_COMPRESSION_RATIO}:1 (zip bomb)")
        digest.update(chunk)
        (keep or sink).write(chunk) if (keep or sink) is not None else None
    if total != entry.size or digest.hexdigest() != entry.sha256:
        raise PackageIntegrityError(
            f"{entry.path} does not match its checksum in the manifest "
            f"({total} bytes, sha256 {digest.hexdigest()[:12]}…; expected {entry.size} bytes, "
            f"{entry.sha256[:12]}…)", package=str(package),
            fix="The file was changed or damaged after the package was written; re-export it "
                "or copy it again.")
    return keep.getvalue() if keep is not None else None


def _open_folder(path: Path) -> Package:
    names = set()
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            full = Path(root) / name
            if full.is_symlink():
                raise _refuse(path, f"{full.relative_to(path)} is a symbolic link")
        names.update(str((Path(root) / f).relative_to(path).as_posix()) for f in files)
        if len(names) > MAX_FILES:
            raise _refuse(path, f"more than {MAX_FILES} files")
    manifest_path = path / MANIFEST_NAME
    if not manifest_path.is_file():
        raise PackageError(f"{path} has no {MANIFEST_NAME}", package=str(path),
                           fix="Create a package with modelpack.pack() or modelpack.export().")
    if manifest_path.stat().st_size > MAX_MANIFEST_BYTES:
        raise _refuse(path, f"{MANIFEST_NAME} is larger than {MAX_MANIFEST_BYTES} bytes")
    raw = manifest_path.read_bytes()
    manifest = _parse_manifest(raw, path)
    _check_listing(manifest, names, path)
    pkg = Package(path=path, manifest=manifest, manifest_bytes=raw)
    sig = path / SIGNATURE_NAME
    pkg.signature = sig.read_bytes()[:4096] if sig.is_file() else None
    for entry in manifest.files:
        file = path / entry.path
        if not stat.S_ISREG(file.lstat().st_mode):
            raise _refuse(path, f"{entry.path} is not a regular file")
        with open(file, "rb") as fh:
            data = _verify_stream(fh, entry, path, None)
        if data is None:
            pkg._paths[entry.path] = file
        else:
            pkg._data[entry.path] = data
    return pkg


def _zip_members(zf: zipfile.ZipFile, path: Path) -> dict[str, zipfile.ZipInfo]:
    infos = zf.infolist()
    if len(infos) > MAX_FILES:
        raise _refuse(path, f"more than {MAX_FILES} entries")
    members: dict[str, zipfile.ZipInfo] = {}
    for info in infos:
        if info.flag_bits & 0x800 == 0 and any(ord(c) > 127 for c in info.filename):
            raise _refuse(path, f"entry name {info.filename!r} is not UTF-8")
        if info.is_dir():
            check_member_name(info.filename.rstrip("/"), path)
            continue
        name = check_member_name(info.filename, path)
        if stat.S_IFMT(info.external_attr >> 16) not in (0, stat.S_IFREG):
            raise _refuse(path, f"entry {name!r} is a link or a special file")
        if name in members:
            raise _refuse(path, f"entry {name!r} appears twice")
        if info.file_size > MAX_FILE_BYTES:
            raise _refuse(path, f"entry {name!r} declares {info.file_size} bytes, over the limit")
        members[name] = info
    return members


def _open_archive(path: Path) -> Package:
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise PackageError(f"{path.name} is not a readable .mpk archive ({exc})", package=str(path),
                           fix="Copy the file again, or re-export the package.") from exc
    with zf:
        members = _zip_members(zf, path)
        if MANIFEST_NAME not in members:
            raise PackageError(f"the archive has no {MANIFEST_NAME}", package=str(path),
                               fix="Create packages with modelpack.pack() or modelpack.export().")
        with zf.open(members[MANIFEST_NAME]) as fh:
            raw = fh.read(MAX_MANIFEST_BYTES + 1)
        if len(raw) > MAX_MANIFEST_BYTES:
            raise _refuse(path, f"{MANIFEST_NAME} is larger than {MAX_MANIFEST_BYTES} bytes")
        manifest = _parse_manifest(raw, path)
        _check_listing(manifest, set(members), path)
        pkg = Package(path=path, manifest=manifest, manifest_bytes=raw)
        if SIGNATURE_NAME in members:
            with zf.open(members[SIGNATURE_NAME]) as fh:
                pkg.signature = fh.read(4096)
        try:
            for entry in manifest.files:
                _extract_verified(zf, members[entry.path], entry, pkg)
        except BaseException:
            pkg.close()
            raise
        return pkg


def _extract_verified(zf: zipfile.ZipFile, info: zipfile.ZipInfo, entry: FileEntry, pkg: Package) -> None:
    try:
        with zf.open(info) as fh:
            if entry.size <= IN_MEMORY_BYTES:
                pkg._data[entry.path] = _verify_stream(fh, entry, pkg.path, None, info.compress_size)
                return
            target = pkg._tmpdir() / entry.path
            target.parent.mkdir(parents=True, exist_ok=True)
            with open(target, "wb") as out:
                _verify_stream(fh, entry, pkg.path, out, info.compress_size)
            pkg._paths[entry.path] = target
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as exc:
        raise PackageIntegrityError(f"{entry.path} cannot be read from the archive ({exc})",
                                    package=str(pkg.path),
                                    fix="The archive is damaged; copy it again or re-export it.") from exc
    except RuntimeError as exc:  # zipfile: encrypted entries
        raise _refuse(pkg.path, f"{entry.path} cannot be read ({exc})") from exc


def _resolve(path: str | os.PathLike[str]) -> Path:
    p = Path(path)
    if not p.exists():
        raise PackageNotFoundError(f"no package at {p}", package=str(p),
                                   fix="Check the path; packages are folders or .mpk files.")
    return p


def open_package(path: str | os.PathLike[str]) -> Package:
    """Open and fully verify a package; the caller must ``close()`` it."""
    p = _resolve(path)
    return _open_folder(p) if p.is_dir() else _open_archive(p)


def inspect(path: str | os.PathLike[str]) -> Manifest:
    """Read a package's manifest without verifying checksums or starting a runtime.

    Example
    -------
    >>> import modelpack
    >>> modelpack.inspect("churn.mpk").task  # doctest: +SKIP
    'classification'
    """
    p = _resolve(path)
    if p.is_dir():
        manifest_path = p / MANIFEST_NAME
        if not manifest_path.is_file():
            raise PackageError(f"{p} has no {MANIFEST_NAME}", package=str(p),
                               fix="Create a package with modelpack.pack() or modelpack.export().")
        if manifest_path.stat().st_size > MAX_MANIFEST_BYTES:
            raise _refuse(p, f"{MANIFEST_NAME} is larger than {MAX_MANIFEST_BYTES} bytes")
        return _parse_manifest(manifest_path.read_bytes(), p)
    try:
        with zipfile.ZipFile(p) as zf:
            members = _zip_members(zf, p)
            if MANIFEST_NAME not in members:
                raise PackageError(f"the archive has no {MANIFEST_NAME}", package=str(p),
                                   fix="Create packages with modelpack.pack() or modelpack.export().")
            with zf.open(members[MANIFEST_NAME]) as fh:
                raw = fh.read(MAX_MANIFEST_BYTES + 1)
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise PackageError(f"{p.name} is not a readable .mpk archive ({exc})", package=str(p),
                           fix="Copy the file again, or re-export the package.") from exc
    if len(raw) > MAX_MANIFEST_BYTES:
        raise _refuse(p, f"{MANIFEST_NAME} is larger than {MAX_MANIFEST_BYTES} bytes")
    return _parse_manifest(raw, p)


# -- writing ---------------------------------------------------------------------
def _digest(source: FileSource) -> tuple[str, int]:
    if isinstance(source, bytes):
        return hashlib.sha256(source).hexdigest(), len(source)
    digest, size = hashlib.sha256(), 0
    with open(source, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def _iter_chunks(source: FileSource) -> Iterator[bytes]:
    if isinstance(source, bytes):
        yield source
        return
    with open(source, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            yield chunk


_COMPRESSED_SUFFIXES = (".json", ".pmml", ".xml", ".txt", ".csv", ".npz")
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


def write_package(dest: str | os.PathLike[str], manifest: Manifest,
                  files: Mapping[str, FileSource]) -> Manifest:
    """Write ``files`` and the manifest (with their checksums filled in) to ``dest``.

    ``dest`` ending in ``.mpk`` gives an archive, anything else a folder. The
    package is built in a temporary sibling and moved into place in one step.
    """
    dest = Path(dest)
    for name in files:
        check_member_name(name, dest)
        if name in (MANIFEST_NAME, SIGNATURE_NAME):
            raise PackageError(f"{name} is reserved", package=str(dest), fix="Rename that file.")
    entries = tuple(FileEntry(name, *_digest(src)) for name, src in sorted(files.items()))
    manifest = manifest.replace(files=entries)
    raw = manifest.to_json()
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.suffix == ARCHIVE_SUFFIX:
        _write_archive(dest, raw, files)
    else:
        _write_folder(dest, raw, files)
    return manifest


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_archive(dest: Path, raw: bytes, files: Mapping[str, FileSource]) -> None:
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            with zipfile.ZipFile(fh, "w", allowZip64=True) as zf:
                for name, payload in [(MANIFEST_NAME, raw), *sorted(files.items())]:
                    info = zipfile.ZipInfo(name, date_time=_ZIP_EPOCH)
                    info.external_attr = (stat.S_IFREG | 0o644) << 16
                    info.compress_type = (zipfile.ZIP_DEFLATED if name.endswith(_COMPRESSED_SUFFIXES)
                                          else zipfile.ZIP_STORED)
                    with zf.open(info, "w", force_zip64=True) as out:
                        for chunk in _iter_chunks(payload):
                            out.write(chunk)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp_name, dest)
        _fsync_dir(dest.parent)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def _write_folder(dest: Path, raw: bytes, files: Mapping[str, FileSource]) -> None:
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent))
    try:
        for name, payload in [(MANIFEST_NAME, raw), *files.items()]:
            target = tmp / name
            target.parent.mkdir(parents=True, exist_ok=True)
            with open(target, "wb") as out:
                for chunk in _iter_chunks(payload):
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
        if dest.is_dir():
            # A folder cannot be replaced in one step: move the old one aside first,
            # so the destination is only ever absent, old or new.
            old = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".old", dir=dest.parent))
            os.replace(dest, old / "package")
            os.replace(tmp, dest)
            shutil.rmtree(old, ignore_errors=True)
        elif dest.exists():
            raise PackageError(f"{dest} exists and is not a package folder", package=str(dest),
                               fix="Choose another destination or remove that file.")
        else:
            os.replace(tmp, dest)
        _fsync_dir(dest.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
