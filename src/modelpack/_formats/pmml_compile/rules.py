"""RuleSetModel: SimpleRules (nested in CompoundRules) and the first RuleSelectionMethod.

A rule fires where its predicate, and-ed with those of the CompoundRules around it,
is TRUE (UNKNOWN fires nothing). ``firstHit`` takes the first rule that fires in
document order, ``weightedMax`` the one of the largest weight (the first on ties),
``weightedSum`` the score whose fired rules' weights sum largest (the first class on
ties), with confidence that sum divided by the number of rules that fired. Where no
rule fires: ``defaultScore`` and ``defaultConfidence``, or no prediction.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass

import numpy as np

from .graph import Graph, NotCompiled
from .predicates import PREDICATES, three_and, truth
from .prediction import Prediction
from .scope import Scope

__all__ = ["rule_set_prediction"]


@dataclass(frozen=True)
class _Rule:
    fires: str  # double 1.0 / 0.0
    score: int
    weight: float
    confidence: float


def _predicate(rule: ET.Element, scope: Scope) -> str:
    found = next((c for c in rule if c.tag in PREDICATES), None)
    if found is None:
        raise NotCompiled(rule.tag, "it has no predicate")
    return truth(found, scope)


def _rules(parent: ET.Element, scope: Scope, classes: tuple[str, ...], around: str | None) -> list[_Rule]:
    g, out = scope.graph, []
    for rule in parent:
        if rule.tag not in ("SimpleRule", "CompoundRule"):
            continue
        held = _predicate(rule, scope)
        held = held if around is None else three_and(g, [around, held])
        if rule.tag == "CompoundRule":
            out += _rules(rule, scope, classes, held)
            continue
        score = rule.get("score", "")
        if score not in classes:
            raise NotCompiled("SimpleRule", f"score={score!r} is not one of the classes")
        fires = g.as_double(g.op("Equal", held, g.const(1.0)))
        out.append(_Rule(fires, classes.index(score), float(rule.get("weight", "1")),
                         float(rule.get("confidence", "1"))))
    return out


def _first(g: Graph, fired: str, keys: np.ndarray) -> str:
    """The index of the first largest of ``keys`` among the fired rules, as int64 [N]."""
    ranked = g.where(g.op("Cast", fired, to=9), g.const(keys.reshape(1, -1)), g.const(-np.inf))
    return g.op("ArgMax", ranked, axis=1, keepdims=0)


def _pick(g: Graph, table: np.ndarray, index: str) -> str:
    return g.op("Gather", g.const(table), index, axis=0)


def rule_set_prediction(model: ET.Element, scope: Scope, classes: tuple[str, ...] | None) -> Prediction:
    """The chosen rule's score (a class index) and its confidence."""
    if classes is None:
        raise NotCompiled("RuleSetModel", "a rule set that is not a classifier")
    g = scope.graph
    rule_set = model.find("RuleSet")
    if rule_set is None:
        raise NotCompiled("RuleSetModel", "it has no RuleSet")
    methods = rule_set.findall("RuleSelectionMethod")
    criterion = methods[0].get("criterion", "") if methods else ""
    rules = _rules(rule_set, scope, classes, None)
    if criterion not in ("firstHit", "weightedMax", "weightedSum"):
        raise NotCompiled("RuleSelectionMethod", f"criterion={criterion!r} is not compiled")
    if not rules:
        raise NotCompiled("RuleSet", "it holds no rule")
    fired = g.stack([r.fires for r in rules])  # [N, R]
    count = g.op("ReduceSum", fired, g.const([1], dtype=np.int64), keepdims=0)
    if criterion == "weightedSum":
        score, confidence = _weighted_sum(g, fired, count, rules, len(classes))
    else:
        keys = -np.arange(len(rules), dtype=np.float64) if criterion == "firstHit" \
            else np.array([r.weight for r in rules])
        index = _first(g, fired, keys)
        score = _pick(g, np.array([float(r.score) for r in rules]), index)
        confidence = _pick(g, np.array([r.confidence for r in rules]), index)
    none = g.op("Equal", count, g.const(0.0))
    default = rule_set.get("defaultScore")
    if default is not None and default not in classes:
        raise NotCompiled("RuleSet", f"defaultScore={default!r} is not one of the classes")
    fallback = g.const(float(classes.index(default))) if default is not None else g.nan()
    value = g.where(none, fallback, score)
    default_confidence = float(rule_set.get("defaultConfidence", "nan")) if default is not None else np.nan
    prediction = Prediction("classification", value, classes)
    prediction.extras["confidence"] = lambda: g.where(none, g.const(default_confidence), confidence)
    return prediction


def _weighted_sum(g: Graph, fired: str, count: str, rules: list[_Rule], k: int) -> tuple[str, str]:
    weights = np.zeros((len(rules), k))
    hits = np.zeros((len(rules), k))
    for j, r in enumerate(rules):
        weights[j, r.score] += r.weight
        hits[j, r.score] = 1.0
    sums = g.op("MatMul", fired, g.const(weights))  # [N, K]
    any_fired = g.op("Cast", g.op("MatMul", fired, g.const(hits)), to=9)
    best = g.op("ArgMax", g.where(any_fired, sums, g.const(-np.inf)), axis=1, keepdims=0)
    top = g.op("Squeeze", g.op("GatherElements", sums, g.op("Unsqueeze", best, g.const([1], dtype=np.int64)),
                               axis=1), g.const([1], dtype=np.int64))
    return g.op("Cast", best, to=11), g.op("Div", top, count)
