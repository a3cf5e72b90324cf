"""Hostile containers are refused before any runtime sees a byte, and leave no trace.

Each archive here is built with zipfile and raw byte edits, the way an attacker
would; each folder with os calls. Every refusal is an UnsafePackageError (or,
for plain damage, another PackageError) whose message names the problem, and
nothing is written outside a temporary folder that is gone afterwards.
"""

from __future__ import annotations

import hashlib
import os
import stat
import struct
import sys
import threading
import tracemalloc
import zipfile
from pathlib import Path

import pytest

from modelpack import inspect
from modelpack._package import MANIFEST_NAME, open_package, read_manifest
from modelpack._package import container as pkgmod
from modelpack.errors import (
    ManifestError,
    PackageError,
    PackageIntegrityError,
    PackageNotFoundError,
    UnsafePackageError,
)


def assert_refused(path: Path, fragment: str, error: type[Exception] = UnsafePackageError, *,
                   inspected: bool = True) -> None:
    """``open_package`` refuses ``path``; so does ``read_manifest`` (``inspect``) unless the
    problem is one only reading every byte finds (``inspected=False``)."""
    for read in (open_package, read_manifest) if inspected else (open_package,):
        with pytest.raises(error) as info:
            read(path)
        assert fragment in str(info.value), f"{read.__name__}: {info.value}"
        assert str(path) in str(info.value)  # the message names the package


def assert_no_traces(private_tmp: Path, root: Path, before: set[Path]) -> None:
    assert list(private_tmp.iterdir()) == []
    assert set(root.rglob("*")) == before  # nothing appeared anywhere under the test folder


# -- names that leave the folder ------------------------------------------------------------
ESCAPING = ["../evil.txt", "a/../../evil.txt", "/tmp/evil.txt", "C:/evil.txt", "C:evil.txt",
            "a\\..\\..\\evil.txt", "..\\evil.txt", "./model.onnx", "a//b.txt", "a/./b.txt",
            "extra/", "dir/..", "evil\u0001.txt", "stream.txt:hidden", "x" * 300]


@pytest.mark.parametrize("name", ESCAPING)
@pytest.mark.parametrize("listed", [True, False], ids=["listed", "unlisted"])
def test_zip_slip_names_are_refused(kit, private_tmp, name: str, listed: bool) -> None:
    entries = kit.entries(**({name: b"pwned"} if listed else {}))
    if not listed:
        entries.append((name, b"pwned"))
    archive = kit.zip(entries)
    before = set(kit.root.rglob("*"))
    with pytest.raises(UnsafePackageError) as info:
        open_package(archive)
    assert "entry" in str(info.value) or "modelpack.json" in str(info.value)
    with pytest.raises(UnsafePackageError):
        inspect(archive)
    assert_no_traces(private_tmp, kit.root, before)
    assert not (kit.root.parent / "evil.txt").exists()


def test_a_model_file_outside_the_folder_is_refused(kit) -> None:
    files = {"../model.onnx": kit.model}
    manifest = kit.manifest_json(files).replace(b'"file": "model.onnx"', b'"file": "../model.onnx"')
    archive = kit.zip([(MANIFEST_NAME, manifest), ("../model.onnx", kit.model)])
    assert_refused(archive, "leaves the package folder")


def test_a_nul_byte_in_a_name_is_refused(kit) -> None:
    # zipfile cannot write a NUL in a name: write a placeholder and patch the bytes.
    archive = kit.zip([*kit.entries(), ("evilXtxt", b"pwned")])
    archive.write_bytes(archive.read_bytes().replace(b"evilXtxt", b"evil\x00txt"))
    with pytest.raises(UnsafePackageError):
        open_package(archive)


