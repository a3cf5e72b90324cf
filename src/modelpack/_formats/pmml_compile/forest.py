"""Trees as one TreeEnsembleRegressor whose leaves hold outcome numbers (or summed scores).

Each PMML tree becomes one target of the node; each of its leaves weighs the
number of the *outcome* it reaches (a PMML Node, or "no prediction"). The node
compares in double (``nodes_values_as_tensor``, double inputs), so every split is
the document's own comparison, on ONNX Runtime and on modelpack's tree engine
alike; its float32 output holds small integers exactly. Scores,
probabilities and ids are then read from double tables by outcome, and the
trees' results are combined in double, as a PMML evaluator combines them.
Where a segmentation sums the trees' scores, :meth:`Forest.summed` lets the node
sum them itself, as its leaf weights (a float32 result).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from onnx import TensorProto, numpy_helper

from .graph import Graph, NotCompiled
from .nodes import TreeNodes

__all__ = ["Forest"]

#: Most nodes one compiled forest may hold (subtrees copied for defaultChild count too).
MAX_NODES = 5_000_000


class Forest:
    """Trees over shared feature columns, emitted as one node."""

    def __init__(self, graph: Graph) -> None:
        self.graph = graph
        self.columns: dict[str, int] = {}
        self.trees: list[TreeNodes] = []
        self._output: str | None = None

    def column(self, tensor: str) -> int:
        return self.columns.setdefault(tensor, len(self.columns))

    def add(self, tree: TreeNodes) -> int:
        if self._output is not None:
            raise RuntimeError("the forest was emitted already")
        if sum(len(t.modes) for t in self.trees) + len(tree.modes) > MAX_NODES:
            raise NotCompiled("TreeModel", f"the trees hold more than {MAX_NODES} nodes once compiled")
        self.trees.append(tree)
        return len(self.trees) - 1

    def outcomes(self) -> str:
        """An int64 [N, trees] tensor: the outcome each tree reaches on each row."""
        if self._output is None:
            self._output = self._emit()
        return self._output

    def summed(self, scores: list[np.ndarray]) -> str:
        """A double [N, K] tensor: per row, the sum over the trees of ``scores[tree][outcome]``
        (each table [outcomes, K]).

        The scores are the node's leaf weights, so the node sums them: float32 weights, one
        float32 result (the tree engine sums in double and rounds once), about 1e-7 relative.
        """
        if self._output is not None:
            raise RuntimeError("the forest was emitted already")
        self._output = ""
        g = self.graph
        total = self._node(self._input(), weights=scores)
        return g.op("Cast", total, to=TensorProto.DOUBLE)

    def _emit(self) -> str:
        out = self._node(self._input())
        return self.graph.op("Cast", out, to=TensorProto.INT64)

    def _input(self) -> str:
        """The node's input: the split columns side by side, double [N, F].

        Stacked as rows and transposed: the tree engine reads the rows' matrix through
        its transpose with no copy, and stacking rows is the cheaper copy (Graph.stack).
        """
        g = self.graph
        cols = sorted(self.columns, key=self.columns.__getitem__)
        if not cols:  # trees of one leaf each: any column will do
            cols = [g.const_like(0.0)]
        return g.op("Transpose", g.stack(cols, axis=0), perm=[1, 0])

    def _node(self, x: str, *, weights: list[np.ndarray] | None = None) -> str:
        g, trees = self.graph, self.trees
        attrs: dict[str, Any] = {k: [] for k in (
            "nodes_treeids", "nodes_nodeids", "nodes_featureids", "nodes_modes", "nodes_truenodeids",
            "nodes_falsenodeids", "nodes_missing_value_tracks_true", "target_treeids", "target_nodeids",
            "target_ids", "target_weights")}
        values: list[float] = []
        for t, tree in enumerate(trees):
            n = len(tree.modes)
            attrs["nodes_treeids"] += [t] * n
            attrs["nodes_nodeids"] += list(range(n))
            attrs["nodes_featureids"] += tree.features
            attrs["nodes_modes"] += tree.modes
            attrs["nodes_truenodeids"] += tree.true_ids
            attrs["nodes_falsenodeids"] += tree.false_ids
            attrs["nodes_missing_value_tracks_true"] += tree.missing_true
            values += tree.thresholds
            for node, outcome in sorted(tree.leaves.items()):
                row = [float(outcome)] if weights is None else weights[t][outcome]
                for k, weight in enumerate(row):
                    attrs["target_treeids"].append(t)
                    attrs["target_nodeids"].append(node)
                    attrs["target_ids"].append(t if weights is None else k)
                    attrs["target_weights"].append(float(weight))
        attrs["nodes_values_as_tensor"] = numpy_helper.from_array(np.array(values, dtype=np.float64))
        return g.op("TreeEnsembleRegressor", x, domain="ai.onnx.ml", n_targets=len(trees) if weights is None else weights[0].shape[1],
                    aggregate_function="SUM", post_transform="NONE", **attrs)
