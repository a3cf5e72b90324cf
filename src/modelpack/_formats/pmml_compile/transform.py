"""DerivedField expressions: Constant, FieldRef, NormContinuous, NormDiscrete, Discretize,
MapValues and Apply with the built-in functions that are ONNX operators.

Missing values are NaN and travel through arithmetic as PMML says they do (a
function of a missing argument is missing), unless ``mapMissingTo`` replaces them.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable

import numpy as np
from onnx import TensorProto

from .document import is_numeric
from .graph import Graph, NotCompiled, Value, code_table
from .inputs import interval_test
from .predicates import COMPARE, membership, three_and, three_not, three_or
from .scope import Scope, literal_code
from .special import normal_cdf

__all__ = ["derived_field", "expression", "unify"]

EXPRESSIONS = ("Constant", "FieldRef", "NormContinuous", "NormDiscrete", "Discretize", "MapValues", "Apply")


def derived_field(element: ET.Element, scope: Scope) -> Value:
    expr = next((c for c in element if c.tag in EXPRESSIONS or c.tag in ("Aggregate", "Lag", "TextIndex")), None)
    if expr is None:
        raise NotCompiled("DerivedField", f"{element.get('name')!r} has no expression")
    value = expression(expr, scope)
    if not is_numeric(element.get("dataType")) and element.get("dataType") is not None and not value.categorical:
        raise NotCompiled("DerivedField", f"{element.get('name')!r}: numbers cast to {element.get('dataType')}")
    return value


def expression(element: ET.Element, scope: Scope) -> Value:
    """The value of a PMML expression element."""
    compile_ = _EXPRESSION.get(element.tag)
    if compile_ is None:
        raise NotCompiled(element.tag, "this expression is not compiled")
    return compile_(element, scope)


def _map_missing(g: Graph, element: ET.Element, value: Value, missing: str | None = None) -> Value:
    text = element.get("mapMissingTo")
    if text is None:
        return value
    target, vocab = _literal(g, text, value.vocab)
    cond = missing if missing is not None else g.is_nan(value.name)
    return Value(g.where(cond, target, value.name), vocab)


def _literal(g: Graph, text: str, vocab: tuple[str, ...] | None) -> tuple[str, tuple[str, ...] | None]:
    """A constant tensor of ``text`` next to a value of ``vocab``, and the vocabulary both share."""
    if vocab is None:
        try:
            return g.const(float(text)), None
        except ValueError:
            raise NotCompiled("Apply", f"{text!r} where a number is computed") from None
    merged = vocab if text in vocab else (*vocab, text)
    return g.const(float(merged.index(text))), merged


def unify(g: Graph, a: Value, b: Value) -> tuple[Value, Value]:
    """``a`` and ``b`` as codes of one vocabulary: ``a``'s, then ``b``'s other words."""
    if a.vocab == b.vocab:
        return a, b
    vocab = tuple(dict.fromkeys([*(a.vocab or ()), *(b.vocab or ())]))
    return Value(a.name, vocab), Value(_shift(g, b, vocab), vocab)


def _constant(element: ET.Element, scope: Scope) -> Value:
    g = scope.graph
    text = element.text.strip() if element.text else ""
    if element.get("missing") == "true":
        return Value(g.missing_like())
    data_type = element.get("dataType")
    if is_numeric(data_type) or data_type is None:
        try:
            return Value(g.const_like(float(text)))
        except ValueError:
            if data_type is not None:
                raise NotCompiled("Constant", f"{text!r} is not a number") from None
    return Value(g.const_like(0.0), (text,))


def _field_ref(element: ET.Element, scope: Scope) -> Value:
    return _map_missing(scope.graph, element, scope.get(element.get("field", "")))


def _norm_continuous(element: ET.Element, scope: Scope) -> Value:
    g = scope.graph
    x = scope.get(element.get("field", ""))
    if x.categorical:
        raise NotCompiled("NormContinuous", "of a string field")
    points = sorted((float(p.get("orig", "nan")), float(p.get("norm", "nan"))) for p in element.findall("LinearNorm"))
    if len(points) < 2:
        raise NotCompiled("NormContinuous", "fewer than two LinearNorm points")
    segments = [_line(g, x.name, a, b) for a, b in zip(points, points[1:], strict=False)]
    out = segments[-1]
    for i in range(len(points) - 3, -1, -1):
        out = g.where(g.op("Less", x.name, g.const(points[i + 1][0])), segments[i], out)
    outliers = element.get("outliers", "asIs")
    low, high = points[0], points[-1]
    below, above = g.op("Less", x.name, g.const(low[0])), g.op("Greater", x.name, g.const(high[0]))
    if outliers == "asMissingValues":
        out = g.missing_if(g.op("Or", below, above), out)
    elif outliers == "asExtremeValues":
        out = g.where(below, g.const(low[1]), g.where(above, g.const(high[1]), out))
    elif outliers != "asIs":
        raise NotCompiled("NormContinuous", f"outliers={outliers!r} is not PMML")
    return _map_missing(g, element, Value(out), g.is_nan(x.name))


def _line(g: Graph, x: str, a: tuple[float, float], b: tuple[float, float]) -> str:
    slope = (b[1] - a[1]) / (b[0] - a[0])
    return g.op("Add", g.const(a[1]), g.op("Mul", g.op("Sub", x, g.const(a[0])), g.const(slope)))


def _norm_discrete(element: ET.Element, scope: Scope) -> Value:
    g = scope.graph
    x = scope.get(element.get("field", ""))
    code = literal_code(x, element.get("value", ""))
    hit = g.as_double(g.op("Equal", x.name, g.const(code))) if code is not None else g.const_like(0.0)
    out = g.missing_if(g.is_nan(x.name), hit)
    return _map_missing(g, element, Value(out), g.is_nan(x.name))


def _output_vocab(element: ET.Element, outputs: list[str]) -> tuple[str, ...] | None:
    """None when the results are numbers (the declared dataType, else every result parses)."""
    data_type = element.get("dataType")
    if data_type is not None:
        return None if is_numeric(data_type) else tuple(dict.fromkeys(outputs))
    try:
        [float(v) for v in outputs]
    except ValueError:
        return tuple(dict.fromkeys(outputs))
    return None


def _extra_values(element: ET.Element) -> list[str]:
    """The results an element names besides its bins or rows: defaultValue, mapMissingTo."""
    return [v for v in (element.get("defaultValue"), element.get("mapMissingTo")) if v is not None]


def _code(text: str, codes: dict[str, int] | None) -> float:
    return float(text) if codes is None else float(codes[text])


def _discretize(element: ET.Element, scope: Scope) -> Value:
    g = scope.graph
    x = scope.get(element.get("field", ""))
    bins = [(b.get("binValue", ""), b.find("Interval")) for b in element.findall("DiscretizeBin")]
    vocab = _output_vocab(element, [v for v, _ in bins] + _extra_values(element))
    codes = None if vocab is None else code_table(vocab)
    default = element.get("defaultValue")
    if scope.doc.evaluator_compatible:
        default = None  # pmml4s gives a value in no bin no value, whatever defaultValue says
    out = g.const_like(_code(default, codes)) if default is not None else g.missing_like()
    for value, interval in reversed(bins):
        if interval is None:
            raise NotCompiled("DiscretizeBin", "it has no Interval")
        out = g.where(interval_test(g, x.name, interval), g.const(_code(value, codes)), out)
    out = g.missing_if(g.is_nan(x.name), out)
    missing = element.get("mapMissingTo")
    if missing is not None:
        out = g.where(g.is_nan(x.name), g.const(_code(missing, codes)), out)
    return Value(out, vocab)


def _map_values(element: ET.Element, scope: Scope) -> Value:
    g = scope.graph
    pairs = element.findall("FieldColumnPair")
    if len(pairs) != 1:
        raise NotCompiled("MapValues", f"{len(pairs)} FieldColumnPairs (one is compiled)")
    x = scope.get(pairs[0].get("field", ""))
    column, target = pairs[0].get("column", ""), element.get("outputColumn", "")
    rows = []
    for row in element.findall("InlineTable/row"):
        cell, result = row.find(column), row.find(target)
        if cell is None or result is None:
            raise NotCompiled("InlineTable", "a row lacks a column")
        rows.append(((cell.text or "").strip(), (result.text or "").strip()))
    if element.find("TableLocator") is not None:
        raise NotCompiled("TableLocator", "tables outside the document")
    vocab = _output_vocab(element, [v for _, v in rows] + _extra_values(element))
    codes = None if vocab is None else code_table(vocab)
    default = element.get("defaultValue")
    out = g.const_like(_code(default, codes)) if default is not None else g.missing_like()
    for key, val in reversed(rows):
        code = literal_code(x, key)
        if code is not None:
            out = g.where(g.op("Equal", x.name, g.const(code)), g.const(_code(val, codes)), out)
    out = g.missing_if(g.is_nan(x.name), out)
    missing = element.get("mapMissingTo")
    if missing is not None:
        out = g.where(g.is_nan(x.name), g.const(_code(missing, codes)), out)
    return Value(out, vocab)


# -- Apply ----------------------------------------------------------------------------------------
_UNARY = {"log10": None, "ln": "Log", "sqrt": "Sqrt", "abs": "Abs", "exp": "Exp", "floor": "Floor",
          "ceil": "Ceil"}
_BINARY = {"+": "Add", "-": "Sub", "*": "Mul", "/": "Div", "pow": "Pow"}
_FOLD = {"min": "Min", "max": "Max", "sum": "Sum", "avg": "Mean"}


def _apply(element: ET.Element, scope: Scope) -> Value:
    g = scope.graph
    function = element.get("function", "")
    if element.get("invalidValueTreatment", "returnInvalid") != "returnInvalid":
        raise NotCompiled("Apply", "invalidValueTreatment on Apply")
    args = [expression(a, scope) for a in element if a.tag in EXPRESSIONS]
    if function == "if":
        result = _if(g, args)
    elif function in ("isIn", "isNotIn"):
        result = _is_in(g, element, args, function)
    else:
        result = _function(g, function, args, scope.doc.evaluator_compatible)
    missing = None
    if element.get("mapMissingTo") is not None and args:
        missing = _any_missing(g, args)
    result = _map_missing(g, element, result, missing)
    default = element.get("defaultValue")
    if default is not None:
        target, vocab = _literal(g, default, result.vocab)
        result = Value(g.where(g.is_nan(result.name), target, result.name), vocab)
    return result


def _any_missing(g: Graph, args: list[Value]) -> str:
    out = g.is_nan(args[0].name)
    for a in args[1:]:
        out = g.op("Or", out, g.is_nan(a.name))
    return out


def _numbers(function: str, args: list[Value], count: int | None) -> list[str]:
    if count is not None and len(args) != count:
        raise NotCompiled("Apply", f"{function!r} with {len(args)} arguments")
    if any(a.categorical for a in args):
        raise NotCompiled("Apply", f"{function!r} of string values")
    return [a.name for a in args]


def _function(g: Graph, function: str, args: list[Value], compatible: bool) -> Value:
    if function in _UNARY:
        (x,) = _numbers(function, args, 1)
        if function == "log10":
            return Value(g.op("Div", g.op("Log", x), g.const(np.log(10.0))))
        return Value(g.op(_UNARY[function], x))  # type: ignore[arg-type]
    if function in _BINARY:
        a, b = _numbers(function, args, 2)
        return Value(g.op(_BINARY[function], a, b))
    if function in _FOLD:
        return Value(_fold(g, function, _numbers(function, args, None)))
    if function in _DISTRIBUTIONS:
        return Value(_distribution(g, function, _numbers(function, args, 1 if function.startswith("std") else 3)))
    if function == "round":  # Java's Math.round: half up
        (x,) = _numbers(function, args, 1)
        rounded = g.op("Floor", g.op("Add", x, g.const(0.5)))
        return Value(g.fill(rounded, 0.0) if compatible else rounded)  # pmml4s: Math.round(NaN) is 0
    if function == "threshold":
        a, b = _numbers(function, args, 2)
        return Value(g.missing_if(g.op("Or", g.is_nan(a), g.is_nan(b)), g.as_double(g.op("Greater", a, b))))
    if function in ("isMissing", "isNotMissing") and len(args) == 1:
        missing = g.is_nan(args[0].name)
        return Value(g.as_double(missing if function == "isMissing" else g.op("Not", missing)))
    if function in COMPARE:
        return _compare(g, function, args)
    return _logic(g, function, args)


_DISTRIBUTIONS = ("stdNormalCDF", "stdNormalPDF", "normalCDF", "normalPDF")


def _distribution(g: Graph, function: str, xs: list[str]) -> str:
    """The normal distribution's CDF or PDF at ``x`` (mean 0 and deviation 1, or the arguments)."""
    x = xs[0]
    if len(xs) == 3:
        x = g.op("Div", g.op("Sub", x, xs[1]), xs[2])
    if function.endswith("CDF"):
        return normal_cdf(g, x)
    density = g.op("Mul", g.op("Exp", g.op("Mul", g.op("Mul", x, x), g.const(-0.5))), g.const(1 / np.sqrt(2 * np.pi)))
    return density if len(xs) == 1 else g.op("Div", density, xs[2])


