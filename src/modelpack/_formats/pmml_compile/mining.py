"""MiningModel: segments combined by ``multipleModelMethod``.

Segments that are plain TreeModels share one TreeEnsemble node (a random forest
or a boosted ensemble is one node, whatever its size); others are compiled one
by one. Votes, sums and averages are taken in double over the segments' results.
``modelChain`` binds each segment's Output fields for the segments after it and
returns the last segment's prediction; ``selectFirst`` returns, row by row, the
prediction of the first segment whose predicate is TRUE.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

import numpy as np

from ..pmml import MODEL_ELEMENTS
from .forest import Forest
from .graph import Graph, NotCompiled, code_table
from .outputs import output_values
from .predicates import predicate_of, truth
from .prediction import Prediction
from .regression import class_value
from .scope import Scope, local_scope, model_classes
from .tree import build_tree, gather

__all__ = ["mining_prediction"]

_REGRESSION = ("sum", "average", "weightedAverage", "max")
_CLASSIFICATION = ("majorityVote", "weightedMajorityVote", "average", "weightedAverage")


def _segments(model: ET.Element) -> tuple[str, list[tuple[ET.Element, ET.Element, float]]]:
    segmentation = model.find("Segmentation")
    if segmentation is None:
        raise NotCompiled("MiningModel", "it has no Segmentation")
    method = segmentation.get("multipleModelMethod", "")
    out = []
    for segment in segmentation.findall("Segment"):
        inner = next((c for c in segment if c.tag in MODEL_ELEMENTS), None)
        if inner is None:
            raise NotCompiled("Segment", f"segment {segment.get('id')!r} holds no model")
        out.append((segment, inner, float(segment.get("weight", "1"))))
    if not out:
        raise NotCompiled("Segmentation", "it has no Segment")
    return method, out


def mining_prediction(model: ET.Element, scope: Scope, classes: tuple[str, ...] | None) -> Prediction:
    method, segments = _segments(model)
    if method == "modelChain":
        return _chain(segments, scope)
    if method == "selectFirst":
        return _select_first(segments, scope, classes)
    if classes is None and method not in _REGRESSION or classes is not None and method not in _CLASSIFICATION:
        raise NotCompiled("Segmentation", f"multipleModelMethod={method!r} is not compiled for "
                                          f"{model.get('functionName')}")
    if any(predicate_of(s).tag != "True" for s, _, _ in segments):
        raise NotCompiled("Segment", f"a {method} over segments whose predicates are not all True")
    if method.startswith("weighted") and any(inner.find("Output") is not None for _, inner, _ in segments):
        # pmml4s then weighs votes otherwise than by Segment/@weight (its probabilities pass 1)
        raise NotCompiled("Segmentation", f"{method} over segments with their own Output fields: evaluators "
                                          "weigh these differently")
    if _summed_by_trees(model, method, segments, scope, classes):
        return _tree_sum(method, segments, scope, classes)
    votes = classes is None or method in ("majorityVote", "weightedMajorityVote")
    values, probabilities = _combined_inputs(segments, scope, classes, votes=votes)
    weights = np.array([w for _, _, w in segments])
    return _combine(scope.graph, method, values, probabilities, weights, classes)


def _plain_tree(inner: ET.Element) -> bool:
    return inner.tag == "TreeModel" and inner.find("Targets") is None and inner.find("Output") is None


def _summed_by_trees(model: ET.Element, method: str, segments: list[tuple[ET.Element, ET.Element, float]],
                     scope: Scope, classes: tuple[str, ...] | None) -> bool:
    """Whether a float32 sum of tree scores serves: averaged probabilities (within 1e-7 of
    each), or a sum or average of regression trees inside another model (a boosted
    classifier's margin, read through a link function), never the document's own
    prediction, whose relative error near zero the float32 sum does not bound."""
    if scope.doc.exact or classes is None and (method == "max" or any(model is m for m in scope.doc.root)):
        return False
    if classes is not None and method not in ("average", "weightedAverage"):
        return False
    return all(_plain_tree(inner) for _, inner, _ in segments)


def _tree_sum(method: str, segments: list[tuple[ET.Element, ET.Element, float]], scope: Scope,
              classes: tuple[str, ...] | None) -> Prediction:
    """A sum or an average of tree scores (or probabilities), summed by the tree node as its leaf weights."""
    g = scope.graph
    forest = Forest(g)
    weights = np.array([w for _, _, w in segments]) if method.startswith("weighted") else np.ones(len(segments))
    scores = []
    for (_, inner, _), w in zip(segments, weights, strict=True):
        _same_classes(inner, scope, classes)
        tables = build_tree(inner, local_scope(inner, scope), forest, classes)
        scores.append((tables.values[:, None] if classes is None else tables.probabilities) * w)
    total = forest.summed(scores)
    if method != "sum":
        total = g.op("Div", total, g.const(weights.sum()))
    if classes is None:
        return Prediction("regression", g.op("Squeeze", total, g.const([1], dtype=np.int64)))
    return Prediction("classification", class_value(g, total), classes, total)


def _combined_inputs(segments: list[tuple[ET.Element, ET.Element, float]], scope: Scope,
                     classes: tuple[str, ...] | None, *, votes: bool) -> tuple[str, list[str] | None]:
    """[N, T] values (where ``votes``: predicted values or classes are combined) and, for a
    classifier averaging probabilities, one [N, T] tensor of probabilities per class."""
    g = scope.graph
    if all(_plain_tree(inner) for _, inner, _ in segments):
        forest = Forest(g)
        trees = []
        for _, inner, _ in segments:
            _same_classes(inner, scope, classes)
            trees.append(build_tree(inner, local_scope(inner, scope), forest, classes))
        if votes:  # each tree's table read once: the reads cost more than the trees' sums
            return gather(g, forest, trees, "values"), None
        return "", [gather(g, forest, trees, "probabilities", c) for c in range(len(classes or ()))]
    predictions = []
    for _, inner, _ in segments:
        _same_classes(inner, scope, classes)
        predictions.append(_in_order(g, scope.compilers.model(inner, scope)[0], classes))
    values = g.stack([p.value for p in predictions])
    if classes is None:
        return values, None
    tables = [p.probabilities for p in predictions if p.probabilities is not None]
    if len(tables) != len(predictions):
        raise NotCompiled("Segment", "a classifier segment gives no probabilities")
    return values, [g.stack([g.op("Gather", t, g.const(c, dtype=np.int64), axis=1) for t in tables])
                    for c in range(len(classes))]


def _in_order(g: Graph, p: Prediction, classes: tuple[str, ...] | None) -> Prediction:
    """``p`` with its classes in the order of ``classes`` (the same labels)."""
    if classes is None or p.classes == classes or p.classes is None or p.probabilities is None:
        return p
    codes = code_table(p.classes)
    order = [codes[c] for c in classes]
    probabilities = g.op("Gather", p.probabilities, g.const(order, dtype=np.int64), axis=1)
    return Prediction(p.function, class_value(g, probabilities), classes, probabilities)


def _same_classes(inner: ET.Element, scope: Scope, classes: tuple[str, ...] | None) -> None:
    own = model_classes(inner, scope) if inner.get("functionName") == "classification" else None
    if (own is None) != (classes is None) or set(own or ()) != set(classes or ()):
        raise NotCompiled("Segment", f"a segment's classes {list(own or ())[:5]} differ from the model's "
                                     f"{list(classes or ())[:5]}")


def _weighted_sum(g: Graph, columns: str, weights: np.ndarray) -> str:
    """[N, T] @ weights: one [N] sum (a MatMul runs faster than a product and a reduction)."""
    total = g.op("MatMul", columns, g.const(weights.reshape(-1, 1)))
    return g.op("Squeeze", total, g.const([1], dtype=np.int64))


def _combine(g: Graph, method: str, values: str, probabilities: list[str] | None, weights: np.ndarray,
             classes: tuple[str, ...] | None) -> Prediction:
    w = weights if method.startswith("weighted") else np.ones_like(weights)
    if classes is None:
        if method == "max":
            return Prediction("regression", g.op("ReduceMax", values, g.const([1], dtype=np.int64), keepdims=0))
        total = _weighted_sum(g, values, w)
        return Prediction("regression", total if method == "sum" else g.op("Div", total, g.const(w.sum())))
    if method in ("majorityVote", "weightedMajorityVote"):
        columns = [g.as_double(g.op("Equal", values, g.const(float(c)))) for c in range(len(classes))]
    else:
        columns = probabilities or []
    share = g.stack([g.op("Div", _weighted_sum(g, c, w), g.const(w.sum())) for c in columns])
    return Prediction("classification", class_value(g, share), classes, share)


def _chain(segments: list[tuple[ET.Element, ET.Element, float]], scope: Scope) -> Prediction:
    if any(predicate_of(s).tag != "True" for s, _, _ in segments):
        raise NotCompiled("Segment", "a modelChain over segments whose predicates are not all True")
    results = []
    for _, inner, _ in segments:
        prediction, inner_scope = scope.compilers.model(inner, scope)
        scope.values.update(output_values(inner, prediction, inner_scope))
        results.append(prediction)
    return results[-1]  # _segments() refuses a Segmentation without segments


def _select_first(segments: list[tuple[ET.Element, ET.Element, float]], scope: Scope,
                  classes: tuple[str, ...] | None) -> Prediction:
    g = scope.graph
    value, probabilities = g.missing_like(), None
    if classes is not None:
        probabilities = g.stack([g.missing_like()] * len(classes))
    for segment, inner, _ in reversed(segments):
        _same_classes(inner, scope, classes)
        taken = g.op("Equal", truth(predicate_of(segment), scope), g.const(1.0))
        p = _in_order(g, scope.compilers.model(inner, scope)[0], classes)
        value = g.where(taken, p.value, value)
        if probabilities is not None:
            column = g.op("Unsqueeze", taken, g.const([1], dtype=np.int64))
            probabilities = g.where(column, p.probabilities, probabilities)  # type: ignore[arg-type]
    return Prediction("classification" if classes else "regression", value, classes, probabilities)
