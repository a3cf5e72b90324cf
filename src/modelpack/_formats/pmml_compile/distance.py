"""ComparisonMeasure: compare functions and distance measures, shared by ClusteringModel and
NearestNeighborModel.

Each compared field contributes ``w * c(x, y)`` (its weight times its compare
function of the row's value and the other point's); the measure combines the
contributions (``euclidean``, ``squaredEuclidean``, ``cityBlock``, ``chebychev``,
``minkowski``), scaled by ``adjustM`` where values are missing, as the PMML
specification's Clustering Models chapter defines them. The tensors compared may
be of any shape that broadcasts: one value per row, or a row against every
training instance.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

import numpy as np

from .graph import Graph, NotCompiled

__all__ = ["COMPARE", "MEASURES", "combine", "compare", "comparison_measure", "missing_adjustment"]

MEASURES = ("euclidean", "squaredEuclidean", "cityBlock", "chebychev", "minkowski")
COMPARE = ("absDiff", "gaussSim", "delta", "equal")


def comparison_measure(model: ET.Element) -> tuple[str, float, str]:
    """(measure, minkowski's p, the default compare function) of the model's ComparisonMeasure."""
    cm = model.find("ComparisonMeasure")
    if cm is None:
        raise NotCompiled(model.tag, "it has no ComparisonMeasure")
    if cm.get("kind", "distance") != "distance":
        raise NotCompiled("ComparisonMeasure", f"kind={cm.get('kind')!r} is not compiled")
    found = [m for m in cm if m.tag != "Extension"]
    if len(found) != 1 or found[0].tag not in MEASURES:
        raise NotCompiled("ComparisonMeasure", f"the measure {[m.tag for m in found]} is not compiled")
    p = float(found[0].get("p-parameter", "nan")) if found[0].tag == "minkowski" else 2.0
    if not np.isfinite(p) or p <= 0:
        raise NotCompiled("minkowski", "p-parameter is missing or not positive")
    return found[0].tag, p, cm.get("compareFunction", "absDiff")


def compare(g: Graph, function: str, field: ET.Element, x: str, y: str, scale: float | None = None) -> str:
    """``c(x, y)`` of ``field`` (a ClusteringField or KNNInput); ``scale`` is gaussSim's ``s``."""
    if function not in COMPARE:
        raise NotCompiled(field.tag, f"compareFunction={function!r} is not compiled")
    if function == "absDiff":
        return g.op("Abs", g.op("Sub", x, y))
    if function == "delta":
        return g.as_double(g.op("Not", g.op("Equal", x, y)))
    if function == "equal":
        return g.as_double(g.op("Equal", x, y))
    if scale is None or not np.isfinite(scale) or scale == 0:
        raise NotCompiled(field.tag, "gaussSim without a similarityScale")
    d = g.op("Sub", x, y)  # exp(-ln(2) * d^2 / s^2)
    return g.op("Exp", g.op("Mul", g.op("Mul", d, d), g.const(-np.log(2.0) / (scale * scale))))


def missing_adjustment(g: Graph, present: list[str], q: np.ndarray) -> str:
    """``adjustM = sum(q) / sum(q of the fields present)``; ``present`` holds one bool tensor per field."""
    total = None
    for mask, weight in zip(present, q, strict=True):
        term = g.as_double(mask) if weight == 1.0 else g.op("Mul", g.as_double(mask), g.const(float(weight)))
        total = term if total is None else g.op("Add", total, term)
    if total is None:
        raise NotCompiled("ComparisonMeasure", "no field is compared")
    return g.op("Div", g.const(float(q.sum())), total)


def combine(g: Graph, measure: str, p: float, terms: list[str], weights: np.ndarray, adjust: str) -> str:
    """The measure over per-field compare results ``terms`` (0 where a value is missing), element by element."""
    if measure == "chebychev":
        weighted = [t if w == 1.0 else g.op("Mul", t, g.const(float(w))) for t, w in zip(terms, weights, strict=True)]
        return g.op("Mul", g.op("Max", *weighted) if len(weighted) > 1 else weighted[0], adjust)
    power = {"euclidean": 2.0, "squaredEuclidean": 2.0, "cityBlock": 1.0, "minkowski": p}[measure]
    parts = []
    for t, w in zip(terms, weights, strict=True):
        powered = t if power == 1.0 else g.op("Mul", t, t) if power == 2.0 else g.op("Pow", t, g.const(power))
        parts.append(powered if w == 1.0 else g.op("Mul", powered, g.const(float(w))))
    total = g.op("Mul", g.op("Sum", *parts) if len(parts) > 1 else parts[0], adjust)
    if measure in ("squaredEuclidean", "cityBlock"):
        return total
    return g.op("Sqrt", total) if power == 2.0 else g.op("Pow", total, g.const(1.0 / power))
