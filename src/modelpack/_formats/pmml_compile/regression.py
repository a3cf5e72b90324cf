"""RegressionModel: one linear predictor per RegressionTable, then its normalization.

For a classifier, ``softmax`` and ``simplemax`` divide by the sum over the tables;
``none`` and the inverse links (``logit``, ``probit``, ``cloglog``, ``loglog``,
``cauchit``) give each table but the last its own probability and the last
table what is left (1 minus their sum), as the PMML specification defines.
probit and cauchit are the normal and Cauchy distribution functions, built from double
operators (``special.normal_cdf``, ``special.cauchy_cdf``): ONNX Runtime's Erf and Atan are
single precision only.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

import numpy as np

from .graph import MAX_GRAPH_NODES, Graph, NotCompiled, code_table
from .prediction import Prediction
from .scope import Scope, literal_code
from .special import cauchy_cdf, normal_cdf

__all__ = ["inverse_link", "regression_prediction"]


def _plain_names(table: ET.Element) -> list[str]:
    return [t.get("name", "") for t in table.findall("NumericPredictor") if float(t.get("exponent", "1")) == 1]


def _linear(tables: list[ET.Element], scope: Scope) -> tuple[str, list[int]] | None:
    """([K, N] plain terms, the tables they are for): the numeric predictors of exponent 1 of the
    tables that name the same fields, as one MatMul (ONNX Runtime's double MatMul is far faster
    than a Mul and an Add per term). A table naming other fields is left out: a missing value
    of a field it does not name must not reach it."""
    g = scope.graph
    names = next((_plain_names(t) for t in tables if _plain_names(t)), [])
    chosen = [k for k, t in enumerate(tables) if sorted(_plain_names(t)) == sorted(names)]
    if len(names) < 2 or len(set(names)) != len(names):
        return None
    values = [scope.get(n) for n in names]
    if any(v.categorical for v in values):
        raise NotCompiled("NumericPredictor", "a string field as a number")
    if len(names) * len(chosen) > MAX_GRAPH_NODES * 100:  # a matrix of doubles past about 160 MB
        raise NotCompiled("RegressionModel", f"{len(names)} predictors by {len(chosen)} tables make too large "
                                             "a matrix")
    weights, rows = np.zeros((len(names), len(chosen))), code_table(tuple(names))
    for j, k in enumerate(chosen):
        for t in tables[k].findall("NumericPredictor"):
            if float(t.get("exponent", "1")) == 1:
                weights[rows[t.get("name", "")], j] = float(t.get("coefficient", "nan"))
    # The fields stacked as rows, [P, N], and the tables' sums as rows, [K, N] (Graph.stack).
    stacked = g.stack([v.name for v in values], axis=0)
    return g.op("MatMul", g.const(np.ascontiguousarray(weights.T)), stacked), chosen


def _table(table: ET.Element, scope: Scope, plain: str | None = None) -> str:
    """One table's value; ``plain``, when given, holds its exponent-1 numeric terms already."""
    g = scope.graph
    intercept = float(table.get("intercept", "0"))
    total = g.const_like(intercept) if plain is None else g.op("Add", plain, g.const(intercept))
    for term in table:
        coefficient = float(term.get("coefficient", "nan"))
        if term.tag == "NumericPredictor" and plain is not None and float(term.get("exponent", "1")) == 1:
            continue
        if term.tag == "NumericPredictor":
            x = scope.get(term.get("name", ""))
            if x.categorical:
                raise NotCompiled("NumericPredictor", f"{term.get('name')!r} is a string field")
            exponent = float(term.get("exponent", "1"))
            power = x.name if exponent == 1 else g.op("Pow", x.name, g.const(exponent))
            part = g.op("Mul", power, g.const(coefficient))
        elif term.tag == "CategoricalPredictor":
            x = scope.get(term.get("name", ""))
            code = literal_code(x, term.get("value", ""))
            hit = g.as_double(g.op("Equal", x.name, g.const(code))) if code is not None else g.const_like(0.0)
            part = g.op("Mul", hit, g.const(coefficient))  # a missing category adds nothing
        elif term.tag == "PredictorTerm":
            part = g.const_like(coefficient)
            for ref in term.findall("FieldRef"):
                x = scope.get(ref.get("field", ""))
                if x.categorical:
                    raise NotCompiled("PredictorTerm", "a product with a string field")
                part = g.op("Mul", part, x.name)
        elif term.tag == "Extension":
            continue
        else:
            raise NotCompiled(term.tag, "this regression term is not compiled")
        total = g.op("Add", total, part)
    return total


