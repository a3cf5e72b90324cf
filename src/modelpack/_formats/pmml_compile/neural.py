"""NeuralNetwork: NeuralInputs, one MatMul per NeuralLayer, its activation, NeuralOutputs.

Each layer computes ``Z = inputs @ weights + bias`` in double (a neuron's missing
connections weigh 0), then the layer's activation function, then its normalization
(``softmax``, ``simplemax``). A row with a missing input has no prediction, as in the
evaluator. ``arctan`` goes through :func:`.special.atan` (ONNX Runtime's Atan is float32
only); ``radialBasis`` layers stay with the evaluator. A regression's NeuralOutput
undoes its NormContinuous (the neuron holds the normalized target); a classifier's
class probabilities are the neurons its NormDiscrete outputs name.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable

import numpy as np

from .graph import Graph, NotCompiled
from .prediction import Prediction
from .regression import class_value
from .scope import Scope
from .special import atan

__all__ = ["neural_prediction"]


def _activation(g: Graph, name: str, z: str, threshold: float) -> str:
    if name == "identity":
        return z
    if name == "threshold":
        return g.as_double(g.op("Greater", z, g.const(threshold)))
    if name == "logistic":
        return g.sigmoid(z)
    if name == "tanh":
        return g.op("Tanh", z)
    if name == "exponential":
        return g.op("Exp", z)
    if name == "reciprocal":
        return g.op("Reciprocal", z)
    if name == "square":
        return g.op("Mul", z, z)
    if name == "Gauss":
        return g.op("Exp", g.op("Neg", g.op("Mul", z, z)))
    if name == "sine":
        return g.op("Sin", z)
    if name == "cosine":
        return g.op("Cos", z)
    if name == "Elliott":
        return g.op("Div", z, g.op("Add", g.const(1.0), g.op("Abs", z)))
    if name == "rectifier":
        return g.op("Max", z, g.const(0.0))
    if name == "arctan":  # 2 arctan(Z) / pi
        return g.op("Mul", atan(g, z), g.const(2.0 / np.pi))
    raise NotCompiled("NeuralLayer", f"activationFunction={name!r} is not compiled")


def _normalize(g: Graph, method: str, y: str) -> str:
    if method == "none":
        return y
    axis = g.const([1], dtype=np.int64)
    if method == "softmax":
        y = g.op("Exp", g.op("Sub", y, g.op("ReduceMax", y, axis, keepdims=1)))
    elif method != "simplemax":
        raise NotCompiled("NeuralLayer", f"normalizationMethod={method!r} is not PMML")
    return g.op("Div", y, g.op("ReduceSum", y, axis, keepdims=1))


def _layer(g: Graph, layer: ET.Element, model: ET.Element, ids: dict[str, int], x: str) -> tuple[str, dict[str, int]]:
    """The layer's [N, M] outputs from its [N, K] inputs ``x`` whose neuron ids are ``ids``."""
    activation = layer.get("activationFunction", model.get("activationFunction", ""))
    if activation == "radialBasis":
        raise NotCompiled("NeuralLayer", "activationFunction='radialBasis' is not compiled")
    neurons = layer.findall("Neuron")
    weights = np.zeros((len(ids), len(neurons)))
    bias = np.zeros(len(neurons))
    for j, neuron in enumerate(neurons):
        bias[j] = float(neuron.get("bias", "0"))
        for con in neuron.findall("Con"):
            source = con.get("from", "")
            if source not in ids:
                raise NotCompiled("Con", f"from={source!r} is not a neuron of the layer before")
            weights[ids[source], j] += float(con.get("weight", "nan"))
    z = g.op("Add", g.op("MatMul", x, g.const(weights)), g.const(bias))
    threshold = float(layer.get("threshold", model.get("threshold", "0")))
    y = _activation(g, activation, z, threshold)
    y = _normalize(g, layer.get("normalizationMethod", model.get("normalizationMethod", "none")), y)
    return y, {n.get("id", ""): j for j, n in enumerate(neurons)}


