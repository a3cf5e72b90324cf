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


# Every place of a graph that holds a tensor can point it at a file. Each builder returns
# Y = X + W of X's shape [N, 4], W's four values read from ``location`` (the attacker's wish).

def _external(name: str, location: str, dims: list[int], dtype: int = TensorProto.FLOAT) -> onnx.TensorProto:
    size = helper.tensor_dtype_to_np_dtype(dtype).itemsize * int(np.prod(dims))
    tensor = helper.make_tensor(name, dtype, dims, b"\0" * size, raw=True)
    onnx.external_data_helper.set_external_data(tensor, location=location, offset=0, length=16)
    tensor.ClearField("raw_data")
    tensor.data_location = TensorProto.EXTERNAL
    return tensor


def _sparse(location: str, external: str) -> onnx.SparseTensorProto:
    values = helper.make_tensor("W", TensorProto.FLOAT, [4], WEIGHTS.tobytes(), raw=True)
    indices = helper.make_tensor("W_indices", TensorProto.INT64, [4], [0, 1, 2, 3])
    if external == "values":
        values = _external("W", location, [4])
    else:
        indices = _external("W_indices", location, [2], TensorProto.INT64)
    return helper.make_sparse_tensor(values, indices, [4])


def _model(nodes: list, initializer=(), sparse=(), functions=()) -> bytes:
    graph = helper.make_graph([*nodes, helper.make_node("Add", ["X", "W"], ["Y"])], "hostile",
                              [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["N", 4])],
                              [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["N", 4])],
                              initializer=list(initializer), sparse_initializer=list(sparse))
    opsets = [helper.make_opsetid("", 17)] + ([helper.make_opsetid("hostile", 1)] if functions else [])
    model = helper.make_model(graph, opset_imports=opsets, functions=list(functions))
    model.ir_version = 8
    return model.SerializeToString()


def _in_subgraph(location: str) -> bytes:
    def branch(tensor: onnx.TensorProto) -> onnx.GraphProto:
        out = helper.make_tensor_value_info("B", TensorProto.FLOAT, [4])
        return helper.make_graph([helper.make_node("Identity", [tensor.name], ["B"])], "branch", [], [out],
                                 initializer=[tensor])
    zeros = helper.make_tensor("Z", TensorProto.FLOAT, [4], np.zeros(4, np.float32).tobytes(), raw=True)
    cond = helper.make_tensor("cond", TensorProto.BOOL, [], [True])
    node = helper.make_node("If", ["cond"], ["W"], then_branch=branch(_external("S", location, [4])),
                            else_branch=branch(zeros))
    return _model([node], initializer=[cond])


def _in_function(location: str) -> bytes:
    body = helper.make_node("Constant", [], ["out"], value=_external("S", location, [4]))
    function = helper.make_function("hostile", "leak", [], ["out"], [body], [helper.make_opsetid("", 17)])
    return _model([helper.make_node("leak", [], ["W"], domain="hostile")], functions=[function])


PLACEMENTS = {
    "initializer": lambda loc: _model([], initializer=[_external("W", loc, [4])]),
    "sparse initializer values": lambda loc: _model([], sparse=[_sparse(loc, "values")]),
    "sparse initializer indices": lambda loc: _model([], sparse=[_sparse(loc, "indices")]),
    "Constant value": lambda loc: _model([helper.make_node("Constant", [], ["W"], value=_external("S", loc, [4]))]),
    "Constant sparse_value": lambda loc: _model([helper.make_node("Constant", [], ["W"],
                                                                  sparse_value=_sparse(loc, "values"))]),
    "ConstantOfShape value": lambda loc: _model(
        [helper.make_node("ConstantOfShape", ["shape"], ["W"], value=_external("S", loc, [1]))],
        initializer=[helper.make_tensor("shape", TensorProto.INT64, [1], [4])]),
    "If branch initializer": _in_subgraph,
    "function body Constant": _in_function,
}


@pytest.mark.parametrize("placement", PLACEMENTS)
def test_describe_refuses_external_data_wherever_the_tensor_sits(placement: str, secrets: Path) -> None:
    with pytest.raises(UnsafePackageError, match="outside the package"):
        describe("onnx", PLACEMENTS[placement]("../secret.bin"), name="model.onnx")


@pytest.mark.parametrize("placement", PLACEMENTS)
def test_pack_refuses_external_data_wherever_the_tensor_sits(tmp_path: Path, placement: str, secrets: Path) -> None:
    model_file = tmp_path / "evil.onnx"
    model_file.write_bytes(PLACEMENTS[placement]("../secret.bin"))
    with pytest.raises(UnsafePackageError):
        modelpack.pack(model_file, tmp_path / "evil.mpk")
    assert not (tmp_path / "evil.mpk").exists()


@pytest.mark.parametrize("form", ["pkg.mpk", "pkg"])
@pytest.mark.parametrize("placement", PLACEMENTS)
def test_load_refuses_unlisted_external_data_wherever_the_tensor_sits(kit, secrets: Path, form: str,
                                                                      placement: str) -> None:
    # The manifest lists nothing; weights.bin with the secret waits in the working directory.
    dest = kit.root / form
    write_package(dest, kit_manifest(()), {"model.onnx": PLACEMENTS[placement]("weights.bin")})
    assert_no_leak(dest)


@pytest.mark.parametrize("form", ["pkg.mpk", "pkg"])
@pytest.mark.parametrize("placement", PLACEMENTS)
def test_load_refuses_a_lying_manifest_wherever_the_tensor_sits(kit, secrets: Path, form: str,
                                                                placement: str) -> None:
    dest = kit.root / form
    write_package(dest, kit_manifest(("weights.bin",)), {"model.onnx": PLACEMENTS[placement]("../secret.bin"),
                                                         "weights.bin": WEIGHTS.tobytes()})
    assert_no_leak(dest)


@pytest.mark.parametrize("placement", ["initializer", "sparse initializer values", "Constant sparse_value"])
def test_the_runtime_reads_no_file_for_a_model_given_as_bytes(kit, secrets: Path, placement: str,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """A second wall: were the graph check to miss a tensor, onnxruntime still finds no file to read.

    A model without declared external data goes to onnxruntime as bytes, and onnxruntime would
    resolve a location against the working directory; it is told to look in a folder that
    cannot exist instead.
    """
    from modelpack._formats import onnx as onnx_format

    monkeypatch.setattr(onnx_format, "check_external_data", lambda *args: None)
    dest = kit.root / "pkg.mpk"
    write_package(dest, kit_manifest(()), {"model.onnx": PLACEMENTS[placement]("weights.bin")})
    try:
        model = modelpack.load(dest)
    except ModelpackError as exc:
        assert isinstance(exc, UnsafePackageError) and "weights.bin" in str(exc), exc
        assert "Do not load this package" in str(exc)
        return
    with model:
        leaked = model.predict(np.zeros((1, 4), np.float32))
    assert not np.isin(SECRET, leaked).any(), f"the working directory's weights.bin was read: {leaked}"
