"""ONNX external data may not leave the package (the CVE-2024-27318/27319 class).

An ONNX tensor may keep its bytes in another file named by a ``location``. A
hostile model names a file outside the package (``../secret.bin``, an absolute
path, a file the manifest does not list) so that the runtime reads it and the
attacker gets its bytes back through the model's outputs. Each such model is
refused, by ``describe``/``pack`` and by ``load`` even when the manifest lies.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import modelpack
from modelpack._formats import describe
from modelpack._package import write_package
from modelpack.errors import ModelpackError, PackageError, PackageIntegrityError, UnsafePackageError
from modelpack.manifest import FileEntry, ModelInfo

WEIGHTS = np.array([10, 20, 30, 40], dtype=np.float32)
SECRET = np.array([1111, 2222, 3333, 4444], dtype=np.float32)


def external_model(location: str) -> bytes:
    """Y = X + W, with W's 16 bytes kept in the file ``location``."""
    weights = helper.make_tensor("W", TensorProto.FLOAT, [4], WEIGHTS.tobytes(), raw=True)
    onnx.external_data_helper.set_external_data(weights, location=location, offset=0, length=16)
    weights.ClearField("raw_data")
    weights.data_location = TensorProto.EXTERNAL
    graph = helper.make_graph([helper.make_node("Add", ["X", "W"], ["Y"])], "external",
                              [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["N", 4])],
                              [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["N", 4])],
                              initializer=[weights])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


def write(kit, name: str, location: str, files: dict[str, bytes], listed: tuple[str, ...]) -> Path:
    """A package whose manifest says the external data is ``listed`` (true or not)."""
    manifest = kit_manifest(listed)
    dest = kit.root / name
    write_package(dest, manifest, {"model.onnx": external_model(location), **files})
    return dest


def kit_manifest(listed: tuple[str, ...]):
    from modelpack.manifest import Manifest, TensorSpec

    return Manifest(name="external", task="regression",
                    model=ModelInfo(format="onnx", file="model.onnx", external_data=listed),
                    inputs=(TensorSpec("X", "float32", ("N", 4)),),
                    outputs=(TensorSpec("Y", "float32", ("N", 4), role="value"),))


