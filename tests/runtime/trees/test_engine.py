"""The tree engine against ONNX Runtime on the ensemble node alone: the same outputs, every rule.

Random nodes (see conftest.py) cover split modes, missing-value tracks, infinite
thresholds, one target per tree or all targets per leaf, base values, averages,
post transforms, the two-class conventions and string labels; each layout runs on
the rows that meet every split (thresholds, one float32 step either side, NaN,
infinities).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("numba", reason="the tree engine needs numba (pip install 'modelpack[trees]')")

from modelpack._runtime.trees.backend import disagreement, probe_rows  # noqa: E402
from modelpack._runtime.trees.engine import TreeEngine, choose_layout  # noqa: E402
from modelpack._runtime.trees.forest import Unsupported, attributes_of, read_forest  # noqa: E402
from modelpack._runtime.trees.layouts import complete  # noqa: E402

LAYOUTS = ("oblivious", "complete", "levels")


def _check(model: Any, forest: Any, layout: str, x: np.ndarray, run_on_cpu: Callable[..., list[Any]]) -> None:
    want = run_on_cpu(model.SerializeToString(), {"X": x})
    got = TreeEngine(forest, 1, layout).run(x)
    scores = np.asarray(want[-1]) if forest.classifier else None
    for w, g in zip(want, got, strict=True):
        problem = disagreement(np.asarray(w), np.asarray(g), scores)
        assert problem is None, f"{layout}: {problem}"


def _check_every_layout(model: Any, forest: Any, x: np.ndarray, run_on_cpu: Callable[..., list[Any]],
                        taken: Counter[str]) -> None:
    """:func:`_check` on each layout that fits the forest, each counted in ``taken``."""
    for layout in LAYOUTS:
        try:
            TreeEngine(forest, 1, layout)
        except ValueError:
            continue
        _check(model, forest, layout, x, run_on_cpu)
        taken[layout] += 1


def _padded(x: np.ndarray, n_features: int) -> np.ndarray:
    """``x`` widened to the model's input with columns no split reads."""
    return np.ascontiguousarray(np.pad(x, ((0, 0), (0, n_features - x.shape[1])), constant_values=0.5))


def test_random_ensembles_match_onnxruntime(random_forests: Callable[[int], list[tuple[int, Any, int, Any]]],
                                            run_on_cpu: Callable[..., list[Any]]) -> None:
    taken: Counter[str] = Counter()
    for seed, model, n_features, forest in random_forests(240):
        if isinstance(forest, Unsupported):
            taken[f"unsupported: {forest}"] += 1
            continue
        x = np.vstack([probe_rows(forest, 200, seed=seed),
                       np.random.default_rng(seed).normal(size=(50, forest.n_features)).astype(np.float32)])
        x = _padded(x, n_features)
        _check_every_layout(model, forest, x, run_on_cpu, taken)
        taken["kind:" + ("classifier" if forest.classifier else "regressor")] += 1
    # Every layout was exercised, and what the engine leaves to ONNX Runtime stays rare.
    assert all(taken[layout] >= 20 for layout in LAYOUTS), taken
    refused = sum(v for k, v in taken.items() if k.startswith("unsupported"))
    assert refused < 30, taken


def test_equality_splits_match_onnxruntime(random_forests: Callable[..., list[tuple[int, Any, int, Any]]],
                                          run_on_cpu: Callable[..., list[Any]]) -> None:
    """BRANCH_EQ / BRANCH_NEQ (LightGBM's categorical splits), mixed with the others, NaN among the rows."""
    taken = 0
    for seed, model, n_features, forest in random_forests(60, categorical=True):
        if isinstance(forest, Unsupported):
            continue
        x = np.vstack([probe_rows(forest, 200, seed=seed),
                       np.random.default_rng(seed).integers(0, 4, size=(100, forest.n_features)).astype(np.float32)])
        x = _padded(x, n_features)
        _check(model, forest, "levels", x, run_on_cpu)
        taken += forest.has_equal
        assert complete(forest) is None or not forest.has_equal
    assert taken >= 30


def test_double_thresholds_match_onnxruntime(random_forests: Callable[..., list[tuple[int, Any, int, Any]]],
                                            run_on_cpu: Callable[..., list[Any]]) -> None:
    """Double thresholds float32 cannot hold (PMML compiled to ONNX), double rows a double step
    either side of them: every layout compares in double."""
    taken: Counter[str] = Counter()
    for seed, model, n_features, forest in random_forests(90, double=True):
        if isinstance(forest, Unsupported):
            continue
        assert forest.threshold.dtype == np.float64
        x = probe_rows(forest, 200, seed=seed)
        assert x.dtype == np.float64
        x = _padded(x, n_features)
        _check_every_layout(model, forest, x, run_on_cpu, taken)
    assert all(taken[layout] >= 10 for layout in LAYOUTS), taken


