"""PMML predicates in three-valued logic: TRUE 1.0, FALSE 0.0, UNKNOWN NaN.

:func:`truth` builds a predicate's value as a tensor. :func:`native_split` says
when a predicate is one comparison of one value with a constant, which a
TreeEnsemble node evaluates itself (UNKNOWN there is a missing input, which the
node sends one way with ``missing_value_tracks_true``).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass

from .document import array_values
from .graph import Graph, NotCompiled, Value
from .scope import Scope, literal_code

__all__ = ["COMPARE", "PREDICATES", "Split", "native_split", "truth", "three_and", "three_or", "three_not"]

PREDICATES = ("SimplePredicate", "CompoundPredicate", "SimpleSetPredicate", "True", "False")
COMPARE = {"equal": "Equal", "notEqual": "Equal", "lessThan": "Less", "lessOrEqual": "LessOrEqual",
            "greaterThan": "Greater", "greaterOrEqual": "GreaterOrEqual"}


@dataclass(frozen=True)
class Split:
    """``value <mode> threshold``, negated when ``negate``: one TreeEnsemble node.

    ``mode`` is ``BRANCH_LEQ``, ``BRANCH_LT`` or ``BRANCH_EQ``; a missing value is UNKNOWN.
    ``always`` set means the predicate is constant (True/False) whatever the value.
    """

    value: str
    mode: str
    threshold: float
    negate: bool = False


def predicate_of(node: ET.Element) -> ET.Element:
    found = next((child for child in node if child.tag in PREDICATES), None)
    if found is None:
        raise NotCompiled(node.tag, "it has no predicate")
    return found


def native_split(pred: ET.Element, scope: Scope) -> Split | None:
    """The predicate as one tree-node comparison, or None when it is not one."""
    if pred.tag != "SimplePredicate":
        return None
    op = pred.get("operator", "")
    value = scope.get(pred.get("field", ""))
    if op in ("isMissing", "isNotMissing"):
        return None
    if value.categorical and op not in ("equal", "notEqual"):
        raise NotCompiled("SimplePredicate", f"operator {op!r} on the string field {pred.get('field')!r}")
    code = literal_code(value, pred.get("value", ""))
    if code is None:
        return None
    forms = {"equal": ("BRANCH_EQ", False), "notEqual": ("BRANCH_EQ", True),
             "lessOrEqual": ("BRANCH_LEQ", False), "greaterThan": ("BRANCH_LEQ", True),
             "lessThan": ("BRANCH_LT", False), "greaterOrEqual": ("BRANCH_LT", True)}
    if op not in forms:
        raise NotCompiled("SimplePredicate", f"operator {op!r} is not PMML")
    mode, negate = forms[op]
    return Split(value.name, mode, code, negate)


def truth(pred: ET.Element, scope: Scope) -> str:
    """The predicate's three-valued truth as a double tensor."""
    g = scope.graph
    tag = pred.tag
    if tag in ("True", "False"):
        return g.const_like(1.0 if tag == "True" else 0.0)
    if tag == "SimplePredicate":
        return _simple(pred, scope)
    if tag == "SimpleSetPredicate":
        return _set(pred, scope)
    if tag == "CompoundPredicate":
        parts = [truth(p, scope) for p in pred if p.tag in PREDICATES]
        op = pred.get("booleanOperator", "")
        if not parts:
            raise NotCompiled("CompoundPredicate", "it holds no predicate")
        if op == "and":
            return three_and(g, parts)
        if op == "or":
            return three_or(g, parts)
        if op == "xor":  # pmml4s finds every xor FALSE
            return g.const_like(0.0) if scope.doc.evaluator_compatible else _xor(g, parts)
        if op == "surrogate":
            return _surrogate(g, parts)
        raise NotCompiled("CompoundPredicate", f"booleanOperator={op!r} is not PMML")
    raise NotCompiled(tag, "it is not a predicate the compiler knows")


