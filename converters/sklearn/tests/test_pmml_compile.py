"""scikit-learn models exported as PMML run as their compiled ONNX model, and agree.

The export writes the sklearn2pmml document and its ONNX translation; the package
runs the translation by default once it agrees with the PMML evaluator. Each test
checks that, and that the compiled model gives the evaluator's and scikit-learn's
answers. Features are float32-exact values: scikit-learn compares in float32 and
PMML in double, and on such values the two agree. Each export starts Java twice
(about 5 s): the default run keeps one model, the others are marked slow.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("sklearn2pmml", reason="sklearn2pmml is not installed: pip install sklearn2pmml")
pytest.importorskip("pypmml", reason="pypmml is not installed: pip install 'modelpack[pmml]'")
pd = pytest.importorskip("pandas")

from sklearn.datasets import make_classification, make_regression  # noqa: E402
from sklearn.ensemble import (  # noqa: E402
    GradientBoostingClassifier,
    GradientBoostingRegressor,
    RandomForestClassifier,
)
from sklearn.linear_model import LinearRegression, LogisticRegression  # noqa: E402
from sklearn.tree import DecisionTreeClassifier  # noqa: E402

import modelpack  # noqa: E402
from modelpack.testing import missing_java  # noqa: E402


@pytest.fixture(scope="module")
def java() -> None:
    reason = missing_java()
    if reason:
        pytest.skip(f"sklearn2pmml needs Java: {reason}")


def frame(X: np.ndarray) -> Any:
    return pd.DataFrame(X.astype(np.float32).astype(np.float64), columns=[f"x{i}" for i in range(X.shape[1])])


def check(model: Any, X: Any, y: Any, tmp_path: Path) -> None:
    model.fit(X, y)
    manifest = modelpack.export(model, tmp_path / "m.mpk", sample=X[:100], format="pmml")
    assert manifest.compiled is not None, manifest
    assert manifest.compiled.default == "onnx", manifest.compiled.reason
    assert manifest.compiled.fidelity is not None and manifest.compiled.fidelity.passed
    assert manifest.fidelity is not None and manifest.fidelity.passed  # the compiled model against scikit-learn
    holes = X[:200].copy()
    holes.iloc[::7, 1] = np.nan  # missing values: the evaluator and the compiled model alike
    with modelpack.load(tmp_path / "m.mpk") as compiled, \
            modelpack.load(tmp_path / "m.mpk", compile="never") as evaluator:
        assert compiled.engine == "onnx (compiled from PMML)"
        classifier = hasattr(model, "predict_proba")
        if classifier:
            np.testing.assert_allclose(compiled.predict_proba(X), model.predict_proba(X), rtol=1e-6, atol=1e-9)
            np.testing.assert_array_equal(compiled.predict(X), model.predict(X))
        else:
            np.testing.assert_allclose(compiled.predict(X), model.predict(X), rtol=1e-6, atol=1e-6)
        got, want = compiled.run(X[:300]), evaluator.run(X[:300])
        for name in want:
            np.testing.assert_allclose(got[name], want[name], rtol=1e-6, atol=1e-9, err_msg=name)
        got, want = compiled.run(holes), evaluator.run(holes)
        for name in want:
            if manifest.compiled.reason:  # sklearn2pmml's nullPrediction trees: docs/pmml.md
                differ = ~np.isclose(got[name], want[name], rtol=1e-6, atol=1e-9, equal_nan=True)
                assert np.isnan(got[name][differ]).all(), name  # no prediction, where pmml4s gives one
                assert not differ[1::7].any(), name  # rows without a missing value agree
            else:
                np.testing.assert_allclose(got[name], want[name], rtol=1e-6, atol=1e-9, err_msg=name)


def classification(classes: int = 2) -> tuple[Any, Any]:
    X, y = make_classification(n_samples=600, n_features=6, n_informative=4, n_classes=classes, random_state=0)
    return frame(X), y


def test_decision_tree(java: None, tmp_path: Path) -> None:
    check(DecisionTreeClassifier(max_depth=5, random_state=0), *classification(3), tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("model", [RandomForestClassifier(n_estimators=15, max_depth=6, random_state=0),
                                   GradientBoostingClassifier(n_estimators=20, random_state=0),
                                   LogisticRegression(max_iter=2000)], ids=lambda m: type(m).__name__)
def test_classifiers(java: None, tmp_path: Path, model: Any) -> None:
    check(model, *classification(), tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("model", [GradientBoostingRegressor(n_estimators=20, random_state=0), LinearRegression()],
                         ids=lambda m: type(m).__name__)
def test_regressors(java: None, tmp_path: Path, model: Any) -> None:
    X, y = make_regression(n_samples=600, n_features=6, noise=1.0, random_state=0)
    check(model, frame(X), y, tmp_path)


@pytest.mark.slow
def test_compile_never_keeps_the_evaluator(java: None, tmp_path: Path) -> None:
    X, y = classification()
    model = LogisticRegression(max_iter=2000).fit(X, y)
    manifest = modelpack.export(model, tmp_path / "m.mpk", sample=X[:50], format="pmml", compile="never")
    assert manifest.compiled is not None and manifest.compiled.file is None
    with modelpack.load(tmp_path / "m.mpk") as loaded:
        assert loaded.engine == "pmml4s"