def test_missing_values_walked_as_their_stand_ins_match_onnxruntime(
        random_forests: Callable[..., list[tuple[int, Any, int, Any]]], run_on_cpu: Callable[..., list[Any]]) -> None:
    """Where every split on a feature sends a missing value where one number goes (0, -inf, +inf:
    LightGBM and XGBoost trained without missing values), rows with missing values are walked as
    rows without, in every layout and in double, with ONNX Runtime's answers."""
    from modelpack._runtime.trees.forest import nan_stand_ins

    taken: Counter[str] = Counter()
    for double in (False, True):
        for seed, model, n_features, forest in random_forests(90, double=double, missing_as=True):
            if isinstance(forest, Unsupported):
                continue
            stand_in = nan_stand_ins(forest)
            taken["features"] += forest.n_features
            taken["with a stand-in"] += int(np.count_nonzero(~np.isnan(stand_in)))
            rng = np.random.default_rng(seed)
            x = probe_rows(forest, 200, seed=seed)
            x[rng.random(x.shape) < 0.3] = np.nan
            _check_every_layout(model, forest, _padded(x, n_features), run_on_cpu, taken)
    assert all(taken[layout] >= 10 for layout in LAYOUTS), taken
    assert taken["with a stand-in"] >= 0.8 * taken["features"], taken


def _one_tree(splits: list[tuple[int, float, str, int]]) -> Any:
    """A regressor of one chain of splits (feature, threshold, mode, missing goes to the true side)."""
    from modelpack._runtime.trees.forest import read_forest

    n = len(splits)
    attributes: dict[str, Any] = {
        "nodes_treeids": [0] * (2 * n + 1), "nodes_nodeids": list(range(2 * n + 1)),
        "nodes_featureids": [f for f, _, _, _ in splits] + [0] * (n + 1),
        "nodes_values": [t for _, t, _, _ in splits] + [0.0] * (n + 1),
        "nodes_modes": [m for _, _, m, _ in splits] + ["LEAF"] * (n + 1),
        # node i: true child i + 1 (the next split, or the last leaf), false child n + 1 + i (a leaf)
        "nodes_truenodeids": [i + 1 if i + 1 < n else 2 * n for i in range(n)] + [0] * (n + 1),
        "nodes_falsenodeids": [n + i for i in range(n)] + [0] * (n + 1),
        "nodes_missing_value_tracks_true": [t for _, _, _, t in splits] + [0] * (n + 1),
        "target_treeids": [0] * (n + 1), "target_nodeids": list(range(n, 2 * n + 1)),
        "target_ids": [0] * (n + 1), "target_weights": [float(i) for i in range(n + 1)], "n_targets": 1}
    return read_forest("TreeEnsembleRegressor", attributes)


def test_a_stand_in_exists_only_where_every_split_agrees() -> None:
    from modelpack._runtime.trees.forest import nan_stand_ins

    forest = _one_tree([
        (0, 1.0, "BRANCH_LEQ", 1), (0, 3.0, "BRANCH_LEQ", 1), (0, -2.0, "BRANCH_LEQ", 0),  # between -2 and 1
        (1, 1.0, "BRANCH_LEQ", 0), (1, 5.0, "BRANCH_GT", 1),  # always right: +inf
        (2, 1.0, "BRANCH_LEQ", 1), (2, 3.0, "BRANCH_LEQ", 0),  # left below 1, right above 3: none
        (3, 2.0, "BRANCH_EQ", 1),  # an equality split: none
        (5, 0.5, "BRANCH_LT", 1), (5, -0.5, "BRANCH_GTE", 0)])  # feature 4 is read by no split
    stand_in = nan_stand_ins(forest)
    assert stand_in[0] == 1.0 and stand_in[1] == np.inf and stand_in[4] == 0.0
    assert np.isnan(stand_in[2]) and np.isnan(stand_in[3])
    # x < 0.5 sends it to its true side, x >= -0.5 to its false one: below -0.5, as x <= the float below -0.5
    assert stand_in[5] == np.nextafter(np.float32(-0.5), np.float32(-np.inf))
    assert stand_in.dtype == np.float32


