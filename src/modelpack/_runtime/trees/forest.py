"""One in-memory forest read from a TreeEnsembleRegressor or TreeEnsembleClassifier node.

The node's attributes (``ai.onnx.ml`` opsets 1 to 3) are attacker-controlled data:
:func:`read_forest` checks every index before it becomes an array offset, and any
construct the engine does not reproduce exactly raises :class:`Unsupported` with the
reason, so ONNX Runtime runs the model as before and ``Model.engine`` says why.

Two layouts are derived from the node, both plain numpy arrays:

* the *linked* layout, for trees of any depth: nodes in breadth-first order, the two
  children of a node side by side, so a step down is ``left[i] + went_right``;
* the *complete* layout, for shallow trees: every tree padded to a complete binary
  tree of the forest's depth (a short branch's leaf copied into the levels below
  it), so the descent is a fixed number of branch-free steps ``i = 2 * i + 1 + right``
  with no test for a leaf. This is the array layout of XGBoost's CPU predictor.

Every split is rewritten into one form, "go right unless ``x <= t``", with its own
direction for a missing value, so the engine has a single comparison:

===========  ================================  ===============================
ONNX mode    becomes                            children
===========  ================================  ===============================
BRANCH_LEQ   ``x <= t``                         true left, false right
BRANCH_LT    ``x <= t`` less one float32 step   true left, false right
BRANCH_GT    ``x <= t``                         false left, true right
BRANCH_GTE   ``x <= t`` less one float32 step   false left, true right
===========  ================================  ===============================

For float32 inputs and thresholds ``x < t`` is exactly ``x <= nextafter(t, -inf)``.
A threshold of minus infinity becomes NaN there, for which ``x <= t`` is always false,
as ``x < -inf`` is. BRANCH_EQ and BRANCH_NEQ (LightGBM's categorical splits) become
"left when ``x == t``" splits (flag ``equal``), which the linked layout alone takes.
Double thresholds (``nodes_values_as_tensor`` of type double, which PMML compiled to
ONNX writes) make a double forest: the same rules one double step apart, for
double inputs.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from . import MAX_UNFOLDED, Unsupported

__all__ = ["Forest", "Unsupported", "nan_stand_ins", "present_only", "read_forest"]

#: Deepest tree read at all: deeper ones are left to ONNX Runtime.
MAX_DEPTH = 512

_MODES = {"BRANCH_LEQ": 0, "BRANCH_LT": 1, "BRANCH_GT": 2, "BRANCH_GTE": 3, "LEAF": 4, "BRANCH_EQ": 5,
          "BRANCH_NEQ": 6}
_AGGREGATES = ("SUM", "AVERAGE")
_TRANSFORMS = ("NONE", "LOGISTIC", "SOFTMAX", "SOFTMAX_ZERO")


@dataclass(frozen=True)
class Forest:
    """The trees of one ensemble node in the engine's layouts (see the module docstring)."""

    classifier: bool
    n_features: int  # one more than the highest feature index a split reads
    n_targets: int  # targets of a regressor, classes of a classifier
    n_trees: int
    depth: int  # edges on the longest root-to-leaf path
    # Linked layout: feature < 0 marks a leaf, whose ``left`` is its row in ``leaf_values``.
    feature: np.ndarray  # int32
    threshold: np.ndarray  # float32
    nan_left: np.ndarray  # uint8: a missing value goes left
    equal: np.ndarray  # uint8: an equality split, left when ``x == t`` (BRANCH_EQ, BRANCH_NEQ)
    left: np.ndarray  # int32
    roots: np.ndarray  # int32, one per tree
    # One value per leaf when every tree feeds one target (boosting), else one per target.
    leaf_values: np.ndarray  # float32, (leaves, 1) or (leaves, n_targets)
    tree_target: np.ndarray  # int32, the target of each tree; -1 when leaves hold all targets
    aggregate: str
    post_transform: str
    base_values: np.ndarray  # float32
    # Per class or target (None for one target): some leaf on every path gives it a weight.
    has_score: np.ndarray | None = None
    # Classifier only.
    labels: np.ndarray | None = None  # int64 or str labels, in class order
    binary_case: bool = False
    weights_positive: bool = True
    _complete: dict[str, np.ndarray] | None = field(default=None, compare=False, repr=False)  # layouts.complete

    @property
    def scalar_leaves(self) -> bool:
        return bool(self.leaf_values.shape[1] == 1 and self.n_targets >= 1 and (self.tree_target >= 0).all())

    @property
    def has_equal(self) -> bool:
        return bool(self.equal.any())


