"""NearestNeighborModel: the k training instances nearest each row, and their targets combined.

Distances
    Every row is compared with every training instance ([N, M] distances): each
    KNNInput by its compare function, weighted by its ``fieldWeight``, combined by
    the ComparisonMeasure exactly as for clustering (:mod:`.distance`). A missing
    input leaves its field out and scales the distance by ``adjustM`` (the
    specification's ComparisonMeasure, with unit MissingValueWeights: a
    nearest-neighbour model declares none); a row with every input missing has no
    prediction. pmml4s gives no prediction for a row with any input missing, which
    ``evaluator_compatible`` follows. Inputs of string fields are compared by their
    codes (``delta`` and ``equal`` only). ``gaussSim`` is not compiled: a KNNInput has
    no ``similarityScale``, so the specification leaves its ``s`` undefined.

Training instances
    The InlineTable's rows (at most :data:`MAX_INSTANCES`) become constant tensors;
    numbers are read strictly. A KNNInput the table holds as a column is read from
    it (``isTransformed="true"``; pmml4s reads it so whatever the flag says). One it
    does not hold, a DerivedField over the table's raw fields
    (``isTransformed="false"``), is computed by compiling the same transformation
    expressions a second time over the table's columns as constants
    (:meth:`.Graph.batch_of`): one piece of code for the rows and the instances,
    and ONNX Runtime folds the instances' results to constants when it loads the
    graph. The MiningSchema's treatments are not applied to the instances; they
    treat the row scored.

Neighbours and scores
    The k smallest distances, ties going to the instance first in table order (ONNX
    TopK keeps the lower index first, as the evaluators' stable sorts do); an
    instance at a NaN distance ranks last. Classification: ``majorityVote`` counts
    the neighbours' classes, ``weightedMajorityVote`` sums ``1 / (d + threshold)``;
    ties go to the class with the most training instances, then to the smallest
    value (lexical for strings), as the specification says. Regression: ``average``,
    ``median`` (the mean of the middle two for an even k), ``weightedAverage``
    ``sum(w * y) / sum(w)`` with the same weights; pmml4s divides that by k once
    more, which ``evaluator_compatible`` follows.

Outputs
    predictedValue; ``entityId`` and ``affinity`` of rank r: the
    ``instanceIdVariable`` value (else the 1-based row number) and the distance of
    the r-th neighbour, missing past k (pmml4s gives an empty id there). Neither
    the specification nor pmml4s gives a nearest-neighbour model probabilities:
    probability outputs are missing, as pmml4s returns them.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence

import numpy as np
from onnx import TensorProto

from ..pmml import target_field
from .distance import combine, compare, comparison_measure, missing_adjustment
from .document import is_numeric
from .graph import MISSING, Graph, NotCompiled, Value, code_table
from .prediction import Prediction
from .scope import Scope

__all__ = ["MAX_INSTANCES", "neighbors_prediction"]

#: The most training instances compiled. Each row is compared with every instance, so the graph's
#: memory grows with the batch times the instances; past this the evaluator runs the model.
MAX_INSTANCES = 10_000
#: Distances held per call, rows times instances: the compiled model asks to be run this many
#: at a time (``ROWS_PER_CALL``), a few [rows, instances] doubles of 128 MiB each at most.
DISTANCES_PER_CALL = 1 << 24
_NUMBER = re.compile(r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?")  # ASCII digits only


def _axes(g: Graph, axis: int) -> str:
    return g.const([axis], dtype=np.int64)


def _number(text: str, where: str, what: str) -> float:
    """A decimal number as XML Schema writes one; no NaN, infinity, underscores or hex."""
    if not _NUMBER.fullmatch(text.strip()):
        raise NotCompiled(where, f"{what}: {text[:40]!r} is not a number")
    return float(text)


class _Instances:
    """The TrainingInstances' InlineTable: its cells by field, as written."""

    def __init__(self, model: ET.Element) -> None:
        instances = model.find("TrainingInstances")
        if instances is None:
            raise NotCompiled("NearestNeighborModel", "it has no TrainingInstances")
        if instances.find("TableLocator") is not None:
            raise NotCompiled("TableLocator", "training instances outside the document are not compiled")
        table = instances.find("InlineTable")
        if table is None:
            raise NotCompiled("TrainingInstances", "it has no InlineTable")
        rows = table.findall("row")
        if len(rows) > MAX_INSTANCES:
            raise NotCompiled("InlineTable", f"{len(rows)} training instances: more than {MAX_INSTANCES} are "
                                             "not compiled")
        if not rows:
            raise NotCompiled("InlineTable", "it holds no training instance")
        self.columns: dict[str, str] = {}
        for field in instances.findall("InstanceFields/InstanceField"):
            name, column = field.get("field"), field.get("column")
            if not name or not column:
                raise NotCompiled("InstanceField", "an InstanceField without its field or column")
            self.columns[name] = column
        # by tag, not by ElementPath: a column name is the document's and not a path
        self._rows = [{cell.tag: (cell.text or "").strip() for cell in row} for row in rows]
        self.size = len(rows)

    def cells(self, field: str) -> list[str | None]:
        """The column of ``field``; None where a row leaves it empty."""
        column = self.columns[field]
        return [row.get(column) or None for row in self._rows]

    def present(self, field: str, what: str) -> list[str]:
        """The column of ``field``, which every instance must fill."""
        if field not in self.columns:
            raise NotCompiled("TrainingInstances", f"no InstanceField holds the {what} {field!r}")
        out: list[str] = []
        for i, cell in enumerate(self.cells(field)):
            if cell is None:
                raise NotCompiled("InlineTable", f"training instance {i + 1} has no value of {field!r}")
            out.append(cell)
        return out


