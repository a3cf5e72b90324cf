"""GeneralRegressionModel: the parameter row from the PPMatrix, one MatMul with the ParamMatrix.

A parameter's value is the product of its PPCells: a covariate raised to the cell's
value, a factor's 1/0 for the cell's category; a parameter without cells is 1
(the intercept). ``regression``, ``generalLinear`` and ``generalizedLinear`` apply
the inverse link to ``eta + offset``; ``multinomialLogistic`` is a softmax with the
reference category at 0; ``ordinalMultinomial`` differences the cumulative link of
each category's threshold. A missing factor matches none of its categories; a row with a missing covariate has no
prediction, as in the evaluator.
The probit and cauchit inverses are the normal and Cauchy distribution functions built
from double operators (``special.normal_cdf``, ``special.cauchy_cdf``). Cox regression,
contrast matrices, trials and the other links stay with the evaluator.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

import numpy as np

from .graph import Graph, NotCompiled
from .prediction import Prediction
from .regression import class_value
from .scope import Scope, literal_code
from .special import cauchy_cdf, normal_cdf

__all__ = ["general_prediction"]


def _predictors(model: ET.Element, scope: Scope) -> dict[str, tuple[bool, str]]:
    """Predictor name -> (is a factor, its value's tensor)."""
    found = {}
    for kind in ("FactorList", "CovariateList"):
        for p in model.findall(f"{kind}/Predictor"):
            if p.get("contrastMatrixType") is not None or p.find("Matrix") is not None:
                raise NotCompiled("Predictor", f"{p.get('name')!r}: a contrast matrix is not compiled")
            value = scope.get(p.get("name", ""))
            if kind == "CovariateList" and value.categorical:
                raise NotCompiled("Predictor", f"{p.get('name')!r}: a string covariate")
            found[p.get("name", "")] = (kind == "FactorList", value.name)
    return found


def _rows(model: ET.Element, scope: Scope) -> tuple[list[str], str, str]:
    """The parameter names, the [N, P] parameter rows, and where a row is unknown."""
    g = scope.graph
    predictors = _predictors(model, scope)
    names = [p.get("name", "") for p in model.findall("ParameterList/Parameter")]
    cells = model.findall("PPMatrix/PPCell")  # matched in Python: a name is no safe XPath literal
    columns = []
    for name in names:
        part: str | None = None
        for cell in (c for c in cells if c.get("parameterName") == name):
            predictor = cell.get("predictorName", "")
            if predictor not in predictors:
                raise NotCompiled("PPCell", f"{predictor!r} is not a listed predictor")
            factor, x = predictors[predictor]
            if factor:
                code = literal_code(scope.get(predictor), cell.get("value", ""))
                term = g.as_double(g.op("Equal", x, g.const(code))) if code is not None else g.const_like(0.0)
            else:
                exponent = float(cell.get("value", "1"))
                term = x if exponent == 1 else g.op("Pow", x, g.const(exponent))
            part = term if part is None else g.op("Mul", part, term)
        columns.append(part if part is not None else g.const_like(1.0))
    if not names:
        raise NotCompiled("ParameterList", "a model without parameters")
    # a missing factor matches no category (its cells are 0); a missing covariate voids the row
    used = [x for factor, x in predictors.values() if not factor] or [g.const_like(0.0)]
    axis = g.const([1], dtype=np.int64)
    missing = g.op("Cast", g.op("ReduceMax", g.op("Cast", g.is_nan(g.stack(used)), to=11), axis,
                                keepdims=0), to=9)
    x = g.stack(columns)
    return names, g.where(g.is_nan(x), g.const(0.0), x), missing


def _betas(model: ET.Element, names: list[str], categories: list[str | None]) -> np.ndarray:
    """[P, K] coefficients: column k for ``categories[k]`` (None: the cells without a category)."""
    beta = np.zeros((len(names), len(categories)))
    for cell in model.findall("ParamMatrix/PCell"):
        name, category = cell.get("parameterName", ""), cell.get("targetCategory")
        if name not in names:
            raise NotCompiled("PCell", f"{name!r} is not in the ParameterList")
        for k, wanted in enumerate(categories):
            if category == wanted or category is None:
                beta[names.index(name), k] += float(cell.get("beta", "nan"))
    return beta


def _inverse(g: Graph, link: str, eta: str, parameter: float) -> str:
    if link == "identity":
        return eta
    if link == "log":
        return g.op("Exp", eta)
    if link == "logit":
        return g.sigmoid(eta)
    if link == "cloglog":
        return g.op("Sub", g.const(1.0), g.op("Exp", g.op("Neg", g.op("Exp", eta))))
    if link == "loglog":
        return g.op("Exp", g.op("Neg", g.op("Exp", g.op("Neg", eta))))
    if link == "probit":
        return normal_cdf(g, eta)
    if link == "cauchit":
        return cauchy_cdf(g, eta)
    if link == "logc":
        return g.op("Sub", g.const(1.0), g.op("Exp", eta))
    if link == "power":
        return g.op("Exp", eta) if parameter == 0 else g.op("Pow", eta, g.const(1.0 / parameter))
    raise NotCompiled("GeneralRegressionModel", f"the link {link!r} is not compiled")


def _offset(model: ET.Element, scope: Scope, eta: str) -> str:
    g = scope.graph
    if model.get("trialsVariable") is not None or model.get("trialsValue") is not None:
        raise NotCompiled("GeneralRegressionModel", "trials are not compiled")
    if model.get("offsetVariable") is not None:
        offset = scope.get(model.get("offsetVariable", ""))
        if offset.categorical:
            raise NotCompiled("GeneralRegressionModel", "a string offsetVariable")
        eta = g.op("Add", eta, offset.name)
    return g.op("Add", eta, g.const(float(model.get("offsetValue", "0"))))


def general_prediction(model: ET.Element, scope: Scope, classes: tuple[str, ...] | None) -> Prediction:
    g = scope.graph
    kind = model.get("modelType", "")
    if kind in ("CoxRegression", "") or kind not in ("regression", "generalLinear", "generalizedLinear",
                                                     "multinomialLogistic", "ordinalMultinomial"):
        raise NotCompiled("GeneralRegressionModel", f"modelType={kind!r} is not compiled")
    names, x, missing = _rows(model, scope)
    if classes is None:
        if kind in ("multinomialLogistic", "ordinalMultinomial"):
            raise NotCompiled("GeneralRegressionModel", f"modelType={kind!r} of a regression")
        eta = g.op("Squeeze", g.op("MatMul", x, g.const(_betas(model, names, [None]))), g.const([1], dtype=np.int64))
        link = model.get("linkFunction", "identity") if kind == "generalizedLinear" else "identity"
        if link == "cauchit":  # the evaluator does not load such a document
            raise NotCompiled("GeneralRegressionModel", "cauchit is a cumulativeLink of PMML, not a linkFunction")
        value = _inverse(g, link, _offset(model, scope, eta), float(model.get("linkParameter", "1")))
        return Prediction("regression", g.missing_if(missing, value))
    if kind == "multinomialLogistic":
        probabilities = _multinomial(model, g, names, x, classes)
    elif kind == "ordinalMultinomial":
        probabilities = _ordinal(model, scope, names, x, classes)
    else:
        raise NotCompiled("GeneralRegressionModel", f"modelType={kind!r} of a classifier")
    probabilities = g.where(g.op("Unsqueeze", missing, g.const([1], dtype=np.int64)), g.nan(), probabilities)
    label = class_value(g, probabilities, len(classes))
    if scope.doc.evaluator_compatible:  # pmml4s names the first class where every probability is missing
        label = g.where(missing, g.const(0.0), label)
    return Prediction("classification", label, classes, probabilities)


def _multinomial(model: ET.Element, g: Graph, names: list[str], x: str, classes: tuple[str, ...]) -> str:
    cells = {c.get("targetCategory") for c in model.findall("ParamMatrix/PCell")}
    if None in cells or not cells <= set(classes):
        raise NotCompiled("PCell", "a multinomial cell without a class of the model")
    reference = model.get("targetReferenceCategory")
    beta = _betas(model, names, list(classes))
    for k, c in enumerate(classes):
        if c not in cells or c == reference:
            beta[:, k] = 0.0  # the reference category's score is 0
    eta = g.op("MatMul", x, g.const(beta))
    axis = g.const([1], dtype=np.int64)
    e = g.op("Exp", g.op("Sub", eta, g.op("ReduceMax", eta, axis, keepdims=1)))
    return g.op("Div", e, g.op("ReduceSum", e, axis, keepdims=1))


def _ordinal(model: ET.Element, scope: Scope, names: list[str], x: str, classes: tuple[str, ...]) -> str:
    g = scope.graph
    link = model.get("cumulativeLink", "logit")
    categories = {c.get("targetCategory") for c in model.findall("ParamMatrix/PCell")}
    thresholds = [c for c in classes if c in categories]
    if thresholds != list(classes[: len(thresholds)]) or len(thresholds) != len(classes) - 1:
        raise NotCompiled("PCell", "an ordinal model needs a threshold for each class but the last, in order")
    eta = g.op("MatMul", x, g.const(_betas(model, names, list(thresholds))))
    cumulative = _inverse(g, link, _offset(model, scope, eta), 1.0)
    ones = g.op("Add", g.op("Mul", g.op("Gather", eta, g.const([0], dtype=np.int64), axis=1), g.const(0.0)),
                g.const(1.0))
    upper = g.op("Concat", cumulative, ones, axis=1)
    lower = g.op("Concat", g.op("Sub", ones, ones), cumulative, axis=1)
    return g.op("Sub", upper, lower)
