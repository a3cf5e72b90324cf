"""onnxruntime's refusals, told apart: each case gets a message and a fix of its own."""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import modelpack

pytest.importorskip("onnxruntime")

_value = helper.make_tensor_value_info


def _save(path, nodes, inputs, outputs, *, initializers=(), opsets=(("", 17),)):
    graph = helper.make_graph(nodes, "case", inputs, outputs, initializer=list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid(d, v) for d, v in opsets])
    model.ir_version = 8
    onnx.save(model, path)
    return path


def _one(op, dtype=TensorProto.FLOAT, **kwargs):
    return ([helper.make_node(op, ["x"], ["y"], **kwargs)], [_value("x", dtype, ["N", 2])],
            [_value("y", dtype, ["N", 2])])


CASES = {
    # name: (graph, opsets, error class, words of the message, words of the fix)
    "operator no opset defines": (_one("FooBar"), (("", 17),), modelpack.PackageError,
                                  "operator FooBar, which opset 17", "standard ONNX operators"),
    "custom operator": (_one("MyOp", domain="my.ops"), (("", 17), ("my.ops", 1)), modelpack.RuntimeBackendError,
                        "custom operator MyOp of domain my.ops", "without custom operators"),
    "type the operator does not take": (_one("Softmax", TensorProto.INT8), (("", 17),), modelpack.PackageError,
                                        "gives operator Softmax a tensor(int8) input", "malformed"),
    "no kernel for the type": (_one("Softmax", TensorProto.BFLOAT16), (("", 17),), modelpack.RuntimeBackendError,
                               "has no implementation of", "float32 rather than"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_load_names_the_cause_and_a_fix_that_fits(tmp_path, case):
    (nodes, inputs, outputs), opsets, error, message, fix = CASES[case]
    path = _save(tmp_path / "m.onnx", nodes, inputs, outputs, opsets=opsets)
    with pytest.raises(error) as caught:
        modelpack.load(path)
    assert message in str(caught.value) and fix in caught.value.fix
    assert "older opset" not in caught.value.fix  # the old catch-all advice, wrong for each of these


def test_a_node_failing_on_the_inputs_names_the_node_and_points_at_the_inputs(tmp_path):
    shape = helper.make_tensor("shape", TensorProto.INT64, [2], [3, 3])
    path = _save(tmp_path / "m.onnx", [helper.make_node("Reshape", ["x", "shape"], ["y"])],
                 [_value("x", TensorProto.FLOAT, ["N", 2])], [_value("y", TensorProto.FLOAT, None)],
                 initializers=[shape])
    with modelpack.load(path) as m:
        with pytest.raises(modelpack.RuntimeBackendError) as caught:
            m.run(np.ones((2, 2), np.float32))
    assert "failed in its Reshape node" in str(caught.value) and "requested shape" in str(caught.value)
    assert "Model.inputs" in caught.value.fix