def _codes(cells: Sequence[str | None], vocab: tuple[str, ...] | None, missing: list[str],
           field: str) -> np.ndarray:
    """Instance values as the graph holds the field's values: numbers, or codes in ``vocab``."""
    out = np.empty(len(cells))
    codes = code_table(vocab) if vocab is not None else {}
    numbers = {_number(m, "Value", f"a missing value of {field!r}") for m in missing} if vocab is None else set()
    for i, cell in enumerate(cells):
        if cell is None or cell in missing:
            out[i] = np.nan
        elif vocab is not None:
            out[i] = codes.get(cell, -1.0)  # -1: a word outside the vocabulary, as the rows' inputs hold it
        else:
            number = _number(cell, "InlineTable", f"training instance {i + 1}, {field!r}")
            out[i] = np.nan if number in numbers else number
    return out


def _instance_scope(scope: Scope, table: _Instances) -> tuple[Scope, str]:
    """A scope with the same transformations whose raw fields are the instance table's columns,
    and an [M] tensor its constants are filled to."""
    g, doc = scope.graph, scope.doc
    chain = []
    level: Scope | None = scope
    while level is not None:
        chain.append(level)
        level = level.parent
    chain.reverse()
    inner = Scope(g, doc, derived=chain[0].derived, compilers=chain[0].compilers)
    for field in table.columns:
        if field not in doc.fields:
            continue  # an id, or a derived value the table holds
        data_type = doc.data_type(field)
        if data_type == "boolean":
            raise NotCompiled("DataField", f"{field!r} is boolean; boolean fields are not compiled")
        vocab = None if is_numeric(data_type) else doc.vocab(field)
        values = _codes(table.cells(field), vocab, doc.values(field, "missing"), field)
        inner.values[field] = Value(g.const(values), vocab)
    for level in chain[1:]:
        inner = inner.child(level.derived)
    return inner, g.const(np.zeros(table.size))


