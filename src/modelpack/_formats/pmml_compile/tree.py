"""TreeModel: nodes chosen as PMML chooses them, outcomes read from tables.

A Node's children are tried in order and the first whose predicate is TRUE is
taken; this is compiled as a chain of binary tests. A predicate that is
UNKNOWN (a missing value) goes where the model's ``missingValueStrategy`` says:

=================  ======================================================
none               on, as FALSE, to the next sibling
lastPrediction     stop: the prediction of the Node being left
nullPrediction     stop: no prediction
defaultChild       the Node's ``defaultChild`` (its subtree copied there)
=================  ======================================================

When no child is TRUE, ``noTrueChildStrategy`` gives no prediction
(``returnNullPrediction``) or the Node's own (``returnLastPrediction``).
``weightedConfidence`` and ``aggregateNodes`` combine several paths per row,
which a tree node cannot, so those models fall back to the PMML evaluator.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .forest import Forest
from .graph import MAX_GRAPH_NODES, Graph, NotCompiled, code_table
from .nodes import TreeNodes
from .predicates import native_split, predicate_of, truth
from .prediction import Prediction
from .scope import Scope

__all__ = ["TreeTables", "build_tree", "gather", "tree_prediction"]

_STRATEGIES = ("none", "lastPrediction", "nullPrediction", "defaultChild")
_MAX_DEPTH = 400
Branch = Callable[[], int] | str  # a subtree to build, or "TRUE" / "FALSE": the test's own branch


@dataclass
class TreeTables:
    """Per outcome of one tree: value, class probabilities, confidence, node id."""

    index: int
    values: np.ndarray
    probabilities: np.ndarray | None
    confidence: np.ndarray | None
    ids: list[str]


class _Builder:
    def __init__(self, model: ET.Element, scope: Scope, forest: Forest, classes: tuple[str, ...] | None) -> None:
        self.scope, self.forest, self.classes = scope, forest, classes
        self.tree = TreeNodes()
        self.strategy = model.get("missingValueStrategy", "none")
        if self.strategy == "nullPrediction" and scope.doc.evaluator_compatible:
            self.strategy = "none"  # pmml4s reads an UNKNOWN predicate as FALSE here
        if self.strategy not in _STRATEGIES:
            raise NotCompiled("TreeModel", f"missingValueStrategy={self.strategy!r} scores several paths "
                                           "per row, which a compiled tree does not")
        self.no_true = model.get("noTrueChildStrategy", "returnNullPrediction")
        if self.no_true not in ("returnNullPrediction", "returnLastPrediction"):
            raise NotCompiled("TreeModel", f"noTrueChildStrategy={self.no_true!r} is not PMML")
        # Confidences are multiplied by the penalty once per defaultChild taken for a missing value.
        self.penalty = float(model.get("missingValuePenalty", "1"))
        if self.penalty != 1.0 and any(p.get("booleanOperator") == "surrogate" for p in model.iter("CompoundPredicate")):
            raise NotCompiled("TreeModel", "missingValuePenalty applies to surrogates taken too, which the "
                                           "compiled tree does not count")
        self.outcomes: list[tuple[ET.Element | None, int]] = [(None, 0)]  # outcome 0: no prediction
        self._numbers: dict[tuple[int, int], int] = {}
        self.defaults = 0
        self.present: set[int] = set()  # features known not missing on the path being built
        self.known: dict[tuple[int, str, float], bool] = {}  # comparisons decided on that path

    def outcome(self, node: ET.Element | None) -> int:
        if node is None:
            return 0
        key = (id(node), self.defaults)
        if key not in self._numbers:
            self._numbers[key] = len(self.outcomes)
            self.outcomes.append((node, self.defaults))
        return self._numbers[key]

    def leaf(self, node: ET.Element | None) -> int:
        return self.tree.leaf(self.outcome(node))

    def penalised(self, node: ET.Element, depth: int) -> int:
        """The subtree of ``node``, reached through a defaultChild for a missing value."""
        self.defaults += 1
        try:
            return self.choose(node, depth)
        finally:
            self.defaults -= 1

    def choose(self, node: ET.Element, depth: int) -> int:
        """The subtree that picks among ``node``'s children (a leaf when it has none)."""
        if depth > _MAX_DEPTH:
            raise NotCompiled("TreeModel", f"the tree is deeper than {_MAX_DEPTH} levels")
        children = node.findall("Node")
        if not children:
            return self.leaf(node)
        return self.chain(node, children, 0, depth)

    def chain(self, node: ET.Element, children: list[ET.Element], i: int, depth: int) -> int:
        if i == len(children):
            return self.leaf(node if self.no_true == "returnLastPrediction" and _has_result(node) else None)
        child = children[i]
        pred = predicate_of(child)
        if pred.tag == "True":
            return self.choose(child, depth + 1)
        if pred.tag == "False":
            return self.chain(node, children, i + 1, depth)
        unknown = self._unknown(node, child, depth)
        return self.test(pred, lambda: self.choose(child, depth + 1),
                         lambda: self.chain(node, children, i + 1, depth), unknown)

    def _unknown(self, node: ET.Element, child: ET.Element, depth: int) -> Branch:
        if self.strategy == "none":
            return "FALSE"
        if self.strategy == "nullPrediction":
            return lambda: self.leaf(None)
        if self.strategy == "lastPrediction":
            return lambda: self.leaf(node if _has_result(node) else None)
        default = node.get("defaultChild")
        target = next((c for c in node.findall("Node") if c.get("id") == default), None)
        if target is None:
            raise NotCompiled("Node", f"defaultChild={default!r} names no child of node {node.get('id')!r}")
        if target is child and self.penalty == 1.0:
            return "TRUE"
        return lambda: self.penalised(target, depth + 1)

    def test(self, pred: ET.Element, on_true: Callable[[], int], on_false: Callable[[], int],
             unknown: Branch) -> int:
        split = native_split(pred, self.scope)
        if split is None:  # a predicate value: TRUE when p > 0.5, i.e. not (p <= 0.5)
            column, mode, threshold, negate = truth(pred, self.scope), "BRANCH_LEQ", 0.5, True
        else:
            column, mode, threshold, negate = split.value, split.mode, split.threshold, split.negate
        feature = self.forest.column(column)
        key = (feature, mode, threshold)
        if key in self.known:  # decided higher on this path: the node would send every row one way
            return on_true() if self.known[key] != negate else on_false()
        yes, no = (on_false, on_true) if negate else (on_true, on_false)  # the node's test: its own branches
        if feature in self.present:
            unknown = "FALSE"  # the value is known to be there: no row is missing here
        node = self.tree.new()
        if isinstance(unknown, str):
            missing_true = (unknown == "TRUE") != negate
            # A missing value takes one branch: only the other proves the value is there.
            self.tree.branch(node, feature, mode, threshold, self._given(key, True, yes, proves=not missing_true),
                             self._given(key, False, no, proves=missing_true), missing_true=missing_true)
            return node
        # A third way for a missing value, tested only where the comparison fails: a comparison
        # (EQ, LEQ, LT) that holds proves the value is there, one that fails sends a missing one on.
        taken, missing = self._given(key, True, yes, proves=True), self.tree.new()
        self.tree.branch(node, feature, mode, threshold, taken, missing, missing_true=False)
        self.present.add(feature)
        try:
            present = self._given(key, False, no, proves=True)
        finally:
            self.present.discard(feature)
        self.tree.branch(missing, feature, "BRANCH_LEQ", math.inf, present, unknown(), missing_true=False)
        return node

    def _given(self, key: tuple[int, str, float], result: bool, build: Callable[[], int], *, proves: bool) -> int:
        """The subtree ``build`` makes below the branch ``result`` of the node ``key``; where that
        branch ``proves`` the value is there (or it is known to be), the comparison is recorded
        as decided for the subtree."""
        feature = key[0]
        if not proves and feature not in self.present:
            return build()
        added = feature not in self.present
        self.known[key] = result
        self.present.add(feature)
        try:
            return build()
        finally:
            del self.known[key]
            if added:
                self.present.discard(feature)


