"""XGBoost and LightGBM steps after a StandardScaler, exported in float32 and in float64.

The sample is made of *training* rows, the hard case for trees: XGBoost places its
split thresholds at training values, so a float32 scaler, a few ulps away from
scikit-learn's float64 one, moves those rows across the splits. LightGBM places
its thresholds between training values, where those few ulps change nothing.
With ``dtype="float64"`` the scaler runs in double and the trees read a float32
cast of its output, which is what XGBoost and LightGBM compare themselves.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

pytest.importorskip("skl2onnx")
pytest.importorskip("onnxmltools", reason="XGBoost/LightGBM steps convert through onnxmltools")

from sklearn.datasets import make_classification, make_regression  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

import modelpack  # noqa: E402
from modelpack import FidelityError  # noqa: E402

N_TRAIN = 160
# float32 trees sum float32 leaf values: what float64 features can still give.
PROBABILITY_ATOL = 1e-6
VALUE_RTOL = 1e-5

# id -> (library, estimator, task, float32 export on training rows refused?)
CASES = {
    "xgb_classifier": ("xgboost", "XGBClassifier", "classification", True),
    "lgbm_classifier": ("lightgbm", "LGBMClassifier", "classification", False),
    "xgb_regressor": ("xgboost", "XGBRegressor", "regression", True),
}
PARAMS = {"xgboost": {"n_estimators": 10, "max_depth": 3},
          "lightgbm": {"n_estimators": 10, "num_leaves": 8, "verbose": -1}}


def _data(task: str) -> tuple[np.ndarray, np.ndarray]:
    if task == "classification":
        return make_classification(260, 6, n_informative=4, random_state=0)
    return make_regression(260, 5, noise=1.0, random_state=2)


def _pipeline(case: str) -> tuple[Any, np.ndarray, np.ndarray]:
    """The fitted pipeline, its training rows and held-out rows."""
    library, estimator, task, _ = CASES[case]
    module = pytest.importorskip(library, reason=f"{library} is not installed")
    X, y = _data(task)
    pipe = make_pipeline(StandardScaler(), getattr(module, estimator)(**PARAMS[library]))
    return pipe.fit(X[:N_TRAIN], y[:N_TRAIN]), X[:N_TRAIN], X[N_TRAIN:]


@pytest.mark.parametrize("case", list(CASES))
def test_float32_export_on_training_rows(case: str, tmp_path: Any) -> None:
    pipe, train, _ = _pipeline(case)
    if CASES[case][3]:
        with pytest.raises(FidelityError, match="differs from the source on the sample"):
            modelpack.export(pipe, tmp_path / "m.mpk", sample=train)
        assert not (tmp_path / "m.mpk").exists()
    else:
        manifest = modelpack.export(pipe, tmp_path / "m.mpk", sample=train)
        assert manifest.fidelity is not None and manifest.fidelity.passed, manifest.fidelity


@pytest.mark.parametrize("case", list(CASES))
def test_float64_export_matches_the_pipeline(case: str, tmp_path: Any) -> None:
    pipe, train, held_out = _pipeline(case)
    manifest = modelpack.export(pipe, tmp_path / "m.mpk", sample=train, dtype="float64")
    assert manifest.fidelity is not None and manifest.fidelity.passed, manifest.fidelity
    assert [i.dtype for i in manifest.inputs] == ["float64"]
    # The trees compute in float32, and the certificate says so.
    assert manifest.fidelity.dtype == "float32"
    X = np.vstack([train, held_out])
    with modelpack.load(tmp_path / "m.mpk") as pkg:
        if CASES[case][2] == "classification":
            np.testing.assert_array_equal(pkg.predict(X), pipe.predict(X))
            np.testing.assert_allclose(pkg.predict_proba(X), pipe.predict_proba(X), rtol=0,
                                       atol=PROBABILITY_ATOL)
        else:
            np.testing.assert_allclose(np.ravel(pkg.predict(X)), pipe.predict(X), rtol=VALUE_RTOL)


def test_float64_graph_casts_around_the_trees(tmp_path: Any) -> None:
    import onnx

    pipe, train, _ = _pipeline("xgb_classifier")
    modelpack.export(pipe, tmp_path / "m", sample=train, dtype="float64")
    graph = onnx.load(str(tmp_path / "m" / "model.onnx")).graph
    producers = {name: node for node in graph.node for name in node.output}
    trees = next(n for n in graph.node if n.op_type == "TreeEnsembleClassifier")
    to_float = producers[trees.input[0]]
    to_double = producers[graph.output[1].name]
    assert (to_float.op_type, _cast_to(to_float)) == ("Cast", onnx.TensorProto.FLOAT)
    assert producers[to_float.input[0]].op_type == "Div"  # the scaler, in double
    assert (to_double.op_type, _cast_to(to_double)) == ("Cast", onnx.TensorProto.DOUBLE)
    assert list(to_double.input) == [trees.output[1]]
    assert graph.output[0].name == trees.output[0]  # int64 labels need no cast


def _cast_to(node: Any) -> int:
    return next(a.i for a in node.attribute if a.name == "to")
