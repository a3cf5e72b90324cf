"""Tree packages through ``modelpack.load``: the engine takes the ensemble, answers stay ONNX Runtime's.

Small real models of every family are exported with ``modelpack.export`` and
loaded twice, with the default engine and with ``engine="onnxruntime"``; every
output must agree on rows with missing values (labels identical, floats within the
float32 tolerance). Then: what falls back and says why, the options, ``verify``.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("numba", reason="the tree engine needs numba (pip install 'modelpack[trees]')")
pytest.importorskip("sklearn")

import modelpack  # noqa: E402
from modelpack import RuntimeBackendError  # noqa: E402


def _data(task: str, classes: int = 2, nan: bool = True) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import make_classification, make_regression

    if task == "reg":
        X, y = make_regression(600, 8, random_state=0)
    else:
        X, y = make_classification(600, 8, n_informative=5, n_classes=classes, random_state=0)
    X = X.astype(np.float32)
    if nan:
        X[np.random.default_rng(0).random(X.shape) < 0.05] = np.nan
    return X, y


def _sklearn(name: str) -> Callable[[], Any]:
    from sklearn import ensemble
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return {
        "rf-multi": lambda: ensemble.RandomForestClassifier(10, random_state=0),
        "gb-pipeline": lambda: make_pipeline(StandardScaler(), ensemble.GradientBoostingRegressor(n_estimators=20)),
        "hgb-bin": lambda: ensemble.HistGradientBoostingClassifier(max_iter=15),
    }[name]


def _framework(name: str) -> Callable[[], Any]:
    if name.startswith("xgb"):
        xgboost = pytest.importorskip("xgboost")
        return lambda: (xgboost.XGBClassifier(n_estimators=15, max_depth=4) if name != "xgb-reg"
                        else xgboost.XGBRegressor(n_estimators=15, max_depth=4))
    if name.startswith("lgb"):
        lightgbm = pytest.importorskip("lightgbm")
        return lambda: lightgbm.LGBMClassifier(n_estimators=15, verbose=-1)
    catboost = pytest.importorskip("catboost")
    return lambda: catboost.CatBoostClassifier(iterations=15, depth=4, verbose=0, allow_writing_files=False)


CASES = {
    "xgb-reg": ("reg", 2, True), "xgb-multi": ("clf", 3, True), "lgb-bin": ("clf", 2, True),
    "cb-multi": ("clf", 3, True), "rf-multi": ("clf", 3, False), "gb-pipeline": ("reg", 2, False),
    "hgb-bin": ("clf", 2, True),
}


def _export(name: str, folder: Path) -> tuple[Path, np.ndarray]:
    task, classes, nan = CASES[name]
    X, y = _data(task, classes, nan)
    make = _sklearn(name) if name in ("rf-multi", "gb-pipeline", "hgb-bin") else _framework(name)
    path = folder / f"{name}.mpk"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the frameworks' own warnings are not under test
        modelpack.export(make().fit(X, y), path, sample=X[:40])
    return path, X


def _outputs(values: dict[str, Any]) -> dict[str, np.ndarray]:
    out = {}
    for name, value in values.items():
        if isinstance(value, list):  # ZipMap
            value = np.array([[d[k] for k in sorted(d)] for d in value])
        out[name] = np.asarray(value)
    return out


@pytest.mark.parametrize("name", list(CASES))
def test_engine_answers_as_onnxruntime(name: str, tmp_path: Path) -> None:
    path, X = _export(name, tmp_path)
    with modelpack.load(path) as ours, \
            modelpack.load(path, engine="onnxruntime", session_options={"intra_op_num_threads": 1}) as ref:
        assert ours.engine == "modelpack-trees", ours.engine_reason
        assert ref.engine == "onnxruntime"
        got, want = _outputs(ours.run(X)), _outputs(ref.run(X))
        assert got.keys() == want.keys()
        for key in want:
            if want[key].dtype.kind == "f":
                np.testing.assert_allclose(got[key], want[key], rtol=1e-4, atol=1e-4, err_msg=key)
            else:
                np.testing.assert_array_equal(got[key], want[key], err_msg=key)
        # Small batches go to the whole-graph session, large ones to the engine: the same answers.
        np.testing.assert_allclose(np.asarray(ours.predict(X[:3]), dtype=float),
                                   np.asarray(ours.predict(X)[:3], dtype=float), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["cb-multi", "rf-multi", "lgb-bin"])
def test_predict_proba_reads_a_zipmaps_tensor(name: str, tmp_path: Path) -> None:
    """With the engine, predict_proba skips the list of dicts; run() still returns it, and the values agree."""
    path, X = _export(name, tmp_path)
    with modelpack.load(path) as ours, modelpack.load(path, engine="onnxruntime") as ref:
        proba = ours.predict_proba(X)
        assert proba.dtype == np.float32 and proba.shape == (len(X), len(ours.classes))
        output = next(o.name for o in ours.outputs if o.role == "probabilities")
        raw = ours.run(X)[output]
        if name == "cb-multi":
            assert isinstance(raw, list)  # a ZipMap, read without it
        decoded = np.array([[row[c] for c in ours.classes.tolist()] for row in raw] if isinstance(raw, list)
                           else raw, np.float32)
        np.testing.assert_array_equal(proba, decoded)
        np.testing.assert_allclose(proba, ref.predict_proba(X), rtol=1e-4, atol=1e-4)
        dense = ours.backend.run_proba(ours._adapt(X), output, ours.classes[::-1])
        if isinstance(raw, list):  # columns follow the classes asked for
            np.testing.assert_array_equal(dense, proba[:, ::-1])
        else:
            assert dense is None  # not a ZipMap's: predict_proba reads the output itself
        assert ours.backend.run_proba(ours._adapt(X[:2]), output, ours.classes) is None  # whole graph


def test_every_batch_runs_on_the_engine_when_named(tmp_path: Path) -> None:
    path, X = _export("xgb-multi", tmp_path)
    with modelpack.load(path, engine="modelpack-trees") as m, modelpack.load(path, engine="onnxruntime") as ref:
        assert "batches of" not in m.engine_reason
        np.testing.assert_allclose(m.predict_proba(X[:1]), ref.predict_proba(X[:1]), rtol=1e-5, atol=1e-6)


def test_inspect_says_which_engine_takes_the_trees(tmp_path: Path, regressor_file: Callable[..., Path]) -> None:
    from modelpack._cli.package import describe
    from modelpack._runtime.trees import forecast_engine

    path, _ = _export("xgb-reg", tmp_path)
    manifest = modelpack.inspect(path)
    assert manifest.runtime.placement["trees"]["engine"] == "modelpack-trees"
    text = describe(manifest)
    assert "tree ensemble, engine='auto' on the CPU: modelpack-trees (15 trees, depth 4" in text, text
    probit = regressor_file("probit", 1, nodes_treeids=[0], nodes_nodeids=[0], nodes_featureids=[0],
                            nodes_values=[0.0], nodes_modes=["LEAF"], nodes_truenodeids=[0], nodes_falsenodeids=[0],
                            target_treeids=[0], target_nodeids=[0], target_ids=[0], target_weights=[1.0],
                            post_transform="PROBIT")
    assert forecast_engine(probit.read_bytes()) == {"engine": "onnxruntime", "reason": "post transform PROBIT"}
    assert forecast_engine(b"not a model") is None


def test_a_model_without_trees_says_so(add_one: Path) -> None:
    with modelpack.load(add_one) as m:
        assert (m.engine, m.engine_reason) == ("onnxruntime", "no tree ensemble in the graph")
    with pytest.raises(RuntimeBackendError, match="tree engine cannot run this model: no tree ensemble") as info:
        modelpack.load(add_one, engine="modelpack-trees")
    assert "engine='auto'" in info.value.fix


def test_unknown_engine_names_the_choices(tmp_path: Path) -> None:
    path, _ = _export("rf-multi", tmp_path)
    with pytest.raises(RuntimeBackendError, match="unknown engine 'numba'") as info:
        modelpack.load(path, engine="numba")
    assert "'modelpack-trees'" in info.value.fix


def test_categorical_splits_run_on_the_engine(regressor_file: Callable[..., Path]) -> None:
    """BRANCH_EQ (LightGBM's categorical splits) is taken by the engine, with ONNX Runtime's answers."""
    path = regressor_file("eq", 1, nodes_treeids=[0, 0, 0], nodes_nodeids=[0, 1, 2], nodes_featureids=[0, 0, 0],
                          nodes_values=[3.0, 0, 0], nodes_modes=["BRANCH_EQ", "LEAF", "LEAF"],
                          nodes_truenodeids=[1, 0, 0], nodes_falsenodeids=[2, 0, 0], target_treeids=[0, 0],
                          target_nodeids=[1, 2], target_ids=[0, 0], target_weights=[1.0, 2.0])
    with modelpack.load(path) as m:
        assert m.engine == "modelpack-trees", m.engine_reason
        np.testing.assert_array_equal(m.predict(np.array([[3.0], [4.0], [np.nan]] * 20, np.float32))[:3],
                                      [1.0, 2.0, 2.0])


def test_lightgbm_categorical_features(tmp_path: Path) -> None:
    lightgbm = pytest.importorskip("lightgbm")
    rng = np.random.default_rng(0)
    X = np.column_stack([rng.integers(0, 6, 800), rng.normal(size=800)]).astype(np.float32)
    y = np.where(np.isin(X[:, 0], [1, 4]), 3.0, 0.0) + X[:, 1]
    X[rng.random(X.shape) < 0.05] = np.nan
    model = lightgbm.LGBMRegressor(n_estimators=20, min_child_samples=5, verbose=-1)
    model.fit(X, y, categorical_feature=[0])
    path = tmp_path / "lgb-cat.mpk"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        modelpack.export(model, path, sample=X[:40])
    with modelpack.load(path) as ours, modelpack.load(path, engine="onnxruntime") as ref:
        assert ours.engine == "modelpack-trees", ours.engine_reason
        np.testing.assert_allclose(ours.predict(X), ref.predict(X), rtol=1e-4, atol=1e-4)


def test_opset5_tree_ensemble_runs_on_the_engine(random_opset5: Callable[[int], tuple[Any, int]],
                                                 tmp_path: Path) -> None:
    """The opset-5 TreeEnsemble operator (set membership among its splits) is taken by the engine."""
    model, width = random_opset5(8)
    assert any(a.name == "membership_values" for a in model.graph.node[0].attribute)
    path = tmp_path / "opset5.onnx"
    path.write_bytes(model.SerializeToString())
    x = np.random.default_rng(0).integers(0, 5, size=(300, width)).astype(np.float32)
    x[::7, 0] = np.nan
    with modelpack.load(path) as ours, modelpack.load(path, engine="onnxruntime") as ref:
        assert ours.engine == "modelpack-trees", ours.engine_reason
        np.testing.assert_allclose(ours.predict(x), ref.predict(x), rtol=1e-4, atol=1e-4)


def test_hostile_forests_fall_back_and_the_runtime_judges(regressor_file: Callable[..., Path]) -> None:
    """A tree whose child points back to its root: the engine refuses it before any array is read."""
    import onnx

    from modelpack._runtime.trees.forest import Unsupported, attributes_of, read_forest

    path = regressor_file("loop", 6, nodes_treeids=[0, 0, 0], nodes_nodeids=[0, 1, 2], nodes_featureids=[0, 5, 0],
                          nodes_values=[0.5, 0.5, 0], nodes_modes=["BRANCH_LEQ", "BRANCH_LEQ", "LEAF"],
                          nodes_truenodeids=[1, 0, 0], nodes_falsenodeids=[2, 2, 0], target_treeids=[0],
                          target_nodeids=[2], target_ids=[0], target_weights=[1.0])
    node = onnx.load(path).graph.node[0]
    with pytest.raises(Unsupported, match="reached twice|roots"):
        read_forest(node.op_type, attributes_of(node))
    try:
        m = modelpack.load(path)
    except modelpack.ModelpackError:
        return  # ONNX Runtime refused the graph itself: a clear error, nothing read
    with m:
        assert m.engine == "onnxruntime"


def test_rows_narrower_than_the_trees_read_get_onnxruntimes_error(tmp_path: Path) -> None:
    path, X = _export("xgb-reg", tmp_path)
    with modelpack.load(path) as m:
        with pytest.raises(modelpack.ModelpackError):
            m.predict(X[:, :3])


def test_threads_follow_the_session_setting(tmp_path: Path) -> None:
    path, _ = _export("xgb-reg", tmp_path)
    with modelpack.load(path, session_options={"intra_op_num_threads": 1}) as m:
        assert m.backend._engine.threads == 1


def test_the_parts_around_the_trees_let_their_workers_sleep(tmp_path: Path) -> None:
    """A part's ONNX Runtime workers must not spin on while the engine's loops run; the whole graph keeps
    the caller's settings."""
    path, _ = _export("gb-pipeline", tmp_path)  # a scaler before the trees
    spinning = "session.intra_op.allow_spinning"
    with modelpack.load(path, session_options={"intra_op_num_threads": 2}) as m:
        before = m.backend._before._session
        assert before.get_session_options().get_session_config_entry(spinning) == "0"
        assert before.get_session_options().intra_op_num_threads == 2
        with pytest.raises(RuntimeError, match="does not have configuration"):
            m.backend.session.get_session_options().get_session_config_entry(spinning)


def test_verify_runs_the_samples_on_the_engine(tmp_path: Path) -> None:
    path, _ = _export("hgb-bin", tmp_path)
    report = modelpack.verify(path)
    assert report.ok, str(report)
    assert "modelpack-trees" in str(report)
    assert "modelpack-trees" not in str(modelpack.verify(path, engine="onnxruntime"))


def test_pickled_model_keeps_its_engine_choice(tmp_path: Path) -> None:
    import pickle

    path, X = _export("xgb-reg", tmp_path)
    with modelpack.load(path, engine="onnxruntime") as m:
        again = pickle.loads(pickle.dumps(m))
        with again:
            assert again.engine == "onnxruntime"


def test_cli_predict_and_verify_take_engine(tmp_path: Path) -> None:
    from modelpack._cli import main

    path, X = _export("xgb-reg", tmp_path)
    rows = tmp_path / "rows.json"
    rows.write_text(json.dumps([{f"x{i}": (None if np.isnan(v) else float(v)) for i, v in enumerate(r)}
                                for r in X[:50]]))
    assert main(["verify", str(path), "--engine", "onnxruntime"]) == 0
    out = tmp_path / "out.json"
    code = main(["predict", str(path), "--input", str(rows), "--output", str(out), "--engine", "modelpack-trees"])
    assert code == 0 and out.exists()