def _fold(g: Graph, function: str, xs: list[str]) -> str:
    """min, max, sum, avg over the arguments that are not missing; missing when all are."""
    if len(xs) == 1:
        return xs[0]
    present = [g.as_double(g.op("Not", g.is_nan(x))) for x in xs]
    count = g.op("Sum", *present)
    if function in ("min", "max"):
        neutral = np.inf if function == "min" else -np.inf
        out = g.op(_FOLD[function], *[g.fill(x, neutral) for x in xs])
    else:
        out = g.op("Sum", *[g.fill(x, 0.0) for x in xs])
        out = g.op("Div", out, count) if function == "avg" else out
    return g.missing_if(g.op("Equal", count, g.const(0.0)), out)


def _compare(g: Graph, function: str, args: list[Value]) -> Value:
    if len(args) != 2:
        raise NotCompiled("Apply", f"{function!r} with {len(args)} arguments")
    a, b = args
    if a.categorical or b.categorical:
        if function not in ("equal", "notEqual") or not (a.categorical and b.categorical):
            raise NotCompiled("Apply", f"{function!r} of a string and a number")
        a, b = unify(g, a, b)
    result = g.as_double(g.op(COMPARE[function], a.name, b.name))
    if function == "notEqual":
        result = g.op("Sub", g.const(1.0), result)
    return Value(g.missing_if(g.op("Or", g.is_nan(a.name), g.is_nan(b.name)), result))


