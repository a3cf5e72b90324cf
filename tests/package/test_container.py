"""The container's ordinary behaviour: round trips, replacing, clean failures, handing files over."""

from __future__ import annotations

import hashlib
import os
import stat
import threading
import time
import zipfile
from pathlib import Path

import pytest

from modelpack import inspect
from modelpack._package import MANIFEST_NAME, open_package
from modelpack._package import container as pkgmod
from modelpack.errors import PackageError, PackageIntegrityError, UnsafePackageError

FORMS = ["pkg.mpk", "pkg"]


def siblings(dest: Path) -> list[str]:
    return sorted(p.name for p in dest.parent.iterdir() if p.name != dest.name)


@pytest.mark.parametrize("name", FORMS)
def test_round_trip(kit, name: str) -> None:
    files = kit.files()
    dest = kit.package(name, files)
    with open_package(dest) as pkg:
        assert {f.path for f in pkg.manifest.files} == set(files)
        for path, data in files.items():
            assert pkg.read_bytes(path) == data
            entry = pkg.manifest.file(path)
            assert (entry.sha256, entry.size) == (hashlib.sha256(data).hexdigest(), len(data))
        if dest.is_dir():
            assert pkg.manifest_bytes == (dest / MANIFEST_NAME).read_bytes()
    assert inspect(dest) == pkg.manifest


def test_archives_are_reproducible(kit) -> None:
    first = kit.package("a.mpk").read_bytes()
    second = kit.package("b.mpk").read_bytes()
    assert first == second


@pytest.mark.parametrize("name", FORMS)
def test_writing_over_a_package_replaces_it_and_leaves_nothing_beside(kit, name: str) -> None:
    dest = kit.package(name, kit.files(**{"extra/version.txt": b"old", "extra/only-old.txt": b"x"}))
    kit.package(name, kit.files(**{"extra/version.txt": b"new"}))
    with open_package(dest) as pkg:
        assert pkg.read_bytes("extra/version.txt") == b"new"
        assert pkg.manifest.file("extra/only-old.txt") is None
    assert siblings(dest) == []


def test_a_folder_that_is_not_a_package_is_never_replaced(kit) -> None:
    home = kit.root / "documents"
    home.mkdir()
    (home / "thesis.tex").write_text("years of work")
    with pytest.raises(PackageError, match="not a package; it will not be replaced"):
        kit.package("documents")
    assert (home / "thesis.tex").read_text() == "years of work"
    assert siblings(home) == []


def test_an_empty_folder_may_be_replaced(kit) -> None:
    (kit.root / "pkg").mkdir()
    dest = kit.package("pkg")
    with open_package(dest) as pkg:
        assert pkg.read_bytes("model.onnx") == kit.model


@pytest.mark.parametrize("name, fragment", [("pkg.mpk", "is a folder"), ("pkg", "not a package folder")])
def test_a_destination_of_the_wrong_kind_is_refused(kit, name: str, fragment: str) -> None:
    target = kit.root / name
    if name.endswith(".mpk"):
        target.mkdir()
    else:
        target.write_bytes(b"a user's file")
    with pytest.raises(PackageError, match=fragment):
        kit.package(name)
    assert siblings(target) == []


@pytest.mark.parametrize("bad", ["../up.txt", "/abs.txt", "a\\b.txt", "C:x.txt", "a/./b", ""])
def test_bad_names_are_refused_when_writing_with_a_fix(kit, bad: str) -> None:
    with pytest.raises(PackageError, match="Rename the file") as info:
        kit.package("pkg.mpk", kit.files(**{bad: b"x"}))
    assert not isinstance(info.value, UnsafePackageError)  # the writer's fault, not a hostile package
    assert not (kit.root / "pkg.mpk").exists()


@pytest.mark.parametrize("names", [("a.txt", "A.txt"), ("extra", "extra/x.txt")])
def test_names_that_would_clash_are_refused_when_writing(kit, names: tuple[str, str]) -> None:
    with pytest.raises(PackageError, match="Rename the file"):
        kit.package("pkg", {"model.onnx": kit.model, names[0]: b"1", names[1]: b"2"})
    assert siblings(kit.root / "pkg") == []


@pytest.mark.parametrize("reserved", ["modelpack.json", "modelpack.sig"])
def test_reserved_names_are_refused_when_writing(kit, reserved: str) -> None:
    with pytest.raises(PackageError, match="reserved"):
        kit.package("pkg.mpk", kit.files(**{reserved: b"{}"}))


def test_a_source_of_an_unknown_type_is_refused(kit) -> None:
    with pytest.raises(PackageError, match="bytes or its location as a pathlib.Path"):
        kit.package("pkg.mpk", {"model.onnx": "model.onnx"})


@pytest.mark.parametrize("name", FORMS)
def test_files_given_by_path_are_streamed(kit, name: str) -> None:
    big = kit.root / "big.bin"
    big.write_bytes(os.urandom(3 * 2**20))
    dest = kit.package(name, {"model.onnx": kit.model, "extra/big.bin": big})
    with open_package(dest) as pkg:
        assert pkg.read_bytes("extra/big.bin") == big.read_bytes()


