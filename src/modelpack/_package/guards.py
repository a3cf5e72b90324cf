"""Checks that keep a hostile package from escaping its folder or exhausting the machine.

Everything here runs before a manifest field or a model byte is interpreted:
entry names, links and special files, duplicate and colliding names, the size
of a zip archive's central directory, overlapping zip entries (the "better zip
bomb"), and the shape of the manifest's JSON (nesting depth, repeated keys).
The limits live in :mod:`.limits`.
"""

from __future__ import annotations

import json
import os
import stat
import struct
import unicodedata
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any

from ..errors import ManifestError, PackageError, UnsafePackageError
from .limits import MAX_NAME_BYTES, MAX_PART_BYTES

__all__ = ["check_central_directory", "check_member_name", "check_names", "check_zip_members",
           "list_folder", "load_json", "open_regular", "read_capped", "refuse"]

# NUL and control characters, DEL, the Windows separator and ':' (drive letters and
# NTFS alternate streams): none has a portable meaning in a file name.
_FORBIDDEN = frozenset([chr(c) for c in range(32)] + ["\x7f", "\\", ":"])
# Device names Windows reserves in every folder, whatever the extension ("nul.txt" too).
_WINDOWS_DEVICES = frozenset(["CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$",
                              *(f"{port}{n}" for port in ("COM", "LPT") for n in [*"123456789", "\u00b9", "\u00b2", "\u00b3"])])
_ZIP_METHODS = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED)
_EOCD = struct.Struct("<4s4H2LH")
_ZIP64_LOCATOR = struct.Struct("<4sLQL")
_ZIP64_EOCD = struct.Struct("<4sQ2H2L4Q")
_LOCAL_HEADER_BYTES = 30
# A central-directory record is 46 bytes plus its name and extra fields; with our
# name limit, 1.5 KiB per entry is far more than any honest archive needs.
_CD_BYTES_PER_ENTRY = 46 + MAX_NAME_BYTES + 512


def refuse(package: Path | str, message: str) -> UnsafePackageError:
    """The error for a package that must not be loaded at all."""
    return UnsafePackageError(message, package=str(package),
                              fix="Do not load this package; ask its author for a package written "
                                  "by modelpack.")


def _name_error(package: Path | str, message: str, writing: bool) -> PackageError:
    if writing:
        return PackageError(message, package=str(package),
                            fix="Rename the file: names are relative paths with '/' between folders, "
                                "without '..', backslashes, colons or control characters.")
    return refuse(package, message)


def check_member_name(name: str, package: Path | str, *, writing: bool = False) -> str:
    """Refuse a name that could escape the package or mean another file on another system."""
    if not isinstance(name, str) or not name:
        raise _name_error(package, f"entry name {name!r} is empty or not text", writing)
    try:
        encoded = name.encode("utf-8")
    except UnicodeEncodeError:  # os.walk hands over undecodable bytes as surrogates
        raise _name_error(package, f"entry name {name!r} is not UTF-8", writing) from None
    if any(c in _FORBIDDEN for c in name) or name.startswith("/"):
        raise _name_error(package, f"entry {name!r} has an absolute, drive or backslash path, "
                                   "or a control character", writing)
    parts = name.split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise _name_error(package, f"entry {name!r} leaves the package folder or is not normalised",
                          writing)
    if len(encoded) > MAX_NAME_BYTES or any(len(p.encode()) > MAX_PART_BYTES for p in parts):
        raise _name_error(package, f"entry name {name[:60]!r}... is too long", writing)
    for part in parts:
        # Windows opens the device for these, and drops a trailing dot or space ("a." is "a").
        if part.split(".")[0].rstrip(" ").upper() in _WINDOWS_DEVICES or part[-1] in ". ":
            raise _name_error(package, f"entry {name!r} names a Windows device or ends in a dot or "
                                       "space", writing)
    return name


def check_names(names: Iterable[str], package: Path | str, *, writing: bool = False) -> None:
    """Refuse names that clash once a file system folds case or Unicode forms.

    ``a`` and ``A``, or a name in NFC and in NFD, are one file on macOS and
    Windows; a file named like a folder of another (``a`` and ``a/b``) cannot be
    written at all. Either would let one verified file stand in for another.
    """
    seen: dict[str, str] = {}
    for name in names:
        key = unicodedata.normalize("NFC", name).casefold()
        if key in seen:
            raise _name_error(package, f"entries {seen[key]!r} and {name!r} differ only in case "
                                       "or Unicode form", writing)
        seen[key] = name
    folders = {key.rsplit("/", i)[0] for key in seen for i in range(1, key.count("/") + 1)}
    clash = sorted(folders & seen.keys())
    if clash:
        raise _name_error(package, f"{seen[clash[0]]!r} is both a file and a folder", writing)