def test_rows_with_a_missing_value_walk_keyed_splits_with_the_float_comparisons_answers() -> None:
    """A row holding a missing value no stand-in replaces walks the splits as unsigned keys:
    each split, each mode, each missing-value way, at the thresholds where a key could go
    wrong (-0.0 and 0.0, the smallest numbers either side of 0, the largest, infinities)."""
    tiny = float(np.nextafter(np.float32(0), np.float32(1)))
    big = float(np.finfo(np.float32).max)
    thresholds = [-np.inf, -big, -1.0, -tiny, -0.0, 0.0, tiny, 1.0, big, np.inf]
    with np.errstate(over="ignore"):  # the number after the largest is inf
        steps = [np.nextafter(np.float32(t), np.float32(d)) for t in thresholds for d in (-np.inf, np.inf)]
    column = np.array(thresholds + steps + [np.nan], np.float32)  # -0.0 and 0.0 both, as written
    # A second column, missing in every row and given no stand-in, sends every row down the keys.
    x = np.column_stack([column, np.full_like(column, np.nan)])
    holds = {"BRANCH_LEQ": np.less_equal, "BRANCH_LT": np.less, "BRANCH_GT": np.greater,
             "BRANCH_GTE": np.greater_equal}
    for t in thresholds:
        for mode, test in holds.items():
            for track in (0, 1):
                forest = _one_tree([(0, t, mode, track)])
                # the true side is value 1 (the chain's last leaf), the false side 0
                expected = np.where(np.isnan(column), track, test(column, np.float32(t))).astype(np.float32)
                for layout in ("complete", "levels"):
                    engine = TreeEngine(forest, 1, layout)
                    assert engine._args[-1].dtype == np.uint32, "keyed splits for rows with a missing value"
                    engine._stand_in = np.full(2, np.nan, np.float32)
                    for rows in (x, x[:, :1]):  # walked as keys, and as floats but for the missing value
                        got = engine.scores(np.ascontiguousarray(rows))[:, 0]
                        np.testing.assert_array_equal(got, expected, err_msg=f"{layout}: x {mode} {t!r}, "
                                                                             f"track {track}, {rows.shape[1]} columns")


def test_trees_of_few_leaves_with_deep_branches_stop_the_walk_without_leaf_tests_sooner() -> None:
    from modelpack._runtime.trees.layouts import EARLIER, levels_layout

    # a chain of 6 splits: leaves at depths 1 to 6 and 6 (mean 3.9), walked to 6 before the rule
    thresholds = [5.0, 4.0, 3.0, 2.0, 1.0, 0.0]
    chain = _one_tree([(0, t, "BRANCH_LEQ", 0) for t in thresholds])
    assert levels_layout(chain)["free"].tolist() == [6 - EARLIER]
    # leaves at depths 1, 2, 2: near the bottom, so walked to the bottom
    short = _one_tree([(0, 1.0, "BRANCH_LEQ", 0), (0, 2.0, "BRANCH_LEQ", 0)])
    assert levels_layout(short)["free"].tolist() == [2]
    # every leaf is reached, above and below the free steps: a leaf's value is the splits passed
    x = np.linspace(-1, 7, 33, dtype=np.float32)[:, None]
    expected = [next((i for i, t in enumerate(thresholds) if not v <= t), 6) for v in x[:, 0]]
    got = TreeEngine(chain, 1, layout="levels").scores(x)[:, 0]
    np.testing.assert_array_equal(got, np.array(expected, np.float32))
    assert set(expected) == set(range(7))


def test_rows_wider_than_the_forest_reads_take_a_stand_in_per_column() -> None:
    """The loops read a stand-in for every column of the rows; columns no split reads take 0, so a
    missing value there changes nothing (and no read goes past the forest's own columns)."""
    forest = _one_tree([(0, 1.0, "BRANCH_LEQ", 1), (1, -1.0, "BRANCH_GT", 0), (2, 0.5, "BRANCH_LEQ", 1)])
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 40)).astype(np.float32)
    x[:, 3:][rng.random((300, 37)) < 0.5] = np.nan
    x[rng.random(300) < 0.3, 1] = np.nan
    unread = x.copy()
    unread[:, 3:] = 0.0
    for layout in ("complete", "levels"):
        engine = TreeEngine(forest, 1, layout)
        np.testing.assert_array_equal(engine.run(x)[0], engine.run(unread)[0])
        stand_in = engine._stand_ins(x.shape[1])
        assert len(stand_in) == 40 and not stand_in[3:].any()