def test_a_nul_that_would_cut_a_name_down_to_a_listed_one_is_refused(kit) -> None:
    # zipfile reads "model.onnx\0.exe" as "model.onnx": listed, checksum right. It is still refused.
    files = kit.files()
    entries = [(MANIFEST_NAME, kit.manifest_json(files)),
               *(("model.onnxX.exe" if n == "model.onnx" else n, d) for n, d in files.items())]
    archive = kit.zip(entries)
    archive.write_bytes(archive.read_bytes().replace(b"model.onnxX.exe", b"model.onnx\x00.exe"))
    with zipfile.ZipFile(archive) as zf:
        assert "model.onnx" in zf.namelist()  # what zipfile alone would have let through
    assert_refused(archive, "NUL character")


WINDOWS_NAMES = ["CON", "nul.txt", "extra/aux.json", "com1", "LPT9.bin", "Com\u00b9", "conin$", "extra/a.",
                 "extra/a "]


@pytest.mark.parametrize("name", WINDOWS_NAMES)
def test_names_windows_reserves_are_refused(kit, name: str) -> None:
    archive = kit.zip(kit.entries(**{name: b"x"}))
    assert_refused(archive, "Windows device")


@pytest.mark.parametrize("name", WINDOWS_NAMES[:3])
def test_the_writer_refuses_names_windows_reserves(kit, name: str) -> None:
    with pytest.raises(PackageError, match="Rename the file"):
        kit.package("pkg.mpk", files=kit.files(**{name: b"x"}))
    assert not (kit.root / "pkg.mpk").exists()


@pytest.mark.parametrize("name", ["console.txt", "conduct", "nullable", "com10", "extra/a.b", "aux_data"])
def test_names_near_windows_devices_are_fine(kit, name: str) -> None:
    with open_package(kit.package("pkg.mpk", files=kit.files(**{name: b"x"}))) as pkg:
        assert pkg.read_bytes(name) == b"x"


# -- links and special files ----------------------------------------------------------------
@pytest.mark.parametrize("mode", [stat.S_IFLNK | 0o777, stat.S_IFCHR | 0o666, stat.S_IFIFO | 0o644,
                                  stat.S_IFBLK | 0o600])
def test_zip_links_and_special_files_are_refused(kit, mode: int) -> None:
    target = b"/etc/passwd"
    link = zipfile.ZipInfo("extra/link")
    link.external_attr = mode << 16
    link.create_system = 3
    archive = kit.zip([(MANIFEST_NAME, kit.manifest_json(kit.files(**{"extra/link": target}))),
                       *kit.files().items(), (link, target)])
    assert_refused(archive, "link or a special file")


def test_a_symlinked_folder_entry_is_refused(kit) -> None:
    folder = zipfile.ZipInfo("extra/")
    folder.external_attr = (stat.S_IFLNK | 0o777) << 16
    archive = kit.zip([*kit.entries(), (folder, b"")])
    assert_refused(archive, "link or a special file")


def test_folder_symlink_to_an_outside_file_is_refused_even_with_the_right_checksum(kit, tmp_path) -> None:
    folder = kit.package("pkg")
    outside = tmp_path / "outside.onnx"
    outside.write_bytes(kit.model)  # same bytes: the checksum alone would accept it
    (folder / "model.onnx").unlink()
    (folder / "model.onnx").symlink_to(outside)
    assert_refused(folder, "symbolic link")


def test_folder_symlinked_subfolder_is_refused(kit, tmp_path) -> None:
    folder = kit.package("pkg")
    real = tmp_path / "real-extra"
    (folder / "extra").rename(real)
    (folder / "extra").symlink_to(real, target_is_directory=True)
    assert_refused(folder, "symbolic link")


def test_folder_hard_link_is_refused(kit, tmp_path) -> None:
    folder = kit.package("pkg")
    os.link(folder / "model.onnx", tmp_path / "elsewhere.onnx")
    assert_refused(folder, "hard link")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes need a POSIX system")