def _distances(model: ET.Element, scope: Scope, table: _Instances) -> tuple[str, str]:
    """([N, M] distances of every row to every instance, [N] bool: rows without a prediction)."""
    g = scope.graph
    measure, p, default = comparison_measure(model)
    inputs = model.findall("KNNInputs/KNNInput")
    if not inputs:
        raise NotCompiled("KNNInputs", "it has no KNNInput")
    transformed: tuple[Scope, str] | None = None
    rows, instances = [], []
    for knn in inputs:
        name, function = knn.get("field", ""), knn.get("compareFunction", default)
        value = scope.get(name)
        if function == "gaussSim":
            raise NotCompiled("KNNInput", f"{name!r}: gaussSim needs a similarityScale, which a KNNInput "
                                          "does not have")
        if value.categorical and function not in ("delta", "equal"):
            raise NotCompiled("KNNInput", f"{name!r} is a string field compared by {function}")
        if name in table.columns:
            column = g.const(_codes(table.present(name, "KNN input"), value.vocab,
                                    scope.doc.values(name, "missing"), name))
        elif name in scope.doc.fields:
            raise NotCompiled("TrainingInstances", f"no InstanceField holds the KNN input {name!r}")
        else:  # a derived field: computed from the instances' raw values
            transformed = transformed or _instance_scope(scope, table)
            with g.batch_of(transformed[1]):
                computed = transformed[0].get(name)
            if computed.vocab != value.vocab:
                raise NotCompiled("KNNInput", f"{name!r} takes other strings on the instances than on the rows")
            column = computed.name
        rows.append(value.name)
        instances.append(g.op("Unsqueeze", column, _axes(g, 0)))  # [1, M]
    weights = np.array([_number(k.get("fieldWeight", "1"), "KNNInput", "fieldWeight") for k in inputs])
    present = [g.op("Not", g.is_nan(x)) for x in rows]
    adjust = missing_adjustment(g, present, np.ones(len(inputs)))  # 1 with every input, inf with none
    terms = []
    for knn, x, y, here in zip(inputs, rows, instances, present, strict=True):
        c = compare(g, knn.get("compareFunction", default), knn, g.op("Unsqueeze", x, _axes(g, 1)), y)
        terms.append(g.where(g.op("Unsqueeze", here, _axes(g, 1)), c, g.const(0.0)))
    distances = combine(g, measure, p, terms, weights, g.op("Unsqueeze", adjust, _axes(g, 1)))
    if scope.doc.evaluator_compatible:
        return distances, g.op("Greater", adjust, g.const(1.0))  # pmml4s: any input missing
    return distances, g.op("IsInf", adjust)


def _targets(model: ET.Element, scope: Scope, table: _Instances,
             classes: tuple[str, ...] | None) -> tuple[str, np.ndarray]:
    """(the target's name, its value on every instance: a number, or the index of its class)."""
    targets = [mf for mf in model.findall("MiningSchema/MiningField")
               if mf.get("usageType") in ("target", "predicted")]
    target = target_field(model)
    if len(targets) > 1 or target is None:
        raise NotCompiled("NearestNeighborModel", f"{len(targets)} target fields (one is compiled)")
    cells = table.present(target, "target")
    if classes is None:
        return target, np.array([_number(c, "InlineTable", f"training instance {i + 1}, {target!r}")
                                 for i, c in enumerate(cells)])
    numeric = is_numeric(scope.doc.data_type(target))
    index: dict[str | float, int] = {}
    for c, label in enumerate(classes):  # a number class matches its value however it is written
        index.setdefault(_number(label, "Value", f"the class {label!r}") if numeric else label, c)
    out = np.empty(len(cells))
    for i, cell in enumerate(cells):
        key = _number(cell, "InlineTable", f"training instance {i + 1}, {target!r}") if numeric else cell
        if key not in index:
            raise NotCompiled("InlineTable", f"training instance {i + 1}: {cell!r} is not a class of {target!r}")
        out[i] = index[key]
    return target, out