def _simple(pred: ET.Element, scope: Scope) -> str:
    g = scope.graph
    op, field = pred.get("operator", ""), pred.get("field", "")
    value = scope.get(field)
    if op in ("isMissing", "isNotMissing"):
        missing = g.is_nan(value.name)
        return g.as_double(missing if op == "isMissing" else g.op("Not", missing))
    if op not in COMPARE:
        raise NotCompiled("SimplePredicate", f"operator {op!r} is not PMML")
    if value.categorical and op not in ("equal", "notEqual"):
        raise NotCompiled("SimplePredicate", f"operator {op!r} on the string field {field!r}")
    code = literal_code(value, pred.get("value", ""))
    if code is None:
        if not value.categorical:
            raise NotCompiled("SimplePredicate", f"value={pred.get('value')!r} of {field!r} is not a number")
        result = g.const_like(0.0 if op == "equal" else 1.0)  # a string the field never holds
    else:
        result = g.as_double(g.op(COMPARE[op], value.name, g.const(code)))
        if op == "notEqual":
            result = g.op("Sub", g.const(1.0), result)
    return g.where(g.is_nan(value.name), g.nan(), result)


def membership(g: Graph, value: Value, words: list[str]) -> str:
    """A bool tensor: ``value`` is one of ``words`` (False where missing)."""
    codes = [c for c in (literal_code(value, w) for w in words) if c is not None]
    if not codes:
        return g.op("Not", g.op("Equal", g.const_like(0.0), g.const_like(0.0)))
    hits = g.op("Equal", g.op("Unsqueeze", value.name, g.const([1], dtype="int64")), g.const(codes))
    return g.op("Cast", g.op("ReduceMax", g.op("Cast", hits, to=11), g.const([1], dtype="int64"), keepdims=0),
                to=9)


def _set(pred: ET.Element, scope: Scope) -> str:
    g = scope.graph
    value = scope.get(pred.get("field", ""))
    array = pred.find("Array")
    if array is None:
        raise NotCompiled("SimpleSetPredicate", "it has no Array")
    inside = g.as_double(membership(g, value, array_values(array)))
    op = pred.get("booleanOperator", "")
    if op == "isNotIn":
        inside = g.op("Sub", g.const(1.0), inside)
    elif op != "isIn":
        raise NotCompiled("SimpleSetPredicate", f"booleanOperator={op!r} is not PMML")
    return g.where(g.is_nan(value.name), g.nan(), inside)


def _count(g: Graph, parts: list[str], test: str, arg: float | None = None) -> str:
    total = None
    for p in parts:
        hit = g.as_double(g.is_nan(p) if test == "nan" else g.op("Equal", p, g.const(arg)))
        total = hit if total is None else g.op("Add", total, hit)
    return total  # type: ignore[return-value]


def three_and(g: Graph, parts: list[str]) -> str:
    return _decided_by(g, parts, 0.0)


def three_or(g: Graph, parts: list[str]) -> str:
    return _decided_by(g, parts, 1.0)


def _decided_by(g: Graph, parts: list[str], value: float) -> str:
    """``value`` where some part is ``value`` (FALSE decides an and, TRUE an or), else UNKNOWN
    where some part is, else the other truth value."""
    if len(parts) == 1:
        return parts[0]
    decided = g.op("Greater", _count(g, parts, "eq", value), g.const(0.0))
    unknown = g.op("Greater", _count(g, parts, "nan"), g.const(0.0))
    return g.where(decided, g.const(value), g.where(unknown, g.nan(), g.const(1.0 - value)))


def three_not(g: Graph, p: str) -> str:
    return g.op("Sub", g.const(1.0), p)  # NaN stays NaN


def _xor(g: Graph, parts: list[str]) -> str:
    odd = g.op("Mod", _count(g, parts, "eq", 1.0), g.const(2.0), fmod=1)
    unknown = g.op("Greater", _count(g, parts, "nan"), g.const(0.0))
    return g.where(unknown, g.nan(), odd)


def _surrogate(g: Graph, parts: list[str]) -> str:
    out = parts[-1]
    for p in reversed(parts[:-1]):
        out = g.where(g.is_nan(p), out, p)
    return out
