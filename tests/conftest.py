"""Fixtures shared by the core tests: tiny real ONNX models built in milliseconds."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

ROOT = Path(__file__).resolve().parents[1]
CORPORA = ROOT / "tests" / "data" / "corpora"  # made by others; see its README.md


def save_model(path: Path, nodes: list, inputs: list, outputs: list, *, initializers: list | None = None,
               opset: int = 17, ml_opset: int | None = None) -> Path:
    opsets = [helper.make_opsetid("", opset)]
    if ml_opset:
        opsets.append(helper.make_opsetid("ai.onnx.ml", ml_opset))
    graph = helper.make_graph(nodes, "test", inputs, outputs, initializer=initializers or [])
    model = helper.make_model(graph, opset_imports=opsets, producer_name="tests")
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


@pytest.fixture
def add_one(tmp_path: Path) -> Path:
    """Y = X + 1 over float32 [N, 4]."""
    one = helper.make_tensor("one", TensorProto.FLOAT, [1], [1.0])
    return save_model(tmp_path / "add_one.onnx", [helper.make_node("Add", ["X", "one"], ["Y"])],
                      [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["N", 4])],
                      [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["N", 4])],
                      initializers=[one])


@pytest.fixture
def multi_io(tmp_path: Path) -> Path:
    """Three inputs of three dtypes, three outputs: a float sum, a string echo, a bool test."""
    zero = helper.make_tensor("zero", TensorProto.INT64, [1], [0])
    axes = helper.make_tensor("axes", TensorProto.INT64, [1], [1])
    nodes = [
        helper.make_node("ReduceSum", ["num", "axes"], ["total"], keepdims=1),
        helper.make_node("Identity", ["word"], ["echo"]),
        helper.make_node("Greater", ["count", "zero"], ["positive"]),
    ]
    return save_model(
        tmp_path / "multi.onnx", nodes,
        [helper.make_tensor_value_info("num", TensorProto.FLOAT, ["N", 2]),
         helper.make_tensor_value_info("word", TensorProto.STRING, ["N", 1]),
         helper.make_tensor_value_info("count", TensorProto.INT64, ["N", 1])],
        [helper.make_tensor_value_info("total", TensorProto.FLOAT, ["N", 1]),
         helper.make_tensor_value_info("echo", TensorProto.STRING, ["N", 1]),
         helper.make_tensor_value_info("positive", TensorProto.BOOL, ["N", 1])],
        initializers=[zero, axes], opset=18)


@pytest.fixture
def typed_identity(tmp_path: Path) -> Callable[[int, str], Path]:
    """Factory: an Identity model over one input of the given ONNX element type."""
    def make(elem_type: int, name: str = "x") -> Path:
        return save_model(tmp_path / f"id_{elem_type}.onnx", [helper.make_node("Identity", [name], ["y"])],
                          [helper.make_tensor_value_info(name, elem_type, ["N", 3])],
                          [helper.make_tensor_value_info("y", elem_type, ["N", 3])])
    return make


@pytest.fixture(scope="session")
def iris() -> tuple[np.ndarray, np.ndarray]:
    sklearn_datasets = pytest.importorskip("sklearn.datasets")
    X, y = sklearn_datasets.load_iris(return_X_y=True)
    return X, y


@pytest.fixture
def iris_onnx(tmp_path: Path, iris: tuple[np.ndarray, np.ndarray]) -> Callable[[bool], tuple[Path, object]]:
    """Factory: a logistic regression on iris through skl2onnx, with or without ZipMap."""
    skl2onnx = pytest.importorskip("skl2onnx")
    from sklearn.linear_model import LogisticRegression

    X, y = iris
    clf = LogisticRegression(max_iter=1000).fit(X, y)

    def make(zipmap: bool) -> tuple[Path, object]:
        onx = skl2onnx.to_onnx(clf, X[:1].astype(np.float32), options={id(clf): {"zipmap": zipmap}})
        path = tmp_path / f"iris_{zipmap}.onnx"
        path.write_bytes(onx.SerializeToString())
        return path, clf
    return make


@pytest.fixture(scope="module")
def pmml_java() -> None:
    """Skip, saying why, where the PMML evaluator (pypmml and a JVM) cannot run."""
    pytest.importorskip("pypmml", reason="pypmml is not installed: pip install 'modelpack[pmml]'")
    from modelpack.testing import missing_java

    reason = missing_java()
    if reason:
        pytest.skip(f"no JVM for PMML here: {reason}")
