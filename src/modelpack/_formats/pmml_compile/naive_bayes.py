"""NaiveBayesModel: the prior counts times each input's conditional probability, normalized.

A categorical input (or a continuous one discretized by the BayesInput's DerivedField)
gives ``count(value, class) / count(class)``, ``count(class)`` being the sum of the
input's counts for that class; a GaussianDistribution gives its density. A probability
of zero (a density below it) is replaced by the model's ``threshold``. The product is
taken as a sum of logarithms, less the largest before ``exp``, which keeps the
ratios where a plain product would underflow. A missing value, or a value no
PairCounts names, leaves its input out of the product, as the PMML specification says.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

import numpy as np

from .graph import NotCompiled, Value
from .prediction import Prediction
from .regression import class_value
from .scope import Scope, literal_code

__all__ = ["naive_bayes_prediction"]


def _counts(element: ET.Element | None, classes: tuple[str, ...], what: str) -> np.ndarray:
    out = np.zeros(len(classes))
    for tvc in element.findall("TargetValueCount") if element is not None else []:
        label = tvc.get("value", "")
        if label not in classes:
            raise NotCompiled(what, f"TargetValueCount value={label!r} is not one of the classes")
        out[classes.index(label)] += float(tvc.get("count", "nan"))
    return out


def _categorical(bi: ET.Element, value: Value, scope: Scope, classes: tuple[str, ...], threshold: float) -> str:
    """[N, K] probabilities of the row's value per class; 1 where the input is left out."""
    g = scope.graph
    pairs = [(p.get("value", ""), _counts(p.find("TargetValueCounts"), classes, "PairCounts"))
             for p in bi.findall("PairCounts")]
    if not pairs:
        raise NotCompiled("BayesInput", f"{bi.get('fieldName')!r} has no PairCounts or TargetValueStats")
    totals = np.sum([c for _, c in pairs], axis=0)
    out = g.op("Mul", g.op("Unsqueeze", g.const_like(1.0), g.const([1], dtype=np.int64)),
               g.const(np.ones((1, len(classes)))))
    for text, counts in pairs:
        code = literal_code(value, text)
        if code is None:
            continue  # a value the field never takes
        with np.errstate(divide="ignore", invalid="ignore"):
            p = np.where(counts == 0, threshold, counts / totals)
        hit = g.op("Unsqueeze", g.op("Equal", value.name, g.const(code)), g.const([1], dtype=np.int64))
        out = g.where(hit, g.const(p.reshape(1, -1)), out)
    return out


def _gaussian(bi: ET.Element, value: Value, scope: Scope, classes: tuple[str, ...], threshold: float) -> str:
    g = scope.graph
    if value.categorical:
        raise NotCompiled("TargetValueStats", f"{bi.get('fieldName')!r} is a string field")
    mean, variance = np.full(len(classes), np.nan), np.full(len(classes), np.nan)
    for stat in bi.findall("TargetValueStats/TargetValueStat"):
        label = stat.get("value", "")
        dist = next((c for c in stat if c.tag != "Extension"), None)
        if dist is None or dist.tag != "GaussianDistribution":
            raise NotCompiled(dist.tag if dist is not None else "TargetValueStat", "only GaussianDistribution "
                              "is compiled")
        if label not in classes:
            raise NotCompiled("TargetValueStat", f"value={label!r} is not one of the classes")
        k = classes.index(label)
        mean[k], variance[k] = float(dist.get("mean", "nan")), float(dist.get("variance", "nan"))
    if not (np.isfinite(mean).all() and (variance > 0).all()):
        raise NotCompiled("TargetValueStats", f"{bi.get('fieldName')!r}: a class without a positive variance")
    x = g.op("Unsqueeze", value.name, g.const([1], dtype=np.int64))  # [N, 1]
    d = g.op("Sub", x, g.const(mean.reshape(1, -1)))
    density = g.op("Mul", g.op("Exp", g.op("Div", g.op("Mul", d, d), g.const(-2.0 * variance.reshape(1, -1)))),
                   g.const((1.0 / np.sqrt(2.0 * np.pi * variance)).reshape(1, -1)))
    density = g.op("Max", density, g.const(threshold))
    return g.where(g.is_nan(x), g.const(1.0), density)


