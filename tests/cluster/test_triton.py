"""export_triton: the config parsed with Triton's own protobuf schema, the model run at its shapes."""

from __future__ import annotations

import argparse

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import modelpack
from modelpack._cli.deploy import add_parsers as add_parser
from modelpack.deploy import export_triton, triton_config
from modelpack.errors import ConversionError, PackageError

model_config_pb2 = pytest.importorskip("tritonclient.grpc.model_config_pb2",
                                       reason="Triton's model config schema ships with tritonclient[grpc]")
text_format = pytest.importorskip("google.protobuf.text_format")

NUMPY_OF = {"TYPE_FP32": np.float32, "TYPE_FP64": np.float64, "TYPE_INT64": np.int64,
            "TYPE_STRING": object, "TYPE_BOOL": np.bool_}


def parse(text: str):
    """Parse config.pbtxt strictly (unknown fields or bad enums raise) and check Triton's rules."""
    config = model_config_pb2.ModelConfig()
    text_format.Parse(text, config)
    assert config.platform == "onnxruntime_onnx" and config.backend == "onnxruntime"
    for tensor in [*config.input, *config.output]:
        assert len(tensor.dims) > 0, f"{tensor.name}: Triton needs dims"
        assert all(d == -1 or d > 0 for d in tensor.dims)
        assert tensor.data_type != model_config_pb2.TYPE_INVALID
    return config


def dtype_name(config_tensor) -> str:
    return model_config_pb2.DataType.Name(config_tensor.data_type)