def _priority(classes: tuple[str, ...], codes: np.ndarray, numeric: bool) -> np.ndarray:
    """Per class, its place among tied winners (higher wins): the most training instances,
    then the smallest value."""
    counts = np.bincount(codes.astype(np.int64), minlength=len(classes))
    order = sorted(range(len(classes)), key=lambda c: (-counts[c], float(classes[c]) if numeric else classes[c]))
    priority = np.empty(len(classes))
    priority[order] = np.arange(len(classes), 0, -1)
    return priority


def _vote(g: Graph, near: str, weights: str | None, priority: np.ndarray) -> str:
    """[N] the winning class index among the classes of the [N, k] neighbours ``near``."""
    onehot = g.as_double(g.op("Equal", g.op("Unsqueeze", near, _axes(g, 2)),
                              g.const(np.arange(len(priority), dtype=np.float64))))  # [N, k, C]
    if weights is not None:
        onehot = g.op("Mul", onehot, g.op("Unsqueeze", weights, _axes(g, 2)))
    votes = g.op("ReduceSum", onehot, _axes(g, 1), keepdims=0)
    tied = g.op("Equal", votes, g.op("ReduceMax", votes, _axes(g, 1), keepdims=1))
    best = g.op("ArgMax", g.where(tied, g.const(priority), g.const(-1.0)), axis=1, keepdims=0)
    return g.op("Cast", best, to=TensorProto.DOUBLE)