def _input(bi: ET.Element, scope: Scope, classes: tuple[str, ...], threshold: float, as_is: set[str]) -> str:
    from .transform import EXPRESSIONS, expression

    derived = bi.find("DerivedField")
    if derived is not None:  # its bins are matched with the PairCounts as they are written, string or number
        expr = next((c for c in derived if c.tag in EXPRESSIONS), None)
        if expr is None:
            raise NotCompiled("DerivedField", "a BayesInput's DerivedField without an expression")
        value = expression(expr, scope)
        if scope.doc.evaluator_compatible:
            value = _first_bin(expr, value, scope)
    else:
        value = scope.get(bi.get("fieldName", ""))
        if scope.doc.evaluator_compatible and bi.find("TargetValueStats") is None \
                and bi.get("fieldName", "") in as_is:
            value = _unseen_as_first(bi.get("fieldName", ""), value, scope)
    if bi.find("TargetValueStats") is not None:
        if derived is not None:
            raise NotCompiled("BayesInput", "TargetValueStats of a derived value")
        return _gaussian(bi, value, scope, classes, threshold)
    return _categorical(bi, value, scope, classes, threshold)


def _first_bin(expr: ET.Element, value: Value, scope: Scope) -> Value:
    """pmml4s reads a value in no bin of a present input as the first bin (its code 0)."""
    first = expr.find("DiscretizeBin")
    source = expr.get("field")
    if expr.tag != "Discretize" or first is None or source is None:
        return value
    g = scope.graph
    code = literal_code(value, first.get("binValue", ""))
    present = g.op("Not", g.is_nan(scope.get(source).name))
    lost = g.op("And", present, g.is_nan(value.name))
    return value if code is None else Value(g.where(lost, g.const(code), value.name), value.vocab)


def _unseen_as_first(name: str, value: Value, scope: Scope) -> Value:
    """pmml4s reads an invalid category kept as it is (``asIs``) as the field's first valid value."""
    invalid, field = scope.invalid.get(name), scope.doc.fields.get(name)
    first = next((v.get("value", "") for v in field.findall("Value")
                  if v.get("property", "valid") == "valid"), None) if field is not None else None
    code = literal_code(value, first) if first is not None else None
    if invalid is None or code is None:
        return value
    g = scope.graph
    return Value(g.where(invalid, g.const(code), value.name), value.vocab)


def naive_bayes_prediction(model: ET.Element, scope: Scope, classes: tuple[str, ...] | None) -> Prediction:
    """The most probable class, and the probabilities."""
    if classes is None:
        raise NotCompiled("NaiveBayesModel", "a naive Bayes model that is not a classifier")
    g = scope.graph
    threshold = float(model.get("threshold", "nan"))
    if not np.isfinite(threshold):
        raise NotCompiled("NaiveBayesModel", "threshold is missing or not a number")
    prior = _counts(model.find("BayesOutput/TargetValueCounts"), classes, "BayesOutput")
    if model.find("BayesInputs/BayesInput") is None:
        raise NotCompiled("BayesInputs", "no BayesInput")
    with np.errstate(divide="ignore"):
        log_prior = np.log(prior)
    # Summed as logarithms, less the largest, so that many small factors do not underflow to 0/0
    as_is = {f.get("name", "") for f in model.findall("MiningSchema/MiningField")
             if f.get("invalidValueTreatment") == "asIs"}
    terms = [g.op("Log", _input(bi, scope, classes, threshold, as_is)) for bi in model.findall("BayesInputs/BayesInput")]
    log_likelihood = g.op("Add", g.const(log_prior.reshape(1, -1)),
                          g.op("Sum", *terms) if len(terms) > 1 else terms[0])
    axis = g.const([1], dtype=np.int64)
    top = g.op("ReduceMax", log_likelihood, axis, keepdims=1)
    likelihood = g.op("Exp", g.op("Sub", log_likelihood, top))
    probabilities = g.op("Div", likelihood, g.op("ReduceSum", likelihood, axis, keepdims=1))
    return Prediction("classification", class_value(g, probabilities, len(classes)), classes, probabilities)