def _has_result(node: ET.Element) -> bool:
    return node.get("score") is not None or node.find("ScoreDistribution") is not None


def build_tree(model: ET.Element, scope: Scope, forest: Forest, classes: tuple[str, ...] | None) -> TreeTables:
    """Add ``model``'s tree to ``forest``; the tables of its outcomes."""
    root = model.find("Node")
    if root is None:
        raise NotCompiled("TreeModel", "it has no Node")
    builder = _Builder(model, scope, forest, classes)
    top = ET.Element("Node")
    top.append(root)
    builder.chain(top, [root], 0, 0) if predicate_of(root).tag != "True" else builder.choose(root, 0)
    index = forest.add(builder.tree)
    tables = _tables(index, [node for node, _ in builder.outcomes], classes)
    if tables.confidence is not None:
        tables.confidence *= builder.penalty ** np.array([k for _, k in builder.outcomes], dtype=np.float64)
    return tables


def _tables(index: int, outcomes: list[ET.Element | None], classes: tuple[str, ...] | None) -> TreeTables:
    n = len(outcomes)
    values = np.full(n, np.nan)
    ids = ["" if node is None else node.get("id", "") for node in outcomes]
    if classes is None:
        for i, node in enumerate(outcomes[1:], 1):
            score = node.get("score") if node is not None else None
            if score is None:
                raise NotCompiled("Node", f"node {node.get('id') if node is not None else ''!r} of a regression "
                                          "tree has no score")
            values[i] = float(score)
        return TreeTables(index, values, None, None, ids)
    if n * len(classes) > MAX_GRAPH_NODES * 100:  # a table of doubles past about 160 MB
        raise NotCompiled("TreeModel", f"{n} leaves of {len(classes)} classes make too large a table")
    probabilities = np.full((n, len(classes)), np.nan)
    confidence = np.full(n, np.nan)
    codes = code_table(classes)
    for i, node in enumerate(outcomes[1:], 1):
        if node is None:  # outcome 0 alone is "no prediction"
            continue
        probabilities[i], conf = _distribution(node, classes, codes)
        score = node.get("score")
        if score is not None and score not in codes:
            raise NotCompiled("Node", f"score {score!r} is not one of the classes {list(classes)[:10]}")
        values[i] = codes[score] if score is not None else float(np.argmax(probabilities[i]))
        confidence[i] = conf.get(classes[int(values[i])], np.nan)
    return TreeTables(index, values, probabilities, confidence, ids)