@pytest.mark.parametrize("name", FORMS)
def test_a_missing_source_fails_cleanly(kit, name: str) -> None:
    with pytest.raises(PackageError, match="cannot be read"):
        kit.package(name, {"model.onnx": kit.model, "extra/x.bin": kit.root / "absent.bin"})
    assert not (kit.root / name).exists() and siblings(kit.root / name) == []


@pytest.mark.parametrize("name", FORMS)
def test_a_source_changing_during_the_write_fails_cleanly(kit, name: str) -> None:
    """A file rewritten after its checksum was taken makes the write fail, leaving nothing."""
    first = kit.root / "first.bin"  # large, so the write takes a while
    first.write_bytes(os.urandom(48 * 2**20))
    late = kit.root / "late.bin"
    late.write_bytes(b"original")
    dest = kit.root / name
    before = set(kit.root.iterdir())
    for _attempt in range(10):  # the race is won by the writer only when the machine stalls us
        stop = threading.Event()
        changer = threading.Thread(target=_change_when_writing_starts, args=(kit.root, before, late, stop))
        changer.start()
        try:
            kit.package(name, {"a.bin": first, "b.bin": late, "model.onnx": kit.model})
        except PackageError as exc:
            assert "changed while the package was being written" in str(exc)
            break
        finally:
            stop.set()
            changer.join()
        _remove(dest)
    else:
        pytest.fail("the source was never changed in time")
    assert set(kit.root.iterdir()) == before  # no destination, no temporary sibling


def _change_when_writing_starts(root: Path, before: set[Path], late: Path, stop: threading.Event) -> None:
    while not stop.is_set():
        if set(root.iterdir()) - before:  # the temporary sibling appeared
            late.write_bytes(b"modified")
            return
        time.sleep(0.0005)


def _remove(path: Path) -> None:
    import shutil

    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()


def test_written_packages_follow_the_umask(kit) -> None:
    current = os.umask(0o022)
    os.umask(current)
    folder, archive = kit.package("pkg"), kit.package("pkg.mpk")
    assert stat.S_IMODE(folder.stat().st_mode) == 0o777 & ~current
    assert stat.S_IMODE(archive.stat().st_mode) == 0o666 & ~current


def test_very_compressible_text_is_stored_so_readers_accept_it(kit) -> None:
    spaces = b" " * (8 * 2**20)  # deflates about 1000:1, past the reader's bomb cap
    dest = kit.package("pkg.mpk", kit.files(**{"extra/blank.txt": spaces, "extra/small.json": b"{}" * 100}))
    with zipfile.ZipFile(dest) as zf:
        assert zf.getinfo("extra/blank.txt").compress_type == zipfile.ZIP_STORED
        assert zf.getinfo("extra/small.json").compress_type == zipfile.ZIP_DEFLATED
    with open_package(dest) as pkg:
        assert pkg.read_bytes("extra/blank.txt") == spaces


# -- handing files over -----------------------------------------------------------------------
def test_local_paths_of_an_archive_share_a_private_folder_removed_on_close(kit) -> None:
    pkg = open_package(kit.package())
    model, labels = pkg.local_path("model.onnx"), pkg.local_path("extra/labels.json")
    assert model.parent == labels.parent.parent and model.read_bytes() == kit.model
    pkg.close()
    assert not model.exists()


def test_local_paths_of_a_folder_are_its_own_files(kit) -> None:
    folder = kit.package("pkg")
    with open_package(folder) as pkg:
        assert pkg.local_path("model.onnx") == folder / "model.onnx"


def test_a_closed_package_cannot_be_read(kit) -> None:
    pkg = open_package(kit.package())
    pkg.close()
    pkg.close()  # idempotent
    with pytest.raises(PackageError, match="closed"):
        pkg.read_bytes("model.onnx")
    with pytest.raises(PackageError, match="closed"):
        pkg.local_path("model.onnx")


def test_an_unknown_file_name_is_an_error(kit) -> None:
    with open_package(kit.package()) as pkg, pytest.raises(PackageIntegrityError, match="no file"):
        pkg.read_bytes("nothing.bin")


@pytest.mark.parametrize("name", FORMS)
def test_large_files_stay_on_disk_and_are_checked_again_when_read(kit, monkeypatch, name: str) -> None:
    monkeypatch.setattr(pkgmod, "IN_MEMORY_BYTES", 64)
    dest = kit.package(name)
    with open_package(dest) as pkg:
        on_disk = pkg.local_path("model.onnx")
        assert pkg._data.get("model.onnx") is None  # not held in memory
        assert pkg.read_bytes("model.onnx") == kit.model
        on_disk.write_bytes(kit.model[:-1] + bytes([kit.model[-1] ^ 1]))  # changed after the check
        with pytest.raises(PackageIntegrityError, match="does not match its checksum"):
            pkg.read_bytes("model.onnx")


def test_memory_held_in_all_is_capped(kit, monkeypatch) -> None:
    monkeypatch.setattr(pkgmod, "IN_MEMORY_TOTAL", len(kit.model) + 1)
    with open_package(kit.package()) as pkg:
        held = sum(len(v) for v in pkg._data.values())
        assert held <= len(kit.model) + 1 and pkg._paths  # the rest went to the private folder
        assert all(pkg.read_bytes(n) == d for n, d in kit.files().items())