def test_folder_fifo_is_refused_without_blocking(kit) -> None:
    folder = kit.package("pkg")
    os.mkfifo(folder / "extra" / "pipe")
    result: list[BaseException] = []
    worker = threading.Thread(target=lambda: result.append(_raises(open_package, folder)), daemon=True)
    worker.start()
    worker.join(10)
    assert not worker.is_alive(), "open_package blocked on a named pipe"
    assert isinstance(result[0], UnsafePackageError) and "not a regular file" in str(result[0])


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes need a POSIX system")
def test_a_fifo_given_as_the_package_is_refused(tmp_path) -> None:
    pipe = tmp_path / "pkg.mpk"
    os.mkfifo(pipe)
    with pytest.raises(PackageError, match="neither a folder nor a file"):
        open_package(pipe)


def _raises(function, *args) -> BaseException | None:
    try:
        function(*args)
    except BaseException as exc:  # noqa: BLE001 - handed to the test thread
        return exc
    return None


# -- duplicates and collisions ----------------------------------------------------------------
def test_duplicate_entries_are_refused(kit) -> None:
    archive = kit.zip([*kit.entries(), ("model.onnx", b"a different model")])
    assert_refused(archive, "appears twice")


def test_a_duplicate_manifest_is_refused(kit) -> None:
    archive = kit.zip([*kit.entries(), (MANIFEST_NAME, b"{}")])
    assert_refused(archive, "appears twice")


@pytest.mark.parametrize("twin", ["MODEL.onnx", "Model.ONNX"])
def test_names_differing_in_case_are_refused(kit, twin: str) -> None:
    archive = kit.zip(kit.entries(**{twin: b"shadow"}))
    assert_refused(archive, "differ only in case")


def test_names_differing_in_unicode_form_are_refused(kit) -> None:
    nfc, nfd = "extra/caf\u00e9.txt", "extra/cafe\u0301.txt"
    archive = kit.zip(kit.entries(**{nfc: b"one", nfd: b"two"}))
    assert_refused(archive, "Unicode form")


def test_a_file_named_like_a_folder_is_refused(kit) -> None:
    archive = kit.zip(kit.entries(**{"extra": b"a file where a folder is"}))
    assert_refused(archive, "both a file and a folder")


def test_a_file_listed_twice_in_the_manifest_is_refused(kit) -> None:
    raw = kit.manifest_json(kit.files()).decode()
    first = raw.index('    {\n      "path": "model.onnx"')
    end = raw.index("}", first) + 1
    doubled = raw[:end] + "," + raw[first:end] + raw[end:]
    archive = kit.zip([(MANIFEST_NAME, doubled.encode()), *kit.files().items()])
    assert_refused(archive, "lists a file twice")


# -- listing ----------------------------------------------------------------------------------
def test_an_unlisted_entry_is_refused(kit) -> None:
    archive = kit.zip([*kit.entries(), ("extra/unlisted.py", b"import os")])
    assert_refused(archive, "not listed in the manifest")


def test_an_unlisted_file_in_a_folder_is_refused(kit) -> None:
    folder = kit.package("pkg")
    (folder / "extra" / "unlisted.py").write_bytes(b"import os")
    assert_refused(folder, "not listed in the manifest")


def test_a_listed_file_that_is_missing_is_an_integrity_error(kit) -> None:
    archive = kit.zip([(MANIFEST_NAME, kit.manifest_json(kit.files())), ("model.onnx", kit.model)])
    assert_refused(archive, "missing", PackageIntegrityError)


@pytest.mark.parametrize("reserved", ["modelpack.json", "modelpack.sig"])
def test_the_manifest_may_not_list_reserved_names(kit, reserved: str) -> None:
    files = kit.files(**{reserved: b"x"})
    archive = kit.zip([(MANIFEST_NAME, kit.manifest_json(files)), *kit.files().items(), ("modelpack.sig", b"x")])
    assert_refused(archive, "reserved name")


