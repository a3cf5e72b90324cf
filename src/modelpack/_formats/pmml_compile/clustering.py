"""ClusteringModel (center-based): the distance of each row to every cluster's center.

Each ClusteringField contributes ``w * c(x, y)`` (its ``fieldWeight`` times its
compare function of the row's value and the center's); the ComparisonMeasure
combines the contributions (``euclidean``, ``squaredEuclidean``, ``cityBlock``,
``chebychev``, ``minkowski``; :mod:`.distance`). A missing value leaves its field out and the sum is
scaled by ``adjustM = sum(q) / sum(q of the fields present)``, ``q`` being the
MissingValueWeights, as the PMML specification defines. The nearest cluster (the
first on ties) is the prediction; its distance is the ``affinity``.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

import numpy as np
from onnx import TensorProto

from .distance import combine, compare, comparison_measure, missing_adjustment
from .document import array_values
from .graph import MISSING, Graph, NotCompiled
from .prediction import Prediction
from .scope import Scope

__all__ = ["clustering_prediction"]


def _numbers(element: ET.Element | None, what: str, n: int) -> np.ndarray:
    array = element.find("Array") if element is not None else None
    if array is None:
        raise NotCompiled(what, "it has no Array")
    values = np.array([float(v) for v in array_values(array)], dtype=np.float64)
    if len(values) != n:
        raise NotCompiled(what, f"its Array has {len(values)} entries for {n} clustering fields")
    return values


def _fields(model: ET.Element, scope: Scope) -> tuple[list[str], list[ET.Element]]:
    """(the center fields' values, their ClusteringFields)."""
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
    return columns, fields


def _distances(model: ET.Element, scope: Scope, clusters: list[ET.Element]) -> str:
    """[N, K] distances of every row to every cluster."""
    g = scope.graph
    measure, p, default = comparison_measure(model)
    columns, fields = _fields(model, scope)
    n = len(fields)
    weights = np.array([float(f.get("fieldWeight", "1")) for f in fields])
    q = _numbers(model.find("MissingValueWeights"), "MissingValueWeights", n) \
        if model.find("MissingValueWeights") is not None else np.ones(n)
    present = [g.op("Not", g.is_nan(c)) for c in columns]
    adjust = missing_adjustment(g, present, q)
    scales = [float(f.get("similarityScale", "nan")) for f in fields]
    out = []
    for cluster in clusters:
        center = _numbers(cluster, "Cluster", n)
        terms = [g.where(present[j], compare(g, f.get("compareFunction", default), f, columns[j],
                                             g.const(center[j:j + 1]), scales[j]), g.const(0.0))
                 for j, f in enumerate(fields)]
        out.append(combine(g, measure, p, terms, weights, adjust))
    return g.stack(out)


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
