"""runtime.requires: the oldest onnxruntime that reads a package's IR version and opsets."""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import modelpack
from modelpack._formats.runtime_versions import ORT_RELEASES, oldest_release


def _model(path, ir, opsets):
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "versions",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid(d, v) for d, v in opsets.items()])
    model.ir_version = ir
    onnx.save(model, path)
    return path


def test_the_table_only_grows_from_one_release_to_the_next():
    releases = [tuple(int(p) for p in r[0].split(".")) for r in ORT_RELEASES]
    assert releases == sorted(releases) and len(set(releases)) == len(releases)
    for column in (1, 2, 3):
        values = [r[column] for r in ORT_RELEASES]
        assert values == sorted(values)


# Rows of ONNX Runtime's published compatibility table: the first release that reads each.
@pytest.mark.parametrize(("ir", "opsets", "expected"), [
    (7, {"": 13}, "onnxruntime>=1.6"),
    (8, {"": 17, "ai.onnx.ml": 3}, "onnxruntime>=1.12"),
    (8, {"": 15, "ai.onnx.ml": 3}, "onnxruntime>=1.12"),   # the ML opset decides
    (9, {"": 19, "ai.onnx.ml": 3}, "onnxruntime>=1.16"),   # the IR version decides
    (9, {"": 17, "ai.onnx.ml": 4}, "onnxruntime>=1.17"),
    (10, {"": 21, "ai.onnx.ml": 1}, "onnxruntime>=1.18"),
    (8, {"": 15, "com.microsoft": 1}, "onnxruntime>=1.9"),  # other domains do not move it
])
def test_pack_states_the_oldest_onnxruntime_for_the_versions(tmp_path, ir, opsets, expected):
    manifest = modelpack.pack(_model(tmp_path / "m.onnx", ir, opsets), tmp_path / "m.mpk",
                              sample=np.ones((2, 2), np.float32))
    assert manifest.runtime.requires == (expected,)
    assert modelpack.inspect(tmp_path / "m.mpk").runtime.requires == (expected,)
    with modelpack.load(tmp_path / "m.onnx") as bare:  # a bare file is packed on the fly the same way
        assert bare.manifest.runtime.requires == (expected,)


def test_past_the_table_the_installed_runtime_that_read_it_is_the_minimum(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    last = ORT_RELEASES[-1]
    path = _model(tmp_path / "new.onnx", last[3] + 1, {"": last[1] + 1})
    try:
        manifest = modelpack.pack(path, tmp_path / "new.mpk")
    except modelpack.RuntimeBackendError:
        pytest.skip(f"onnxruntime {ort.__version__} does not read IR {last[3] + 1} either")
    assert oldest_release(last[3] + 1, {"": last[1] + 1}) is None
    assert manifest.runtime.requires == (f"onnxruntime>={'.'.join(ort.__version__.split('.')[:2])}",)
    with modelpack.load(tmp_path / "new.mpk") as m:
        np.testing.assert_array_equal(m.run(np.ones((1, 2), np.float32))["y"], np.ones((1, 2), np.float32))
