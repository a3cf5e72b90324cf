"""Fixtures of the tree engine's tests: random TreeEnsembleRegressor / TreeEnsembleClassifier nodes.

Each seed draws a shape (shallow, deep, or one split per level), split modes,
missing-value tracks, thresholds at infinities, leaf weights for one target per
tree or for all, base values, an aggregate, a post transform and labels; the
results cover every rule the engine reproduces.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

MODES = ["BRANCH_LEQ", "BRANCH_LT", "BRANCH_GT", "BRANCH_GTE"]
CATEGORICAL = ["BRANCH_EQ", "BRANCH_NEQ", "BRANCH_EQ", "BRANCH_LEQ", "BRANCH_GT"]


def random_node(seed: int, categorical: bool = False, double: bool = False,
                missing_as: bool = False) -> tuple[Any, int]:
    """(an ``onnx.ModelProto`` holding one random ensemble node, its number of features).

    ``categorical``: splits on equality too (BRANCH_EQ, BRANCH_NEQ) against small whole numbers.
    ``double``: thresholds in double (``nodes_values_as_tensor``) that float32 cannot hold,
    and double inputs, as PMML compiled to ONNX writes them.
    ``missing_as``: each feature's missing value goes where one value of it goes (0, -inf
    or +inf, drawn per feature), as LightGBM and XGBoost trained without missing values send it.
    """
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    modes = CATEGORICAL if categorical else MODES
    classifier = bool(rng.integers(2))
    n_features = int(rng.integers(1, 8))
    shape = ["shallow", "deep", "oblivious"][seed % 3]
    n_trees = int(rng.integers(1, 12))
    if classifier:
        n_out = int(rng.choice([2, 2, 3, 4]))
    else:
        n_out = int(rng.choice([1, 1, 3]))
    dense = bool(rng.integers(2))
    if classifier and n_out == 2:
        weighted = [[0], [1], [0, 1]][int(rng.integers(3))]
    else:
        weighted = list(range(n_out))
    mixed_modes = bool(rng.integers(2))
    mode_one = modes[int(rng.integers(len(modes)))]
    positive = bool(rng.integers(2))

    nodes: dict[str, list[Any]] = {k: [] for k in ("nodes_treeids", "nodes_nodeids", "nodes_featureids",
                                                   "nodes_values", "nodes_modes", "nodes_truenodeids",
                                                   "nodes_falsenodeids", "nodes_missing_value_tracks_true")}
    weights: dict[str, list[Any]] = {"treeids": [], "nodeids": [], "ids": [], "weights": []}

    def threshold() -> float:
        pick = rng.random()
        if categorical:
            return float(rng.integers(4))
        if pick < 0.05:
            return float("inf")
        if pick < 0.1:
            return float("-inf")
        return float(rng.normal()) if double else float(np.float32(rng.normal()))

    missing_value = rng.choice([0.0, -np.inf, np.inf], n_features) if missing_as else None

    def track(feature: int, value: float, mode: str) -> int:
        if not missing_as:
            return int(rng.integers(2))
        assert missing_value is not None
        z = missing_value[feature]
        holds = {"BRANCH_LEQ": z <= value, "BRANCH_LT": z < value, "BRANCH_GT": z > value,
                 "BRANCH_GTE": z >= value, "BRANCH_EQ": z == value, "BRANCH_NEQ": z != value}
        return int(holds[mode])

    forest_depth = int(rng.integers(1, 11))  # CatBoost's trees share one depth (up to 8: uint8 indices)
    for tree in range(n_trees):
        depth = forest_depth if shape == "oblivious" else int(rng.integers(1, 5)) if shape == "shallow" \
            else int(rng.integers(6, 14))
        tree_targets = weighted if dense else [weighted[tree % len(weighted)]]
        level_split = [(f, t, track(f, t, mode_one)) for f, t in
                       ((int(rng.integers(n_features)), threshold()) for _ in range(depth))]
        counter = [0]

        def build(level: int, tree: int = tree, depth: int = depth, tree_targets: list[int] = tree_targets,
                  level_split: list[tuple[int, float, int]] = level_split, counter: list[int] = counter) -> int:
            me = counter[0]
            counter[0] += 1
            leaf = level == depth or (shape != "oblivious" and level > 0 and rng.random() < 0.25)
            nodes["nodes_treeids"].append(tree)
            nodes["nodes_nodeids"].append(me)
            if leaf:
                nodes["nodes_featureids"].append(0)
                nodes["nodes_values"].append(0.0)
                nodes["nodes_modes"].append("LEAF")
                nodes["nodes_truenodeids"].append(0)
                nodes["nodes_falsenodeids"].append(0)
                nodes["nodes_missing_value_tracks_true"].append(0)
                for target in tree_targets:
                    weights["treeids"].append(tree)
                    weights["nodeids"].append(me)
                    weights["ids"].append(target)
                    value = float(np.float32(rng.random() if positive else rng.normal()))
                    weights["weights"].append(value)
                return me
            if shape == "oblivious":
                feature, value, missing = level_split[level]
            else:
                feature, value = int(rng.integers(n_features)), threshold()
                missing = -1 if missing_as else int(rng.integers(2))
            index = len(nodes["nodes_nodeids"]) - 1
            nodes["nodes_featureids"].append(feature)
            nodes["nodes_values"].append(value)
            mode = modes[int(rng.integers(len(modes)))] if mixed_modes and shape != "oblivious" else mode_one
            missing = track(feature, value, mode) if missing < 0 else missing
            nodes["nodes_modes"].append(mode)
            nodes["nodes_missing_value_tracks_true"].append(missing)
            nodes["nodes_truenodeids"].append(-1)
            nodes["nodes_falsenodeids"].append(-1)
            true_child = build(level + 1)
            false_child = build(level + 1)
            nodes["nodes_truenodeids"][index] = true_child
            nodes["nodes_falsenodeids"][index] = false_child
            return me

        build(0)

    attributes: dict[str, Any] = dict(nodes)
    if double:
        attributes["nodes_values_as_tensor"] = numpy_helper.from_array(
            np.array(attributes.pop("nodes_values"), np.float64))
    prefix = "class" if classifier else "target"
    for key, values in weights.items():
        attributes[f"{prefix}_{key}"] = values
    base_choice = int(rng.integers(3))
    if classifier:
        if rng.integers(2):
            attributes["classlabels_int64s"] = [int(v) for v in rng.choice(100, n_out, replace=False)]
        else:
            attributes["classlabels_strings"] = [f"c{i}" for i in range(n_out)]
        if n_out == 2:
            base_choice = int(rng.integers(3))
            if base_choice:
                attributes["base_values"] = [float(np.float32(rng.normal())) for _ in range(base_choice)]
        elif base_choice:
            attributes["base_values"] = [float(np.float32(rng.normal())) for _ in range(n_out)]
        attributes["post_transform"] = ["NONE", "LOGISTIC", "SOFTMAX", "SOFTMAX_ZERO"][int(rng.integers(4))]
        outputs = [helper.make_tensor_value_info(
            "label", TensorProto.STRING if "classlabels_strings" in attributes else TensorProto.INT64, [None]),
            helper.make_tensor_value_info("scores", TensorProto.FLOAT, [None, n_out])]
        op = "TreeEnsembleClassifier"
    else:
        attributes["n_targets"] = n_out
        if base_choice:
            attributes["base_values"] = [float(np.float32(rng.normal())) for _ in range(n_out)]
        attributes["aggregate_function"] = ["SUM", "AVERAGE"][int(rng.integers(2))]
        if n_out > 1:
            attributes["post_transform"] = ["NONE", "LOGISTIC", "SOFTMAX", "SOFTMAX_ZERO"][int(rng.integers(4))]
        outputs = [helper.make_tensor_value_info("variable", TensorProto.FLOAT, [None, n_out])]
        op = "TreeEnsembleRegressor"
    node = helper.make_node(op, ["X"], [o.name for o in outputs], domain="ai.onnx.ml", **attributes)
    element = TensorProto.DOUBLE if double else TensorProto.FLOAT
    graph = helper.make_graph([node], "random", [helper.make_tensor_value_info("X", element, [None, n_features])],
                              outputs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                    helper.make_opsetid("ai.onnx.ml", 3)])
    model.ir_version = 8
    return model, n_features


@pytest.fixture
def random_ensemble() -> Callable[[int], tuple[Any, int]]:
    """``random_ensemble(seed)`` -> (a model of one random ensemble node, its number of features)."""
    return random_node


@pytest.fixture
def random_forests() -> Callable[..., list[tuple[int, Any, int, Any]]]:
    """``random_forests(n, categorical=False, double=False, missing_as=False)``: (seed, model,
    n_features, Forest or the Unsupported raised)."""
    from modelpack._runtime.trees.forest import Unsupported, attributes_of, read_forest

    def read(n: int, categorical: bool = False, double: bool = False,
             missing_as: bool = False) -> list[tuple[int, Any, int, Any]]:
        found = []
        for seed in range(n):
            model, n_features = random_node(seed, categorical, double, missing_as)
            node = model.graph.node[0]
            try:
                forest: Any = read_forest(node.op_type, attributes_of(node))
            except Unsupported as why:
                forest = why
            found.append((seed, model, n_features, forest))
        return found

    return read


@pytest.fixture
def regressor_file(tmp_path: Path) -> Callable[..., Path]:
    """``regressor_file(name, width, **attributes)``: a .onnx file of one TreeEnsembleRegressor node."""
    from onnx import TensorProto, helper

    def write(name: str, width: int, **attributes: Any) -> Path:
        node = helper.make_node("TreeEnsembleRegressor", ["X"], ["Y"], domain="ai.onnx.ml", n_targets=1, **attributes)
        graph = helper.make_graph([node], name, [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, width])],
                                  [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [None, 1])])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                        helper.make_opsetid("ai.onnx.ml", 3)])
        model.ir_version = 8
        path = tmp_path / f"{name}.onnx"
        path.write_bytes(model.SerializeToString())
        return path

    return write


@pytest.fixture
def run_on_cpu() -> Callable[[bytes, dict[str, np.ndarray]], list[Any]]:
    """``run_on_cpu(model_bytes, feeds)``: ONNX Runtime's outputs, one thread (trees summed in order)."""
    ort = pytest.importorskip("onnxruntime")

    def run(model: bytes, feeds: dict[str, np.ndarray]) -> list[Any]:
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"]).run(None, feeds)

    return run