@pytest.mark.parametrize("size", [-1, 2**62])
def test_impossible_declared_sizes_are_refused_before_reading(kit, size: int) -> None:
    raw = kit.manifest_json(kit.files()).replace(f'"size": {len(kit.model)}'.encode(), f'"size": {size}'.encode())
    archive = kit.zip([(MANIFEST_NAME, raw), *kit.files().items()])
    assert_refused(archive, "declares")


def test_a_size_that_differs_from_the_archive_is_refused_before_reading(kit) -> None:
    raw = kit.manifest_json(kit.files()).replace(f'"size": {len(kit.model)}'.encode(),
                                                 f'"size": {len(kit.model) + 1}'.encode())
    archive = kit.zip([(MANIFEST_NAME, raw), *kit.files().items()])
    assert_refused(archive, "holds", PackageIntegrityError)


def test_a_malformed_checksum_is_a_manifest_error(kit) -> None:
    raw = kit.manifest_json(kit.files())
    digest = raw.split(b'"sha256": "')[1][:64]
    archive = kit.zip([(MANIFEST_NAME, raw.replace(digest, digest.upper())), *kit.files().items()])
    assert_refused(archive, "malformed sha256", ManifestError)


# -- bombs ------------------------------------------------------------------------------------
def _bomb(kit, declared: int, padding: int = 0) -> Path:
    """An archive whose extra/bomb.bin deflates ``declared`` zero bytes, honestly listed."""
    block = bytes(2**20)
    digest = hashlib.sha256()
    for _ in range(declared // len(block)):
        digest.update(block)
    files = kit.files(**({"extra/pad.bin": os.urandom(padding)} if padding else {}))
    raw = kit.manifest_json(files, declared={"extra/bomb.bin": (digest.hexdigest(), declared)})
    archive = kit.root / "bomb.mpk"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr(MANIFEST_NAME, raw)
        for name, data in files.items():
            zf.writestr(name, data)
        info = zipfile.ZipInfo("extra/bomb.bin")
        info.compress_type = zipfile.ZIP_DEFLATED
        with zf.open(info, "w") as out:
            for _ in range(declared // len(block)):
                out.write(block)
    return archive


def test_a_small_archive_claiming_a_huge_inflation_is_refused_before_reading(kit, private_tmp) -> None:
    archive = _bomb(kit, declared=32 * 2**20)  # 32 MiB from about 32 KiB
    assert archive.stat().st_size < 100_000
    tracemalloc.start()
    try:
        assert_refused(archive, "zip bomb")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 * 2**20  # refused from the directory alone: nothing was inflated
    assert list(private_tmp.iterdir()) == []


def test_a_bomb_hidden_by_padding_is_stopped_while_streaming(kit, private_tmp) -> None:
    # 1 MiB of incompressible padding lets the archive as a whole pass the ratio cap,
    # so the bomb entry itself must be stopped while it inflates, long before its end.
    declared = 64 * 2**20
    archive = _bomb(kit, declared=declared, padding=2**20)
    tracemalloc.start()
    try:
        assert_refused(archive, "inflates more than", inspected=False)  # found while inflating
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < declared // 4, f"{peak} bytes held: the bomb was inflated before it was refused"
    assert list(private_tmp.iterdir()) == []


def test_the_total_size_cap_is_checked_before_reading(kit, monkeypatch) -> None:
    monkeypatch.setattr(pkgmod, "MAX_TOTAL_BYTES", 100)
    assert_refused(kit.package(), "add up to more than")


def test_overlapping_entries_are_refused(kit) -> None:
    # Point the last entry's directory record at the first entry's data: two names, one kernel.
    archive = kit.zip(kit.entries())
    data = bytearray(archive.read_bytes())
    at = data.rfind(b"PK\x01\x02")
    data[at + 42:at + 46] = (0).to_bytes(4, "little")
    archive.write_bytes(bytes(data))
    with pytest.raises(UnsafePackageError, match="overlap"):
        open_package(archive)


@pytest.mark.parametrize("method", [zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA])
def test_other_compression_methods_are_refused(kit, method: int) -> None:
    archive = kit.zip(kit.entries(), compression=method)
    assert_refused(archive, "compression method")


def test_encrypted_entries_are_refused(kit) -> None:
    archive = kit.zip(kit.entries())
    data = bytearray(archive.read_bytes())
    for at in range(len(data) - 4):  # set the "encrypted" flag in every header
        if data[at:at + 4] == b"PK\x03\x04":
            data[at + 6] |= 1
        elif data[at:at + 4] == b"PK\x01\x02":
            data[at + 8] |= 1
    archive.write_bytes(bytes(data))
    assert_refused(archive, "encrypted")


# -- counts and sizes -------------------------------------------------------------------------
def test_too_many_entries_are_refused_from_the_end_record(kit) -> None:
    entries = kit.entries() + [(f"extra/{i}.txt", b"") for i in range(pkgmod.MAX_FILES)]
    archive = kit.zip(entries)
    assert_refused(archive, "entries")


def test_too_many_files_in_a_folder_are_refused(kit, monkeypatch) -> None:
    folder = kit.package("pkg")
    for i in range(30):
        (folder / "extra" / f"{i}.txt").write_bytes(b"")
    monkeypatch.setattr(pkgmod, "MAX_FILES", 20)
    assert_refused(folder, "more than 20 entries")


def test_a_huge_central_directory_is_refused_before_it_is_parsed(kit, monkeypatch) -> None:
    monkeypatch.setattr(pkgmod, "MAX_FILES", 10)
    entries = kit.entries()
    for i in range(4):
        info = zipfile.ZipInfo(f"extra/c{i}.txt")
        info.comment = b"c" * 0xFFFF
        entries.append((info, b""))
    assert_refused(kit.zip(entries), "bytes of directory")


def _append_end_records(archive: Path, *, entries: int, cd_size: int, zip64: bool, comment: bytes = b"") -> Path:
    """Rewrite the archive's end: its central directory, then (zip64) records, then a plain end record."""
    data = archive.read_bytes()
    at = data.rfind(b"PK\x05\x06")
    real_entries, real_size, real_offset = struct.unpack_from("<2xH2L", data, at + 8)
    body = data[:at]
    if not zip64:
        plain = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, entries, entries, cd_size, real_offset, len(comment))
    else:
        record = struct.pack("<4sQ2H2L4Q", b"PK\x06\x06", 44, 45, 45, 0, 0, entries, entries, cd_size,
                             real_offset)
        locator = struct.pack("<4sLQL", b"PK\x06\x07", 0, len(body), 1)
        plain = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, real_entries, real_entries, real_size,
                            real_offset, len(comment))  # the plain record looks honest
        body += record + locator
    archive.write_bytes(body + plain + comment)
    return archive


