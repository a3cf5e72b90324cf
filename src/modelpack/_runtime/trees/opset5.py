"""The ``ai.onnx.ml`` opset-5 ``TreeEnsemble`` operator, read into the older operators' form.

Opset 5 names nodes by their index in the ``nodes_*`` arrays, leaves by their index
in ``leaf_*``, enumerates modes, transforms and aggregates as integers, keeps
thresholds and weights in tensors, and adds set membership (``BRANCH_MEMBER``: the
true branch when ``x`` is one of a node's ``membership_values``). :func:`as_regressor`
rewrites it as a ``TreeEnsembleRegressor``'s attributes, which
:func:`~.forest.read_forest` reads and checks as any other:

* each tree is walked from its root; a node reached by several trees is written
  into each of them (node ids stay the opset-5 indices, leaves come after them);
* a membership split on ``{a, b, ...}`` becomes a chain of ``BRANCH_EQ`` splits, one
  per member, all sending the true way to the same node and a missing value the way
  the node says; the last one's false way is the node's. A set without members
  is refused, as ONNX Runtime refuses it.

The operator has no base values and one output, ``Y``. Double or half-precision
tensors are left to ONNX Runtime.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from typing import Any

import numpy as np

from . import MAX_UNFOLDED, Unsupported

__all__ = ["as_regressor"]

_MODES = ("BRANCH_LEQ", "BRANCH_LT", "BRANCH_GTE", "BRANCH_GT", "BRANCH_EQ", "BRANCH_NEQ", "BRANCH_MEMBER")
_AGGREGATES = ("AVERAGE", "SUM", "MIN", "MAX")
#: As ONNX Runtime (1.32) reads them: 1 LOGISTIC and 2 SOFTMAX, where the specification
#: says the reverse. The engine gives ONNX Runtime's answers; the probe at load would
#: catch a version that reads them the other way.
_TRANSFORMS = ("NONE", "LOGISTIC", "SOFTMAX", "SOFTMAX_ZERO", "PROBIT")
_MEMBER = 6


def as_regressor(attributes: Mapping[str, Any]) -> dict[str, Any]:
    """The attributes of an equivalent ``TreeEnsembleRegressor`` node (opset 3)."""
    splits = _floats(attributes, "nodes_splits")
    features = _ints(attributes, "nodes_featureids")
    modes = _ints(attributes, "nodes_modes")
    true_ids, false_ids = _ints(attributes, "nodes_truenodeids"), _ints(attributes, "nodes_falsenodeids")
    true_leaf, false_leaf = _ints(attributes, "nodes_trueleafs"), _ints(attributes, "nodes_falseleafs")
    n = len(splits)
    missing = _ints(attributes, "nodes_missing_value_tracks_true") if "nodes_missing_value_tracks_true" in \
        attributes else np.zeros(n, np.int64)
    for name, array in (("nodes_featureids", features), ("nodes_modes", modes), ("nodes_truenodeids", true_ids),
                        ("nodes_falsenodeids", false_ids), ("nodes_trueleafs", true_leaf),
                        ("nodes_falseleafs", false_leaf), ("nodes_missing_value_tracks_true", missing)):
        if len(array) != n:
            raise Unsupported(f"{name} holds {len(array)} values for {n} nodes")
    weights = _floats(attributes, "leaf_weights")
    targets = _ints(attributes, "leaf_targetids")
    if len(weights) != len(targets):
        raise Unsupported("leaf_weights and leaf_targetids of different lengths")
    if n == 0 or (modes < 0).any() or (modes >= len(_MODES)).any():
        raise Unsupported("an ensemble without nodes" if n == 0 else "an unknown node mode")
    sets = _member_sets(attributes, int((modes == _MEMBER).sum()))
    out = _Writer(len(weights), budget=MAX_UNFOLDED + 4 * n)
    member_of = {int(i): k for k, i in enumerate(np.flatnonzero(modes == _MEMBER))}
    roots = _ints(attributes, "tree_roots")
    for tree, root in enumerate(roots.tolist()):
        if not 0 <= root < n:
            raise Unsupported(f"tree {tree}'s root {root} is not a node")
        queue, seen = deque([root]), {root}
        while queue:
            i = queue.popleft()
            ends = [(int(true_ids[i]), bool(true_leaf[i])), (int(false_ids[i]), bool(false_leaf[i]))]
            child = [out.leaf(tree, j, n) if is_leaf else j for j, is_leaf in ends]
            for (j, is_leaf) in ends:
                if not is_leaf and not 0 <= j < n:
                    raise Unsupported(f"node {i} names node {j}, which is not defined")
                if not is_leaf and j not in seen:
                    seen.add(j)
                    queue.append(j)
            if modes[i] == _MEMBER:
                out.member_chain(tree, i, int(features[i]), sets[member_of[i]], child, int(missing[i]))
            else:
                out.split(tree, i, _MODES[modes[i]], int(features[i]), float(splits[i]), child, int(missing[i]))
    return out.attributes(weights, targets, attributes)


class _Writer:
    """The opset-3 attribute lists, written node by node."""

    def __init__(self, n_leaves: int, budget: int) -> None:
        self.nodes: dict[str, list[Any]] = {k: [] for k in (
            "nodes_treeids", "nodes_nodeids", "nodes_featureids", "nodes_values", "nodes_modes",
            "nodes_truenodeids", "nodes_falsenodeids", "nodes_missing_value_tracks_true")}
        self.leaves: list[tuple[int, int, int]] = []  # (tree, node id, leaf index)
        self.n_leaves = n_leaves
        self.budget = budget
        self.next_id: int | None = None
        self.written: set[tuple[int, int]] = set()

    def split(self, tree: int, node: int, mode: str, feature: int, value: float, child: list[int],
              missing: int) -> None:
        if len(self.nodes["nodes_nodeids"]) >= self.budget:
            raise Unsupported(f"trees of more than {self.budget} nodes once shared nodes are copied")
        for key, v in (("nodes_treeids", tree), ("nodes_nodeids", node), ("nodes_featureids", feature),
                       ("nodes_values", value), ("nodes_modes", mode), ("nodes_truenodeids", child[0]),
                       ("nodes_falsenodeids", child[1]), ("nodes_missing_value_tracks_true", missing)):
            self.nodes[key].append(v)

    def leaf(self, tree: int, index: int, n_nodes: int) -> int:
        if not 0 <= index < self.n_leaves:
            raise Unsupported(f"a branch names leaf {index}, which is not defined")
        node = n_nodes + index
        if (tree, node) not in self.written:  # a leaf two branches of a tree share is written once
            self.written.add((tree, node))
            self.leaves.append((tree, node, index))
            self.split(tree, node, "LEAF", 0, 0.0, [0, 0], 0)
        return node

    def member_chain(self, tree: int, node: int, feature: int, members: list[float], child: list[int],
                     missing: int) -> None:
        """``x in members`` as equality splits: the first keeps the node's id, the others get new ones."""
        if self.next_id is None:
            self.next_id = (1 << 62)  # beyond every opset-5 index
        if not members:
            raise Unsupported(f"BRANCH_MEMBER node {node} without members")  # as ONNX Runtime refuses it
        values = members
        ids = [node] + [self._new_id() for _ in values[1:]]
        for k, value in enumerate(values):
            false = ids[k + 1] if k + 1 < len(values) else child[1]
            self.split(tree, ids[k], "BRANCH_EQ", feature, value, [child[0], false], missing)

    def _new_id(self) -> int:
        assert self.next_id is not None  # noqa: S101 (set by member_chain)
        self.next_id += 1
        return self.next_id

    def attributes(self, weights: np.ndarray, targets: np.ndarray, source: Mapping[str, Any]) -> dict[str, Any]:
        # A leaf reached from several trees is written in each, with its weight.
        found = {(tree, node): index for tree, node, index in self.leaves}
        result: dict[str, Any] = dict(self.nodes)
        result["target_treeids"] = [t for t, _ in found]
        result["target_nodeids"] = [nd for _, nd in found]
        result["target_ids"] = [int(targets[i]) for i in found.values()]
        result["target_weights"] = [float(weights[i]) for i in found.values()]
        result["n_targets"] = int(source.get("n_targets", 1))
        result["aggregate_function"] = _named(_AGGREGATES, source.get("aggregate_function", 1), "aggregate")
        result["post_transform"] = _named(_TRANSFORMS, source.get("post_transform", 0), "post transform")
        return result


