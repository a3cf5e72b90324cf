"""Files, descriptors and temporary folders are released on every path, good or bad."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest

import modelpack
from modelpack._package import container as pkgmod
from modelpack._package import open_package
from modelpack.errors import ModelpackError, PackageIntegrityError

needs_proc = pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="counts descriptors in /proc")


def open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.parametrize("form", ["pkg.mpk", "pkg"])
def test_open_and_close_leave_no_temporary_folder(kit, private_tmp: Path, monkeypatch, form: str) -> None:
    monkeypatch.setattr(pkgmod, "IN_MEMORY_BYTES", 16)  # every file takes the on-disk path
    path = kit.package(form)
    for _ in range(3):
        with open_package(path) as pkg:
            for name in kit.files():
                assert pkg.local_path(name).read_bytes() == kit.files()[name]
    assert list(private_tmp.iterdir()) == []


def test_a_refusal_half_way_removes_what_was_extracted(kit, private_tmp: Path, monkeypatch) -> None:
    monkeypatch.setattr(pkgmod, "IN_MEMORY_BYTES", 16)
    path = kit.package("pkg.mpk", kit.files(**{"zz/last.bin": b"DAMAGE-ME"}))
    # The last file listed is damaged: the others were extracted to disk before it was read.
    path.write_bytes(path.read_bytes().replace(b"DAMAGE-ME", b"DAMAGE-MX"))
    with pytest.raises(PackageIntegrityError):
        open_package(path)
    assert list(private_tmp.iterdir()) == []


def test_a_failed_load_removes_its_temporary_folder(kit, private_tmp: Path) -> None:
    path = kit.package("pkg.mpk", kit.files(**{"model.onnx": b"not an onnx model"}))
    with pytest.raises(ModelpackError):
        modelpack.load(path)
    assert list(private_tmp.iterdir()) == []


@needs_proc
@pytest.mark.parametrize("form", ["pkg.mpk", "pkg"])
def test_no_descriptor_is_leaked(kit, form: str) -> None:
    path = kit.package(form)
    damaged = kit.package("damaged" + (".mpk" if form.endswith(".mpk") else ""),
                          kit.files(**{"extra/x.bin": b"DAMAGE-ME"}))
    if damaged.is_dir():
        (damaged / "extra" / "x.bin").write_bytes(b"DAMAGE-MX")
    else:
        damaged.write_bytes(damaged.read_bytes().replace(b"DAMAGE-ME", b"DAMAGE-MX"))
    with open_package(path):
        pass  # warm up imports that open files once
    before = open_descriptors()
    for _ in range(20):
        with open_package(path) as pkg:
            pkg.read_bytes("model.onnx")
        with pytest.raises(ModelpackError):
            open_package(damaged)
        with modelpack.load(path) as model:
            model.predict(np.zeros((1, 4), np.float32))
    assert open_descriptors() <= before


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX")
def test_no_temporary_sibling_after_a_failed_write(kit) -> None:
    dest = kit.package("pkg.mpk")
    before = sorted(p.name for p in kit.root.iterdir())
    with pytest.raises(ModelpackError):
        kit.package("pkg.mpk", {"model.onnx": kit.model, "extra/x": kit.root / "absent"})
    with pytest.raises(ModelpackError):
        kit.package("pkg", {"model.onnx": kit.model, "a": b"1", "A": b"2"})
    assert sorted(p.name for p in kit.root.iterdir()) == before
    assert dest.exists()