def test_a_zip64_record_behind_an_honest_end_record_is_held_to_the_limit(kit) -> None:
    # zipfile believes the zip64 record right before the end record, 0xFFFF marker or not.
    archive = _append_end_records(kit.zip(kit.entries()), entries=2**40, cd_size=2**45, zip64=True)
    assert_refused(archive, "entries")


def test_a_directory_of_more_records_than_it_declares_is_refused_before_zipfile_parses_it(kit, monkeypatch) -> None:
    entries = kit.entries() + [(f"extra/{i}.txt", b"") for i in range(60)]
    archive = kit.zip(entries)
    data = archive.read_bytes()
    at = data.rfind(b"PK\x05\x06")
    data = data[:at + 8] + struct.pack("<2H", 3, 3) + data[at + 12:]  # claims three entries
    archive.write_bytes(data)
    monkeypatch.setattr(pkgmod, "MAX_FILES", 20)
    monkeypatch.setattr(zipfile, "ZipFile", None)  # reaching zipfile would be a TypeError, not a refusal
    assert_refused(archive, "more than 20 entries")


def test_an_end_signature_inside_the_end_record_is_read_as_zipfile_reads_it(kit, monkeypatch) -> None:
    # zipfile ignores the directory offset of a comment-less end record (it counts back from the
    # record); an offset field spelling the end signature made a backwards search stop there.
    archive = kit.zip(kit.entries() + [(f"extra/{i}.txt", b"") for i in range(30)])
    data = archive.read_bytes()
    at = data.rfind(b"PK\x05\x06")
    archive.write_bytes(data[:at + 16] + b"PK\x05\x06" + data[at + 20:])
    with zipfile.ZipFile(archive) as zf:
        assert len(zf.infolist()) == 34  # zipfile still reads the whole directory
    monkeypatch.setattr(pkgmod, "MAX_FILES", 20)
    monkeypatch.setattr(zipfile, "ZipFile", None)  # the refusal comes before zipfile
    assert_refused(archive, "entries")