def test_double_thresholds_kept_in_an_external_file_are_not_read(tmp_path: Any, monkeypatch: Any) -> None:
    """A tensor attribute naming an external file: refused as unsupported, the file never opened."""
    from onnx import TensorProto

    secret = tmp_path / "secret.bin"
    secret.write_bytes(np.arange(3, dtype=np.float64).tobytes())
    monkeypatch.chdir(tmp_path)
    tensor = TensorProto(name="values", data_type=TensorProto.DOUBLE, dims=[3])
    tensor.data_location = TensorProto.EXTERNAL
    tensor.external_data.add(key="location", value="secret.bin")
    attributes = {"nodes_treeids": [0, 0, 0], "nodes_nodeids": [0, 1, 2], "nodes_featureids": [0, 0, 0],
                  "nodes_modes": ["BRANCH_LEQ", "LEAF", "LEAF"], "nodes_truenodeids": [1, 0, 0],
                  "nodes_falsenodeids": [2, 0, 0], "nodes_values_as_tensor": tensor, "target_treeids": [0, 0],
                  "target_nodeids": [1, 2], "target_ids": [0, 0], "target_weights": [1.0, 2.0]}
    with pytest.raises(Unsupported, match="external file"):
        read_forest("TreeEnsembleRegressor", attributes)


def test_rows_without_missing_values_skip_the_missing_value_tests(
        random_forests: Callable[..., list[tuple[int, Any, int, Any]]], run_on_cpu: Callable[..., list[Any]]) -> None:
    """A split that sends every present value one way (``x <= inf``, ``x < -inf``) is skipped by
    rows without a missing value; batches all clean, all missing and mixed give ONNX Runtime's answers."""
    from modelpack._runtime.trees.forest import present_only

    pruned = 0
    for seed, model, n_features, forest in random_forests(120):
        if isinstance(forest, Unsupported):
            continue
        engine = TreeEngine(forest, 1)
        present = present_only(forest)
        if present is None:
            continue
        pruned += 1
        assert present.depth <= forest.depth and len(present.feature) <= len(forest.feature)
        assert "rows without a missing value" in engine.describe()
        probe = probe_rows(forest, 300, seed=seed)
        clean = np.nan_to_num(probe, nan=0.25)
        for x in (probe, clean, np.full_like(probe, np.nan)):
            x = _padded(x, n_features)
            want = run_on_cpu(model.SerializeToString(), {"X": x})
            scores = np.asarray(want[-1]) if forest.classifier else None
            for rows in (x, np.asfortranarray(x)):  # a matrix read through its transpose (split.py)
                for w, g in zip(want, engine.run(rows), strict=True):
                    assert disagreement(np.asarray(w), np.asarray(g), scores) is None
    assert pruned >= 20


def test_opset5_tree_ensembles_match_onnxruntime(random_opset5: Callable[[int], tuple[Any, int]],
                                                 run_on_cpu: Callable[..., list[Any]]) -> None:
    """The opset-5 TreeEnsemble operator: set membership, equality, missing tracks, NaN among the rows."""
    taken: Counter[str] = Counter()
    for seed in range(60):
        model, n_features = random_opset5(seed)
        node = model.graph.node[0]
        try:
            forest = read_forest(node.op_type, attributes_of(node))
        except Unsupported as why:
            taken[str(why)] += 1
            continue
        x = np.vstack([probe_rows(forest, 150, seed=seed),
                       np.random.default_rng(seed).integers(0, 5, size=(100, forest.n_features)).astype(np.float32)])
        x = _padded(x, n_features)
        _check(model, forest, choose_layout(forest), x, run_on_cpu)
        taken["taken"] += 1
    assert taken["taken"] >= 55, taken


def test_layout_choice_follows_the_shape(random_ensemble: Callable[[int], tuple[Any, int]]) -> None:
    chosen = Counter()
    for seed in range(60):
        model, _ = random_ensemble(seed)
        node = model.graph.node[0]
        try:
            forest = read_forest(node.op_type, attributes_of(node))
        except Unsupported:
            continue
        chosen[(seed % 3, choose_layout(forest))] += 1
    # seed % 3: 0 shallow, 1 deep, 2 one split per level
    assert chosen[(2, "oblivious")] > 0 and chosen[(1, "levels")] > 0 and chosen[(0, "complete")] > 0, chosen
    assert not any(layout == "oblivious" for (shape, layout) in chosen if shape == 1), chosen