def _regression(g: Graph, method: str, y: str, weights: str, k: int, compatible: bool) -> str:
    axis = _axes(g, 1)
    if method == "average":
        return g.op("Div", g.op("ReduceSum", y, axis, keepdims=0), g.const(float(k)))
    if method == "median":
        ordered = g.op("TopK", y, g.const([k], dtype=np.int64), axis=1, largest=0, sorted=1, outputs=2)[0]
        middle = g.column(ordered, k // 2, k)
        if k % 2:
            return middle
        return g.op("Div", g.op("Add", g.column(ordered, k // 2 - 1, k), middle), g.const(2.0))
    if method != "weightedAverage":
        raise NotCompiled("NearestNeighborModel", f"continuousScoringMethod={method!r} is not PMML")
    total = g.op("ReduceSum", weights, axis, keepdims=1)
    if compatible:  # pmml4s: the weights normalized, and the weighted sum divided by k again
        share = g.op("Div", weights, total)
        return g.op("Div", g.op("ReduceSum", g.op("Mul", share, y), axis, keepdims=0), g.const(float(k)))
    summed = g.op("ReduceSum", g.op("Mul", weights, y), axis, keepdims=0)
    return g.op("Div", summed, g.op("Squeeze", total, axis))


def _ranks(model: ET.Element) -> dict[str, int]:
    """The ``rank`` of each entityId or affinity Output field, as written -> as a number."""
    found = {}
    for of in model.findall("Output/OutputField"):
        if of.get("feature") in ("entityId", "affinity"):
            text = of.get("rank", "1")
            if not re.fullmatch(r"[+-]?[0-9]{1,9}", text.strip()):
                raise NotCompiled("OutputField", f"{of.get('name')!r}: rank={text[:40]!r} is not an integer")
            found[text] = int(text)
    return found


def _positive(model: ET.Element, attribute: str) -> int:
    text = model.get(attribute)
    if text is None or not re.fullmatch(r"\+?[0-9]{1,9}", text.strip()) or int(text) < 1:
        raise NotCompiled("NearestNeighborModel", f"{attribute}={text!r} is not a positive integer")
    return int(text)


def neighbors_prediction(model: ET.Element, scope: Scope, classes: tuple[str, ...] | None) -> Prediction:
    """The neighbours' class (its index in ``classes``) or value; entity ids and distances by rank."""
    g, compatible = scope.graph, scope.doc.evaluator_compatible
    k = _positive(model, "numberOfNeighbors")
    threshold = _number(model.get("threshold", "0.001"), "NearestNeighborModel", "threshold")
    table = _Instances(model)
    if k > table.size:
        raise NotCompiled("NearestNeighborModel", f"numberOfNeighbors={k} with {table.size} training instances")
    target, values = _targets(model, scope, table, classes)
    rows = max(1, DISTANCES_PER_CALL // table.size)
    g.rows_per_call = rows if g.rows_per_call is None else min(g.rows_per_call, rows)
    distances, unknown = _distances(model, scope, table)
    ranked = g.where(g.is_nan(distances), g.const(np.inf), distances)
    nearest = g.op("TopK", ranked, g.const([k], dtype=np.int64), axis=1, largest=0, sorted=1, outputs=2)[1]
    near_distances = g.op("GatherElements", distances, nearest, axis=1)  # [N, k], NaN kept
    weights = g.op("Reciprocal", g.op("Add", near_distances, g.const(threshold)))
    near_values = g.op("Gather", g.const(values), nearest, axis=0)  # [N, k]
    probabilities = None
    if classes is None:
        method = model.get("continuousScoringMethod", "average")
        value = _regression(g, method, near_values, weights, k, compatible)
    else:
        method = model.get("categoricalScoringMethod", "majorityVote")
        if method not in ("majorityVote", "weightedMajorityVote"):
            raise NotCompiled("NearestNeighborModel", f"categoricalScoringMethod={method!r} is not PMML")
        priority = _priority(classes, values, is_numeric(scope.doc.data_type(target)))
        weighted = method == "weightedMajorityVote"
        value = _vote(g, near_values, weights if weighted else None, priority)
        if weighted:  # a NaN distance (an instance's missing transformed value) gives no vote a weight
            value = g.missing_if(g.op("IsNaN", g.op("ReduceSum", weights, _axes(g, 1), keepdims=0)), value)
        probabilities = g.stack([g.missing_like()] * len(classes))
    prediction = Prediction("classification" if classes else "regression", g.missing_if(unknown, value),
                            classes, probabilities)
    ids = _ids(model, table)
    for text, rank in _ranks(model).items():
        prediction.extras[f"entityId:{text}"] = _entity(g, nearest, unknown, ids, rank, k, compatible)
        prediction.extras[f"affinity:{text}"] = _affinity(g, near_distances, unknown, rank, k)
    return prediction


def _ids(model: ET.Element, table: _Instances) -> list[str]:
    variable = model.get("instanceIdVariable")
    if variable is None:
        return [str(i + 1) for i in range(table.size)]
    if variable not in table.columns:
        raise NotCompiled("NearestNeighborModel", f"instanceIdVariable={variable!r} names no InstanceField")
    return [MISSING if cell is None else cell for cell in table.cells(variable)]


def _entity(g: Graph, nearest: str, unknown: str, ids: list[str], rank: int, k: int,
            compatible: bool) -> Callable[[], str]:
    def build() -> str:
        first = g.op("Gather", nearest, g.const(0, dtype=np.int64), axis=1)  # [N]: the batch's length
        if 1 <= rank <= k:
            found = _label(g, g.op("Gather", nearest, g.const(rank - 1, dtype=np.int64), axis=1), ids)
        else:  # no such neighbour: missing, where pmml4s gives an empty string
            filler = g.const("" if compatible else MISSING, dtype=object)
            found = g.where(g.const([True], dtype=np.bool_), filler, _label(g, first, ids))
        return g.where(unknown, g.const(MISSING, dtype=object), found)
    return build


def _affinity(g: Graph, near_distances: str, unknown: str, rank: int, k: int) -> Callable[[], str]:
    def build() -> str:
        if not 1 <= rank <= k:
            return g.missing_like()
        return g.missing_if(unknown, g.column(near_distances, rank - 1, k))
    return build


def _label(g: Graph, index: str, words: list[str]) -> str:
    return g.op("LabelEncoder", index, domain="ai.onnx.ml", keys_int64s=list(range(len(words))),
                values_strings=words, default_string=MISSING)
