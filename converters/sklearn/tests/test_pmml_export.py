"""scikit-learn to PMML through sklearn2pmml: fidelity, agreement with ONNX, and failures.

Each conversion starts Java (about 5 s here), so the default run keeps two of
them; the model zoo is marked slow.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("sklearn2pmml", reason="sklearn2pmml is not installed: pip install sklearn2pmml")
pytest.importorskip("pypmml", reason="pypmml is not installed: pip install 'modelpack[pmml]'")
pd = pytest.importorskip("pandas")

from modelpack_sklearn.pmml import convert_pmml  # noqa: E402
from sklearn.datasets import load_iris  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

import modelpack  # noqa: E402
from modelpack import ConversionError  # noqa: E402
from modelpack.testing import missing_java  # noqa: E402


@pytest.fixture(scope="module")
def java() -> None:
    reason = missing_java()
    if reason:
        pytest.skip(f"sklearn2pmml needs Java: {reason}")


@pytest.fixture(scope="module")
def iris() -> tuple[Any, Any]:
    X, y = load_iris(return_X_y=True, as_frame=True)
    return X, y


def export_both(model: Any, sample: Any, folder: Path) -> tuple[Any, Any]:
    modelpack.export(model, folder / "m.pmml.mpk", sample=sample, format="pmml")
    modelpack.export(model, folder / "m.onnx.mpk", sample=sample, format="onnx")
    return modelpack.load(folder / "m.pmml.mpk"), modelpack.load(folder / "m.onnx.mpk")


def test_pmml_and_onnx_exports_predict_the_same(java: None, iris: tuple[Any, Any], tmp_path: Path) -> None:
    X, y = iris
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(X, y)
    pmml, onnx = export_both(clf, X, tmp_path)
    with pmml, onnx:
        manifest = pmml.manifest
        assert (manifest.model.format, manifest.task, manifest.classes) == ("pmml", "classification", (0, 1, 2))
        assert manifest.source.converter == "sklearn2pmml" and manifest.fidelity.passed
        assert manifest.fidelity.dtype == "float64"  # PMML is scored in double precision
        assert [i.name for i in pmml.inputs] == list(X.columns)
        np.testing.assert_array_equal(pmml.predict(X), onnx.predict(X))
        np.testing.assert_array_equal(pmml.predict(X), clf.predict(X))
        matrix = X.to_numpy()  # the 2-D array the ONNX twin takes, the PMML package takes too
        np.testing.assert_array_equal(pmml.predict(matrix), onnx.predict(matrix))
        np.testing.assert_allclose(pmml.predict_proba(X), onnx.predict_proba(X), atol=1e-5)
        np.testing.assert_allclose(pmml.predict_proba(X), clf.predict_proba(X), atol=1e-9)


def test_an_unsupported_step_is_named_without_a_stack_trace(java: None, iris: tuple[Any, Any]) -> None:
    from sklearn.semi_supervised import LabelSpreading

    X, y = iris
    model = make_pipeline(StandardScaler(), LabelSpreading()).fit(X, y)
    with pytest.raises(ConversionError) as caught:
        convert_pmml(model, X, {})
    message = str(caught.value)
    assert "Pipeline step 'labelspreading' (LabelSpreading)" in message
    assert "not a supported" in message and "format='onnx'" in message
    assert "\tat " not in message and "Stack trace" not in message
    assert caught.value.__cause__ is not None


@pytest.mark.parametrize(("options", "match"), [({"zipmap": False}, "unknown PMML export option"),
                                                ({"dtype": "float32"}, "double precision")])
def test_bad_options_are_refused_before_java_runs(iris: tuple[Any, Any], options: dict[str, Any],
                                                  match: str) -> None:
    X, y = iris
    with pytest.raises(ConversionError, match=match):
        convert_pmml(LogisticRegression(max_iter=300).fit(X, y), X, options)


def test_an_unfitted_model_is_refused(iris: tuple[Any, Any]) -> None:
    with pytest.raises(ConversionError, match="not fitted"):
        convert_pmml(LogisticRegression(), iris[0], {})


# -- the model zoo (slow: one Java run each) ------------------------------------------------------
def _zoo() -> list[Any]:
    from sklearn.ensemble import GradientBoostingRegressor, RandomForestClassifier
    from sklearn.tree import DecisionTreeClassifier

    return [
        pytest.param(RandomForestClassifier(n_estimators=5, max_depth=4, random_state=0), "species", id="forest"),
        pytest.param(GradientBoostingRegressor(n_estimators=10, random_state=0), "value", id="gbm-regressor"),
        pytest.param(DecisionTreeClassifier(max_depth=3, random_state=0), "array", id="tree-on-array"),
    ]


@pytest.mark.slow
@pytest.mark.parametrize(("model", "flavour"), _zoo())
def test_model_zoo(java: None, iris: tuple[Any, Any], tmp_path: Path, model: Any, flavour: str) -> None:
    X, y = iris
    if flavour == "species":
        y = np.array(["setosa", "versicolor", "virginica"], dtype=object)[y]
    if flavour == "value":
        X, y = X.drop(columns="petal width (cm)"), X["petal width (cm)"]
    sample: Any = X.to_numpy() if flavour == "array" else X
    model.fit(sample, y)
    manifest = modelpack.export(model, tmp_path / "m.mpk", sample=sample, format="pmml")
    assert manifest.fidelity.passed
    with modelpack.load(tmp_path / "m.mpk") as loaded:
        data = sample  # an array exported model takes arrays, as its ONNX export does
        if flavour == "array":
            assert [(i.name, i.shape) for i in loaded.inputs] == [("X", ("N", 4))]
        if flavour == "value":
            np.testing.assert_allclose(loaded.predict(data), model.predict(sample), rtol=1e-9)
        else:
            assert (loaded.predict(data) == model.predict(sample)).all()
            np.testing.assert_allclose(loaded.predict_proba(data), model.predict_proba(sample), atol=1e-9)


@pytest.mark.slow
def test_xgboost_step_in_a_pipeline(java: None, iris: tuple[Any, Any], tmp_path: Path) -> None:
    xgboost = pytest.importorskip("xgboost")
    from sklearn.impute import SimpleImputer

    X, y = iris
    # No scaler before it: pmml4s compares float32 split values in double precision, so
    # derived values that XGBoost rounds to float32 can fall on the other side (docs/pmml.md).
    model = make_pipeline(SimpleImputer(), xgboost.XGBClassifier(n_estimators=5, max_depth=2)).fit(X, y)
    manifest = modelpack.export(model, tmp_path / "m.mpk", sample=X, format="pmml", tolerance=1e-6)
    assert manifest.fidelity.passed and manifest.source.converter == "sklearn2pmml"