@pytest.mark.parametrize("count, zip64", [(300_000, False), (1_000_000, True)])
def test_a_directory_of_a_million_records_is_refused_fast_and_small(kit, count: int, zip64: bool) -> None:
    # 46-byte records under an end record claiming three entries: 14 MB within the byte limit
    # (counted, not parsed), or 46 MB declared by a zip64 record behind an honest-looking end
    # record. zipfile alone takes seconds and hundreds of megabytes on either.
    record = struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 20, 20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
    directory = record * count
    tail = b""
    if zip64:
        tail = (struct.pack("<4sQ2H2L4Q", b"PK\x06\x06", 44, 45, 45, 0, 0, 3, 3, len(directory), 0)
                + struct.pack("<4sLQL", b"PK\x06\x07", 0, len(directory), 1))
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, 3, 3, 0 if zip64 else len(directory), 0, 0)
    archive = kit.root / "huge-directory.mpk"
    archive.write_bytes(directory + tail + end)
    tracemalloc.start()
    try:
        assert_refused(archive, "entries")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64 * 2**20, f"refusing took {peak / 2**20:.0f} MiB"


def test_a_huge_manifest_is_refused(kit) -> None:
    files = kit.files()
    raw = kit.manifest_json(files, description="x" * (pkgmod.MAX_MANIFEST_BYTES + 1))
    assert_refused(kit.zip([(MANIFEST_NAME, raw), *files.items()], compression=zipfile.ZIP_DEFLATED),
                   "larger than")


def test_a_manifest_lying_about_its_size_is_cut_off(kit, monkeypatch) -> None:
    monkeypatch.setattr(pkgmod, "MAX_MANIFEST_BYTES", 4096)
    files = kit.files()
    raw = kit.manifest_json(files, description="x" * 5000)
    archive = kit.zip([(MANIFEST_NAME, raw), *files.items()])
    data = bytearray(archive.read_bytes())
    for at in [a for a, n in _records(data) if n == MANIFEST_NAME]:
        data[at + 24:at + 28] = (100).to_bytes(4, "little")  # declared uncompressed size
    archive.write_bytes(bytes(data))
    with pytest.raises(PackageError):
        open_package(archive)


def _records(data: bytes):
    at = data.find(b"PK\x01\x02")
    while at >= 0:
        name_len = int.from_bytes(data[at + 28:at + 30], "little")
        yield at, data[at + 46:at + 46 + name_len].decode()
        at = data.find(b"PK\x01\x02", at + 46)


def test_a_huge_folder_manifest_is_refused(kit, monkeypatch) -> None:
    folder = kit.package("pkg")
    monkeypatch.setattr(pkgmod, "MAX_MANIFEST_BYTES", 64)
    assert_refused(folder, "larger than 64 bytes")


# -- the manifest's JSON ------------------------------------------------------------------------
@pytest.mark.parametrize("depth", [pkgmod.MAX_JSON_DEPTH + 1, 100_000])
def test_deeply_nested_json_is_refused(kit, depth: int) -> None:
    files = kit.files()
    raw = kit.manifest_json(files).replace(b'"name": "add-one"',
                                           b'"metadata": ' + b"[" * depth + b"]" * depth + b', "name": "add-one"')
    assert_refused(kit.zip([(MANIFEST_NAME, raw), *files.items()]), "nested")