def _named(names: tuple[str, ...], value: Any, what: str) -> str:
    if not 0 <= int(value) < len(names):
        raise Unsupported(f"{what} {int(value)}")
    return names[int(value)]


def _member_sets(attributes: Mapping[str, Any], count: int) -> list[list[float]]:
    """The membership sets, in the order of the BRANCH_MEMBER nodes; NaN separates them."""
    if count == 0:
        return []
    values = _floats(attributes, "membership_values")
    sets: list[list[float]] = [[]]
    for v in values.tolist():
        if np.isnan(v):
            sets.append([])
        else:
            sets[-1].append(float(v))
    if sets and not sets[-1] and len(sets) == count + 1:
        sets.pop()  # a trailing separator
    if len(sets) != count:
        raise Unsupported(f"{len(sets)} membership sets for {count} BRANCH_MEMBER nodes")
    return sets


def _tensor(attributes: Mapping[str, Any], name: str) -> np.ndarray:
    value = attributes.get(name)
    if value is None:
        return np.zeros(0, np.float32)
    if hasattr(value, "data_type"):  # a TensorProto
        from onnx import numpy_helper

        return np.asarray(numpy_helper.to_array(value)).reshape(-1)
    return np.asarray(value).reshape(-1)


def _floats(attributes: Mapping[str, Any], name: str) -> np.ndarray:
    array = _tensor(attributes, name)
    if array.dtype != np.float32 and array.size:
        raise Unsupported(f"{name} of type {array.dtype} (float32 only)")
    return array.astype(np.float32)


def _ints(attributes: Mapping[str, Any], name: str) -> np.ndarray:
    return np.asarray(_tensor(attributes, name), dtype=np.int64).reshape(-1) if name in attributes \
        else np.zeros(0, np.int64)
