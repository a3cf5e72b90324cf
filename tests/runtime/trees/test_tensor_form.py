"""The forest as standard operators, for devices where ONNX Runtime's tree operator cannot run.

The rewritten graph must answer as the original does: checked on the CPU provider for
random ensembles and for a real scikit-learn pipeline, and, where onnxruntime-openvino is
installed (``make test`` runs this file in that environment too), on the OpenVINO
provider, with the placement showing the trees on it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

ort = pytest.importorskip("onnxruntime")

import modelpack  # noqa: E402
from modelpack._runtime.trees.backend import accelerator_source, disagreement, probe_rows  # noqa: E402
from modelpack._runtime.trees.forest import Unsupported  # noqa: E402

OPENVINO = "OpenVINOExecutionProvider"


@pytest.mark.parametrize("categorical", [False, True], ids=["ordered", "equality-splits"])
def test_random_ensembles_rewritten_answer_the_same(random_forests: Callable[..., list[tuple[int, Any, int, Any]]],
                                                    run_on_cpu: Callable[..., list[Any]], categorical: bool) -> None:
    """Every rule, post transforms SOFTMAX_ZERO and BRANCH_EQ / BRANCH_NEQ included."""
    seen: Counter[str] = Counter()
    transforms: Counter[str] = Counter()
    for seed, model, n_features, forest in random_forests(120, categorical=categorical):
        if isinstance(forest, Unsupported):
            continue
        source = model.SerializeToString()
        rewritten, why = accelerator_source(source, engine="auto", ort=ort, package="random")
        if rewritten is source:
            seen[why] += 1
            continue
        x = np.ascontiguousarray(np.pad(probe_rows(forest, 300, seed=seed),
                                        ((0, 0), (0, n_features - forest.n_features)), constant_values=0.5))
        want, got = run_on_cpu(source, {"X": x}), run_on_cpu(rewritten, {"X": x})
        for w, g in zip(want, got, strict=True):
            assert disagreement(np.asarray(w), np.asarray(g), np.asarray(want[-1])) is None, seed
        seen["rewritten"] += 1
        transforms[forest.post_transform] += 1
        transforms["equality splits"] += forest.has_equal
    assert seen["rewritten"] >= 80, seen
    assert transforms["equality splits"] >= (60 if categorical else 0), transforms
    assert transforms["SOFTMAX_ZERO"] >= 5, transforms
    # Left to the tree operator: with another onnxruntime, a two-class convention it computes
    # differently (the probe sees it, and the model keeps the operator).
    assert all(k == "rewritten" or "differs from ONNX Runtime's on the probe batch" in k for k in seen), seen


@pytest.fixture
def pipeline_onnx(tmp_path: Path) -> tuple[Path, np.ndarray]:
    """scaler -> gradient boosting, three classes, exported by skl2onnx: trees between other nodes."""
    pytest.importorskip("skl2onnx")
    from skl2onnx import to_onnx
    from sklearn.datasets import make_classification
    from sklearn.ensemble import GradientBoostingClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X, y = make_classification(400, 6, n_informative=4, n_classes=3, random_state=0)
    X = X.astype(np.float32)
    clf = make_pipeline(StandardScaler(), GradientBoostingClassifier(n_estimators=20, random_state=0)).fit(X, y)
    path = tmp_path / "gb.onnx"
    path.write_bytes(to_onnx(clf, X[:1], options={"zipmap": False}, target_opset={"": 17, "ai.onnx.ml": 3})
                     .SerializeToString())
    return path, X


def test_a_real_pipeline_rewritten_answers_the_same(pipeline_onnx: tuple[Path, np.ndarray],
                                                    run_on_cpu: Callable[..., list[Any]]) -> None:
    path, X = pipeline_onnx
    source = path.read_bytes()
    rewritten, why = accelerator_source(source, engine="auto", ort=ort, package=str(path))
    assert rewritten is not source, why
    assert "TreeEnsemble" not in {n.op_type for n in __import__("onnx").load_from_string(rewritten).graph.node}
    want, got = run_on_cpu(source, {"X": X}), run_on_cpu(rewritten, {"X": X})
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_allclose(got[1], want[1], rtol=1e-4, atol=1e-5)


def test_on_openvino_the_trees_run_on_the_device(pipeline_onnx: tuple[Path, np.ndarray]) -> None:
    if OPENVINO not in ort.get_available_providers():
        pytest.skip("onnxruntime-openvino is not installed here (make test runs this in .venv-openvino)")
    path, X = pipeline_onnx
    # The scaler before the trees is an ai.onnx.ml operator, which OpenVINO has no kernel for.
    with pytest.warns(modelpack.PlacementWarning, match=r"1 of \d+ nodes .* \(ai.onnx.ml.Scaler\)"), \
            modelpack.load(path, device="openvino") as m:
        assert m.engine == "modelpack-trees", m.engine_reason
        placement = m.placement
        assert placement is not None and OPENVINO in placement
        assert placement[OPENVINO]["ops"].get("GatherElements", 0) > 0, placement
        assert not any(op.endswith("TreeEnsembleClassifier") for ops in placement.values() for op in ops["ops"])
        with modelpack.load(path, engine="onnxruntime") as ref:
            np.testing.assert_array_equal(m.predict(X), ref.predict(X))
            np.testing.assert_allclose(m.predict_proba(X), ref.predict_proba(X), rtol=1e-3, atol=1e-4)


def test_engine_onnxruntime_keeps_the_tree_operator(pipeline_onnx: tuple[Path, np.ndarray]) -> None:
    if OPENVINO not in ort.get_available_providers():
        pytest.skip("onnxruntime-openvino is not installed here (make test runs this in .venv-openvino)")
    path, _ = pipeline_onnx
    with pytest.warns(modelpack.PlacementWarning, match="all 2 nodes run on the CPU"), \
            modelpack.load(path, device="openvino", engine="onnxruntime") as m:
        assert m.engine == "onnxruntime"
        assert m.placement is not None
        assert "ai.onnx.ml.TreeEnsembleClassifier" in m.placement["CPUExecutionProvider"]["ops"]


def test_on_openvino_equality_splits_and_softmax_zero_run_on_the_device(
        random_forests: Callable[..., list[tuple[int, Any, int, Any]]], tmp_path: Path) -> None:
    """LightGBM's categorical splits (BRANCH_EQ / BRANCH_NEQ) and SOFTMAX_ZERO run on the device too."""
    if OPENVINO not in ort.get_available_providers():
        pytest.skip("onnxruntime-openvino is not installed here (make test runs this in .venv-openvino)")
    seed, model, n_features, forest = next(
        (seed, model, n_features, forest) for seed, model, n_features, forest in random_forests(200, categorical=True)
        if not isinstance(forest, Unsupported) and forest.has_equal and not forest.classifier
        and forest.n_targets > 1 and forest.post_transform == "SOFTMAX_ZERO")
    path = tmp_path / "categorical.onnx"
    path.write_bytes(model.SerializeToString())
    x = np.ascontiguousarray(np.pad(probe_rows(forest, 300, seed=seed),
                                    ((0, 0), (0, n_features - forest.n_features)), constant_values=0.5))
    with modelpack.load(path, device="openvino") as m, modelpack.load(path, engine="onnxruntime") as ref:
        assert m.engine == "modelpack-trees", m.engine_reason
        placement = m.placement
        # every node on the device: the equality tests, the transform, and nothing left to the CPU
        assert placement is not None and placement[OPENVINO]["ops"].get("Equal", 0) >= 2, placement
        assert not placement.get("CPUExecutionProvider", {"ops": {}})["ops"], placement
        np.testing.assert_allclose(m.predict(x), ref.predict(x), rtol=1e-4, atol=1e-5)