def _logic(g: Graph, function: str, args: list[Value]) -> Value:
    names = [a.name for a in args]
    if function == "and" and names:
        return Value(three_and(g, names))
    if function == "or" and names:
        return Value(three_or(g, names))
    if function == "not" and len(names) == 1:
        return Value(three_not(g, names[0]))
    raise NotCompiled("Apply", f"the function {function!r} is not compiled")


def _if(g: Graph, args: list[Value]) -> Value:
    if len(args) not in (2, 3):
        raise NotCompiled("Apply", f"'if' with {len(args)} arguments")
    cond, yes = args[0], args[1]
    no = args[2] if len(args) == 3 else Value(g.missing_like(), yes.vocab)
    if yes.categorical != no.categorical:
        raise NotCompiled("Apply", "'if' with a string and a number branch")
    vocab = None
    if yes.categorical:
        yes, no = unify(g, yes, no)
        vocab = yes.vocab
    chosen = g.where(g.op("Equal", cond.name, g.const(1.0)), yes.name, no.name)
    return Value(g.missing_if(g.is_nan(cond.name), chosen), vocab)


def _shift(g: Graph, value: Value, vocab: tuple[str, ...]) -> str:
    """``value``'s codes in ``vocab``, which holds its words in some order."""
    codes = code_table(vocab)
    table = [float(codes[w]) for w in value.vocab or ()]
    outside = g.op("Less", value.name, g.const(0.0))  # -1: a word outside the vocabulary stays outside
    safe = g.op("Cast", g.where(outside, g.const(0.0), g.fill(value.name, 0.0)), to=TensorProto.INT64)
    picked = g.where(outside, g.const(-1.0), g.op("Gather", g.const(table), safe, axis=0))
    return g.missing_if(g.is_nan(value.name), picked)


def _is_in(g: Graph, element: ET.Element, args: list[Value], function: str) -> Value:
    constants = [a for a in element if a.tag in EXPRESSIONS][1:]
    if not args or any(c.tag != "Constant" for c in constants):
        raise NotCompiled("Apply", f"{function!r} of values that are not constants")
    words = [(c.text or "").strip() for c in constants]
    inside = g.as_double(membership(g, args[0], words))
    if function == "isNotIn":
        inside = g.op("Sub", g.const(1.0), inside)
    return Value(g.missing_if(g.is_nan(args[0].name), inside))


_EXPRESSION: dict[str, Callable[[ET.Element, Scope], Value]] = {
    "Constant": _constant, "FieldRef": _field_ref, "NormContinuous": _norm_continuous,
    "NormDiscrete": _norm_discrete, "Discretize": _discretize, "MapValues": _map_values, "Apply": _apply}