def read_forest(op_type: str, attributes: Mapping[str, Any]) -> Forest:
    """Read a tree ensemble node's attributes (names to Python values) into a :class:`Forest`."""
    if op_type == "TreeEnsemble":  # opset 5
        from .opset5 import as_regressor

        op_type, attributes = "TreeEnsembleRegressor", as_regressor(attributes)
    if op_type not in ("TreeEnsembleRegressor", "TreeEnsembleClassifier"):
        raise Unsupported(f"the {op_type} operator")
    classifier = op_type == "TreeEnsembleClassifier"
    for name in ("base_values_as_tensor", "target_weights_as_tensor", "class_weights_as_tensor"):
        if name in attributes:
            raise Unsupported(f"double-precision attribute {name}")
    tree_ids = _ints(attributes, "nodes_treeids")
    node_ids = _ints(attributes, "nodes_nodeids")
    features = _ints(attributes, "nodes_featureids")
    values = _thresholds(attributes)
    true_ids = _ints(attributes, "nodes_truenodeids")
    false_ids = _ints(attributes, "nodes_falsenodeids")
    modes_text = [m.decode() if isinstance(m, bytes) else str(m) for m in attributes.get("nodes_modes", ())]
    n_nodes = len(tree_ids)
    if n_nodes == 0:
        raise Unsupported("an ensemble without nodes")
    missing = _ints(attributes, "nodes_missing_value_tracks_true") if "nodes_missing_value_tracks_true" in attributes \
        else np.zeros(n_nodes, np.int64)
    for name, array in (("nodes_nodeids", node_ids), ("nodes_featureids", features), ("nodes_values", values),
                        ("nodes_truenodeids", true_ids), ("nodes_falsenodeids", false_ids),
                        ("nodes_modes", modes_text), ("nodes_missing_value_tracks_true", missing)):
        if len(array) != n_nodes:
            raise Unsupported(f"{name} holds {len(array)} values for {n_nodes} nodes")
    unknown = sorted(set(modes_text) - set(_MODES))
    if unknown:
        raise Unsupported(f"node mode {unknown[0]}")
    modes = np.array([_MODES[m] for m in modes_text], dtype=np.int8)
    inner = modes != _MODES["LEAF"]
    if inner.any() and (features[inner].min() < 0 or features[inner].max() >= 1 << 29):
        raise Unsupported("a feature index out of range")

    if classifier:
        prefix = "class"
        ints = attributes.get("classlabels_int64s")
        strings = attributes.get("classlabels_strings")
        if (ints is None) == (strings is None) or not (len(ints) if ints is not None else len(strings or ())):
            raise Unsupported("class labels that are neither integers nor strings")
        labels = (np.asarray(ints, dtype=np.int64) if ints is not None else
                  np.array([s.decode() if isinstance(s, bytes) else str(s) for s in strings or ()], dtype=object))
        n_targets = len(labels)
    else:
        prefix = "target"
        labels = None
        n_targets = int(attributes.get("n_targets", 1))
    if not 1 <= n_targets <= 1 << 16:
        raise Unsupported(f"{n_targets} targets")
    w_trees = _ints(attributes, f"{prefix}_treeids")
    w_nodes = _ints(attributes, f"{prefix}_nodeids")
    w_targets = _ints(attributes, f"{prefix}_ids")
    w_values = np.asarray(attributes.get(f"{prefix}_weights", ()), dtype=np.float32)
    if not len(w_trees) == len(w_nodes) == len(w_targets) == len(w_values):
        raise Unsupported(f"{prefix}_* attributes of different lengths")
    if len(w_targets) and (w_targets.min() < 0 or w_targets.max() >= n_targets):
        raise Unsupported(f"a weight for a {prefix} beyond the {n_targets} declared")
    aggregate = _text(attributes.get("aggregate_function", "SUM"))
    if aggregate not in _AGGREGATES or (classifier and aggregate != "SUM"):
        raise Unsupported(f"aggregate function {aggregate}")
    post = _text(attributes.get("post_transform", "NONE"))
    if post not in _TRANSFORMS:
        raise Unsupported(f"post transform {post}")
    base = np.asarray(attributes.get("base_values", ()), dtype=np.float32)

    trees = _link(tree_ids, node_ids, features, values, true_ids, false_ids, missing, modes)
    feature, threshold, nan_left, equal, left, roots, depth, leaf_of = trees
    leaf_values, tree_target, has_score = _leaves(leaf_of, w_trees, w_nodes, w_targets, w_values,
                                                  n_targets, len(roots), classifier, len(base) > 0)
    n_features = int(feature.max()) + 1 if (feature >= 0).any() else 1
    forest = Forest(classifier=classifier, n_features=n_features, n_targets=n_targets, n_trees=len(roots),
                    depth=depth, feature=feature, threshold=threshold, nan_left=nan_left, equal=equal, left=left,
                    roots=roots, leaf_values=leaf_values, tree_target=tree_target, aggregate=aggregate,
                    post_transform=post, base_values=base, labels=labels, has_score=has_score,
                    binary_case=classifier and n_targets == 2 and len(set(w_targets.tolist())) == 1,
                    weights_positive=bool((w_values >= 0).all()))
    _check_finalize(forest)
    return forest