def test_repeated_json_keys_are_refused(kit) -> None:
    files = kit.files()
    raw = kit.manifest_json(files).replace(b'"name": "add-one"', b'"name": "add-one", "name": "other"')
    assert_refused(kit.zip([(MANIFEST_NAME, raw), *files.items()]), "repeats the key")


@pytest.mark.parametrize("raw", [b"\xff\xfe{}", b"[]", b"{", b'{"schema_version": "1.0"}', b"null"])
def test_a_malformed_manifest_is_a_manifest_error(kit, raw: bytes) -> None:
    archive = kit.zip([(MANIFEST_NAME, raw), *kit.files().items()])
    with pytest.raises(ManifestError) as info:
        open_package(archive)
    assert str(archive) in str(info.value)


# -- names that are not UTF-8 ---------------------------------------------------------------------
def test_a_cp437_name_is_refused(kit) -> None:
    archive = kit.zip([*kit.entries(), ("extra/cafX.txt", b"x")])
    archive.write_bytes(archive.read_bytes().replace(b"cafX", b"caf\xe9"))
    assert_refused(archive, "not UTF-8")


def test_a_name_flagged_utf8_that_is_not_is_refused(kit) -> None:
    archive = kit.zip([*kit.entries(), ("extra/caf\u00e9.txt", b"x")])
    archive.write_bytes(archive.read_bytes().replace("caf\u00e9".encode(), b"caf\xff\xfe"))
    assert_refused(archive, "not UTF-8")


@pytest.mark.skipif(sys.platform == "darwin", reason="macOS refuses non-UTF-8 file names itself")
def test_a_folder_file_name_that_is_not_utf8_is_refused(kit) -> None:
    folder = kit.package("pkg")
    try:
        fd = os.open(os.fsencode(folder / "extra") + b"/caf\xe9.txt", os.O_CREAT | os.O_WRONLY, 0o644)
    except OSError as exc:
        pytest.skip(f"this file system refuses non-UTF-8 names ({exc})")
    os.close(fd)
    assert_refused(folder, "not UTF-8")


# -- plain damage -----------------------------------------------------------------------------------
@pytest.mark.parametrize("keep", [0, 1, 10, 100, -22, -1])
def test_truncated_archives_are_package_errors(kit, keep: int) -> None:
    archive = kit.package()
    data = archive.read_bytes()
    archive.write_bytes(data[:keep] if keep >= 0 else data[:len(data) + keep])
    with pytest.raises(PackageError):
        open_package(archive)


def test_garbage_is_a_package_error(tmp_path) -> None:
    junk = tmp_path / "junk.mpk"
    junk.write_bytes(os.urandom(4096))
    with pytest.raises(PackageError, match="not a readable .mpk archive"):
        open_package(junk)


def test_a_missing_path_is_package_not_found(tmp_path) -> None:
    with pytest.raises(PackageNotFoundError):
        open_package(tmp_path / "absent.mpk")


def test_overlaps_are_measured_with_names_in_bytes(tmp_path: Path) -> None:
    from modelpack._package.guards import _check_overlaps

    # "é" is one character and two bytes: a name of 20 of them takes 40 bytes in the header.
    archive = tmp_path / "names.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("é" * 20, b"12345")
        zf.writestr("b.txt", b"67890")
    with zipfile.ZipFile(archive) as zf:
        infos = zf.infolist()
        _check_overlaps(infos, zf.start_dir, archive)  # as written: no overlap
        assert infos[0].flag_bits & 0x800 and infos[1].header_offset == 30 + 40 + 5
        # The second header moved to where a count of characters would end the first entry.
        infos[1].header_offset = 30 + 20 + 5
        with pytest.raises(UnsafePackageError, match="overlap"):
            _check_overlaps(infos, zf.start_dir, archive)