def _distribution(node: ET.Element, classes: tuple[str, ...],
                  codes: dict[str, int]) -> tuple[np.ndarray, dict[str, float]]:
    rows = node.findall("ScoreDistribution")
    out = np.zeros(len(classes))
    if not rows:  # no distribution: the scored class is certain
        out[codes[node.get("score", classes[0])]] = 1.0
        return out, {}
    total = sum(float(r.get("recordCount", "0")) for r in rows)
    confidence = {}
    for r in rows:
        label = r.get("value", "")
        if label not in codes:
            raise NotCompiled("ScoreDistribution", f"value {label!r} is not one of the classes")
        p = r.get("probability")
        out[codes[label]] = float(p) if p is not None else (
            float(r.get("recordCount", "0")) / total if total > 0 else np.nan)
        if r.get("confidence") is not None:
            confidence[label] = float(r.get("confidence", ""))
    return out, confidence


def gather(g: Graph, forest: Forest, trees: list[TreeTables], what: str, column: int | None = None) -> str:
    """[N, T] of ``what`` over ``trees``, read by outcome (``column``: that class's probability)."""
    tables = [getattr(t, what) if column is None else getattr(t, what)[:, column] for t in trees]
    offsets = np.cumsum([0] + [len(t) for t in tables[:-1]])
    flat = np.concatenate(tables)
    outcomes = forest.outcomes()
    picked = [t.index for t in trees]
    if picked != list(range(len(forest.trees))):
        outcomes = g.op("Gather", outcomes, g.const(picked, dtype=np.int64), axis=1)
    index = g.op("Add", outcomes, g.const(offsets, dtype=np.int64))
    return g.op("Gather", g.const(flat), index, axis=0)


def tree_prediction(model: ET.Element, scope: Scope, classes: tuple[str, ...] | None) -> Prediction:
    """A lone TreeModel (its own forest of one tree)."""
    g = scope.graph
    forest = Forest(g)
    tables = build_tree(model, scope, forest, classes)
    axes = g.const([1], dtype=np.int64)

    def one(what: str, column: int | None = None) -> str:
        return g.op("Squeeze", gather(g, forest, [tables], what, column), axes)

    value = one("values")
    extras: dict[str, Callable[[], str]] = {
        "entityId": lambda: _ids(g, forest, tables)}
    if classes is None:
        return Prediction("regression", value, extras=extras)
    extras["confidence"] = lambda: one("confidence")
    probabilities = g.stack([one("probabilities", c) for c in range(len(classes))])
    return Prediction("classification", value, classes, probabilities, extras)


def _ids(g: Graph, forest: Forest, tables: TreeTables) -> str:
    index = g.op("Squeeze", forest.outcomes(), g.const([1], dtype=np.int64))
    return g.op("LabelEncoder", index, domain="ai.onnx.ml", keys_int64s=list(range(len(tables.ids))),
                values_strings=tables.ids, default_string="")