def _tables(tables: list[ET.Element], scope: Scope) -> list[str]:
    g = scope.graph
    linear = _linear(tables, scope)
    if linear is None:
        return [_table(t, scope) for t in tables]
    product, chosen = linear
    return [_table(t, scope, g.column(product, chosen.index(k), len(chosen), axis=0)) if k in chosen
            else _table(t, scope) for k, t in enumerate(tables)]


def inverse_link(g: Graph, method: str, y: str) -> str:
    """PMML's normalization of one predictor value (``none`` leaves it as it is); missing stays missing."""
    if method == "none":
        return y
    if method == "exp":
        return g.op("Exp", y)
    if method in ("logit", "softmax"):
        return g.sigmoid(y)
    if method == "cloglog":
        return g.op("Sub", g.const(1.0), g.op("Exp", g.op("Neg", g.op("Exp", y))))
    if method == "loglog":
        return g.op("Exp", g.op("Neg", g.op("Exp", g.op("Neg", y))))
    if method == "probit":
        return normal_cdf(g, y)
    if method == "cauchit":
        return cauchy_cdf(g, y)
    raise NotCompiled("RegressionModel", f"normalizationMethod={method!r} is not compiled")


def class_value(g: Graph, probabilities: str, classes: int = 0) -> str:
    """The index of the most probable class (the first on ties); NaN where any probability is."""
    if classes == 2:  # ArgMax over doubles is slow in ONNX Runtime; ties go to the first class alike
        second, first = g.column(probabilities, 1, 2), g.column(probabilities, 0, 2)
        best = g.as_double(g.op("Greater", second, first))
    else:
        best = g.op("Cast", g.op("ArgMax", probabilities, axis=1, keepdims=0), to=11)
    unknown = g.op("Cast", g.op("ReduceMax", g.op("Cast", g.is_nan(probabilities), to=11),
                                g.const([1], dtype=np.int64), keepdims=0), to=9)
    return g.missing_if(unknown, best)


def regression_prediction(model: ET.Element, scope: Scope, classes: tuple[str, ...] | None) -> Prediction:
    g = scope.graph
    method = model.get("normalizationMethod", "none")
    tables = model.findall("RegressionTable")
    if classes is None:
        if len(tables) != 1:
            raise NotCompiled("RegressionModel", f"a regression with {len(tables)} RegressionTables")
        if method in ("softmax", "simplemax"):
            raise NotCompiled("RegressionModel", f"normalizationMethod={method!r} of a regression")
        return Prediction("regression", inverse_link(g, method, _tables(tables, scope)[0]))
    by_class = {t.get("targetCategory", ""): t for t in tables}
    missing = [c for c in by_class if c not in classes]
    if missing or len(by_class) != len(tables):
        raise NotCompiled("RegressionTable", f"targetCategory {missing[:3]} is not one of the classes")
    if len(tables) > 2 and method not in ("softmax", "simplemax", "none"):
        raise NotCompiled("RegressionModel", f"normalizationMethod={method!r} over {len(tables)} classes: the "
                                             "specification defines it for two, and evaluators differ beyond")
    # In document order: the last table is the one that gets what the others leave.
    order = [t.get("targetCategory", "") for t in tables]
    ys = _tables(tables, scope)
    stacked = _in_class_order(g, _normalize(g, method, ys), order, classes)
    label = class_value(g, stacked, len(classes))
    if method == "softmax" and scope.doc.evaluator_compatible:
        # pmml4s divides exp() by its sum as they are: past exp's range, inf/inf gives NaN probabilities
        stacked = _in_class_order(g, _normalize(g, "softmax-unshifted", ys), order, classes)
    return Prediction("classification", label, classes, stacked)


def _in_class_order(g: Graph, probabilities: list[str], order: list[str], classes: tuple[str, ...]) -> str:
    full = [g.const_like(0.0)] * len(classes)  # a class without a table has probability 0
    codes = code_table(classes)
    for c, p in zip(order, probabilities, strict=True):
        full[codes[c]] = p
    return g.stack(full)


def _normalize(g: Graph, method: str, ys: list[str]) -> list[str]:
    if method in ("softmax", "simplemax", "softmax-unshifted"):
        if method == "softmax":  # less the largest: exp() of a large score would overflow to inf/inf
            top = g.op("Max", *ys) if len(ys) > 1 else ys[0]
            ys = [g.op("Sub", y, top) for y in ys]
        terms = ys if method == "simplemax" else [g.op("Exp", y) for y in ys]
        total = g.op("Sum", *terms) if len(terms) > 1 else terms[0]
        return [g.op("Div", t, total) for t in terms]
    head = [inverse_link(g, method, y) for y in ys[:-1]]
    rest = g.op("Sub", g.const(1.0), g.op("Sum", *head) if len(head) > 1 else head[0]) if head else ys[-1]
    return [*head, rest]