# -- folders -------------------------------------------------------------------------
def open_regular(file: Path, package: Path) -> IO[bytes]:
    """Open a folder's file for reading, refusing links and special files at open time."""
    # O_NOFOLLOW: a link swapped in after the listing is refused too; O_NONBLOCK: a pipe cannot hang us.
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    flags |= getattr(os, "O_BINARY", 0)  # Windows would otherwise translate line ends
    try:
        fd = os.open(file, flags)
    except OSError as exc:
        if os.path.islink(file):
            raise refuse(package, f"{file.name} is a symbolic link") from exc
        raise PackageError(f"{file} cannot be read ({exc.strerror})", package=str(package),
                           fix="Check the file's permissions.") from exc
    info = os.fstat(fd)
    problem = ("is not a regular file" if not stat.S_ISREG(info.st_mode)
               else "is a hard link to another file" if info.st_nlink > 1 else None)
    if problem:
        os.close(fd)
        shown = file.relative_to(package) if file.is_relative_to(package) else file
        raise refuse(package, f"{shown} {problem}")
    return os.fdopen(fd, "rb")


def read_capped(file: Path, package: Path, cap: int, what: str) -> bytes:
    """A small file of a folder (manifest, signature), refusing it past ``cap`` bytes."""
    with open_regular(file, package) as fh:
        raw = fh.read(cap + 1)
    if len(raw) > cap:
        raise refuse(package, f"{what} is larger than {cap} bytes")
    return raw


def list_folder(path: Path, max_files: int) -> set[str]:
    """The files of a package folder, relative, after refusing links, special files and bad names."""
    names: set[str] = set()
    count = 0

    def fail(exc: OSError) -> None:
        raise PackageError(f"{exc.filename} cannot be listed ({exc.strerror})", package=str(path),
                           fix="Check the folder's permissions.") from exc

    for root, dirs, files in os.walk(path, onerror=fail):
        for name in dirs + files:
            full = Path(root) / name
            relative = full.relative_to(path).as_posix()
            check_member_name(relative, path)
            if full.is_symlink():
                raise refuse(path, f"{relative} is a symbolic link")
            if name in files and not full.is_file():
                raise refuse(path, f"{relative} is not a regular file")
            count += 1
            if count > max_files:
                raise refuse(path, f"the folder holds more than {max_files} entries")
        names.update((Path(root) / f).relative_to(path).as_posix() for f in files)
    return names


# -- zip archives ------------------------------------------------------------------
def check_central_directory(fh: IO[bytes], size: int, package: Path, max_entries: int) -> None:
    """Refuse an archive whose central directory is too large, before zipfile reads it.

    :mod:`zipfile` loads the whole central directory and builds one object per
    entry; a few megabytes of it would cost gigabytes of memory. The end records
    are found the way zipfile finds them (the last end signature, and a zip64
    locator right before it, whatever the plain record says), and the directory's
    records are counted without parsing them, so the limit holds for what zipfile
    would read, not for what the archive claims.
    """
    extent = _directory_extent(fh, size)
    if extent is None:
        return  # not a zip archive: zipfile says so, with its own words
    start, entries, cd_size = extent
    if entries > max_entries or cd_size > max_entries * _CD_BYTES_PER_ENTRY:
        raise refuse(package, f"the archive has {entries} entries ({cd_size} bytes of directory); "
                              f"the limit is {max_entries}")
    if 0 <= start <= size:
        fh.seek(start)
        records = _count_records(fh.read(cd_size), max_entries + 1)
        if records > max_entries:
            raise refuse(package, f"the archive's directory holds more than {max_entries} entries "
                                  f"(its end record says {entries})")


def _directory_extent(fh: IO[bytes], size: int) -> tuple[int, int, int] | None:
    """(start, entries, bytes) of the central directory as zipfile will read it; None if no end record."""
    if size < _EOCD.size:
        return None
    fh.seek(size - _EOCD.size)
    last = fh.read(_EOCD.size)
    if last[:4] == b"PK\x05\x06" and last[-2:] == b"\0\0":  # zipfile's first guess: no comment
        at, record = size - _EOCD.size, last
    else:
        window = max(size - 0x10000 - _EOCD.size, 0)
        fh.seek(window)
        tail = fh.read()
        found = tail.rfind(b"PK\x05\x06")
        if found < 0 or found + _EOCD.size > len(tail):
            return None
        at, record = window + found, tail[found:found + _EOCD.size]
    entries, cd_size = _EOCD.unpack(record)[4:6]
    start = at - cd_size
    # zipfile takes a zip64 locator right before the end record, and the zip64 record
    # right before the locator, even when the plain record holds no 0xFFFF marker.
    before = at - _ZIP64_LOCATOR.size - _ZIP64_EOCD.size
    if before >= 0:
        fh.seek(before)
        block = fh.read(_ZIP64_EOCD.size + _ZIP64_LOCATOR.size)
        if block[_ZIP64_EOCD.size:_ZIP64_EOCD.size + 4] == b"PK\x06\x07" and block[:4] == b"PK\x06\x06":
            entries, cd_size = _ZIP64_EOCD.unpack_from(block)[7:9]
            start = before - cd_size
    return start, entries, cd_size


def _count_records(directory: bytes, stop: int) -> int:
    """The central-directory records in ``directory``, counted up to ``stop``."""
    count = at = 0
    while at + 46 <= len(directory) and count < stop and directory[at:at + 4] == b"PK\x01\x02":
        name, extra, comment = struct.unpack_from("<3H", directory, at + 28)
        at += 46 + name + extra + comment
        count += 1
    return count


