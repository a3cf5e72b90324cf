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
    x = values[cut.tree_input].T if cut.transposed else values[cut.tree_input]
    element = helper.np_dtype_to_tensor_dtype(x.dtype)
    graph = helper.make_graph([cut.node], "ensemble", [helper.make_tensor_value_info(cut.node.input[0], element, None)],
                              [helper.make_empty_tensor_value_info(o) for o in cut.tree_outputs])
    alone = helper.make_model(graph, opset_imports=list(model.opset_import))
    alone.ir_version = model.ir_version
    tree_values = ort.InferenceSession(alone.SerializeToString()).run(None, {cut.node.input[0]: np.ascontiguousarray(x)})
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


def _through_transpose(onx: Any, *, stacked: bool, shared: bool = False) -> Any:
    """``onx`` reading its ensemble's input as the Transpose of a [features, N] matrix: the
    graph input itself, or (``stacked``) its columns stacked as rows; with ``shared``, another
    output reads the Transpose's output too."""
    from onnx import TensorProto, helper

    graph = onx.graph
    tree = next(n for n in graph.node if n.op_type.startswith("TreeEnsemble"))
    rows = "XT"
    nodes: list[Any] = []
    if stacked:
        nodes += [helper.make_node("Split", ["XT"], [f"c{j}" for j in range(4)], axis=0, num_outputs=4),
                  helper.make_node("Concat", [f"c{j}" for j in range(4)], ["rows"], axis=0)]
        rows = "rows"
    nodes.append(helper.make_node("Transpose", [rows], [tree.input[0]], perm=[1, 0]))
    outputs = list(graph.output)
    if shared:
        nodes.append(helper.make_node("Identity", [tree.input[0]], ["seen"]))
        outputs.append(helper.make_tensor_value_info("seen", TensorProto.FLOAT, None))
    new = helper.make_graph(nodes + list(graph.node), "transposed",
                            [helper.make_tensor_value_info("XT", TensorProto.FLOAT, [4, None])], outputs,
                            list(graph.initializer))
    model = helper.make_model(new, opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid("ai.onnx.ml", 3)])
    model.ir_version = onx.ir_version
    return model


@pytest.mark.parametrize("stacked", [True, False])
def test_an_input_read_through_a_transpose_is_read_as_is(iris, stacked: bool) -> None:
    X, y = iris
    onx = skl2onnx.to_onnx(RandomForestRegressor(n_estimators=3).fit(X, y), X[:1], target_opset=OPSETS)
    model = _through_transpose(onx, stacked=stacked)
    cut = split(model)
    assert cut.transposed and cut.tree_input == ("rows" if stacked else "XT")
    assert (cut.before is not None) == stacked and cut.after is None
    _assert_same(model, {"XT": np.ascontiguousarray(X.T)})


def test_a_transpose_read_elsewhere_too_stays_before_the_ensemble(iris) -> None:
    X, y = iris
    onx = skl2onnx.to_onnx(RandomForestRegressor(n_estimators=3).fit(X, y), X[:1], target_opset=OPSETS)
    model = _through_transpose(onx, stacked=True, shared=True)
    cut = split(model)
    assert not cut.transposed and cut.tree_input == cut.node.input[0]
    _assert_same(model, {"XT": np.ascontiguousarray(X.T)})


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
