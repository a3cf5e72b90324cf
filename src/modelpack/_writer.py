"""Atomic writing of a package: build beside the destination, then one rename.

An archive is written to a temporary sibling and moved over the destination
with :func:`os.replace`. A folder cannot be replaced by ``rename`` while the
old one is there, so on Linux the two are swapped in one step with
``renameat2(RENAME_EXCHANGE)``; elsewhere (or on a file system without it)
the old folder is first moved aside, which leaves a moment where the
destination is absent. Either way a reader never sees half a package.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import hashlib
import os
import shutil
import stat
import sys
import tempfile
import zipfile
import zlib
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from .errors import ModelpackError, PackageError
from .manifest import FileEntry

__all__ = ["as_source", "digest", "write", "write_file_atomically"]

FileSource = bytes | Path
_CHUNK = 2**20
_COMPRESSED_SUFFIXES = (".json", ".pmml", ".xml", ".txt", ".csv", ".npz")
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
_AT_FDCWD = -100
_RENAME_EXCHANGE = 2
_UNSUPPORTED = {errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.ENOTSUP}


def as_source(name: str, source: Any, dest: Path) -> FileSource:
    """``source`` as bytes or a Path; anything else is refused (a str could be either)."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source)
    if isinstance(source, os.PathLike):
        return Path(source)
    raise PackageError(f"file {name!r} is given as {type(source).__name__}", package=str(dest),
                       fix="Pass the content as bytes or its location as a pathlib.Path.")


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


def digest(source: FileSource, dest: Path) -> tuple[str, int]:
    """SHA-256 (hex) and size of a source."""
    sha, size = hashlib.sha256(), 0
    for chunk in _chunks(source, dest):
        sha.update(chunk)
        size += len(chunk)
    return sha.hexdigest(), size


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
    from .package import MAX_COMPRESSION_RATIO, RATIO_GRACE_BYTES

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


def write(dest: Path, payloads: Sequence[tuple[str, FileSource]], entries: Mapping[str, FileEntry], *,
          archive: bool) -> None:
    """Write ``payloads`` (name, content) as an archive or a folder at ``dest``, atomically."""
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
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
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            with zipfile.ZipFile(fh, "w", allowZip64=True) as zf:
                for name, payload in payloads:
                    info = zipfile.ZipInfo(name, date_time=_ZIP_EPOCH)
                    info.external_attr = (stat.S_IFREG | 0o644) << 16
                    info.compress_type = _compress_type(name, payload, dest)
                    with zf.open(info, "w", force_zip64=True) as out:
                        _copy(name, payload, out, entries.get(name), dest)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, dest)
        _fsync_dir(dest.parent)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _write_folder(dest: Path, payloads: Sequence[tuple[str, FileSource]],
                  entries: Mapping[str, FileEntry]) -> None:
    _check_replaceable(dest)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent))
    leftovers: list[Path] = []
    try:
        for name, payload in payloads:
            target = tmp / name
            target.parent.mkdir(parents=True, exist_ok=True)
            with open(target, "wb") as out:
                _copy(name, payload, out, entries.get(name), dest)
                out.flush()
                os.fsync(out.fileno())
        os.chmod(tmp, 0o777 & ~_umask())
        _fsync_dir(tmp)
        leftovers = _place(tmp, dest)
        _fsync_dir(dest.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        for path in leftovers:
            shutil.rmtree(path, ignore_errors=True)


def _check_replaceable(dest: Path) -> None:
    """Only a package folder (or an empty one) may be replaced: never a user's folder."""
    if not os.path.lexists(dest):
        return
    if dest.is_dir() and not dest.is_symlink():
        if (dest / "modelpack.json").is_file() or not any(dest.iterdir()):
            return
        raise PackageError(f"{dest} is a folder that is not a package; it will not be replaced",
                           package=str(dest), fix="Choose another destination, or remove that folder.")
    raise PackageError(f"{dest} exists and is not a package folder", package=str(dest),
                       fix="Choose another destination, or remove that file or link.")


def _place(tmp: Path, dest: Path) -> list[Path]:
    """Move the finished folder ``tmp`` to ``dest``; return the paths now holding old packages."""
    leftovers: list[Path] = []
    for _ in range(100):  # each retry means another writer won a race; someone finishes
        try:
            if not os.path.lexists(dest):
                os.rename(tmp, dest)
                return leftovers
            _check_replaceable(dest)
            if _exchange(tmp, dest):
                return [*leftovers, tmp]
            aside = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".old", dir=dest.parent))
            leftovers.append(aside)
            os.rename(dest, aside / "package")
            os.rename(tmp, dest)
            return leftovers
        except FileNotFoundError:  # another writer moved dest away meanwhile
            continue
        except OSError as exc:
            if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):  # another writer put one there
                raise
    raise PackageError(f"{dest} kept being replaced by other writers", package=str(dest),
                       fix="Do not write one package from many processes at once.")


@functools.lru_cache(maxsize=1)
def _renameat2() -> Any:
    if not sys.platform.startswith("linux"):
        return None
    try:
        function = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):  # a libc older than glibc 2.28, or musl without it
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    function.restype = ctypes.c_int
    return function


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one step; False where the system or file system cannot."""
    function = _renameat2()
    if function is None:
        return False
    if function(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in _UNSUPPORTED:
        return False
    raise OSError(code, os.strerror(code), str(b))


def write_file_atomically(target: Path, data: bytes, package: Path) -> None:
    """Replace one file inside a package folder; the temporary file sits outside the folder."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.parent.name}.", suffix=".tmp",
                                   dir=target.parent.parent)
    except OSError as exc:
        raise PackageError(f"{target} could not be written ({exc})", package=str(package),
                           fix="Check the permissions of the package's parent folder.") from exc
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, target)
        _fsync_dir(target.parent)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise PackageError(f"{target} could not be written ({exc})", package=str(package),
                               fix="Check the free space and the folder's permissions.") from exc
        raise


@functools.lru_cache(maxsize=1)
def _umask() -> int:
    """The process umask, read without changing it (os.umask would race with other threads)."""
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return 0o022


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