@pytest.fixture(name="random_opset5")
def random_opset5_fixture() -> Callable[[int], tuple[Any, int]]:
    """``random_opset5(seed)`` -> (a model of one random opset-5 TreeEnsemble node, its number of features)."""
    return random_opset5


def random_opset5(seed: int) -> tuple[Any, int]:
    """A random ``TreeEnsemble`` (``ai.onnx.ml`` opset 5) node, set membership included, and its width."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    n_features, n_targets = int(rng.integers(1, 6)), int(rng.choice([1, 1, 2, 3]))
    nodes: dict[str, list[Any]] = {k: [] for k in ("featureids", "splits", "modes", "truenodeids", "trueleafs",
                                                   "falsenodeids", "falseleafs", "missing")}
    leaves: dict[str, list[Any]] = {"targetids": [], "weights": []}
    members: list[float] = []
    roots = []

    def branch(level: int, depth: int) -> tuple[int, int]:
        """(index, is_leaf) of a new subtree."""
        if level == depth or (level > 0 and rng.random() < 0.3):
            leaves["targetids"].append(int(rng.integers(n_targets)))
            leaves["weights"].append(float(np.float32(rng.normal())))
            return len(leaves["weights"]) - 1, 1
        me = len(nodes["splits"])
        mode = int(rng.integers(7))
        for key, value in (("featureids", int(rng.integers(n_features))), ("splits", float(rng.integers(4))),
                           ("modes", mode), ("missing", int(rng.integers(2)))):
            nodes[key].append(value)
        if mode == 6:
            members.extend(float(v) for v in rng.choice(5, int(rng.integers(1, 4)), replace=False))
            members.append(float("nan"))
        for key in ("truenodeids", "trueleafs", "falsenodeids", "falseleafs"):
            nodes[key].append(0)
        for side in ("true", "false"):
            index, leaf = branch(level + 1, depth)
            nodes[f"{side}nodeids"][me], nodes[f"{side}leafs"][me] = index, leaf
        return me, 0

    for _ in range(int(rng.integers(1, 8))):
        root, leaf = branch(0, int(rng.integers(1, 7)))
        if leaf:  # a root must be a node: a split whose two ways reach the leaf
            nodes["featureids"].append(0), nodes["splits"].append(0.0), nodes["modes"].append(0)
            nodes["missing"].append(0)
            for key, value in (("truenodeids", root), ("trueleafs", 1), ("falsenodeids", root), ("falseleafs", 1)):
                nodes[key].append(value)
            root = len(nodes["splits"]) - 1
        roots.append(root)
    attributes: dict[str, Any] = {
        "nodes_featureids": nodes["featureids"], "nodes_truenodeids": nodes["truenodeids"],
        "nodes_trueleafs": nodes["trueleafs"], "nodes_falsenodeids": nodes["falsenodeids"],
        "nodes_falseleafs": nodes["falseleafs"], "nodes_missing_value_tracks_true": nodes["missing"],
        "nodes_splits": numpy_helper.from_array(np.array(nodes["splits"], np.float32)),
        "nodes_modes": numpy_helper.from_array(np.array(nodes["modes"], np.uint8)),
        "leaf_targetids": leaves["targetids"],
        "leaf_weights": numpy_helper.from_array(np.array(leaves["weights"], np.float32)),
        "tree_roots": roots, "n_targets": n_targets, "aggregate_function": int(rng.choice([0, 1])),
        "post_transform": int(rng.choice([0, 1, 2, 3])) if n_targets > 1 else 0}
    if members:
        attributes["membership_values"] = numpy_helper.from_array(np.array(members[:-1], np.float32))
    node = helper.make_node("TreeEnsemble", ["X"], ["Y"], domain="ai.onnx.ml", **attributes)
    graph = helper.make_graph([node], "opset5", [helper.make_tensor_value_info("X", TensorProto.FLOAT,
                                                                               [None, n_features])],
                              [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [None, n_targets])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21), helper.make_opsetid("ai.onnx.ml", 5)])
    model.ir_version = 10
    return model, n_features
