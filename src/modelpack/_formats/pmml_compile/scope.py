"""Names a model sees: input fields after the MiningSchema's treatments, derived fields.

A :class:`Scope` resolves a field name to a :class:`~.graph.Value`, compiling a
DerivedField the first time it is asked for (PMML's transformations are lazy
definitions, not steps). A model nested in a MiningModel gets a child scope: its
LocalTransformations and its own MiningSchema apply to it alone.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .graph import Graph, NotCompiled, Value

if TYPE_CHECKING:
    from .document import Document
    from .prediction import Prediction

__all__ = ["Compilers", "Scope", "apply_mining_schema", "literal_code", "local_scope", "model_classes"]

@dataclass(frozen=True)
class Compilers:
    """The compilers of expressions and of models, which the scope's users call through it
    (they import the scope, so the scope cannot import them)."""

    derived_field: Callable[[ET.Element, Scope], Value]
    model: Callable[[ET.Element, Scope], tuple[Prediction, Scope]]


class Scope:
    """Field name -> value, with the derived fields defined at this level."""

    def __init__(self, graph: Graph, doc: Document, parent: Scope | None = None,
                 derived: dict[str, ET.Element] | None = None, compilers: Compilers | None = None) -> None:
        self.graph, self.doc, self.parent = graph, doc, parent
        found = compilers or (parent.compilers if parent is not None else None)
        if found is None:
            raise ValueError("a root scope needs its compilers")
        self.compilers: Compilers = found
        self.values: dict[str, Value] = {}
        self.derived = dict(derived or {})
        self._busy: set[str] = set()
        # Per input field: a bool tensor, True where the value is invalid (DataField rules).
        self.invalid: dict[str, str] = dict(parent.invalid) if parent is not None else {}
        #: A bool tensor, True on rows a ``returnInvalid`` treatment voids; None when none can.
        self.void: str | None = parent.void if parent is not None else None

    def child(self, derived: dict[str, ET.Element] | None = None) -> Scope:
        return Scope(self.graph, self.doc, self, derived)

    def get(self, name: str) -> Value:
        if name in self.values:
            return self.values[name]
        if name in self.derived:
            if name in self._busy:
                raise NotCompiled("DerivedField", f"{name!r} is defined in terms of itself")
            self._busy.add(name)
            self.values[name] = self.compilers.derived_field(self.derived[name], self)
            return self.values[name]
        if self.parent is not None:
            return self.parent.get(name)
        raise NotCompiled("FieldRef", f"the field {name!r} is not defined")

    def void_rows(self, mask: str) -> None:
        g = self.graph
        self.void = mask if self.void is None else g.op("Or", self.void, mask)



def local_scope(model: ET.Element, scope: Scope) -> Scope:
    """The scope ``model`` computes in: its LocalTransformations, then its MiningSchema applied."""
    derived = {d.get("name", ""): d for d in model.findall("LocalTransformations/DerivedField")}
    inner = scope.child(derived)
    apply_mining_schema(model, inner)
    return inner


def model_classes(model: ET.Element, scope: Scope) -> tuple[str, ...] | None:
    """The class labels of a classifier in the document's order; None for other functions."""
    from ..pmml import PmmlDoc, raw_classes

    function = model.get("functionName")
    if function == "regression" or (function == "clustering" and model.tag == "ClusteringModel"):
        return None
    if function != "classification":
        raise NotCompiled(model.tag, f"functionName={function!r} is not compiled")
    doc = scope.doc
    classes = raw_classes(PmmlDoc(doc.root, model, doc.fields, None), model)
    if not classes:
        raise NotCompiled(model.tag, "the classifier names no classes")
    return tuple(classes)


def apply_mining_schema(model: ET.Element, scope: Scope) -> None:
    """Bind each MiningField of ``model`` in ``scope`` after its invalid/outlier/missing treatments."""
    for mf in model.findall("MiningSchema/MiningField"):
        name = mf.get("name", "")
        if mf.get("usageType", "active") not in ("active", "group"):
            continue
        value = scope.get(name)
        treated = _treat(mf, value, scope)
        if treated is not value:
            scope.values[name] = treated


def _treat(mf: ET.Element, value: Value, scope: Scope) -> Value:
    g, name = scope.graph, mf.get("name", "")
    x = value.name
    invalid = scope.invalid.get(name)
    treatment = mf.get("invalidValueTreatment", "returnInvalid")
    if invalid is not None:
        if treatment == "returnInvalid":
            scope.void_rows(invalid)
        elif treatment == "asMissing":
            x = g.missing_if(invalid, x)
        elif treatment == "asValue":
            x = g.where(invalid, _literal(mf.get("invalidValueReplacement"), value, "invalidValueReplacement", g), x)
        elif treatment != "asIs":
            raise NotCompiled("MiningField", f"invalidValueTreatment={treatment!r} is not PMML")
        elif value.categorical and scope.doc.evaluator_compatible:
            x = g.missing_if(invalid, x)  # pmml4s reads an unknown category kept as it is as missing
    x = _outliers(mf, value, x, g)
    replacement = mf.get("missingValueReplacement")
    if replacement is not None:
        x = g.where(g.is_nan(x), _literal(replacement, value, "missingValueReplacement", g), x)
    return value if x == value.name else Value(x, value.vocab)


def _outliers(mf: ET.Element, value: Value, x: str, g: Graph) -> str:
    kind = mf.get("outliers", "asIs")
    if kind == "asIs" or value.categorical:
        return x
    low, high = mf.get("lowValue"), mf.get("highValue")
    for bound, compare in ((low, "Less"), (high, "Greater")):
        if bound is None:
            continue
        past = g.op(compare, x, g.const(float(bound)))
        x = g.missing_if(past, x) if kind == "asMissingValues" else g.where(past, g.const(float(bound)), x)
    if kind not in ("asMissingValues", "asExtremeValues"):
        raise NotCompiled("MiningField", f"outliers={kind!r} is not PMML")
    return x


def _literal(text: str | None, value: Value, attribute: str, g: Graph) -> str:
    if text is None:
        raise NotCompiled("MiningField", f"{attribute} is missing")
    if value.vocab is None:
        try:
            return g.const(float(text))
        except ValueError:
            raise NotCompiled("MiningField", f"{attribute}={text!r} is not a number") from None
    if text not in value.vocab:
        raise NotCompiled("MiningField", f"{attribute}={text!r} is not a known category")
    return g.const(float(value.vocab.index(text)))


def literal_code(value: Value, text: str) -> float | None:
    """The number a literal stands for next to ``value``: a float, or a vocabulary code."""
    if value.vocab is None:
        try:
            return float(text)
        except ValueError:
            return None
    code = value.codes.get(text)
    return None if code is None else float(code)

