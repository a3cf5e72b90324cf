"""Replacing a file or a folder in one step: the one way every writer of modelpack writes.

Packages, signatures, Triton model folders, batch prediction outputs and the
caches are all written the same way. The new content goes to a temporary
sibling of the destination (same folder, so the same file system), is flushed
to disk, and is then moved over the destination with one rename:

* a file with :func:`os.replace`;
* a folder, on Linux, by swapping the two with ``renameat2(RENAME_EXCHANGE)``;
  elsewhere (or on a file system without it) the old folder is first moved
  aside, which leaves a moment where the destination is absent.

The parent folder is synced afterwards, so the rename itself survives a power
cut. At every moment the destination is absent, the complete old content, or
the complete new content. A write that fails removes its sibling.

A writer that is killed cannot clean up. While a sibling is being written its
writer holds an exclusive ``flock`` on it, so the next writer to the same
destination removes the siblings nobody holds any more (:func:`sweep`).
Systems without ``fcntl`` (Windows) keep such leftovers; they are named
``.NAME.*.tmp`` and can be deleted by hand.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["replacing_file", "replacing_folder", "replacing_path", "sweep", "sync_folder", "write_file"]

_AT_FDCWD = -100
_RENAME_EXCHANGE = 2
_UNSUPPORTED = {errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.ENOTSUP}
_SUFFIXES = (".tmp", ".old")
# A sibling younger than this may belong to a writer that created it but has not
# locked it yet (a few microseconds); it is left for the next sweep.
_GRACE_SECONDS = 1.0


@contextlib.contextmanager
def replacing_file(dest: Path, *, scratch: Path | None = None) -> Iterator[IO[bytes]]:
    """Write ``dest`` through the yielded file; it replaces ``dest`` when the block ends.

    ``scratch`` is the folder for the temporary file (default: ``dest``'s own),
    on the same file system: a file inside a package folder is written from
    outside it, so a reader never sees a file the manifest does not list.

    Example
    -------
    >>> with replacing_file(Path("out.csv")) as fh:   # doctest: +SKIP
    ...     fh.write(b"a,b\\n")
    """
    with replacing_path(dest, scratch=scratch) as tmp, open(tmp, "r+b") as fh:
        yield fh
        fh.flush()
        os.fsync(fh.fileno())


@contextlib.contextmanager
def replacing_path(dest: Path, *, scratch: Path | None = None) -> Iterator[Path]:
    """Like :func:`replacing_file`, for writers that need a path (ONNX Runtime's optimizer)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    folder = dest.parent if scratch is None else scratch
    sweep(dest, scratch=folder)
    fd, name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=folder)
    tmp = Path(name)
    try:
        _lock(fd)
        yield tmp
        _sync_file(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, dest)
        sync_folder(dest.parent)
    finally:
        os.close(fd)
        tmp.unlink(missing_ok=True)


def write_file(dest: Path, data: bytes, *, scratch: Path | None = None) -> None:
    """Replace ``dest`` with ``data`` in one step (``scratch``: see :func:`replacing_file`)."""
    with replacing_file(dest, scratch=scratch) as fh:
        fh.write(data)


@contextlib.contextmanager
def replacing_folder(dest: Path, *, check: Callable[[Path], None] | None = None) -> Iterator[Path]:
    """Fill the yielded folder; it replaces ``dest`` when the block ends.

    ``check(dest)`` runs before an existing destination is replaced (also again
    on every retry) and raises to refuse it: a writer of packages replaces only
    a package. Files written into the folder are synced before it is moved.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    sweep(dest)
    if check is not None and os.path.lexists(dest):
        check(dest)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent))
    fd = os.open(tmp, os.O_RDONLY)
    leftovers: list[Path] = []
    try:
        _lock(fd)
        yield tmp
        _sync_tree(tmp)
        os.chmod(tmp, 0o777 & ~_umask())
        leftovers = _place(tmp, dest, check)
        sync_folder(dest.parent)
    finally:
        os.close(fd)
        shutil.rmtree(tmp, ignore_errors=True)
        for path in leftovers:
            shutil.rmtree(path, ignore_errors=True)


def sweep(dest: Path, *, scratch: Path | None = None) -> list[Path]:
    """Remove the siblings of ``dest`` left by killed writers; return what was removed.

    ``scratch`` is where those writers put them, if not beside ``dest``.
    """
    if fcntl is None:
        return []
    removed = []
    folder = dest.parent if scratch is None else scratch
    try:
        candidates = [p for p in folder.iterdir()
                      if p.name.startswith(f".{dest.name}.") and p.name.endswith(_SUFFIXES)]
    except OSError:
        return []
    now = time.time()
    for path in candidates:
        with contextlib.suppress(OSError):
            if path.is_symlink() or now - path.lstat().st_mtime < _GRACE_SECONDS:
                continue
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # held: its writer is alive
            except OSError:
                continue
            finally:
                os.close(fd)
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()
            removed.append(path)
    return removed


def sync_folder(path: Path) -> None:
    """Flush a folder's entries (names, renames) to disk, where the system allows it."""
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


def _lock(fd: int) -> None:
    if fcntl is not None:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)


def _sync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _sync_tree(root: Path) -> None:
    for folder, _, files in os.walk(root):
        for name in files:
            _sync_file(Path(folder) / name)
        sync_folder(Path(folder))


def _place(tmp: Path, dest: Path, check: Callable[[Path], None] | None) -> list[Path]:
    """Move the finished folder ``tmp`` to ``dest``; return the paths now holding old content."""
    leftovers: list[Path] = []
    for _ in range(100):  # each retry means another writer won a race; someone finishes
        try:
            if not os.path.lexists(dest):
                os.rename(tmp, dest)
                return leftovers
            if check is not None:
                check(dest)
            if _exchange(tmp, dest):
                return [*leftovers, tmp]
            aside = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".old", dir=dest.parent))
            leftovers.append(aside)
            os.rename(dest, aside / "old")
            os.rename(tmp, dest)
            return leftovers
        except FileNotFoundError:  # another writer moved dest away meanwhile
            continue
        except OSError as exc:
            if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):  # another writer put one there
                raise
    raise OSError(errno.EBUSY, "kept being replaced by other writers", str(dest))


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
