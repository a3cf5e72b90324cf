"""One model element -> its Prediction: scope, MiningSchema, transformations, Targets."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable

from .graph import NotCompiled
from .prediction import Prediction
from .scope import Scope, apply_mining_schema

__all__ = ["compile_model", "local_scope", "model_classes"]

Compiler = Callable[[ET.Element, Scope, "tuple[str, ...] | None"], Prediction]


def _compilers() -> dict[str, Compiler]:
    from .mining import mining_prediction
    from .regression import regression_prediction
    from .tree import tree_prediction

    return {"TreeModel": tree_prediction, "MiningModel": mining_prediction,
            "RegressionModel": regression_prediction}


def local_scope(model: ET.Element, scope: Scope) -> Scope:
    """The scope ``model`` computes in: its LocalTransformations, then its MiningSchema applied."""
    derived = {d.get("name", ""): d for d in model.findall("LocalTransformations/DerivedField")}
    inner = scope.child(derived)
    apply_mining_schema(model, inner)
    return inner


def model_classes(model: ET.Element, scope: Scope) -> tuple[str, ...] | None:
    """The class labels of a classifier in the document's order; None for other functions."""
    from ..pmml import _Doc, _raw_classes

    function = model.get("functionName")
    if function == "regression":
        return None
    if function != "classification":
        raise NotCompiled(model.tag, f"functionName={function!r} is not compiled")
    doc = scope.doc
    classes = _raw_classes(_Doc(doc.root, model, doc.fields, None), model)
    if not classes:
        raise NotCompiled(model.tag, "the classifier names no classes")
    return tuple(classes)


def compile_model(model: ET.Element, scope: Scope) -> tuple[Prediction, Scope]:
    """The model's prediction after its Targets, and the scope its outputs see."""
    compiler = _compilers().get(model.tag)
    if compiler is None:
        raise NotCompiled(model.tag, "this model type is not compiled yet")
    if model.get("isScorable", "true") == "false":
        raise NotCompiled(model.tag, "isScorable=false")
    inner = local_scope(model, scope)
    prediction = compiler(model, inner, model_classes(model, inner))
    return _targets(model, prediction, inner), inner


def _targets(model: ET.Element, prediction: Prediction, scope: Scope) -> Prediction:
    targets = model.findall("Targets/Target")
    if not targets or prediction.classification:
        return prediction
    if len(targets) > 1:
        raise NotCompiled("Targets", "more than one Target")
    t, g = targets[0], scope.graph
    x = prediction.value
    if any(tv.get("defaultValue") is not None for tv in t.findall("TargetValue")):
        x = g.where(g.is_nan(x), g.const(float(t.find("TargetValue").get("defaultValue", "")) if t.find("TargetValue") is not None else 0.0), x)  # type: ignore[union-attr]
    if t.get("min") is not None:
        x = g.where(g.op("Less", x, g.const(float(t.get("min", "")))), g.const(float(t.get("min", ""))), x)
    if t.get("max") is not None:
        x = g.where(g.op("Greater", x, g.const(float(t.get("max", "")))), g.const(float(t.get("max", ""))), x)
    x = g.op("Add", g.op("Mul", x, g.const(float(t.get("rescaleFactor", "1")))),
             g.const(float(t.get("rescaleConstant", "0"))))
    cast = t.get("castInteger")
    if cast is not None:
        ops = {"round": "Round", "ceiling": "Ceil", "floor": "Floor"}
        if cast not in ops:
            raise NotCompiled("Target", f"castInteger={cast!r} is not PMML")
        x = _round_half_up(g, x) if cast == "round" else g.op(ops[cast], x)
    prediction.value = x
    return prediction


def _round_half_up(g: object, x: str) -> str:
    from .graph import Graph

    assert isinstance(g, Graph)
    return g.op("Floor", g.op("Add", x, g.const(0.5)))
