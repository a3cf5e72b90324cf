"""Scorecard: each Characteristic's first TRUE Attribute adds its partialScore; reason codes.

A predicate that is UNKNOWN (a missing value) is not TRUE, and the next Attribute
is tried. A row where some Characteristic has no TRUE Attribute has no score. The
points a reason code earns are ``baselineScore - partialScore`` (``pointsBelow``) or
``partialScore - baselineScore`` (``pointsAbove``), summed over the Characteristics
that give the code; rank ``k`` is the code with the k-th most points (the first
listed on ties, as a stable sort gives), and none where fewer codes earn points; a
missing partial score earns none (the score is missing, the other codes stand).
A ComplexPartialScore is its expression's value.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable

import numpy as np

from .graph import MISSING, Graph, NotCompiled
from .predicates import predicate_of, truth
from .prediction import Prediction
from .scope import Scope

__all__ = ["scorecard_prediction"]


def _characteristic(ch: ET.Element, scope: Scope) -> tuple[str, list[tuple[str, str, str]]]:
    """The characteristic's partial score (NaN where no Attribute holds) and its attributes'
    (selected, partial score, reason code)."""
    g = scope.graph
    attributes = ch.findall("Attribute")
    if not attributes:
        raise NotCompiled("Characteristic", f"{ch.get('name')!r} has no Attribute")
    chosen: list[tuple[str, str, str]] = []
    score = g.missing_like()
    taken = None  # rows an earlier attribute took
    for a in attributes:
        points = _partial(a, scope)
        holds = g.op("Equal", truth(predicate_of(a), scope), g.const(1.0))  # UNKNOWN is not TRUE
        first = holds if taken is None else g.op("And", holds, g.op("Not", taken))
        taken = holds if taken is None else g.op("Or", taken, holds)
        score = g.where(first, points, score)
        chosen.append((first, points, a.get("reasonCode", ch.get("reasonCode", ""))))
    return score, chosen


def _partial(attribute: ET.Element, scope: Scope) -> str:
    """The attribute's partial score: its partialScore, or its ComplexPartialScore's expression."""
    from .transform import expression

    complex_ = attribute.find("ComplexPartialScore")
    if complex_ is None:
        return scope.graph.const(float(attribute.get("partialScore", "nan")))
    expr = next((c for c in complex_ if c.tag != "Extension"), None)
    if expr is None:
        raise NotCompiled("ComplexPartialScore", "without an expression")
    value = expression(expr, scope)
    if value.categorical:
        raise NotCompiled("ComplexPartialScore", "a string partial score")
    return value.name


def scorecard_prediction(model: ET.Element, scope: Scope, classes: tuple[str, ...] | None) -> Prediction:
    g = scope.graph
    if classes is not None:
        raise NotCompiled("Scorecard", "a classifying scorecard is not compiled")
    characteristics = model.findall("Characteristics/Characteristic")
    if not characteristics:
        raise NotCompiled("Characteristics", "a scorecard without characteristics")
    total = g.const_like(float(model.get("initialScore", "0")))
    codes: list[str] = []
    points: dict[str, str] = {}
    below = model.get("reasonCodeAlgorithm", "pointsBelow") == "pointsBelow"
    for ch in characteristics:
        score, attributes = _characteristic(ch, scope)
        total = g.op("Add", total, score)
        baseline = ch.get("baselineScore", model.get("baselineScore"))
        for selected, partial, code in attributes:
            if model.get("useReasonCodes", "true") != "true":
                break
            if baseline is None or not code:
                raise NotCompiled("Characteristic", f"{ch.get('name')!r}: reason codes need a baselineScore "
                                                    "and a reasonCode")
            base = g.const(float(baseline))
            earned = g.op("Sub", base, partial) if below else g.op("Sub", partial, base)
            term = g.where(selected, earned, g.const(0.0))
            if code not in points:
                codes.append(code)
            points[code] = g.op("Add", points[code], term) if code in points else term
    prediction = Prediction("regression", total)
    if codes:
        _reason_codes(g, prediction, codes, [points[c] for c in codes], scope.doc.evaluator_compatible)
    return prediction


def _reason_codes(g: Graph, prediction: Prediction, codes: list[str], points: list[str], compatible: bool) -> None:
    if compatible:  # pmml4s's order on ties follows its hash map; by name, last first, matches it here
        pairs = sorted(zip(codes, points, strict=True), reverse=True)
        codes, points = [c for c, _ in pairs], [p for _, p in pairs]
    k = g.const([len(codes)], dtype=np.int64)
    stacked = g.stack(points)
    stacked = g.where(g.is_nan(stacked), g.const(0.0), stacked)  # a missing partial score earns nothing
    values, order = g.op("TopK", stacked, k, axis=1, largest=1, sorted=1, outputs=2)
    previous = None
    for rank in range(1, len(codes) + 1):
        at = g.const(rank - 1, dtype=np.int64)
        index = g.op("Gather", order, at, axis=1)
        earned = g.op("Greater", g.op("Gather", values, at, axis=1), g.const(0.0))
        name = g.op("LabelEncoder", index, domain="ai.onnx.ml", keys_int64s=list(range(len(codes))),
                    values_strings=codes, default_string=MISSING)
        # pmml4s repeats the last code that earned points at the ranks past it
        past = previous if compatible and previous is not None else g.const(MISSING, dtype=object)
        text = g.where(earned, name, past)
        prediction.extras[f"reasonCode:{rank}"] = _given(text)
        previous = text


def _given(tensor: str) -> Callable[[], str]:
    return lambda: tensor
