"""Any changed byte of any file is detected: SHA-256 and size of every file sit in the manifest.

For the archive form the zip CRC-32 is forged too, as an attacker would, so the
test shows that the manifest's checksum, not zipfile's CRC, catches the change.
The manifest itself is covered by a signature (tests in test_signing.py).
"""

from __future__ import annotations

import random
import zlib
from pathlib import Path

import pytest

from modelpack._package import open_package
from modelpack.errors import PackageIntegrityError


def positions(size: int) -> dict[str, int]:
    """One byte offset per position class."""
    return {"first": 0, "second": 1, "middle": size // 2, "before-last": size - 2, "last": size - 1,
            "random": random.Random(size).randrange(size)}


def flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0x5A]) + data[at + 1:]


def flip_at(where: str):
    return lambda data: flip(data, positions(len(data))[where])


EDITS = {
    **{f"flip-{k}": flip_at(k) for k in ("first", "second", "middle", "before-last", "last", "random")},
    "truncate": lambda d: d[:-1],
    "append": lambda d: d + b"\0",
    "prepend": lambda d: b"\0" + d,
    "swap-halves": lambda d: d[len(d) // 2:] + d[:len(d) // 2],
    "same-size-other-content": lambda d: bytes(len(d)) if any(d) else b"\1" * len(d),
}


def _forge_archive(archive: Path, name: str, edit) -> None:
    """Replace an entry's stored bytes in place, fixing its CRC-32 and sizes in both headers."""
    import zipfile

    with zipfile.ZipFile(archive) as zf:
        info = zf.getinfo(name)
        original = zf.read(name)
    data = bytearray(archive.read_bytes())
    name_len, extra_len = int.from_bytes(data[info.header_offset + 26:info.header_offset + 28], "little"), \
        int.from_bytes(data[info.header_offset + 28:info.header_offset + 30], "little")
    start = info.header_offset + 30 + name_len + extra_len
    changed = edit(original)
    if info.compress_type == zipfile.ZIP_DEFLATED or len(changed) != len(original):
        pytest.skip("only same-size edits of stored entries can be forged in place")
    data[start:start + len(original)] = changed
    crc = zlib.crc32(changed).to_bytes(4, "little")
    data[info.header_offset + 14:info.header_offset + 18] = crc
    at = data.find(b"PK\x01\x02")
    while at >= 0:
        n = int.from_bytes(data[at + 28:at + 30], "little")
        if data[at + 46:at + 46 + n].decode() == name:
            data[at + 16:at + 20] = crc
        at = data.find(b"PK\x01\x02", at + 46)
    archive.write_bytes(bytes(data))


@pytest.mark.parametrize("edit", list(EDITS))
def test_every_file_of_a_folder_detects_every_edit(kit, edit: str) -> None:
    folder = kit.package("pkg")
    for name in kit.files():
        path = folder / name
        original = path.read_bytes()
        path.write_bytes(EDITS[edit](original))
        with pytest.raises(PackageIntegrityError, match="checksum|larger than") as info:
            open_package(folder)
        assert name in str(info.value)
        path.write_bytes(original)
    open_package(folder).close()  # intact again


@pytest.mark.parametrize("edit", [e for e in EDITS if e.startswith(("flip", "same-size", "swap"))])
def test_every_stored_file_of_an_archive_detects_a_forged_edit(kit, edit: str) -> None:
    files = {**kit.files(), "extra/weights.bin": random.Random(0).randbytes(1000)}
    for name in files:
        archive = kit.package("pkg.mpk", files)
        if name.endswith((".json", ".txt")):
            continue  # deflated: their bytes cannot be forged in place
        _forge_archive(archive, name, EDITS[edit])
        with pytest.raises(PackageIntegrityError, match="does not match its checksum") as info:
            open_package(archive)
        assert name in str(info.value)


def assert_refused_or_unchanged(archive: Path, name: str, content: bytes) -> None:
    """A flip must be refused, unless it hit bits that deflate ignores (the final byte's padding)."""
    try:
        pkg = open_package(archive)
    except PackageIntegrityError:
        return
    with pkg:
        assert pkg.read_bytes(name) == content, f"{name} changed and was accepted"


@pytest.mark.parametrize("name", ["model.onnx", "extra/labels.json"])
def test_raw_byte_flips_in_an_archive_are_refused(kit, name: str, zip_tools) -> None:
    archive = kit.package("pkg.mpk")
    start, length = zip_tools.data_span(archive, name)
    original = archive.read_bytes()
    for at in sorted(set(positions(length).values())):
        archive.write_bytes(flip(original, start + at))
        if name == "model.onnx":  # stored: every byte is content
            with pytest.raises(PackageIntegrityError):
                open_package(archive)
        else:
            assert_refused_or_unchanged(archive, name, kit.files()[name])


def test_every_byte_of_the_model_is_covered(kit) -> None:
    folder = kit.package("pkg")
    path = folder / "model.onnx"
    for at in range(len(kit.model)):
        path.write_bytes(flip(kit.model, at))
        with pytest.raises(PackageIntegrityError):
            open_package(folder)


@pytest.mark.slow
def test_every_byte_of_every_file_in_both_forms_is_covered(kit, zip_tools) -> None:
    folder, archive = kit.package("pkg"), kit.package("pkg.mpk")
    original = archive.read_bytes()
    checked = 0
    for name, data in kit.files().items():
        for at in range(len(data)):
            (folder / name).write_bytes(flip(data, at))
            with pytest.raises(PackageIntegrityError):
                open_package(folder)
            checked += 1
        (folder / name).write_bytes(data)
        start, length = zip_tools.data_span(archive, name)
        for at in range(length):
            archive.write_bytes(flip(original, start + at))
            assert_refused_or_unchanged(archive, name, data)
            checked += 1
    assert checked > 2 * len(kit.model)
