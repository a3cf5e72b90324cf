"""A matrix of fitted scikit-learn models: export, load back, predict like scikit-learn.

Every case is fitted on small synthetic data, exported with ``modelpack.export`` on
a sample of held-out rows, loaded with ``modelpack.load`` and compared with the
model's own predictions on other held-out rows: labels must be identical (same
values, same dtype as ``classes_``), numbers within the tolerance recorded at export.
Held-out rows keep tree thresholds (learnt at training values) away from the rows
compared, where float32 rounding could legitimately flip a split.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

pytest.importorskip("skl2onnx")
pd = pytest.importorskip("pandas")

from sklearn import (  # noqa: E402
    cluster,
    decomposition,
    ensemble,
    linear_model,
    naive_bayes,
    neighbors,
    neural_network,
    svm,
    tree,
)
from sklearn.calibration import CalibratedClassifierCV  # noqa: E402
from sklearn.compose import ColumnTransformer  # noqa: E402
from sklearn.datasets import make_classification, make_regression  # noqa: E402
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis  # noqa: E402
from sklearn.feature_selection import SelectKBest  # noqa: E402
from sklearn.impute import SimpleImputer  # noqa: E402
from sklearn.mixture import GaussianMixture  # noqa: E402
from sklearn.multiclass import OneVsRestClassifier  # noqa: E402
from sklearn.pipeline import FeatureUnion, Pipeline, make_pipeline  # noqa: E402
from sklearn.preprocessing import (  # noqa: E402
    MinMaxScaler,
    OneHotEncoder,
    OrdinalEncoder,
    PolynomialFeatures,
    StandardScaler,
)

import modelpack  # noqa: E402
from modelpack.testing import assert_outputs_close  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

N_TRAIN, N_SAMPLE = 160, 40


@dataclass
class Data:
    X: Any  # training rows
    y: Any
    sample: Any  # what export sees
    test: Any  # what the comparison sees


def _split(X: Any, y: Any) -> Data:
    def rows(a: Any, s: slice) -> Any:
        return a.iloc[s] if hasattr(a, "iloc") else a[s]

    return Data(rows(X, slice(0, N_TRAIN)), None if y is None else rows(y, slice(0, N_TRAIN)),
                rows(X, slice(N_TRAIN, N_TRAIN + N_SAMPLE)), rows(X, slice(N_TRAIN + N_SAMPLE, None)))


def _frame(n: int = 260) -> tuple[Any, Any, Any]:
    rng = np.random.default_rng(7)
    df = pd.DataFrame({
        "age": rng.normal(40, 12, n).round(1),
        "n kids": rng.integers(0, 4, n),
        "city": rng.choice(["Paris", "Lyon", "Nantes"], n),
        "plan": rng.choice(["basic", "pro"], n),
    })
    df.loc[df.index[::17], "age"] = np.nan
    score = df["age"].fillna(40) / 10 + df["n kids"] + (df["city"] == "Lyon") * 2 - (df["plan"] == "pro")
    label = np.where(score + rng.normal(0, 0.5, n) > score.median(), "churn", "stay")
    return df, label, score.to_numpy()


@pytest.fixture(scope="module")
def datasets() -> dict[str, Data]:
    Xb, yb = make_classification(260, 6, n_informative=4, random_state=0)
    Xm, ym = make_classification(260, 6, n_informative=4, n_classes=3, random_state=1)
    Xr, yr = make_regression(260, 5, noise=1.0, random_state=2)
    Xr2, yr2 = make_regression(260, 5, n_targets=2, noise=1.0, random_state=3)
    df, label, score = _frame()
    strings = np.random.default_rng(4).choice(["a", "b", "c"], size=(260, 2))
    return {
        "binary": _split(Xb, yb),
        "multiclass": _split(Xm, ym),
        "string_labels": _split(Xm, np.array(["setosa", "versicolor", "virginica"])[ym]),
        "int_labels": _split(Xm, np.array([3, 7, 11])[ym]),
        "bool_labels": _split(Xb, yb.astype(bool)),
        "regression": _split(Xr, yr),
        "multi_output": _split(Xr2, yr2),
        "unsupervised": _split(Xm, None),
        "strings": _split(strings, None),
        "frame": _split(df, label),
        "frame_regression": _split(df, score),
        "named": _split(pd.DataFrame(Xb, columns=[f"f {i}" for i in range(6)]), yb),
    }


def _mixed_preprocessor(encoder: Any = None) -> ColumnTransformer:
    return ColumnTransformer([
        ("num", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), ["age", "n kids"]),
        ("city", encoder or OneHotEncoder(handle_unknown="ignore"), ["city"]),
        ("plan", OrdinalEncoder(), ["plan"]),
    ])


@dataclass
class Case:
    id: str
    data: str
    make: Callable[[], Any]
    export: dict[str, Any] = field(default_factory=dict)
    needs: str | None = None  # an optional library


CASES = [
    # binary classifiers
    Case("logreg", "binary", lambda: linear_model.LogisticRegression()),
    Case("tree", "binary", lambda: tree.DecisionTreeClassifier(max_depth=5, random_state=0)),
    Case("forest", "binary", lambda: ensemble.RandomForestClassifier(10, max_depth=5, random_state=0)),
    Case("extra_trees", "binary", lambda: ensemble.ExtraTreesClassifier(10, max_depth=5, random_state=0)),
    Case("gboost", "binary", lambda: ensemble.GradientBoostingClassifier(n_estimators=10, random_state=0)),
    Case("adaboost", "binary", lambda: ensemble.AdaBoostClassifier(n_estimators=10, random_state=0)),
    Case("bagging", "binary", lambda: ensemble.BaggingClassifier(n_estimators=5, random_state=0)),
    Case("gaussian_nb", "binary", lambda: naive_bayes.GaussianNB()),
    Case("knn", "binary", lambda: neighbors.KNeighborsClassifier(5)),
    Case("svc_scores", "binary", lambda: svm.SVC()),
    Case("linear_svc_scores", "binary", lambda: svm.LinearSVC()),
    Case("calibrated_svc", "binary", lambda: CalibratedClassifierCV(svm.LinearSVC(), cv=3)),
    Case("sgd_log", "binary", lambda: linear_model.SGDClassifier(loss="log_loss", random_state=0)),
    Case("mlp", "binary", lambda: neural_network.MLPClassifier((8,), max_iter=300, random_state=0)),
    Case("pipe_scaler_logreg", "binary", lambda: make_pipeline(StandardScaler(), linear_model.LogisticRegression())),
    Case("pipe_pca_svc", "binary", lambda: make_pipeline(StandardScaler(), decomposition.PCA(3), svm.SVC())),
    # multiclass, label kinds
    Case("logreg_multi", "multiclass", lambda: linear_model.LogisticRegression()),
    Case("forest_multi", "multiclass", lambda: ensemble.RandomForestClassifier(10, max_depth=5, random_state=0)),
    Case("lda_multi", "multiclass", lambda: LinearDiscriminantAnalysis()),
    Case("ovr_multi", "multiclass", lambda: OneVsRestClassifier(linear_model.LogisticRegression())),
    Case("nb_string_labels", "string_labels", lambda: naive_bayes.GaussianNB()),
    Case("tree_string_labels", "string_labels", lambda: tree.DecisionTreeClassifier(max_depth=5, random_state=0)),
    Case("knn_int_labels", "int_labels", lambda: neighbors.KNeighborsClassifier(5)),
    Case("logreg_bool_labels", "bool_labels", lambda: linear_model.LogisticRegression()),
    # regressors
    Case("linear", "regression", lambda: linear_model.LinearRegression()),
    Case("ridge", "regression", lambda: linear_model.Ridge()),
    Case("elastic_net", "regression", lambda: linear_model.ElasticNet(alpha=0.1)),
    Case("tree_reg", "regression", lambda: tree.DecisionTreeRegressor(max_depth=5, random_state=0)),
    Case("forest_reg", "regression", lambda: ensemble.RandomForestRegressor(10, max_depth=5, random_state=0)),
    Case("gboost_reg", "regression", lambda: ensemble.GradientBoostingRegressor(n_estimators=10, random_state=0)),
    Case("knn_reg", "regression", lambda: neighbors.KNeighborsRegressor(5)),
    Case("svr", "regression", lambda: svm.SVR(C=10.0)),
    Case("pipe_pca_ridge", "regression", lambda: make_pipeline(StandardScaler(), decomposition.PCA(3), linear_model.Ridge())),
    Case("linear_multi_output", "multi_output", lambda: linear_model.LinearRegression()),
    Case("forest_multi_output", "multi_output", lambda: ensemble.RandomForestRegressor(10, max_depth=5, random_state=0)),
    # clustering
    Case("kmeans", "unsupervised", lambda: cluster.KMeans(3, n_init=3, random_state=0)),
    Case("minibatch_kmeans", "unsupervised", lambda: cluster.MiniBatchKMeans(3, n_init=3, random_state=0)),
    Case("gaussian_mixture", "unsupervised", lambda: GaussianMixture(3, random_state=0)),
    # transformers
    Case("standard_scaler", "unsupervised", lambda: StandardScaler()),
    Case("minmax_scaler", "unsupervised", lambda: MinMaxScaler()),
    Case("pca", "unsupervised", lambda: decomposition.PCA(3)),
    Case("poly_features", "unsupervised", lambda: PolynomialFeatures(2)),
    Case("feature_union", "binary", lambda: FeatureUnion([("pca", decomposition.PCA(2)), ("best", SelectKBest(k=2))])),
    Case("onehot_strings", "strings", lambda: OneHotEncoder(sparse_output=False)),
    # DataFrames
    Case("frame_logreg", "frame", lambda: Pipeline([("pre", _mixed_preprocessor()), ("clf", linear_model.LogisticRegression())])),
    Case("frame_forest", "frame", lambda: Pipeline([("pre", _mixed_preprocessor(OrdinalEncoder())),
                                                     ("clf", ensemble.RandomForestClassifier(10, max_depth=5, random_state=0))])),
    Case("frame_regression", "frame_regression", lambda: Pipeline([("pre", _mixed_preprocessor()), ("reg", linear_model.Ridge())])),
    Case("named_columns", "named", lambda: make_pipeline(StandardScaler(), linear_model.LogisticRegression())),
    # double precision
    Case("linear_float64", "regression", lambda: linear_model.LinearRegression(), {"dtype": "float64"}),
    Case("logreg_float64", "multiclass", lambda: make_pipeline(StandardScaler(), linear_model.LogisticRegression()), {"dtype": "float64"}),
    Case("scaler_float64", "unsupervised", lambda: StandardScaler(), {"dtype": "float64"}),
    Case("kmeans_float64", "unsupervised", lambda: cluster.KMeans(3, n_init=3, random_state=0), {"dtype": "float64"}),
    # boosting libraries inside scikit-learn pipelines
    Case("pipe_xgb_classifier", "multiclass", lambda: make_pipeline(StandardScaler(), _xgb("XGBClassifier")), needs="xgboost"),
    Case("pipe_xgb_regressor", "regression", lambda: make_pipeline(StandardScaler(), _xgb("XGBRegressor")), needs="xgboost"),
    Case("pipe_lgbm_classifier", "binary", lambda: make_pipeline(StandardScaler(), _lgbm("LGBMClassifier")), needs="lightgbm"),
    Case("pipe_lgbm_regressor", "regression", lambda: make_pipeline(StandardScaler(), _lgbm("LGBMRegressor")), needs="lightgbm"),
]


def _xgb(name: str) -> Any:
    import xgboost

    return getattr(xgboost, name)(n_estimators=10, max_depth=3)


def _lgbm(name: str) -> Any:
    import lightgbm

    return getattr(lightgbm, name)(n_estimators=10, num_leaves=8, verbose=-1)


def _fit(case: Case, data: Data) -> Any:
    if case.needs:
        pytest.importorskip(case.needs)
        pytest.importorskip("onnxmltools")
    model = case.make()
    return model.fit(data.X) if data.y is None else model.fit(data.X, data.y)


def test_matrix_is_large_enough() -> None:
    tasks = {c.data for c in CASES}
    assert len(CASES) >= 30
    assert {"binary", "multiclass", "string_labels", "int_labels", "bool_labels", "multi_output",
            "unsupervised", "frame"} <= tasks


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_export_load_predict(case: Case, datasets: dict[str, Data], tmp_path: Any) -> None:
    data = datasets[case.data]
    model = _fit(case, data)
    manifest = modelpack.export(model, tmp_path / "m.mpk", sample=data.sample, **case.export)
    assert manifest.fidelity is not None and manifest.fidelity.passed, manifest.fidelity
    assert manifest.source.framework == "scikit-learn"
    assert manifest.fidelity.dtype == case.export.get("dtype", "float32")
    with modelpack.load(tmp_path / "m.mpk") as pkg:
        _check_same(pkg, model, data.test, manifest.task)


def _check_same(pkg: modelpack.Model, model: Any, X: Any, task: str) -> None:
    if task == "classification":
        expected = model.predict(X)
        got = pkg.predict(X)
        np.testing.assert_array_equal(got, expected)
        assert got.dtype.kind == expected.dtype.kind, (got.dtype, expected.dtype)
        assert list(pkg.classes) == model.classes_.tolist()
        if hasattr(model, "predict_proba"):
            assert_outputs_close(pkg, X, {"probabilities": model.predict_proba(X)})
        else:
            assert pkg.manifest.outputs[1].role == "scores"
    elif task == "regression":
        assert_outputs_close(pkg, X, {"value": model.predict(X)})
    elif task == "clustering":
        np.testing.assert_array_equal(pkg.predict(X), model.predict(X))
    else:
        assert task == "transform"
        name = pkg.manifest.outputs[0].name
        expected = model.transform(X)
        assert_outputs_close(pkg, X, {name: expected})
