"""pack(): the manifest filled from the model file, samples, extras, both container forms."""

import json
import zipfile

import numpy as np
import pytest

import modelpack


def test_pack_fills_the_manifest_from_the_graph(add_one, tmp_path):
    m = modelpack.pack(add_one, tmp_path / "add.mpk", name="adder", version="1.2.3", description="adds one",
                       metadata={"auc": 0.91, "tags": ["x"]}, sample=np.zeros((3, 4)))
    assert (m.name, m.version, m.description, m.task) == ("adder", "1.2.3", "adds one", "other")
    assert m.inputs[0].name == "X" and m.inputs[0].dtype == "float32" and m.inputs[0].shape == ("N", 4)
    assert m.model.opsets == {"ai.onnx": 17} and m.model.ir_version == 8 and m.model.producer == "tests"
    assert m.metadata == {"auc": 0.91, "tags": ["x"]}
    assert m.samples.rows == 3
    assert {f.path for f in m.files} == {"model.onnx", "samples/inputs.npz", "samples/outputs.npz"}
    assert m.created.endswith("Z") and m.generator == f"modelpack {modelpack.__version__}"
    assert modelpack.inspect(tmp_path / "add.mpk") == m


def test_archive_and_folder_hold_the_same_package(add_one, tmp_path):
    a = modelpack.pack(add_one, tmp_path / "add.mpk", sample=np.zeros((2, 4)))
    f = modelpack.pack(add_one, tmp_path / "add_folder", sample=np.zeros((2, 4)))
    assert zipfile.is_zipfile(tmp_path / "add.mpk")
    assert (tmp_path / "add_folder" / "modelpack.json").is_file()
    assert a.model == f.model and a.inputs == f.inputs
    assert {e.path: e.sha256 for e in a.files}["model.onnx"] == {e.path: e.sha256 for e in f.files}["model.onnx"]


def test_extra_files_are_listed_and_checksummed(add_one, tmp_path):
    labels = tmp_path / "labels.json"
    labels.write_text(json.dumps(["a", "b"]))
    m = modelpack.pack(add_one, tmp_path / "add.mpk", extra=[labels])
    assert m.extra == ("extra/labels.json",)
    assert m.file("extra/labels.json").size == labels.stat().st_size


def test_pack_overwrites_a_previous_package_completely(add_one, typed_identity, tmp_path):
    from onnx import TensorProto

    for dest in (tmp_path / "p.mpk", tmp_path / "p"):
        modelpack.pack(add_one, dest, name="first")
        modelpack.pack(typed_identity(TensorProto.DOUBLE), dest, name="second")
        assert modelpack.inspect(dest).name == "second"
        assert modelpack.verify(dest).ok
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert leftovers == []


@pytest.mark.parametrize(("name", "content", "error", "message"), [
    ("model.txt", b"hello", modelpack.PackageError, "neither an .onnx nor a .pmml file"),
    ("model.onnx", b"\x00\xffnot onnx", modelpack.PackageError, "is not a valid ONNX model"),
])
def test_bad_model_files_are_refused(tmp_path, name, content, error, message):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(error, match=message):
        modelpack.pack(path, tmp_path / "out.mpk")
    assert not (tmp_path / "out.mpk").exists()


def test_missing_model_file(tmp_path):
    with pytest.raises(modelpack.PackageNotFoundError, match="no model file at"):
        modelpack.pack(tmp_path / "absent.onnx", tmp_path / "out.mpk")


def test_a_sample_that_does_not_fit_writes_nothing(add_one, tmp_path):
    with pytest.raises(modelpack.ShapeError):
        modelpack.pack(add_one, tmp_path / "out.mpk", sample=np.zeros((2, 5)))
    assert list(tmp_path.glob("*out*")) == []


def test_bad_task_is_refused_before_writing(add_one, tmp_path):
    with pytest.raises(modelpack.ManifestError, match="task 'magic'"):
        modelpack.pack(add_one, tmp_path / "out.mpk", task="magic")
    assert not (tmp_path / "out.mpk").exists()