def _thresholds(attributes: Mapping[str, Any]) -> np.ndarray:
    """``nodes_values`` as float32, or ``nodes_values_as_tensor`` as float32 or float64."""
    tensor = attributes.get("nodes_values_as_tensor")
    if tensor is None:
        return np.asarray(attributes.get("nodes_values", ()), dtype=np.float32)
    from onnx import TensorProto, numpy_helper

    if getattr(tensor, "data_location", None) == TensorProto.EXTERNAL:
        # to_array would read the file it names, relative to the working directory
        raise Unsupported("nodes_values_as_tensor keeps its data in an external file")
    try:
        values = numpy_helper.to_array(tensor)
    except Exception as exc:  # noqa: BLE001 - a malformed tensor: ONNX Runtime says what it makes of it
        raise Unsupported(f"nodes_values_as_tensor could not be read ({exc})") from None
    if values.dtype not in (np.float32, np.float64):
        raise Unsupported(f"nodes_values_as_tensor of type {values.dtype}")
    return values.reshape(-1)


def _ints(attributes: Mapping[str, Any], name: str) -> np.ndarray:
    return np.asarray(attributes.get(name, ()), dtype=np.int64)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _link(tree_ids: np.ndarray, node_ids: np.ndarray, features: np.ndarray, values: np.ndarray,
          true_ids: np.ndarray, false_ids: np.ndarray, missing: np.ndarray,
          modes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray,
                                      int, dict[tuple[int, int], int]]:
    """The linked layout, breadth first from each tree's root; also each leaf's row, by (tree, node).

    A node that several splits point to (converters write a categorical split on several
    values as a chain of BRANCH_EQ nodes sharing one child) is copied under each of them,
    up to :data:`MAX_UNFOLDED` nodes in all; a cycle ends at :data:`MAX_DEPTH`.
    """
    where: dict[tuple[int, int], int] = {}
    for i, key in enumerate(zip(tree_ids.tolist(), node_ids.tolist(), strict=True)):
        if key in where:
            raise Unsupported(f"node {key[1]} of tree {key[0]} defined twice")
        where[key] = i
    order = list(dict.fromkeys(tree_ids.tolist()))
    pointed = {(t, c) for t, a, b, m in zip(tree_ids.tolist(), true_ids.tolist(), false_ids.tolist(),
                                             modes.tolist(), strict=True) if m != _MODES["LEAF"] for c in (a, b)}
    budget = MAX_UNFOLDED + 4 * len(tree_ids)
    feature: list[int] = []
    threshold: list[float] = []
    nan_left: list[int] = []
    equal: list[int] = []
    left: list[int] = []
    roots = np.empty(len(order), np.int32)
    leaf_of: dict[tuple[int, int], int] = {}
    reached: set[tuple[int, int]] = set()
    deepest = 0
    heads_of: dict[int, list[tuple[int, int]]] = {tree: [] for tree in order}
    for key in where:
        if key not in pointed:
            heads_of[key[0]].append(key)
    for t_index, tree in enumerate(order):
        heads = heads_of[tree]
        if len(heads) != 1:
            raise Unsupported(f"tree {tree} has {len(heads)} roots")
        roots[t_index] = len(feature)
        queue = deque([(heads[0], len(feature), 0)])
        for row in (feature, threshold, nan_left, equal, left):
            row.append(0)
        while queue:
            key, at, level = queue.popleft()
            source = where[key]
            reached.add(key)
            deepest = max(deepest, level)
            if level > MAX_DEPTH:
                raise Unsupported(f"a tree deeper than {MAX_DEPTH} (or a cycle)")
            mode = int(modes[source])
            if mode == _MODES["LEAF"]:
                feature[at] = -1
                left[at] = leaf_of.setdefault(key, len(leaf_of))  # copies of a leaf share its row
                continue
            keys = [(tree, int(true_ids[source])), (tree, int(false_ids[source]))]
            for child in keys:
                if child not in where:
                    raise Unsupported(f"node {child[1]} of tree {tree} is named as a child but not defined")
            _split(mode, values[source], bool(missing[source]), keys, at, threshold, nan_left, equal)
            feature[at] = int(features[source])
            left[at] = len(feature)
            if len(feature) + 2 > budget:
                raise Unsupported(f"trees of more than {budget} nodes once shared nodes are copied")
            for child in keys:
                queue.append((child, len(feature), level + 1))
                for row in (feature, threshold, nan_left, equal, left):
                    row.append(0)
    if len(reached) != len(where):
        raise Unsupported(f"{len(where) - len(reached)} nodes are not reachable from a root")
    return (np.array(feature, np.int32), np.array(threshold, values.dtype), np.array(nan_left, np.uint8),
            np.array(equal, np.uint8), np.array(left, np.int32), roots, deepest, leaf_of)