def run_at_config_shapes(model_file, config, batch: int = 3):
    """Feed tensors shaped as Triton would ([batch] + dims) and check every output's shape."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(model_file), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    feeds = {}
    for tensor in config.input:
        dims = [d if d > 0 else 2 for d in tensor.dims]
        shape = ([batch] if config.max_batch_size else []) + dims
        kind = NUMPY_OF[dtype_name(tensor)]
        feeds[tensor.name] = (np.array(["w"] * int(np.prod(shape)), dtype=object).reshape(shape)
                              if kind is object else rng.normal(size=shape).astype(kind))
    names = [o.name for o in config.output]
    results = dict(zip(names, session.run(names, feeds), strict=True))
    for tensor in config.output:
        dims = list(tensor.reshape.shape) if tensor.HasField("reshape") else list(tensor.dims)
        expected = ([batch] if config.max_batch_size else []) + dims
        got = list(results[tensor.name].shape)
        assert len(got) == len(expected) and all(e in (-1, g) for e, g in zip(expected, got, strict=True)), tensor.name
    return feeds, results


def test_classifier_repository_is_valid_and_batched(classifier, features, tmp_path):
    dest = export_triton(classifier.path, tmp_path / "repo")
    assert dest == tmp_path / "repo" / "iris"
    config = parse((dest / "config.pbtxt").read_text())
    assert config.name == "iris" and config.max_batch_size == 256 and config.HasField("dynamic_batching")
    (x,) = config.input
    assert (x.name, dtype_name(x), list(x.dims)) == ("X", "TYPE_FP32", [4])
    outputs = {o.name: o for o in config.output}
    label, proba = outputs["label"], outputs["probabilities"]
    assert dtype_name(label) == "TYPE_INT64" and list(label.dims) == [1] and label.HasField("reshape")
    assert list(label.reshape.shape) == []
    assert list(proba.dims) == [3] and proba.label_filename == "labels.txt"
    assert (dest / "labels.txt").read_text().splitlines() == ["10", "20", "30"]
    (group,) = config.instance_group
    assert group.count == 1 and group.kind == model_config_pb2.ModelInstanceGroup.KIND_AUTO
    with modelpack.load(classifier.path) as m:
        assert (dest / "1" / "model.onnx").read_bytes() == m._package.read_bytes("model.onnx")
    _, results = run_at_config_shapes(dest / "1" / "model.onnx", config)
    assert results["probabilities"].shape == (3, 3)
    import onnxruntime as ort

    session = ort.InferenceSession(str(dest / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
    label_out, proba_out = session.run(["label", "probabilities"], {"X": features})
    np.testing.assert_array_equal(label_out, classifier.labels(features))
    np.testing.assert_allclose(proba_out, classifier.proba(features), atol=1e-6)


def test_zipmap_output_is_refused_with_the_fix_then_left_out(zipmap_classifier, features, tmp_path):
    package = zipmap_classifier.path
    with pytest.raises(ConversionError, match=r"output_probability.*Triton serves tensors only.*outputs=\['label'\]"):
        export_triton(package, tmp_path / "repo")
    assert not (tmp_path / "repo" / "flowers").exists()
    dest = export_triton(package, tmp_path / "repo", outputs=["label"])
    config = parse((dest / "config.pbtxt").read_text())
    assert [(o.name, dtype_name(o)) for o in config.output] == [("label", "TYPE_STRING")]
    assert not (dest / "labels.txt").exists()
    served = onnx.load(str(dest / "1" / "model.onnx"))
    assert [o.name for o in served.graph.output] == ["label"]
    import onnxruntime as ort

    session = ort.InferenceSession(str(dest / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
    np.testing.assert_array_equal(session.run(None, {"X": features})[0], zipmap_classifier.labels(features))
    with pytest.raises(ConversionError, match="unknown output"):
        export_triton(package, tmp_path / "repo2", outputs=["nope"])


def test_string_and_several_inputs(multi_io, tmp_path):
    modelpack.pack(multi_io, tmp_path / "multi", name="multi")
    dest = export_triton(tmp_path / "multi", tmp_path / "repo", max_batch_size=32)
    config = parse((dest / "config.pbtxt").read_text())
    assert config.max_batch_size == 32
    assert {t.name: dtype_name(t) for t in config.input} == {"num": "TYPE_FP32", "word": "TYPE_STRING",
                                                              "count": "TYPE_INT64"}
    assert {t.name: list(t.dims) for t in config.output} == {"total": [1], "echo": [1], "positive": [1]}
    assert not (dest / "labels.txt").exists()
    feeds, results = run_at_config_shapes(dest / "1" / "model.onnx", config)
    np.testing.assert_array_equal(results["positive"], feeds["count"] > 0)


def test_batching_off_keeps_the_batch_dimension(add_one, tmp_path):
    modelpack.pack(add_one, tmp_path / "add.mpk", name="add")
    config = parse(triton_config(modelpack.inspect(tmp_path / "add.mpk"), max_batch_size=0))
    assert config.max_batch_size == 0 and not config.HasField("dynamic_batching")
    assert [list(t.dims) for t in config.input] == [[-1, 4]]
    with pytest.raises(ConversionError, match="0 or more"):
        triton_config(modelpack.inspect(tmp_path / "add.mpk"), max_batch_size=-1)


def test_fixed_first_dimension_means_no_batching(tmp_path):
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "fixed",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, tmp_path / "fixed.onnx")
    modelpack.pack(tmp_path / "fixed.onnx", tmp_path / "fixed.mpk")
    manifest = modelpack.inspect(tmp_path / "fixed.mpk")
    config = parse(triton_config(manifest))
    assert config.max_batch_size == 0 and list(config.input[0].dims) == [1, 3]
    run_at_config_shapes(tmp_path / "fixed.onnx", config)
    with pytest.raises(ConversionError, match=r"no dynamic first dimension.*max_batch_size=0"):
        triton_config(manifest, max_batch_size=8)


def test_gpu_instances_and_accelerators(classifier):
    manifest = modelpack.inspect(classifier.path)
    config = parse(triton_config(manifest, kind="gpu", gpus=[0, 1], instance_count=2, accelerator="tensorrt",
                                 accelerator_options={"precision_mode": "FP16", "max_workspace_size_bytes": "1073741824"}))
    (group,) = config.instance_group
    assert group.kind == model_config_pb2.ModelInstanceGroup.KIND_GPU and list(group.gpus) == [0, 1]
    assert group.count == 2
    (trt,) = config.optimization.execution_accelerators.gpu_execution_accelerator
    assert trt.name == "tensorrt" and dict(trt.parameters) == {"precision_mode": "FP16",
                                                               "max_workspace_size_bytes": "1073741824"}
    config = parse(triton_config(manifest, kind="cpu", accelerator="openvino"))
    assert [a.name for a in config.optimization.execution_accelerators.cpu_execution_accelerator] == ["openvino"]
    with pytest.raises(ConversionError, match="openvino runs on the CPU"):
        triton_config(manifest, kind="gpu", accelerator="openvino")
    with pytest.raises(ConversionError, match="not one of"):
        triton_config(manifest, accelerator="cuda")
    with pytest.raises(ConversionError, match="needs kind='gpu'"):
        triton_config(manifest, gpus=[0])
    with pytest.raises(ConversionError, match="instance kind"):
        triton_config(manifest, kind="tpu")


def test_pmml_package_is_refused(pmml_package, tmp_path):
    with pytest.raises(ConversionError, match="Triton has no backend for PMML models.*export-kserve"):
        export_triton(pmml_package, tmp_path / "repo")
    assert not (tmp_path / "repo").exists() or not any((tmp_path / "repo").iterdir())


def test_existing_folder_is_kept_unless_overwrite(classifier, tmp_path):
    package = classifier.path
    dest = export_triton(package, tmp_path / "repo")
    (dest / "config.pbtxt").write_text("stale")
    with pytest.raises(PackageError, match="already exists.*overwrite"):
        export_triton(package, tmp_path / "repo")
    assert (dest / "config.pbtxt").read_text() == "stale"
    export_triton(package, tmp_path / "repo", overwrite=True, version=3)
    assert parse((dest / "config.pbtxt").read_text()).name == "iris"
    assert (dest / "3" / "model.onnx").is_file() and not (dest / "1").exists()
    assert sorted(p.name for p in (tmp_path / "repo").iterdir()) == ["iris"]  # no temporary left


def test_names_and_versions_are_checked(classifier, tmp_path):
    package = classifier.path
    with pytest.raises(ConversionError, match="cannot be a Triton model name"):
        export_triton(package, tmp_path / "repo", name="my model")
    with pytest.raises(ConversionError, match="version must be 1 or more"):
        export_triton(package, tmp_path / "repo", version=0)
    assert parse(triton_config(modelpack.inspect(package), name="iris_v2")).name == "iris_v2"


def test_damaged_package_is_refused_before_export(add_one, tmp_path):
    folder = tmp_path / "folder"
    modelpack.pack(add_one, folder, name="iris")
    data = bytearray((folder / "model.onnx").read_bytes())
    data[-1] ^= 1
    (folder / "model.onnx").write_bytes(bytes(data))
    with pytest.raises(modelpack.PackageIntegrityError):
        export_triton(folder, tmp_path / "repo")
    assert not (tmp_path / "repo" / "iris").exists()


def test_command_line(classifier, tmp_path, capsys):
    parser = argparse.ArgumentParser(prog="modelpack")
    add_parser(parser.add_subparsers())
    args = parser.parse_args(["export-triton", str(classifier.path), str(tmp_path / "repo"), "--kind", "gpu",
                              "--accelerator", "tensorrt", "--accelerator-option", "precision_mode=FP16",
                              "--max-batch-size", "64"])
    assert args.handler(args) == 0
    assert "wrote" in capsys.readouterr().out
    config = parse((tmp_path / "repo" / "iris" / "config.pbtxt").read_text())
    assert config.max_batch_size == 64
    assert config.optimization.execution_accelerators.gpu_execution_accelerator[0].parameters["precision_mode"] == "FP16"
    bad = parser.parse_args(["export-triton", str(classifier.path), str(tmp_path / "r2"),
                             "--accelerator-option", "precision_mode"])
    with pytest.raises(ConversionError, match="KEY=VALUE"):
        bad.handler(bad)
