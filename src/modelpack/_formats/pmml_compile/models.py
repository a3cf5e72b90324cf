"""One model element -> its Prediction: scope, MiningSchema, transformations, Targets."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable

from .graph import NotCompiled
from .prediction import Prediction
from .scope import Scope, local_scope, model_classes

__all__ = ["compile_model"]

Compiler = Callable[[ET.Element, Scope, "tuple[str, ...] | None"], Prediction]


def _compilers() -> dict[str, Compiler]:
    from .general import general_prediction
    from .mining import mining_prediction
    from .neural import neural_prediction
    from .regression import regression_prediction
    from .scorecard import scorecard_prediction
    from .tree import tree_prediction

    found: dict[str, Compiler] = {"TreeModel": tree_prediction, "MiningModel": mining_prediction,
                                  "RegressionModel": regression_prediction,
                                  "NeuralNetwork": neural_prediction, "GeneralRegressionModel": general_prediction,
                                  "Scorecard": scorecard_prediction}
    # -- clustering, nearest neighbours, rule sets, naive Bayes, support vector machines
    from .clustering import clustering_prediction
    from .naive_bayes import naive_bayes_prediction
    from .neighbors import neighbors_prediction
    from .rules import rule_set_prediction
    from .svm import svm_prediction

    found.update({"ClusteringModel": clustering_prediction, "RuleSetModel": rule_set_prediction,
                  "NaiveBayesModel": naive_bayes_prediction, "SupportVectorMachineModel": svm_prediction,
                  "NearestNeighborModel": neighbors_prediction})
    return found


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
    """A regression's Target: clamped to [min, max], then rescaled, then cast to an integer."""
    targets = model.findall("Targets/Target")
    if not targets or prediction.classification:
        return prediction
    if len(targets) > 1:
        raise NotCompiled("Targets", "more than one Target")
    t, g = targets[0], scope.graph
    if any(tv.get("defaultValue") is not None for tv in t.findall("TargetValue")):
        raise NotCompiled("TargetValue", "defaultValue of a regression is not compiled")
    x = prediction.value
    for bound, past in (("min", "Less"), ("max", "Greater")):
        if t.get(bound) is not None:
            limit = g.const(float(t.get(bound, "")))
            x = g.where(g.op(past, x, limit), limit, x)
    x = g.op("Add", g.op("Mul", x, g.const(float(t.get("rescaleFactor", "1")))),
             g.const(float(t.get("rescaleConstant", "0"))))
    cast = t.get("castInteger")
    if cast == "round":  # Java's Math.round: half up
        x = g.op("Floor", g.op("Add", x, g.const(0.5)))
    elif cast in ("ceiling", "floor"):
        x = g.op("Ceil" if cast == "ceiling" else "Floor", x)
    elif cast is not None:
        raise NotCompiled("Target", f"castInteger={cast!r} is not PMML")
    prediction.value = x
    return prediction
