"""ClusteringModel (center-based): the distance of each row to every cluster's center.

Each ClusteringField contributes ``w * c(x, y)`` (its ``fieldWeight`` times its
compare function of the row's value and the center's); the ComparisonMeasure
combines the contributions (``euclidean``, ``squaredEuclidean``, ``cityBlock``,
``chebychev``, ``minkowski``). A missing value leaves its field out and the sum is
scaled by ``adjustM = sum(q) / sum(q of the fields present)``, ``q`` being the
MissingValueWeights, as the PMML specification defines. The nearest cluster (the
first on ties) is the prediction; its distance is the ``affinity``.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

import numpy as np
from onnx import TensorProto

from .document import array_values
from .graph import MISSING, Graph, NotCompiled
from .prediction import Prediction
from .scope import Scope

__all__ = ["clustering_prediction"]

_MEASURES = ("euclidean", "squaredEuclidean", "cityBlock", "chebychev", "minkowski")
_COMPARE = ("absDiff", "gaussSim", "delta", "equal")


def _numbers(element: ET.Element | None, what: str, n: int) -> np.ndarray:
    array = element.find("Array") if element is not None else None
    if array is None:
        raise NotCompiled(what, "it has no Array")
    values = np.array([float(v) for v in array_values(array)], dtype=np.float64)
    if len(values) != n:
        raise NotCompiled(what, f"its Array has {len(values)} entries for {n} clustering fields")
    return values


def _measure(model: ET.Element) -> tuple[str, float, str]:
    """(measure, minkowski's p, the default compare function)."""
    cm = model.find("ComparisonMeasure")
    if cm is None:
        raise NotCompiled("ClusteringModel", "it has no ComparisonMeasure")
    if cm.get("kind", "distance") != "distance":
        raise NotCompiled("ComparisonMeasure", f"kind={cm.get('kind')!r} is not compiled")
    found = [m for m in cm if m.tag != "Extension"]
    if len(found) != 1 or found[0].tag not in _MEASURES:
        raise NotCompiled("ComparisonMeasure", f"the measure {[m.tag for m in found]} is not compiled")
    p = float(found[0].get("p-parameter", "nan")) if found[0].tag == "minkowski" else 2.0
    if not np.isfinite(p) or p <= 0:
        raise NotCompiled("minkowski", "p-parameter is missing or not positive")
    return found[0].tag, p, cm.get("compareFunction", "absDiff")


def _compare(g: Graph, function: str, field: ET.Element, x: str, y: str) -> str:
    if function not in _COMPARE:
        raise NotCompiled("ClusteringField", f"compareFunction={function!r} is not compiled")
    if function == "absDiff":
        return g.op("Abs", g.op("Sub", x, y))
    if function == "delta":
        return g.as_double(g.op("Not", g.op("Equal", x, y)))
    if function == "equal":
        return g.as_double(g.op("Equal", x, y))
    scale = float(field.get("similarityScale", "nan"))
    if not np.isfinite(scale) or scale == 0:
        raise NotCompiled("ClusteringField", "gaussSim without a similarityScale")
    d = g.op("Sub", x, y)  # exp(-ln(2) * d^2 / s^2)
    return g.op("Exp", g.op("Mul", g.op("Mul", d, d), g.const(-np.log(2.0) / (scale * scale))))


def _fields(model: ET.Element, scope: Scope) -> tuple[str, list[ET.Element]]:
    """([N, F] the center fields' values, their ClusteringFields)."""
    g = scope.graph
    fields = [f for f in model.findall("ClusteringField") if f.get("isCenterField", "true") == "true"]
    if not fields:
        raise NotCompiled("ClusteringModel", "it has no center fields")
    columns = []
    for f in fields:
        if f.find("Comparisons") is not None:
            raise NotCompiled("Comparisons", "a compare table is not compiled")
        value = scope.get(f.get("field", ""))
        if value.categorical:
            raise NotCompiled("ClusteringField", f"{f.get('field')!r} is a string field")
        columns.append(value.name)
    return g.stack(columns), fields


def _distances(model: ET.Element, scope: Scope, clusters: list[ET.Element]) -> str:
    """[N, K] distances of every row to every cluster."""
    g = scope.graph
    measure, p, default = _measure(model)
    x, fields = _fields(model, scope)
    n = len(fields)
    weights = np.array([float(f.get("fieldWeight", "1")) for f in fields])
    q = _numbers(model.find("MissingValueWeights"), "MissingValueWeights", n) \
        if model.find("MissingValueWeights") is not None else np.ones(n)
    present = g.op("Not", g.is_nan(x))  # [N, F]
    q_present = g.op("MatMul", g.as_double(present), g.const(q.reshape(n, 1)))
    adjust = g.op("Div", g.const(float(q.sum())), g.op("Squeeze", q_present, g.const([1], dtype=np.int64)))
    out = []
    for cluster in clusters:
        center = _numbers(cluster, "Cluster", n)
        terms = [_compare(g, f.get("compareFunction", default), f, g.column(x, j, n), g.const(center[j:j + 1]))
                 for j, f in enumerate(fields)]
        c = g.where(present, g.stack(terms), g.const(0.0))  # [N, F], 0 where missing
        out.append(_combine(g, measure, p, c, weights, adjust))
    return g.stack(out)


def _combine(g: Graph, measure: str, p: float, c: str, weights: np.ndarray, adjust: str) -> str:
    w = g.const(weights.reshape(1, -1))
    axis = g.const([1], dtype=np.int64)
    if measure == "chebychev":
        return g.op("Mul", g.op("ReduceMax", g.op("Mul", c, w), axis, keepdims=0), adjust)
    power = {"euclidean": 2.0, "squaredEuclidean": 2.0, "cityBlock": 1.0, "minkowski": p}[measure]
    terms = c if power == 1.0 else g.op("Mul", c, c) if power == 2.0 else g.op("Pow", c, g.const(power))
    total = g.op("Mul", g.op("ReduceSum", g.op("Mul", terms, w), axis, keepdims=0), adjust)
    if measure in ("squaredEuclidean", "cityBlock"):
        return total
    return g.op("Sqrt", total) if power == 2.0 else g.op("Pow", total, g.const(1.0 / power))


def clustering_prediction(model: ET.Element, scope: Scope, classes: tuple[str, ...] | None) -> Prediction:
    """The nearest cluster's index in the clusters' ids; ``affinity`` its distance."""
    if model.get("modelClass", "centerBased") != "centerBased":
        raise NotCompiled("ClusteringModel", f"modelClass={model.get('modelClass')!r} is not compiled")
    g = scope.graph
    clusters = model.findall("Cluster")
    if not clusters:
        raise NotCompiled("ClusteringModel", "it has no Cluster")
    ids = tuple(c.get("id") or str(k + 1) for k, c in enumerate(clusters))
    names = tuple(c.get("name") or MISSING for c in clusters)  # an unnamed cluster has no display value
    distances = _distances(model, scope, clusters)
    unknown = g.op("Cast", g.op("ReduceMax", g.op("Cast", g.is_nan(distances), to=11),
                                g.const([1], dtype=np.int64), keepdims=0), to=9)
    best = g.op("ArgMin", g.op("Where", g.is_nan(distances), g.const(0.0), distances), axis=1, keepdims=0)
    value = g.missing_if(unknown, g.op("Cast", best, to=11))
    nearest = g.op("ReduceMin", distances, g.const([1], dtype=np.int64), keepdims=0)
    prediction = Prediction("clustering", value, ids)
    prediction.extras["affinity"] = lambda: g.missing_if(unknown, nearest)
    prediction.extras["predictedDisplayValue"] = lambda: _strings(g, value, names)
    prediction.extras["entityId"] = lambda: _strings(g, value, ids)
    prediction.extras["clusterId"] = prediction.extras["entityId"]
    return prediction


def _strings(g: Graph, code: str, words: tuple[str, ...]) -> str:
    safe = g.op("Cast", g.fill(code, -1.0), to=TensorProto.INT64)
    return g.op("LabelEncoder", safe, domain="ai.onnx.ml", keys_int64s=list(range(len(words))),
                values_strings=list(words), default_string=MISSING)