def test_threads_give_the_same_answers(random_ensemble: Callable[[int], tuple[Any, int]]) -> None:
    model, n_features = random_ensemble(4)
    node = model.graph.node[0]
    forest = read_forest(node.op_type, attributes_of(node))
    x = np.random.default_rng(0).normal(size=(5000, n_features)).astype(np.float32)
    one, two = TreeEngine(forest, 1).scores(x), TreeEngine(forest, 2).scores(x)
    np.testing.assert_array_equal(one, two)


def test_the_loops_for_the_rows_order_are_compiled_at_load(random_ensemble: Callable[[int], tuple[Any, int]]) -> None:
    """An engine told it will read Fortran-ordered rows (a matrix through its transpose) compiles
    that loop when it is built, not on the first batch."""
    from numba import types

    model, n_features = random_ensemble(4)
    node = model.graph.node[0]
    forest = read_forest(node.op_type, attributes_of(node))
    engine = TreeEngine(forest, 1, order="F")
    kernel = engine._kernel

    def layouts() -> set[str]:
        return {sig[0].layout for sig in kernel.signatures if isinstance(sig[0], types.Array)}

    assert "F" in layouts()
    x = np.random.default_rng(1).normal(size=(300, n_features)).astype(np.float32)
    np.testing.assert_array_equal(engine.scores(np.asfortranarray(x)), engine.scores(x))


def test_empty_batch() -> None:
    from onnx import helper

    node = helper.make_node("TreeEnsembleRegressor", ["X"], ["Y"], domain="ai.onnx.ml",
                            nodes_treeids=[0, 0, 0], nodes_nodeids=[0, 1, 2], nodes_featureids=[0, 0, 0],
                            nodes_values=[0.5, 0, 0], nodes_modes=["BRANCH_LEQ", "LEAF", "LEAF"],
                            nodes_truenodeids=[1, 0, 0], nodes_falsenodeids=[2, 0, 0], target_treeids=[0, 0],
                            target_nodeids=[1, 2], target_ids=[0, 0], target_weights=[1.0, 2.0], n_targets=1)
    engine = TreeEngine(read_forest(node.op_type, attributes_of(node)), 1)
    assert engine.run(np.zeros((0, 1), np.float32))[0].shape == (0, 1)
    np.testing.assert_array_equal(engine.run(np.array([[0.0], [1.0], [np.nan]], np.float32))[0],
                                  [[1.0], [2.0], [2.0]])


_SCRIPT = """
import numpy as np
from onnx import helper
from modelpack._runtime.trees import engine
from modelpack._runtime.trees.forest import attributes_of, read_forest
node = helper.make_node("TreeEnsembleRegressor", ["X"], ["Y"], domain="ai.onnx.ml",
                        nodes_treeids=[0, 0, 0], nodes_nodeids=[0, 1, 2], nodes_featureids=[0, 0, 0],
                        nodes_values=[0.5, 0, 0], nodes_modes=["BRANCH_LEQ", "LEAF", "LEAF"],
                        nodes_truenodeids=[1, 0, 0], nodes_falsenodeids=[2, 0, 0], target_treeids=[0, 0],
                        target_nodeids=[1, 2], target_ids=[0, 0], target_weights=[1.0, 2.0], n_targets=1)
e = engine.TreeEngine(read_forest(node.op_type, attributes_of(node)), 1)
print(e.run(np.array([[0.0], [1.0]], np.float32))[0].ravel().tolist(), engine._CACHING)
"""


def _fresh_process(cache: Any) -> str:
    import os
    import subprocess
    import sys

    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache)}
    done = subprocess.run([sys.executable, "-c", _SCRIPT], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_a_damaged_compile_cache_is_rebuilt(tmp_path: Any) -> None:
    cache = tmp_path / "numba"
    assert _fresh_process(cache) == "[1.0, 2.0] True"
    entries = [p for p in cache.rglob("*") if p.is_file()]
    assert entries
    for entry in entries:  # truncated or overwritten entries: numba's loader would fail on them
        entry.write_bytes(b"\x80\x04not a cache entry")
    assert _fresh_process(cache) == "[1.0, 2.0] True"
    assert any(p.read_bytes()[:4] != b"\x80\x04no" for p in cache.rglob("*") if p.is_file())


def test_a_cache_folder_others_may_write_is_not_used(tmp_path: Any) -> None:
    cache = tmp_path / "shared"
    cache.mkdir()
    cache.chmod(0o777)
    assert _fresh_process(cache) == "[1.0, 2.0] False"
    assert not any(cache.iterdir())
