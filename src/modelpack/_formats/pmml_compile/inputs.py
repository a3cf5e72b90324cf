"""The graph's inputs: one per field, with the DataField's rules for missing and invalid values."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from onnx import TensorProto, helper

from .document import Document
from .graph import MISSING, Graph, NotCompiled, Value
from .scope import Scope

if TYPE_CHECKING:
    from ...manifest import TensorSpec

__all__ = ["bind_inputs", "interval_test"]


def bind_inputs(inputs: Sequence[TensorSpec], scope: Scope) -> None:
    """One graph input per field, converted to a Value, with its DataField validity rules."""
    g, doc = scope.graph, scope.doc
    for spec in inputs:
        data_type = doc.data_type(spec.name)
        if data_type == "boolean" or spec.dtype == "bool":
            raise NotCompiled("DataField", f"{spec.name!r} is boolean; boolean fields are not compiled")
        if spec.dtype == "string":
            g.inputs.append(helper.make_tensor_value_info(spec.name, TensorProto.STRING, ["N"]))
            scope.values[spec.name] = _string_input(spec.name, doc, scope)
        else:
            g.inputs.append(helper.make_tensor_value_info(spec.name, TensorProto.DOUBLE, ["N"]))
            scope.values[spec.name] = _numeric_input(spec.name, doc, scope)


def _string_input(name: str, doc: Document, scope: Scope) -> Value:
    g, vocab = scope.graph, doc.vocab(name)
    missing = set(doc.values(name, "missing"))
    codes = [math.nan if word in missing else float(i) for i, word in enumerate(vocab)]
    encoded = g.op("LabelEncoder", name, domain="ai.onnx.ml", keys_strings=[*vocab, MISSING],
                   values_floats=[*codes, math.nan], default_float=-1.0)
    x = g.op("Cast", encoded, to=TensorProto.DOUBLE)
    valid = len(doc.values(name, "valid"))
    if valid:
        outside = g.op("Or", g.op("Less", x, g.const(0.0)), g.op("GreaterOrEqual", x, g.const(float(valid))))
        scope.invalid[name] = outside
    return Value(x, vocab)


def _numeric_input(name: str, doc: Document, scope: Scope) -> Value:
    g, x = scope.graph, name
    if doc.data_type(name) == "integer":  # a number given to an integer field is truncated, as evaluators do
        x = g.where(g.op("Less", x, g.const(0.0)), g.op("Ceil", x), g.op("Floor", x))
    for text in doc.values(name, "missing"):
        x = g.missing_if(g.op("Equal", x, g.const(_number(text, name))), x)
    invalid = [g.op("Equal", x, g.const(_number(t, name))) for t in doc.values(name, "invalid")]
    field = doc.fields.get(name)
    intervals = field.findall("Interval") if field is not None else []
    valid_values = doc.values(name, "valid")
    if intervals or valid_values:
        inside = [interval_test(g, x, i) for i in intervals]
        inside += [g.op("Equal", x, g.const(_number(t, name))) for t in valid_values]
        invalid.append(g.op("And", g.op("Not", _any(g, inside)), g.op("Not", g.is_nan(x))))
    if invalid:
        scope.invalid[name] = _any(g, invalid)
    return Value(x)


def _any(g: Graph, masks: list[str]) -> str:
    out = masks[0]
    for mask in masks[1:]:
        out = g.op("Or", out, mask)
    return out


def interval_test(g: Graph, x: str, interval: ET.Element) -> str:
    """A bool tensor: ``x`` lies in the PMML Interval (False where missing)."""
    closure = interval.get("closure", "closedClosed")
    if closure not in ("openClosed", "openOpen", "closedOpen", "closedClosed"):
        raise NotCompiled("Interval", f"closure={closure!r} is not PMML")
    left, right = interval.get("leftMargin"), interval.get("rightMargin")
    low = float(left) if left is not None else -np.inf
    high = float(right) if right is not None else np.inf
    above = g.op("GreaterOrEqual" if closure.startswith("closed") else "Greater", x, g.const(low))
    below = g.op("LessOrEqual" if closure.endswith("Closed") else "Less", x, g.const(high))
    return g.op("And", above, below)


def _number(text: str, field: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise NotCompiled("Value", f"{text!r} of the numeric field {field!r} is not a number") from None