def check_zip_members(zf: zipfile.ZipFile, package: Path, *, max_files: int,
                      max_file_bytes: int) -> dict[str, zipfile.ZipInfo]:
    """The archive's regular files by name, after refusing every kind of hostile entry."""
    infos = zf.infolist()
    if len(infos) > max_files:
        raise refuse(package, f"the archive has {len(infos)} entries; the limit is {max_files}")
    members: dict[str, zipfile.ZipInfo] = {}
    for info in infos:
        _check_entry(info, package)
        if info.filename.endswith("/"):
            continue
        if info.filename in members:
            raise refuse(package, f"entry {info.filename!r} appears twice")
        if info.file_size > max_file_bytes:
            raise refuse(package, f"entry {info.filename!r} declares {info.file_size} bytes; "
                                  f"the limit is {max_file_bytes}")
        members[info.filename] = info
    check_names(members, package)
    _check_overlaps(infos, getattr(zf, "start_dir", None), package)
    return members


def _check_entry(info: zipfile.ZipInfo, package: Path) -> None:
    name = info.filename
    if "\0" in info.orig_filename:
        # zipfile cuts a name at its first NUL: "model.onnx\0.exe" would pass as "model.onnx".
        raise refuse(package, f"entry name {info.orig_filename!r} holds a NUL character")
    if info.flag_bits & 0x800 == 0 and not name.isascii():
        raise refuse(package, f"entry name {name!r} is not UTF-8")
    kind = stat.S_IFMT(info.external_attr >> 16)
    if name.endswith("/"):  # a folder entry (ZipInfo.is_dir fails on an empty name)
        check_member_name(name.rstrip("/"), package)
        if kind not in (0, stat.S_IFDIR):
            raise refuse(package, f"entry {name!r} is a link or a special file")
        if info.file_size or info.compress_size:
            raise refuse(package, f"folder entry {name!r} carries data")
        return
    check_member_name(name, package)
    if kind not in (0, stat.S_IFREG):
        raise refuse(package, f"entry {name!r} is a symbolic link or a special file")
    if info.flag_bits & 0x1:
        raise refuse(package, f"entry {name!r} is encrypted")
    if info.compress_type not in _ZIP_METHODS:
        raise refuse(package, f"entry {name!r} uses compression method {info.compress_type}; "
                              "only stored and deflated entries are read")


def _check_overlaps(infos: list[zipfile.ZipInfo], start_dir: int | None, package: Path) -> None:
    """Refuse entries whose data overlap: many names over one compressed kernel is a bomb."""
    spans = sorted((i.header_offset, i.header_offset + _LOCAL_HEADER_BYTES + _stored_name_bytes(i)
                    + i.compress_size, i.filename) for i in infos)
    previous_end, previous = 0, None
    for start, end, name in spans:
        if start < previous_end or start < 0:
            raise refuse(package, f"entries {previous!r} and {name!r} overlap in the archive")
        previous_end, previous = end, name
    if start_dir is not None and previous_end > start_dir:
        raise refuse(package, f"entry {previous!r} runs into the archive's directory")


def _stored_name_bytes(info: zipfile.ZipInfo) -> int:
    """The length of an entry's name as the archive stores it: bytes, not characters.

    zipfile decodes a name flagged UTF-8 (bit 11) as UTF-8 and any other as cp437,
    so encoding it back the same way gives the stored length.
    """
    encoding = "utf-8" if info.flag_bits & 0x800 else "cp437"
    try:
        return len(info.orig_filename.encode(encoding))
    except UnicodeEncodeError:  # not what zipfile read; the longer measure is the safe one
        return len(info.orig_filename.encode("utf-8", "surrogatepass"))


# -- the manifest's JSON -------------------------------------------------------------
class _RepeatedKey(ValueError):
    pass


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _RepeatedKey(key)
        out[key] = value
    return out


def load_json(raw: bytes, package: Path, *, max_depth: int) -> Any:
    """Parse the manifest's JSON, refusing repeated keys and deep nesting.

    A repeated key lets two JSON readers see two different manifests in the
    same signed bytes; deep nesting exhausts the stack of recursive readers.
    """
    try:
        data = json.loads(raw.decode("utf-8"), object_pairs_hook=_unique_keys)
    except _RepeatedKey as exc:
        raise refuse(package, f"modelpack.json repeats the key {exc}") from exc
    except RecursionError as exc:
        raise refuse(package, "modelpack.json is nested too deeply") from exc
    except ValueError as exc:  # includes UnicodeDecodeError
        raise ManifestError(f"modelpack.json is not valid UTF-8 JSON ({exc})", package=str(package),
                            fix="Rewrite the package with modelpack.pack().") from exc
    if _depth_exceeds(data, max_depth):
        raise refuse(package, f"modelpack.json is nested more than {max_depth} levels deep")
    return data


def _depth_exceeds(data: Any, limit: int) -> bool:
    stack = [(data, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return True
        if isinstance(node, dict):
            stack.extend((v, depth + 1) for v in node.values())
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node)
    return False