def test_external_data_is_packed_and_loaded(tmp_path):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.arange(12, dtype=np.float32).reshape(4, 3), "W")
    graph = helper.make_graph([helper.make_node("MatMul", ["X", "W"], ["Y"])], "ext",
                              [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["N", 4])],
                              [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["N", 3])], [weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, tmp_path / "ext.onnx", save_as_external_data=True, all_tensors_to_one_file=True,
              location="ext.onnx.data", size_threshold=0)
    m = modelpack.pack(tmp_path / "ext.onnx", tmp_path / "ext.mpk")
    assert m.model.external_data == ("ext.onnx.data",)
    with modelpack.load(tmp_path / "ext.mpk") as loaded:
        np.testing.assert_allclose(loaded.predict(np.ones((1, 4))), np.ones((1, 4)) @ numpy_helper.to_array(weight))


def _versioned(tmp_path, ir_version: int, opset: int):
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N"])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N"])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = ir_version
    path = tmp_path / f"v{ir_version}-{opset}.onnx"
    onnx.save(model, path)
    return path


@pytest.mark.parametrize(("ir_version", "opset", "words"), [
    (99, 17, r"IR version 99; onnxruntime \S+ reads up to \d+"),
    (9, 999, r"opset 999 of the default domain; onnxruntime \S+ supports up to opset \d+"),
])
def test_pack_refuses_what_the_installed_runtime_cannot_read_naming_the_versions(tmp_path, ir_version, opset, words):
    pytest.importorskip("onnxruntime")
    path = _versioned(tmp_path, ir_version, opset)
    for sample in (None, np.ones(2, np.float32)):  # with a sample, its own session refuses them
        with pytest.raises(modelpack.RuntimeBackendError, match=words) as caught:
            modelpack.pack(path, tmp_path / "m.mpk", sample=sample)
        assert "Upgrade onnxruntime" in caught.value.fix and not (tmp_path / "m.mpk").exists()
    # A package written elsewhere says the same when loaded here.
    from modelpack._formats import build_manifest, read_model_file
    from modelpack._package import write_package

    _, data, _, desc = read_model_file(path)
    manifest = build_manifest(desc, name="newer")
    write_package(tmp_path / "newer.mpk", manifest, {manifest.model.file: data})
    with pytest.raises(modelpack.RuntimeBackendError, match=words):
        modelpack.load(tmp_path / "newer.mpk")


def test_pack_takes_the_versions_the_runtime_reads(tmp_path):
    modelpack.pack(_versioned(tmp_path, 8, 17), tmp_path / "m.mpk")
    with modelpack.load(tmp_path / "m.mpk") as model:
        assert model.run(np.ones(2, np.float32))["y"].tolist() == [1.0, 1.0]


def test_session_settings_are_stored_through_pack_and_every_loader_starts_from_them(add_one, tmp_path):
    manifest = modelpack.pack(add_one, tmp_path / "a.mpk",
                              session={"intra_op_num_threads": 1, "graph_optimization_level": "basic"})
    assert manifest.runtime.session == {"intra_op_num_threads": 1, "graph_optimization_level": "basic"}
    with modelpack.load(tmp_path / "a.mpk") as model:
        assert model.backend.session.get_session_options().intra_op_num_threads == 1


@pytest.mark.parametrize(("session", "words"), [
    ({"threads": 2}, "threads = 2 is not a setting modelpack knows"),
    ({"graph_optimization_level": "max"}, "is not one of"),
    ({"config": {"ep.context_file_path": "/tmp/x"}}, "which a package may not set"),
    ({"optimized_model_cache": "/tmp/cache"}, "only load\\(\\) may name a cache folder"),
    (["intra_op_num_threads"], "must be a mapping"),
])
def test_settings_a_package_may_not_store_are_refused_at_pack(add_one, tmp_path, session, words):
    with pytest.raises(modelpack.ManifestError, match=words):
        modelpack.pack(add_one, tmp_path / "a.mpk", session=session)
    assert not (tmp_path / "a.mpk").exists()


def test_pack_with_a_sample_opens_no_session_beyond_the_forecast_and_the_sample(tmp_path, monkeypatch):
    ort = pytest.importorskip("onnxruntime")
    opened = []

    class Counted(ort.InferenceSession):  # the real session, counted
        def __init__(self, *args, **kwargs):
            opened.append(1)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(ort, "InferenceSession", Counted)
    modelpack.pack(_versioned(tmp_path, 8, 17), tmp_path / "m.mpk", sample=np.ones(2, np.float32))
    forecast = len(modelpack.inspect(tmp_path / "m.mpk").runtime.placement["devices"])
    assert len(opened) == forecast + 1
