"""SupportVectorMachineModel: ``f(x) = sum_i a_i K(x, v_i) + b`` per SupportVectorMachine.

The VectorFields make the row's vector (a FieldRef's number; a CategoricalPredictor's
coefficient where the field has its value, else 0, a missing value included); a
missing number leaves the row without a prediction. Kernels: linear, polynomial, radialBasis (the squared distance
summed term by term, not expanded, so that it keeps its digits near a support
vector), sigmoid; ``svmRepresentation="Coefficients"`` is the hyperplane itself.
Regression gives the first machine's ``f``. Classification: one-against-one (and a
binary model of one machine) votes, each machine for ``targetCategory`` where
``f < threshold`` (``f > threshold`` with ``maxWins``), else for
``alternateTargetCategory``; the probabilities are the shares of the votes and the
first class (in the target's order) of the most votes wins. One-against-all takes the
machine of the smallest ``f`` (the largest with ``maxWins``; the first on ties).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

import numpy as np

from .document import array_values
from .graph import Graph, NotCompiled
from .prediction import Prediction
from .scope import Scope, literal_code

__all__ = ["svm_prediction"]

_KERNELS = ("LinearKernelType", "PolynomialKernelType", "RadialBasisKernelType", "SigmoidKernelType")


def _vector(model: ET.Element, scope: Scope) -> tuple[str, str]:
    """([N, F] the row's vector, [N] bool: some entry is missing)."""
    g = scope.graph
    fields = model.find("VectorDictionary/VectorFields")
    if fields is None:
        raise NotCompiled("VectorDictionary", "it has no VectorFields")
    columns = []
    for entry in fields:
        if entry.tag == "FieldRef":
            value = scope.get(entry.get("field", ""))
            if value.categorical:
                raise NotCompiled("VectorFields", f"{entry.get('field')!r} is a string field used as a number")
            columns.append(value.name)
        elif entry.tag == "CategoricalPredictor":
            value = scope.get(entry.get("name", ""))
            code = literal_code(value, entry.get("value", ""))
            hit = g.as_double(g.op("Equal", value.name, g.const(code))) if code is not None else g.const_like(0.0)
            # a missing category is no match, as for a RegressionModel's CategoricalPredictor
            columns.append(g.op("Mul", hit, g.const(float(entry.get("coefficient", "1")))))
        elif entry.tag != "Extension":
            raise NotCompiled(entry.tag, "this vector field is not compiled")
    if not columns:
        raise NotCompiled("VectorFields", "it names no field")
    x = g.stack(columns)
    missing = g.op("Cast", g.op("ReduceMax", g.op("Cast", g.is_nan(x), to=11), g.const([1], dtype=np.int64),
                                keepdims=0), to=9)
    return x, missing


def _instances(model: ET.Element, width: int) -> dict[str, np.ndarray]:
    out = {}
    for vi in model.findall("VectorDictionary/VectorInstance"):
        dense, sparse = vi.find("Array"), vi.find("REAL-SparseArray")
        if dense is not None:
            values = np.array([float(v) for v in array_values(dense)])
        elif sparse is not None:
            values = np.zeros(width)
            indices = [int(i) - 1 for i in _words(sparse, "Indices")]
            entries = [float(v) for v in _words(sparse, "REAL-Entries")]
            if len(indices) != len(entries) or any(not 0 <= i < width for i in indices):
                raise NotCompiled("REAL-SparseArray", f"vector {vi.get('id')!r}: indices and entries disagree")
            values[indices] = entries
        else:
            raise NotCompiled("VectorInstance", f"vector {vi.get('id')!r} has no array")
        if len(values) != width:
            raise NotCompiled("VectorInstance", f"vector {vi.get('id')!r} has {len(values)} entries for {width}")
        out[vi.get("id", "")] = values
    return out


def _words(parent: ET.Element, tag: str) -> list[str]:
    found = parent.find(tag)
    return array_values(found) if found is not None else []


def _kernel(g: Graph, model: ET.Element, x: str, vectors: np.ndarray) -> str:
    """[N, S] kernel values of the row with each support vector."""
    kernel = next((k for k in model if k.tag in _KERNELS), None)
    if kernel is None:
        raise NotCompiled("SupportVectorMachineModel", "no kernel this compiler knows")
    gamma, coef0 = float(kernel.get("gamma", "1")), float(kernel.get("coef0", "1"))
    if kernel.tag == "RadialBasisKernelType":
        d = g.op("Sub", g.op("Unsqueeze", x, g.const([1], dtype=np.int64)), g.const(vectors[None, :, :]))
        squared = g.op("ReduceSum", g.op("Mul", d, d), g.const([2], dtype=np.int64), keepdims=0)
        return g.op("Exp", g.op("Mul", squared, g.const(-gamma)))
    dot = g.op("MatMul", x, g.const(vectors.T.copy()))
    if kernel.tag == "LinearKernelType":
        return dot
    inner = g.op("Add", g.op("Mul", dot, g.const(gamma)), g.const(coef0))
    if kernel.tag == "SigmoidKernelType":
        return g.op("Tanh", inner)
    return g.op("Pow", inner, g.const(float(kernel.get("degree", "1"))))


def _decisions(model: ET.Element, machines: list[ET.Element], x: str, width: int, g: Graph) -> str:
    """[N, M] ``f`` of every machine."""
    coefficients = [[float(c.get("value", "0")) for c in m.findall("Coefficients/Coefficient")] for m in machines]
    b = np.array([float(m.find("Coefficients").get("absoluteValue", "0"))  # type: ignore[union-attr]
                  if m.find("Coefficients") is not None else np.nan for m in machines])
    if not np.isfinite(b).all():
        raise NotCompiled("SupportVectorMachine", "Coefficients are missing")
    if model.get("svmRepresentation", "SupportVectors") == "Coefficients":
        if any(len(c) != width for c in coefficients):
            raise NotCompiled("Coefficients", f"a hyperplane without {width} coefficients")
        return g.op("Add", g.op("MatMul", x, g.const(np.array(coefficients).T.copy())), g.const(b.reshape(1, -1)))
    instances = _instances(model, width)
    ids = list(dict.fromkeys(sv.get("vectorId", "") for m in machines for sv in m.findall("SupportVectors/SupportVector")))
    if any(i not in instances for i in ids) or not ids:
        raise NotCompiled("SupportVectors", "a support vector the VectorDictionary does not hold")
    weights = np.zeros((len(ids), len(machines)))
    for j, (m, cs) in enumerate(zip(machines, coefficients, strict=True)):
        refs = [sv.get("vectorId", "") for sv in m.findall("SupportVectors/SupportVector")]
        if len(refs) != len(cs):
            raise NotCompiled("Coefficients", f"{len(cs)} coefficients for {len(refs)} support vectors")
        for ref, c in zip(refs, cs, strict=True):
            weights[ids.index(ref), j] += c
    kernel = _kernel(g, model, x, np.array([instances[i] for i in ids]))
    return g.op("Add", g.op("MatMul", kernel, g.const(weights)), g.const(b.reshape(1, -1)))


def svm_prediction(model: ET.Element, scope: Scope, classes: tuple[str, ...] | None) -> Prediction:
    """The regression value, or the class the machines choose (with vote shares where they vote)."""
    g = scope.graph
    machines = model.findall("SupportVectorMachine")
    if not machines:
        raise NotCompiled("SupportVectorMachineModel", "it has no SupportVectorMachine")
    x, missing = _vector(model, scope)
    width = len([e for e in model.iterfind("VectorDictionary/VectorFields/*") if e.tag != "Extension"])
    f = _decisions(model, machines, x, width, g)
    if classes is None:
        first = g.op("Gather", f, g.const(0, dtype=np.int64), axis=1)
        return Prediction("regression", g.missing_if(missing, first))
    method = model.get("classificationMethod", "OneAgainstAll")
    if method not in ("OneAgainstAll", "OneAgainstOne"):
        raise NotCompiled("SupportVectorMachineModel", f"classificationMethod={method!r} is not PMML")
    max_wins = model.get("maxWins", "false") == "true"
    if method == "OneAgainstOne" or (len(classes) == 2 and len(machines) == 1):
        return _votes(model, machines, f, missing, classes, max_wins, g)
    targets = [m.get("targetCategory", "") for m in machines]
    if any(t not in classes for t in targets):
        raise NotCompiled("SupportVectorMachine", "a targetCategory that is not one of the classes")
    best = g.op("ArgMax" if max_wins else "ArgMin", f, axis=1, keepdims=0)
    value = g.op("Gather", g.const([float(classes.index(t)) for t in targets]), best, axis=0)
    return Prediction("classification", g.missing_if(missing, value), classes)


def _votes(model: ET.Element, machines: list[ET.Element], f: str, missing: str, classes: tuple[str, ...],
           max_wins: bool, g: Graph) -> Prediction:
    default = float(model.get("threshold", "0"))
    thresholds = np.array([float(m.get("threshold", default)) for m in machines]).reshape(1, -1)
    own = g.as_double(g.op("Greater" if max_wins else "Less", f, g.const(thresholds)))  # [N, M]
    first, second = np.zeros((len(machines), len(classes))), np.zeros((len(machines), len(classes)))
    for j, m in enumerate(machines):
        target, alternate = m.get("targetCategory"), m.get("alternateTargetCategory")
        if alternate is None and len(classes) == 2 and len(machines) == 1 and target in classes:
            alternate = classes[1 - classes.index(target)]
        if target not in classes or alternate not in classes:
            raise NotCompiled("SupportVectorMachine", "targetCategory / alternateTargetCategory not among the classes")
        first[j, classes.index(target)] = second[j, classes.index(alternate or "")] = 1.0
    # own votes for the target, 1 - own for the alternate: votes = own @ first + (1 - own) @ second
    votes = g.op("Add", g.op("MatMul", own, g.const(first - second)),
                 g.const(second.sum(axis=0).reshape(1, -1)))
    shares = g.op("Div", votes, g.const(float(len(machines))))
    unknown = g.op("Unsqueeze", missing, g.const([1], dtype=np.int64))
    probabilities = g.where(unknown, g.nan(), shares)
    best = g.op("Cast", g.op("ArgMax", votes, axis=1, keepdims=0), to=11)
    return Prediction("classification", g.missing_if(missing, best), classes, probabilities)
