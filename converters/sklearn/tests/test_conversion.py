"""What the converter records (inputs, columns, roles, classes, reference) and how it fails."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import entry_points
from typing import Any

import numpy as np
import pytest

pytest.importorskip("skl2onnx")
pd = pytest.importorskip("pandas")

import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402
import scipy.sparse  # noqa: E402
from modelpack_sklearn import SklearnConverter, converter  # noqa: E402
from sklearn.cluster import KMeans  # noqa: E402
from sklearn.compose import ColumnTransformer  # noqa: E402
from sklearn.ensemble import HistGradientBoostingClassifier, IsolationForest, RandomForestRegressor  # noqa: E402
from sklearn.linear_model import LinearRegression, LogisticRegression  # noqa: E402
from sklearn.mixture import GaussianMixture  # noqa: E402
from sklearn.pipeline import Pipeline, make_pipeline  # noqa: E402
from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, SplineTransformer, StandardScaler  # noqa: E402
from sklearn.svm import SVC  # noqa: E402

from modelpack import ConversionError, InputError, MissingColumnError, ModelpackError, ShapeError  # noqa: E402
from modelpack.plugin import find_converter  # noqa: E402


@pytest.fixture(scope="module")
def X() -> np.ndarray:
    return np.random.default_rng(0).normal(size=(80, 3))


@pytest.fixture(scope="module")
def y(X: np.ndarray) -> np.ndarray:
    return (X[:, 0] + X[:, 1] > 0).astype(int)


@pytest.fixture(scope="module")
def frame() -> Any:
    rng = np.random.default_rng(1)
    n = 80
    return pd.DataFrame({"age": rng.normal(40, 10, n), "n kids": rng.integers(0, 4, n),
                         "city": rng.choice(["Lyon", "Nantes", "Paris"], n), "plan": rng.choice(["a", "b"], n)})


@pytest.fixture(scope="module")
def frame_pipeline(frame: Any) -> Pipeline:
    pre = ColumnTransformer([("num", StandardScaler(), ["age", "n kids"]),
                             ("city", OneHotEncoder(handle_unknown="ignore"), ["city"]),
                             ("plan", OrdinalEncoder(), ["plan"])])
    target = np.where(frame["city"] == "Lyon", "yes", "no")
    return Pipeline([("pre", pre), ("clf", LogisticRegression())]).fit(frame, target)


def convert(model: Any, sample: Any, **options: Any) -> Any:
    return converter.convert(model, sample, format="onnx", options=options)


def run_onnx(data: bytes, feeds: dict[str, np.ndarray]) -> list[Any]:
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


# -- discovery -----------------------------------------------------------------------------------
def test_entry_point_names_the_converter() -> None:
    (ep,) = [ep for ep in entry_points(group="modelpack.converters") if ep.name == "sklearn"]
    assert ep.value == "modelpack_sklearn:converter"
    assert isinstance(ep.load(), SklearnConverter)


def test_registry_finds_it_for_sklearn_models(y: np.ndarray, X: np.ndarray) -> None:
    assert isinstance(find_converter(LogisticRegression(), "onnx"), SklearnConverter)
    assert isinstance(find_converter(make_pipeline(StandardScaler()), "pmml"), SklearnConverter)


def test_import_does_not_import_frameworks() -> None:
    code = ("import sys, modelpack_sklearn; "
            "print(sorted(m for m in ('sklearn', 'skl2onnx', 'onnxruntime') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# -- inputs and columns ----------------------------------------------------------------------------
def test_mixed_frame_gives_one_input_per_column(frame_pipeline: Pipeline, frame: Any) -> None:
    conv = convert(frame_pipeline, frame)
    assert [(i.name, i.dtype, i.shape) for i in conv.inputs] == [
        ("age", "float32", ("N", 1)), ("n kids", "int64", ("N", 1)),
        ("city", "string", ("N", 1)), ("plan", "string", ("N", 1))]
    columns = {c.name: c for c in conv.columns}
    assert columns["city"].categories == ("Lyon", "Nantes", "Paris")
    assert columns["plan"].categories == ("a", "b")
    assert columns["city"].optype == "categorical" and columns["age"].optype == "continuous"
    assert columns["age"].categories is None
    assert all(i.columns == (columns[i.name],) for i in conv.inputs)


def test_column_names_survive_in_the_graph(frame_pipeline: Pipeline, frame: Any) -> None:
    # skl2onnx would call the input "n_kids"; the package keeps the column's name.
    conv = convert(frame_pipeline, frame)
    feeds = {"age": frame[["age"]].to_numpy(np.float32), "n kids": frame[["n kids"]].to_numpy(np.int64),
             "city": frame[["city"]].to_numpy(dtype=object), "plan": frame[["plan"]].to_numpy(dtype=object)}
    label, proba = run_onnx(conv.model, feeds)
    np.testing.assert_array_equal(label, frame_pipeline.predict(frame))
    np.testing.assert_allclose(proba, frame_pipeline.predict_proba(frame), atol=1e-5)


def test_extra_sample_columns_are_left_out(frame_pipeline: Pipeline, frame: Any) -> None:
    conv = convert(frame_pipeline, frame.assign(unused=1.0)[["unused", *frame.columns]])
    assert [i.name for i in conv.inputs] == ["age", "n kids", "city", "plan"]


def test_numeric_frame_gives_one_matrix_with_column_names(X: np.ndarray, y: np.ndarray) -> None:
    df = pd.DataFrame(X, columns=["a", "b b", "c"])
    conv = convert(LogisticRegression().fit(df, y), df)
    (spec,) = conv.inputs
    assert (spec.name, spec.dtype, spec.shape) == ("X", "float32", ("N", 3))
    assert [c.name for c in spec.columns] == ["a", "b b", "c"]


def test_array_sample_records_feature_names_of_the_model(X: np.ndarray, y: np.ndarray) -> None:
    model = LogisticRegression().fit(pd.DataFrame(X, columns=["a", "b", "c"]), y)
    conv = convert(model, pd.DataFrame(X[:5], columns=["a", "b", "c"]))
    assert [c.name for c in conv.inputs[0].columns] == ["a", "b", "c"]
    conv = convert(LogisticRegression().fit(X, y), X)
    assert conv.inputs[0].columns is None


def test_string_array_gives_a_string_input() -> None:
    data = np.array([["a", "x"], ["b", "y"], ["a", "y"]])
    conv = convert(OneHotEncoder(sparse_output=False).fit(data), data)
    assert (conv.inputs[0].dtype, conv.task) == ("string", "transform")
    (out,) = run_onnx(conv.model, {"X": data.astype(object)})
    np.testing.assert_allclose(out, conv.reference[conv.outputs[0].name])


# -- outputs, roles, classes -------------------------------------------------------------------------
@pytest.mark.parametrize("labels", [np.array(["no", "yes"]), np.array([4, 9]), np.array([False, True])],
                         ids=["str", "int", "bool"])
def test_classes_keep_their_python_type(X: np.ndarray, y: np.ndarray, labels: np.ndarray) -> None:
    conv = convert(LogisticRegression().fit(X, labels[y]), X)
    assert conv.classes == tuple(labels.tolist())
    assert {type(c) for c in conv.classes} == {type(labels.tolist()[0])}
    assert [(o.name, o.role, o.kind) for o in conv.outputs] == [
        ("label", "label", "tensor"), ("probabilities", "probabilities", "tensor")]
    np.testing.assert_array_equal(conv.reference["label"], labels[LogisticRegression().fit(X, y).predict(X)])


def test_zipmap_is_off_inside_pipelines(X: np.ndarray, y: np.ndarray) -> None:
    conv = convert(make_pipeline(StandardScaler(), LogisticRegression()).fit(X, y), X)
    model = onnx.load_model_from_string(conv.model)
    assert "ZipMap" not in {n.op_type for n in model.graph.node}


def test_binary_scores_follow_the_graph_layout(X: np.ndarray, y: np.ndarray) -> None:
    model = SVC().fit(X, y)
    conv = convert(model, X)
    assert conv.outputs[1].role == "scores"
    _, scores = run_onnx(conv.model, {"X": X.astype(np.float32)})
    assert conv.reference["scores"].shape == scores.shape == (len(X), 2)
    np.testing.assert_allclose(conv.reference["scores"], scores, atol=1e-4)
    assert np.abs(conv.reference["scores"]).max() == pytest.approx(np.abs(model.decision_function(X)).max())


def test_multi_output_regression(X: np.ndarray) -> None:
    Y = np.column_stack([X.sum(axis=1), X[:, 0] * 2])
    conv = convert(LinearRegression().fit(X, Y), X)
    assert conv.task == "regression" and [o.role for o in conv.outputs] == ["value"]
    assert conv.outputs[0].shape == ("N", 2) and conv.reference["value"].shape == (len(X), 2)


def test_clustering_roles(X: np.ndarray) -> None:
    conv = convert(KMeans(3, n_init=2, random_state=0).fit(X), X)
    assert conv.task == "clustering" and [o.role for o in conv.outputs] == ["cluster", "distances"]
    assert conv.reference["distances"].shape == (len(X), 3)
    conv = convert(GaussianMixture(2, random_state=0).fit(X), X)
    assert [o.role for o in conv.outputs] == ["cluster", "probabilities"]


def test_transformer_has_no_roles_and_a_named_reference(X: np.ndarray) -> None:
    conv = convert(StandardScaler().fit(X), X)
    assert conv.task == "transform" and conv.classes is None
    assert [o.role for o in conv.outputs] == [None]
    np.testing.assert_allclose(conv.reference[conv.outputs[0].name], StandardScaler().fit(X).transform(X))


def test_outlier_detector_is_task_other(X: np.ndarray) -> None:
    conv = convert(IsolationForest(n_estimators=5, random_state=0).fit(X), X)
    assert conv.task == "other" and [o.role for o in conv.outputs] == ["label", "scores"]


def test_passthrough_steps_are_dropped(X: np.ndarray, y: np.ndarray) -> None:
    model = Pipeline([("scale", "passthrough"), ("clf", LogisticRegression())]).fit(X, y)
    label, _ = run_onnx(convert(model, X).model, {"X": X.astype(np.float32)})
    np.testing.assert_array_equal(label, model.predict(X))


def test_source_names_framework_and_converter(X: np.ndarray, y: np.ndarray) -> None:
    import skl2onnx
    import sklearn

    source = convert(LogisticRegression().fit(X, y), X).source
    assert (source.framework, source.framework_version) == ("scikit-learn", sklearn.__version__)
    assert (source.converter, source.converter_version) == ("skl2onnx", skl2onnx.__version__)
    assert source.model_class == "sklearn.linear_model._logistic.LogisticRegression"


# -- precision and options ------------------------------------------------------------------------------
def test_float64_export(X: np.ndarray) -> None:
    target = X @ np.array([1e-3, 1.0, 1e3])
    conv = convert(LinearRegression().fit(X, target), X, dtype="float64")
    assert conv.dtype == "float64" and conv.inputs[0].dtype == "float64"
    assert conv.outputs[0].dtype == "float64"
    (out,) = run_onnx(conv.model, {"X": X})
    np.testing.assert_allclose(out.ravel(), conv.reference["value"], rtol=1e-12)


def test_float64_where_onnxruntime_lacks_the_operator(X: np.ndarray) -> None:
    model = RandomForestRegressor(3, max_depth=3, random_state=0).fit(X, X[:, 0])
    with pytest.raises(ConversionError, match="dtype='float32'"):
        convert(model, X, dtype="float64")


def test_target_opset_option(X: np.ndarray, y: np.ndarray) -> None:
    conv = convert(LogisticRegression().fit(X, y), X, target_opset={"": 15, "ai.onnx.ml": 2})
    opsets = {o.domain: o.version for o in onnx.load_model_from_string(conv.model).opset_import}
    assert opsets[""] <= 15 and opsets["ai.onnx.ml"] <= 2


def test_skl2onnx_options_pass_through(X: np.ndarray, y: np.ndarray) -> None:
    model = LogisticRegression().fit(X, y)
    conv = convert(model, X, skl2onnx_options={id(model): {"zipmap": True}})
    assert "ZipMap" in {n.op_type for n in onnx.load_model_from_string(conv.model).graph.node}


@pytest.mark.parametrize(("options", "match"), [
    ({"dtype": "float16"}, "float16"),
    ({"zipmap": False}, "unknown option"),
    ({"target_opset": "21"}, "target_opset"),
    ({"skl2onnx_options": [1]}, "skl2onnx_options"),
])
def test_bad_options(X: np.ndarray, y: np.ndarray, options: dict[str, Any], match: str) -> None:
    with pytest.raises(ConversionError, match=match):
        convert(LogisticRegression().fit(X, y), X, **options)


def test_unknown_format(X: np.ndarray, y: np.ndarray) -> None:
    with pytest.raises(ConversionError, match="format='onnx'"):
        converter.convert(LogisticRegression().fit(X, y), X, format="tflite", options={})


# -- models skl2onnx cannot convert ------------------------------------------------------------------------
def test_an_unconvertible_step_names_the_step_and_the_ways_out(X: np.ndarray, y: np.ndarray) -> None:
    model = Pipeline([("scale", StandardScaler()), ("splines", SplineTransformer()), ("clf", LogisticRegression())])
    model.fit(X, y)
    with pytest.raises(ConversionError) as caught:
        convert(model, X)
    message = str(caught.value)
    assert "Pipeline step 'splines' (SplineTransformer)" in message
    assert "format='pmml'" in message and "update_registered_converter" in message


def test_hist_gradient_boosting_converts_with_scikit_learns_answers(X: np.ndarray, y: np.ndarray) -> None:
    model = Pipeline([("scale", StandardScaler()), ("hgb", HistGradientBoostingClassifier(max_iter=3))])
    model.fit(X, y)
    label, proba = run_onnx(convert(model, X).model, {"X": X.astype(np.float32)})
    np.testing.assert_array_equal(label, model.predict(X))
    np.testing.assert_allclose(proba, model.predict_proba(X), atol=1e-5)


class HomeMadeScaler(StandardScaler):
    pass


def test_class_without_converter(X: np.ndarray, y: np.ndarray) -> None:
    model = Pipeline([("mine", HomeMadeScaler()), ("clf", LogisticRegression())]).fit(X, y)
    with pytest.raises(ConversionError, match=r"no converter for Pipeline step 'mine' \(HomeMadeScaler\)"):
        convert(model, X)


def test_not_fitted(X: np.ndarray) -> None:
    with pytest.raises(ConversionError, match="not fitted.*fit"):
        convert(LogisticRegression(), X)


def test_not_an_estimator(X: np.ndarray) -> None:
    with pytest.raises(ModelpackError):
        convert(object(), X)


# -- bad samples --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("sample", "error", "match"), [
    (None, InputError, "no sample"),
    (np.zeros(3), ShapeError, r"reshape\(1, -1\)"),
    (np.zeros((4, 5)), ShapeError, "fitted on 3 features"),
    (np.zeros((0, 3)), InputError, "no rows"),
    (scipy.sparse.csr_matrix(np.eye(3)), InputError, "toarray"),
    (np.array([[1.0, "a", 2.0]], dtype=object), InputError, "neither all numbers nor all strings"),
], ids=["none", "1-d", "width", "empty", "sparse", "mixed-object"])
def test_bad_array_samples(X: np.ndarray, y: np.ndarray, sample: Any, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        convert(LogisticRegression().fit(X, y), sample)


def test_frame_missing_a_column(frame_pipeline: Pipeline, frame: Any) -> None:
    with pytest.raises(MissingColumnError, match=r"lacks column\(s\) \['city'\]"):
        convert(frame_pipeline, frame.drop(columns="city"))


def test_sample_the_model_cannot_predict(frame: Any) -> None:
    model = make_pipeline(OneHotEncoder(), LogisticRegression()).fit(frame[["city"]], frame["plan"])
    with pytest.raises(InputError, match="Found unknown categories") as info:
        convert(model, pd.DataFrame({"city": ["Berlin"]}))
    assert info.value.__cause__ is not None


def test_frame_with_integer_column_names_and_strings(frame: Any) -> None:
    unnamed = frame.set_axis(range(4), axis=1)
    with pytest.raises(InputError, match="string column names"):
        convert(make_pipeline(OneHotEncoder()).fit(frame[["city"]]), unnamed)