@pytest.fixture
def secrets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Secret files where hostile locations point: the parent folder, the working directory."""
    (tmp_path / "secret.bin").write_bytes(SECRET.tobytes())
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    (cwd / "weights.bin").write_bytes(SECRET.tobytes())
    monkeypatch.chdir(cwd)
    return tmp_path / "secret.bin"


def assert_no_leak(path: Path) -> None:
    """Loading must be refused; if it were not, the outputs would show the secret."""
    X = np.zeros((1, 4), dtype=np.float32)
    try:
        model = modelpack.load(path)
    except UnsafePackageError as exc:
        assert str(path) in str(exc)
        return
    except ModelpackError as exc:
        pytest.fail(f"refused, but not as unsafe: {type(exc).__name__}: {exc}")
    with model:
        leaked = model.predict(X)
    pytest.fail(f"a hostile external-data location was loaded; outputs {leaked}")


HOSTILE = ["../secret.bin", "../../secret.bin", "sub/../../secret.bin", "..\\secret.bin"]


@pytest.mark.parametrize("form", ["pkg.mpk", "pkg"])
def test_honest_external_data_loads(kit, form: str) -> None:
    path = write(kit, form, "weights.bin", {"weights.bin": WEIGHTS.tobytes()}, ("weights.bin",))
    with modelpack.load(path) as model:
        np.testing.assert_array_equal(model.predict(np.ones((2, 4), np.float32)), np.ones((2, 4)) + WEIGHTS)


@pytest.mark.parametrize("location", [*HOSTILE, "ABSOLUTE"])
def test_describe_refuses_locations_outside_the_package(location: str, secrets: Path) -> None:
    location = str(secrets) if location == "ABSOLUTE" else location
    with pytest.raises(UnsafePackageError, match="outside the package"):
        describe("onnx", external_model(location), name="model.onnx")


@pytest.mark.parametrize("location", [*HOSTILE, "ABSOLUTE"])
def test_pack_refuses_a_model_file_reaching_outside(tmp_path: Path, location: str, secrets: Path) -> None:
    location = str(secrets) if location == "ABSOLUTE" else location
    model_file = tmp_path / "evil.onnx"
    model_file.write_bytes(external_model(location))
    with pytest.raises(UnsafePackageError):
        modelpack.pack(model_file, tmp_path / "evil.mpk")
    assert not (tmp_path / "evil.mpk").exists()


@pytest.mark.parametrize("form", ["pkg.mpk", "pkg"])
@pytest.mark.parametrize("location", [*HOSTILE, "ABSOLUTE"])
def test_load_refuses_a_lying_manifest_that_lists_innocent_data(kit, secrets: Path, form: str,
                                                                 location: str) -> None:
    location = str(secrets) if location == "ABSOLUTE" else location
    path = write(kit, form, location, {"weights.bin": WEIGHTS.tobytes()}, ("weights.bin",))
    assert_no_leak(path)


@pytest.mark.parametrize("form", ["pkg.mpk", "pkg"])
def test_load_refuses_external_data_the_manifest_does_not_list(kit, secrets: Path, form: str) -> None:
    # The graph wants weights.bin, the manifest lists no external data and the package holds none;
    # a weights.bin with secret values waits in the working directory.
    path = write(kit, form, "weights.bin", {}, ())
    assert_no_leak(path)


@pytest.mark.parametrize("form", ["pkg.mpk", "pkg"])
def test_load_refuses_external_data_listed_under_another_name(kit, secrets: Path, form: str) -> None:
    path = write(kit, form, "other.bin", {"weights.bin": WEIGHTS.tobytes()}, ("weights.bin",))
    assert_no_leak(path)


def test_a_manifest_listing_an_outside_file_is_refused_before_the_runtime(kit, secrets: Path) -> None:
    with pytest.raises(PackageError, match="leaves the package folder"):  # the writer will not make one
        write(kit, "pkg.mpk", "../secret.bin", {"../secret.bin": SECRET.tobytes()}, ("../secret.bin",))
    files = {"model.onnx": external_model("../secret.bin"), "../secret.bin": SECRET.tobytes()}
    raw = kit.manifest_json(files).replace(b'"file": "model.onnx"',
                                           b'"file": "model.onnx", "external_data": ["../secret.bin"]')
    archive = kit.zip([("modelpack.json", raw), *files.items()])
    with pytest.raises(UnsafePackageError, match="leaves the package folder"):
        modelpack.load(archive)


def test_large_external_data_is_checksummed_while_streaming(kit, monkeypatch) -> None:
    from modelpack._package import container as pkgmod

    monkeypatch.setattr(pkgmod, "IN_MEMORY_BYTES", 8)  # the weights go through the on-disk path
    path = write(kit, "pkg.mpk", "weights.bin", {"weights.bin": WEIGHTS.tobytes()}, ("weights.bin",))
    with modelpack.load(path) as model:
        np.testing.assert_array_equal(model.predict(np.zeros((1, 4), np.float32))[0], WEIGHTS)
    # The same package with one weight changed inside the archive (CRC forged) is refused.
    import zipfile
    import zlib

    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo("weights.bin")
    start = data.find(WEIGHTS.tobytes())
    data[start:start + 4] = SECRET[:1].tobytes()
    changed = bytes(data[start:start + 16])
    crc = zlib.crc32(changed).to_bytes(4, "little")
    data[info.header_offset + 14:info.header_offset + 18] = crc
    at = data.rfind(b"PK\x01\x02weights.bin"[:4])
    while at >= 0 and data[at + 46:at + 57] != b"weights.bin":
        at = data.rfind(b"PK\x01\x02", 0, at)
    data[at + 16:at + 20] = crc
    path.write_bytes(bytes(data))
    assert hashlib.sha256(changed).hexdigest() != hashlib.sha256(WEIGHTS.tobytes()).hexdigest()
    with pytest.raises(PackageIntegrityError, match="weights.bin"):
        modelpack.load(path)


def test_the_manifest_entry_is_what_the_checksum_covers(kit) -> None:
    path = write(kit, "pkg", "weights.bin", {"weights.bin": WEIGHTS.tobytes()}, ("weights.bin",))
    entry = modelpack.inspect(path).file("weights.bin")
    assert entry == FileEntry("weights.bin", hashlib.sha256(WEIGHTS.tobytes()).hexdigest(), 16)
