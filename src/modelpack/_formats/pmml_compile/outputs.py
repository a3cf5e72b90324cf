"""Output fields: predicted value, probabilities, confidence, entity id, transformed values.

Fields are computed in document order and each becomes a field the later ones
may use (``transformedValue`` expressions refer to them by name). Rows a
``returnInvalid`` treatment voids get no value in any output, as in the
evaluator.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from onnx import TensorProto, helper

from ..pmml import OutputField, declared_outputs, default_outputs
from .graph import MISSING, Graph, NotCompiled, Value
from .prediction import Prediction
from .scope import Scope

if TYPE_CHECKING:
    from ...manifest import TensorSpec

__all__ = ["write_outputs"]


def _fields(model: ET.Element, scope: Scope) -> list[tuple[OutputField, ET.Element | None]]:
    from ..pmml import PmmlDoc, target_field

    declared = model.find("Output")
    if declared is None:
        doc = PmmlDoc(scope.doc.root, model, scope.doc.fields, target_field(model))
        return [(f, None) for f in default_outputs(doc, model)]
    fields = declared_outputs(model, final_only=False) or []
    return list(zip(fields, declared.findall("OutputField"), strict=True))


def output_values(model: ET.Element, prediction: Prediction, scope: Scope) -> dict[str, Value]:
    """Every OutputField of ``model`` (final or not) as a Value, bound in ``scope`` as it goes."""
    out: dict[str, Value] = {}
    for field, element in _fields(model, scope):
        value = _field(field, element, prediction, scope)
        scope.values[field.name] = out[field.name] = value
    return out


def _field(field: OutputField, element: ET.Element | None, p: Prediction, scope: Scope) -> Value:
    g = scope.graph
    feature = field.feature
    if feature == "predictedValue":
        return Value(p.value, p.classes)
    if feature == "probability":
        if p.probabilities is None or p.classes is None:
            raise NotCompiled("OutputField", f"{field.name!r}: the model gives no probabilities")
        if field.value is None:
            return Value(_of_predicted(g, p.probabilities, p.value))
        if field.value not in p.classes:
            raise NotCompiled("OutputField", f"{field.name!r}: {field.value!r} is not a class of the model")
        return Value(g.column(p.probabilities, p.classes.index(field.value), len(p.classes)))
    if feature == "reasonCode":  # one extra per rank; the implied outputs are reason_code_<rank>
        feature = f"reasonCode:{element.get('rank', '1') if element is not None else field.name.rsplit('_', 1)[-1]}"
    elif feature in ("entityId", "affinity") and f"{feature}:{_rank(element)}" in p.extras:
        feature = f"{feature}:{_rank(element)}"  # a nearest-neighbour model's rank-th neighbour
    if feature in p.extras:
        if feature in ("entityId", "clusterId", "predictedDisplayValue") or feature.startswith(("reasonCode:",
                                                                                              "entityId:")):
            return Value(p.extras[feature](), ("<entity>",))  # a string tensor, marked by this vocabulary
        return Value(p.extras[feature]())
    if feature == "transformedValue" and element is not None:
        from .transform import expression

        expr = next((c for c in element if c.tag not in ("Extension", "Decisions")), None)
        if expr is None:
            raise NotCompiled("OutputField", f"{field.name!r}: transformedValue without an expression")
        return expression(expr, scope)
    raise NotCompiled("OutputField", f"{field.name!r}: feature={feature!r} is not compiled")


def _rank(element: ET.Element | None) -> str:
    return element.get("rank", "1") if element is not None else "1"


def _of_predicted(g: Graph, probabilities: str, code: str) -> str:
    safe = g.op("Cast", g.fill(code, 0.0), to=TensorProto.INT64)
    picked = g.op("GatherElements", probabilities, g.op("Unsqueeze", safe, g.const([1], dtype=np.int64)), axis=1)
    return g.missing_if(g.is_nan(code), g.op("Squeeze", picked, g.const([1], dtype=np.int64)))


def write_outputs(model: ET.Element, prediction: Prediction, scope: Scope, specs: Sequence[TensorSpec]) -> None:
    """The graph's outputs, named and typed as the manifest lists them."""
    g = scope.graph
    if model.find("Output") is None and all(_bound(scope, s.name) for s in specs):
        values = {s.name: scope.get(s.name) for s in specs}  # a model chain's last outputs
    else:
        values = output_values(model, prediction, scope)
    for spec in specs:
        if spec.name not in values:
            raise NotCompiled("OutputField", f"{spec.name!r} is not computed")
        tensor = _typed(g, values[spec.name], spec)
        if scope.void is not None:
            tensor = g.where(scope.void, g.const(MISSING, dtype=object) if spec.dtype == "string" else g.nan(),
                             tensor)
        g.nodes.append(helper.make_node("Identity", [tensor], [spec.name]))
        kind = TensorProto.STRING if spec.dtype == "string" else TensorProto.DOUBLE
        g.outputs.append(helper.make_tensor_value_info(spec.name, kind, ["N"]))


def _bound(scope: Scope, name: str) -> bool:
    try:
        scope.get(name)
    except NotCompiled:
        return False
    return True


def _typed(g: Graph, value: Value, spec: TensorSpec) -> str:
    if spec.dtype not in ("string", "float64"):
        raise NotCompiled("OutputField", f"{spec.name!r} is of type {spec.dtype}, which is not compiled")
    if value.vocab == ("<entity>",):
        if spec.dtype != "string":
            raise NotCompiled("OutputField", f"{spec.name!r}: an entity id as a number")
        return value.name
    if spec.dtype == "float64":
        if value.vocab is None:
            return value.name
        try:
            numbers = [float(v) for v in value.vocab]
        except ValueError:
            raise NotCompiled("OutputField", f"{spec.name!r}: string classes given as numbers") from None
        return _lookup(g, value.name, numbers)
    if not value.vocab:
        raise NotCompiled("OutputField", f"{spec.name!r}: a number given as a string")
    safe = g.op("Cast", g.fill(value.name, -1.0), to=TensorProto.INT64)
    return g.op("LabelEncoder", safe, domain="ai.onnx.ml", keys_int64s=list(range(len(value.vocab))),
                values_strings=list(value.vocab), default_string=MISSING)


def _lookup(g: Graph, code: str, table: list[float]) -> str:
    safe = g.op("Cast", g.fill(code, 0.0), to=TensorProto.INT64)
    picked = g.op("Gather", g.const(table), safe, axis=0)
    return g.missing_if(g.is_nan(code), picked)