def _split(mode: int, t: np.floating[Any], goes_true_on_nan: bool, keys: list[tuple[int, int]], at: int,
           threshold: list[float], nan_left: list[int], equal: list[int]) -> None:
    """One split in the engine's form (module docstring); ``keys`` becomes (left child, right child)."""
    value = t  # float32, or float64 in a double forest
    if mode in (1, 3):  # strict comparisons, one step down (below the lowest number: -inf)
        with np.errstate(over="ignore"):
            value = type(t)(np.nan) if t == -np.inf else np.nextafter(t, type(t)(-np.inf))
    if mode in (2, 3):  # the true child is the right one
        keys.reverse()
        nan_left[at] = not goes_true_on_nan
    elif mode == 6:  # x != t: left on x == t; NaN != t holds, so a missing value goes right
        keys.reverse()
        nan_left[at] = 0
    else:
        nan_left[at] = goes_true_on_nan
    equal[at] = mode >= 5
    threshold[at] = float(value)


def _leaves(leaf_of: dict[tuple[int, int], int], w_trees: np.ndarray, w_nodes: np.ndarray, w_targets: np.ndarray,
            w_values: np.ndarray, n_targets: int, n_trees: int, classifier: bool,
            base_given: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Leaf values, one per leaf (each tree feeding one target) or one per target; the classes scored."""
    n_leaves = len(leaf_of)
    tree_of_leaf = np.empty(n_leaves, np.int64)
    tree_index: dict[int, int] = {}
    for (tree, _node), row in leaf_of.items():
        tree_of_leaf[row] = tree_index.setdefault(tree, len(tree_index))
    rows = np.empty(len(w_trees), np.int64)
    for i, key in enumerate(zip(w_trees.tolist(), w_nodes.tolist(), strict=True)):
        found = leaf_of.get(key)
        if found is None:
            raise Unsupported(f"a weight on node {key[1]} of tree {key[0]}, which is not a leaf")
        rows[i] = found
    # Which targets each leaf gives a weight to.
    given = np.zeros((n_leaves, n_targets), dtype=bool)
    given[rows, w_targets] = True
    per_tree_targets: list[set[int]] = [set() for _ in range(n_trees)]
    for row, target in zip(rows.tolist(), w_targets.tolist(), strict=True):
        per_tree_targets[tree_of_leaf[row]].add(target)
    # A class (or one of several targets) is scored for a row when some leaf reached gives
    # it a weight, and reads as 0 otherwise, base value or not: the same for every row
    # only when some tree gives it one on every leaf, or no leaf gives it one.
    has_score: np.ndarray | None = None
    if classifier or n_targets > 1:
        full = np.zeros((n_trees, n_targets), dtype=bool)
        leaves_per_tree = np.bincount(tree_of_leaf, minlength=n_trees)
        for target in range(n_targets):
            counts = np.bincount(tree_of_leaf[given[:, target]], minlength=n_trees)
            full[:, target] = counts == leaves_per_tree
        has_score = np.asarray(full.any(axis=0), dtype=bool)
        partial = given.any(axis=0) & ~has_score
        if partial.any() and not classifier and not base_given:
            # Without base values a target no leaf scored reads as its sum, 0, either way.
            has_score |= partial
        elif partial.any():
            what = "class" if classifier else "target"
            raise Unsupported(f"{what} {int(np.argmax(partial))} is scored on some paths only")
    if all(len(s) <= 1 for s in per_tree_targets):
        values = np.zeros((n_leaves, 1), np.float32)
        np.add.at(values[:, 0], rows, w_values)
        tree_target = np.array([next(iter(s)) if s else 0 for s in per_tree_targets], dtype=np.int32)
        return values, tree_target, has_score
    if n_leaves * n_targets > 1 << 28:
        raise Unsupported(f"{n_leaves} leaves of {n_targets} values each")
    dense = np.zeros((n_leaves, n_targets), np.float32)
    np.add.at(dense, (rows, w_targets), w_values)
    return dense, np.full(n_trees, -1, np.int32), has_score


def _check_finalize(forest: Forest) -> None:
    """Refuse the classifier cases whose outputs ONNX Runtime leaves partly unwritten."""
    if not forest.classifier:
        return
    assert forest.has_score is not None  # noqa: S101 (set for every classifier)
    if forest.n_targets == 1:
        raise Unsupported("a classifier of one class")
    if not forest.has_score.any():
        raise Unsupported("a classifier whose trees score no class")
    if forest.n_targets == 2 and not forest.has_score[1] and len(forest.base_values) < 2 \
            and not forest.binary_case:
        raise Unsupported("a two-class classifier whose second score ONNX Runtime leaves unwritten")


def nan_stand_ins(forest: Forest) -> np.ndarray:
    """Per feature, a number every split on it sends where it sends a missing value; NaN where none does.

    A missing value replaced by its feature's stand-in walks every tree as the missing
    value does, so the row takes the step without the missing-value test (measured:
    LightGBM's rows with a missing value went at half the speed of the others). The
    stand-in is the lowest threshold of the splits that send a missing value left,
    which the splits sending it right must all lie below: +inf where every split sends
    it right (XGBoost trained without missing values), 0 where LightGBM treats a missing
    value as zero. A feature no split reads takes 0; one read by an equality split, or
    by a split that sends no present value left but a missing one left, has none.
    """
    n = forest.n_features
    inner = forest.feature >= 0
    feature = forest.feature[inner]
    threshold = forest.threshold[inner].astype(np.float64)
    nan_left = forest.nan_left[inner].astype(bool)
    never = np.isnan(threshold)  # a split no present value passes: only its missing rule matters
    above = np.full(n, -np.inf)  # the stand-in must lie above the splits sending a missing value right
    np.maximum.at(above, feature[~nan_left & ~never], threshold[~nan_left & ~never])
    stand_in = np.full(n, np.inf)  # and at or below those sending it left
    np.minimum.at(stand_in, feature[nan_left & ~never], threshold[nan_left & ~never])
    none = above >= stand_in
    none[feature[forest.equal[inner].astype(bool) | (never & nan_left)]] = True
    read = np.zeros(n, bool)
    read[feature] = True
    stand_in[~read] = 0.0
    stand_in[none] = np.nan
    return stand_in.astype(forest.threshold.dtype)


def present_only(forest: Forest) -> Forest | None:
    """The forest as a row without a missing value walks it, or None when that is the forest itself.

    A split that sends every present value one way only tests for a missing value:
    ``x <= +inf`` (always left) or a NaN threshold (never left). PMML's ``nullPrediction``
    compiles to such tests, one under each comparison a missing value may fail, which
    nearly doubles a tree's depth; rows without a missing value skip them here. Leaves
    keep their rows in ``leaf_values`` and trees their order, so the sums are the same
    to the bit.
    """
    inner = forest.feature >= 0
    always_left = inner & (forest.threshold == np.inf) & (forest.equal == 0)
    never_left = inner & np.isnan(forest.threshold)
    if not (always_left | never_left).any():
        return None
    decided = {int(i): 0 for i in np.flatnonzero(always_left)} | {int(i): 1 for i in np.flatnonzero(never_left)}
    old_left = forest.left.tolist()
    old_feature = forest.feature.tolist()
    keep: list[int] = []  # the old node at each new position
    left: list[int] = []
    roots = np.empty(forest.n_trees, np.int32)
    deepest = 0
    for t, root in enumerate(forest.roots.tolist()):
        roots[t] = len(keep)
        queue = deque([(root, len(keep), 0)])
        keep.append(-1)
        left.append(0)
        while queue:
            node, at, level = queue.popleft()
            while node in decided:
                node = old_left[node] + decided[node]
            keep[at] = node
            deepest = max(deepest, level)
            if old_feature[node] < 0:
                left[at] = old_left[node]  # a leaf: its row in leaf_values
                continue
            left[at] = len(keep)
            for child in (old_left[node], old_left[node] + 1):
                queue.append((child, len(keep), level + 1))
                keep.append(-1)
                left.append(0)
    old = np.asarray(keep, np.int64)
    return replace(forest, depth=deepest, feature=forest.feature[old], threshold=forest.threshold[old],
                   nan_left=forest.nan_left[old], equal=forest.equal[old], left=np.asarray(left, np.int32),
                   roots=roots, _complete=None)


def attributes_of(node: Any) -> dict[str, Any]:
    """A NodeProto's attributes as Python values."""
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def describe(forest: Forest, layout: str) -> str:
    """One line for ``Model.engine_reason``."""
    what = ("class" if forest.classifier else "target") + ("" if forest.n_targets == 1 else ("es" if forest.classifier else "s"))
    return f"{forest.n_trees} trees, depth {forest.depth}, {forest.n_targets} {what}, {layout} layout"