def _inputs(model: ET.Element, scope: Scope) -> tuple[list[str], dict[str, int]]:
    from .transform import derived_field

    columns, ids = [], {}
    for i, item in enumerate(model.findall("NeuralInputs/NeuralInput")):
        field = item.find("DerivedField")
        if field is None:
            raise NotCompiled("NeuralInput", "without a DerivedField")
        value = derived_field(field, scope)
        if value.categorical:
            raise NotCompiled("NeuralInput", "a string value as a neuron's input")
        columns.append(value.name)
        ids[item.get("id", "")] = i
    if not columns:
        raise NotCompiled("NeuralInputs", "a network without inputs")
    return columns, ids


def _denormalize(g: Graph, field: ET.Element, y: str) -> str:
    """The target whose NormContinuous is ``y`` (the piecewise line read the other way)."""
    expr = next((c for c in field if c.tag != "Extension"), None)
    if expr is not None and expr.tag == "FieldRef":
        return y
    if expr is None or expr.tag != "NormContinuous":
        raise NotCompiled("NeuralOutput", f"a {expr.tag if expr is not None else 'missing'} output is not compiled")
    points = sorted((float(p.get("norm", "nan")), float(p.get("orig", "nan"))) for p in expr.findall("LinearNorm"))
    if len(points) < 2 or any(a[0] >= b[0] for a, b in zip(points, points[1:], strict=False)):
        raise NotCompiled("NeuralOutput", "a NormContinuous that is not increasing cannot be undone")
    lines = []
    for a, b in zip(points, points[1:], strict=False):
        slope = (b[1] - a[1]) / (b[0] - a[0])
        lines.append(g.op("Add", g.const(a[1]), g.op("Mul", g.op("Sub", y, g.const(a[0])), g.const(slope))))
    out = lines[-1]
    for i in range(len(points) - 3, -1, -1):
        out = g.where(g.op("Less", y, g.const(points[i + 1][0])), lines[i], out)
    return out


def neural_prediction(model: ET.Element, scope: Scope, classes: tuple[str, ...] | None) -> Prediction:
    g = scope.graph
    columns, ids = _inputs(model, scope)
    x = g.stack(columns)
    axis = g.const([1], dtype=np.int64)
    unknown = g.op("Cast", g.op("ReduceMax", g.op("Cast", g.is_nan(x), to=11), axis, keepdims=0), to=9)
    x = g.where(g.is_nan(x), g.const(0.0), x)  # a missing input voids the row below, not just its neurons
    for layer in model.findall("NeuralLayer"):
        x, ids = _layer(g, layer, model, ids, x)
    outputs = model.findall("NeuralOutputs/NeuralOutput")
    neuron = {o.get("outputNeuron", ""): o for o in outputs}
    missing = [n for n in neuron if n not in ids]
    if missing or not outputs:
        raise NotCompiled("NeuralOutput", f"outputNeuron {missing[:3]} is not a neuron of the last layer")

    def column(n: str) -> str:
        return g.op("Gather", x, g.const(ids[n], dtype=np.int64), axis=1)

    if classes is None:
        if len(outputs) != 1 or outputs[0].find("DerivedField") is None:
            raise NotCompiled("NeuralOutputs", "a regression needs one NeuralOutput with a DerivedField")
        only = outputs[0]
        value = _denormalize(g, only.find("DerivedField"), column(only.get("outputNeuron", "")))  # type: ignore[arg-type]
        return Prediction("regression", g.missing_if(unknown, value))
    return _classes(g, outputs, classes, column, unknown)


def _classes(g: Graph, outputs: list[ET.Element], classes: tuple[str, ...], column: Callable[[str], str],
             unknown: str) -> Prediction:
    by_class: dict[str, str] = {}
    for o in outputs:
        norm = o.find("DerivedField/NormDiscrete")
        if norm is None:
            raise NotCompiled("NeuralOutput", "a classifier's output that is not a NormDiscrete")
        by_class[norm.get("value", "")] = column(o.get("outputNeuron", ""))
    if sorted(by_class) != sorted(classes):
        raise NotCompiled("NeuralOutputs", "the outputs do not name each class once")
    probabilities = g.stack([g.missing_if(unknown, by_class[c]) for c in classes])
    return Prediction("classification", class_value(g, probabilities, len(classes)), classes, probabilities)
