"""The cut around a tree ensemble: before + ensemble + after computes what the whole graph does.

Each part is run by ONNX Runtime here (the ensemble node as a model of its own), so
a wrong cut, a missing carried value or a lost initializer shows as a different output.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")
sklearn = pytest.importorskip("sklearn")
skl2onnx = pytest.importorskip("skl2onnx")

from sklearn.compose import ColumnTransformer  # noqa: E402
from sklearn.datasets import load_iris  # noqa: E402
from sklearn.ensemble import GradientBoostingClassifier, RandomForestRegressor  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import OneHotEncoder, StandardScaler  # noqa: E402

from modelpack._runtime.trees.split import NotSplittable, split  # noqa: E402

OPSETS = {"": 17, "ai.onnx.ml": 3}


def _run_parts(model: Any, feeds: dict[str, Any]) -> list[Any]:
    from onnx import helper

    cut = split(model)
    values = dict(feeds)
    if cut.before:
        session = ort.InferenceSession(cut.before)
        values.update(zip(cut.before_outputs, session.run(list(cut.before_outputs),
                                                          {k: values[k] for k in cut.before_inputs}), strict=True))
    element = helper.np_dtype_to_tensor_dtype(values[cut.tree_input].dtype)
    graph = helper.make_graph([cut.node], "ensemble", [helper.make_tensor_value_info(cut.tree_input, element, None)],
                              [helper.make_empty_tensor_value_info(o) for o in cut.tree_outputs])
    alone = helper.make_model(graph, opset_imports=list(model.opset_import))
    alone.ir_version = model.ir_version
    tree_values = ort.InferenceSession(alone.SerializeToString()).run(None, {cut.tree_input: values[cut.tree_input]})
    values.update(zip(cut.tree_outputs, tree_values, strict=True))
    if cut.after:
        session = ort.InferenceSession(cut.after)
        values.update(zip(cut.after_outputs, session.run(list(cut.after_outputs),
                                                         {k: values[k] for k in cut.after_inputs}), strict=True))
    return [values[name] for name in cut.outputs]


def _assert_same(model: Any, feeds: dict[str, Any]) -> None:
    whole = ort.InferenceSession(model.SerializeToString()).run(None, feeds)
    parts = _run_parts(model, feeds)
    assert len(whole) == len(parts)
    for a, b in zip(whole, parts, strict=True):
        if isinstance(a, np.ndarray):
            np.testing.assert_array_equal(a, b)
        else:
            assert a == b  # ZipMap: a list of dicts


@pytest.fixture(scope="module")
def iris() -> tuple[np.ndarray, np.ndarray]:
    X, y = load_iris(return_X_y=True)
    return X.astype(np.float32), y


@pytest.mark.parametrize("zipmap", [True, False])
def test_scaler_before_and_zipmap_after(iris, zipmap: bool) -> None:
    X, y = iris
    model = make_pipeline(StandardScaler(), GradientBoostingClassifier(n_estimators=5)).fit(X, y)
    options = None if zipmap else {id(model[-1]): {"zipmap": False}}
    onx = skl2onnx.to_onnx(model, X[:1], options=options, target_opset=OPSETS)
    assert split(onx).before is not None and split(onx).after is not None
    _assert_same(onx, {"X": X})


def test_a_bare_ensemble_has_no_parts(iris) -> None:
    X, y = iris
    onx = skl2onnx.to_onnx(RandomForestRegressor(n_estimators=3).fit(X, y), X[:1], target_opset=OPSETS)
    cut = split(onx)
    assert cut.before is None and cut.after is None and cut.outputs == tuple(cut.tree_outputs)
    _assert_same(onx, {"X": X})


def test_column_transformer_over_several_inputs(iris) -> None:
    pd = pytest.importorskip("pandas")
    X, y = iris
    frame = pd.DataFrame({"a": X[:, 0], "b": X[:, 1], "kind": np.where(y == 0, "x", "y").astype(object)})
    model = make_pipeline(ColumnTransformer([("num", StandardScaler(), ["a", "b"]),
                                             ("cat", OneHotEncoder(), ["kind"])]),
                          GradientBoostingClassifier(n_estimators=5)).fit(frame, y)
    onx = skl2onnx.to_onnx(model, frame[:1], options={id(model[-1]): {"zipmap": False}}, target_opset=OPSETS)
    feeds = {"a": X[:, :1], "b": X[:, 1:2], "kind": frame[["kind"]].to_numpy()}
    _assert_same(onx, feeds)


def test_a_graph_without_an_ensemble_is_not_splittable(iris) -> None:
    X, _ = iris
    onx = skl2onnx.to_onnx(StandardScaler().fit(X), X[:1], target_opset=OPSETS)
    with pytest.raises(NotSplittable, match="no tree ensemble"):
        split(onx)


def test_two_ensembles_are_not_splittable(iris) -> None:
    from sklearn.ensemble import VotingRegressor

    X, y = iris
    model = VotingRegressor([("a", RandomForestRegressor(n_estimators=2)),
                             ("b", RandomForestRegressor(n_estimators=2))]).fit(X, y)
    onx = skl2onnx.to_onnx(model, X[:1], target_opset=OPSETS)
    with pytest.raises(NotSplittable, match="2 tree ensemble operators"):
        split(onx)
