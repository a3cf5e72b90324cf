"""Editing converted ONNX graphs: rename_values and declare_signature."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")

from onnx import TensorProto, helper  # noqa: E402

from modelpack._formats.onnx import describe  # noqa: E402
from modelpack._formats.onnx_edits import declare_signature, rename_values  # noqa: E402
from modelpack.errors import ConversionError  # noqa: E402
from modelpack.manifest import TensorSpec  # noqa: E402


def _model() -> Any:
    """X -> Relu -> hidden -> (If: Neg of hidden, read from the outer graph) -> variable."""
    def branch(name: str, op: str) -> Any:
        return helper.make_graph([helper.make_node(op, ["hidden"], [f"{name}_out"])], name, [],
                                 [helper.make_tensor_value_info(f"{name}_out", TensorProto.FLOAT, None)])

    nodes = [helper.make_node("Relu", ["X"], ["hidden"]),
             helper.make_node("ReduceMax", ["hidden"], ["peak"], keepdims=0),
             helper.make_node("Cast", ["peak"], ["positive"], to=TensorProto.BOOL),
             helper.make_node("If", ["positive"], ["variable"], then_branch=branch("then", "Neg"),
                              else_branch=branch("else", "Identity"))]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, 3])],
                              [helper.make_tensor_value_info("variable", TensorProto.FLOAT, [None, 3])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _run(model: Any, X: np.ndarray) -> list[np.ndarray]:
    ort = pytest.importorskip("onnxruntime")
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return list(session.run(None, {session.get_inputs()[0].name: X}))


def _dims(value: Any) -> list[Any]:
    return [d.dim_param or (d.dim_value if d.HasField("dim_value") else None)
            for d in value.type.tensor_type.shape.dim]


def test_rename_reaches_nodes_outputs_and_subgraphs() -> None:
    model = _model()
    X = np.array([[1.0, -2.0, 3.0]], dtype=np.float32)
    before = _run(model, X)
    rename_values(model.graph, {"X": "features", "hidden": "relu", "variable": "value"})
    onnx.checker.check_model(model)
    assert [i.name for i in model.graph.input] == ["features"]
    assert [o.name for o in model.graph.output] == ["value"]
    then_branch = next(a.g for a in model.graph.node[3].attribute if a.name == "then_branch")
    assert list(then_branch.node[0].input) == ["relu"]
    np.testing.assert_array_equal(_run(model, X)[0], before[0])


def test_rename_keeps_graph_outputs_when_asked() -> None:
    model = _model()
    rename_values(model.graph, {"variable": "raw"}, graph_outputs=False)
    model.graph.node.append(helper.make_node("Exp", ["raw"], ["variable"]))
    onnx.checker.check_model(model)
    X = np.array([[1.0, 0.5, 0.0]], dtype=np.float32)
    np.testing.assert_allclose(_run(model, X)[0], np.exp(-np.maximum(X, 0)), rtol=1e-6)


def test_empty_rename_changes_nothing() -> None:
    model = _model()
    data = model.SerializeToString()
    rename_values(model.graph, {})
    assert model.SerializeToString() == data


def test_declare_signature_renames_and_shapes() -> None:
    model = _model()
    data = declare_signature(model, [TensorSpec("X", "float32", ("N", 3)),
                                     TensorSpec("value", "float32", ("N", None))],
                             renames={"variable": "value"})
    desc = describe(data, name="m.onnx")
    assert [(s.name, s.shape) for s in desc.inputs] == [("X", ("N", 3))]
    assert [(s.name, s.shape) for s in desc.outputs] == [("value", ("N", None))]
    assert _dims(model.graph.output[0]) == ["N", None]


def test_a_spec_without_shape_leaves_the_graph_shape() -> None:
    model = _model()
    declare_signature(model, [TensorSpec("X", "float32", None), TensorSpec("variable", "float32", ("N", 3))])
    assert _dims(model.graph.input[0]) == [None, 3]


@pytest.mark.parametrize("specs, renames, reported", [
    ([("X", ("N", 3))], {}, "undeclared: ['variable']"),
    ([("X", ("N", 3)), ("variable", ("N", 3)), ("label", ("N",))], {}, "declared but absent: ['label']"),
    ([("X", ("N", 3)), ("value", ("N", 3))], {"output": "value"}, "renamed but absent: ['output']"),
])
def test_declare_signature_refuses_a_signature_the_graph_lacks(specs: list[Any], renames: dict[str, str],
                                                                reported: str) -> None:
    model = _model()
    before = model.SerializeToString()
    with pytest.raises(ConversionError, match="does not have the declared signature") as info:
        declare_signature(model, [TensorSpec(n, "float32", s) for n, s in specs], renames=renames)
    assert reported in str(info.value)
    assert str(info.value).endswith("the conversion library changed the names it writes.")
    assert model.SerializeToString() == before  # checked before any edit
