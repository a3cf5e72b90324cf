"""Packages for the cluster exports and batch scoring: linear models written as ONNX-ML graphs.

The models are built with onnx.helper in milliseconds and their outputs have a closed
form (softmax of X @ W.T + b), so tests compare against numpy, not against themselves.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import modelpack
from modelpack._package import write_package
from modelpack.manifest import Manifest, ModelInfo, TensorSpec

CORPORA = Path(__file__).resolve().parents[1] / "data" / "corpora"
FEATURES = 4
_W = np.array([[1.0, -0.5, 0.25, 0.0], [-1.0, 0.5, 0.0, 0.75], [0.5, 0.5, -1.0, -0.25]])
_B = np.array([0.1, -0.2, 0.05])


@dataclass(frozen=True)
class Linear:
    """A packaged linear model and its closed-form outputs."""

    path: Path
    classes: tuple | None

    def scores(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(X, dtype=np.float64) @ _W.T + _B

    def proba(self, X: np.ndarray) -> np.ndarray:
        z = self.scores(X)
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    def labels(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(self.classes)[np.argmax(self.scores(X), axis=1)]


def _save(model: onnx.ModelProto, folder: Path, name: str) -> Path:
    model.ir_version = 9
    onnx.checker.check_model(model)
    onnx.save(model, folder / f"{name}.onnx")
    modelpack.pack(folder / f"{name}.onnx", folder / f"{name}.mpk", name=name, version="1.2.0")
    return folder / f"{name}.mpk"


def _classifier(folder: Path, name: str, classes: tuple, zipmap: bool, named: bool = False) -> Path:
    x = [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["N", FEATURES])]
    labels = ({"classlabels_strings": list(classes)} if isinstance(classes[0], str)
              else {"classlabels_ints": list(classes)})
    label_type = TensorProto.STRING if isinstance(classes[0], str) else TensorProto.INT64
    nodes = [helper.make_node("LinearClassifier", ["X"], ["label", "probabilities"], domain="ai.onnx.ml",
                              coefficients=_W.ravel().tolist(), intercepts=_B.tolist(),
                              post_transform="SOFTMAX", multi_class=1, **labels)]
    outputs = [helper.make_tensor_value_info("label", label_type, ["N"])]
    if named:  # one [N, 1] input per column, as skl2onnx makes from a DataFrame
        x = [helper.make_tensor_value_info(f"f{i}", TensorProto.FLOAT, ["N", 1]) for i in range(FEATURES)]
        nodes.insert(0, helper.make_node("Concat", [f"f{i}" for i in range(FEATURES)], ["X"], axis=1))
    if zipmap:
        nodes[-1].output[1] = "scores"
        nodes.append(helper.make_node("ZipMap", ["scores"], ["output_probability"], domain="ai.onnx.ml", **labels))
        key = TensorProto.STRING if isinstance(classes[0], str) else TensorProto.INT64
        outputs.append(helper.make_value_info("output_probability", helper.make_sequence_type_proto(
            helper.make_map_type_proto(key, helper.make_tensor_type_proto(TensorProto.FLOAT, [])))))
    else:
        outputs.append(helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", 3]))
    graph = helper.make_graph(nodes, name, x, outputs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                    helper.make_opsetid("ai.onnx.ml", 3)])
    return _save(model, folder, name)


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cluster-models")


@pytest.fixture(scope="session")
def classifier(models_dir: Path) -> Linear:
    """Three int64 classes, labels and an [N, 3] probability tensor."""
    return Linear(_classifier(models_dir, "iris", (10, 20, 30), zipmap=False), (10, 20, 30))


@pytest.fixture(scope="session")
def named_classifier(models_dir: Path) -> Linear:
    """The int64 classifier with one input per feature, f0..f3, matched by name."""
    return Linear(_classifier(models_dir, "named", (10, 20, 30), zipmap=False, named=True), (10, 20, 30))


@pytest.fixture(scope="session")
def zipmap_classifier(models_dir: Path) -> Linear:
    """Three string classes; probabilities as a ZipMap (a list of dicts)."""
    classes = ("setosa", "versicolor", "virginica")
    return Linear(_classifier(models_dir, "flowers", classes, zipmap=True), classes)


@pytest.fixture(scope="session")
def regressor(models_dir: Path) -> Linear:
    """Three targets: X @ W.T + b as an [N, 3] float tensor."""
    node = helper.make_node("LinearRegressor", ["X"], ["variable"], domain="ai.onnx.ml",
                            coefficients=_W.ravel().tolist(), intercepts=_B.tolist(), targets=3)
    graph = helper.make_graph([node], "reg", [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["N", FEATURES])],
                              [helper.make_tensor_value_info("variable", TensorProto.FLOAT, ["N", 3])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                    helper.make_opsetid("ai.onnx.ml", 3)])
    return Linear(_save(model, models_dir, "reg"), None)


PMML = (b'<?xml version="1.0"?><PMML version="4.4" xmlns="http://www.dmg.org/PMML-4_4"><Header/>'
        b'<DataDictionary><DataField name="x" optype="continuous" dataType="double"/>'
        b'<DataField name="y" optype="continuous" dataType="double"/></DataDictionary>'
        b'<RegressionModel functionName="regression"><MiningSchema><MiningField name="x"/>'
        b'<MiningField name="y" usageType="target"/></MiningSchema><RegressionTable intercept="1">'
        b'<NumericPredictor name="x" coefficient="2"/></RegressionTable></RegressionModel></PMML>')


@pytest.fixture(scope="session")
def pmml_package(models_dir: Path) -> Path:
    """A PMML regression (y = 2x + 1) in a package written directly, no PMML runtime needed."""
    manifest = Manifest(name="Linear_PMML", task="regression", version="0.3.0",
                        model=ModelInfo(format="pmml", file="model.pmml", pmml_version="4.4"),
                        inputs=(TensorSpec("x", "float64", ("N",)),),
                        outputs=(TensorSpec("y", "float64", ("N",), role="value"),))
    write_package(models_dir / "lin.mpk", manifest, {"model.pmml": PMML})
    return models_dir / "lin.mpk"


@pytest.fixture(scope="session")
def features() -> np.ndarray:
    return np.random.default_rng(7).normal(size=(50, FEATURES)).astype(np.float32)
