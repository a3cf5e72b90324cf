"""A forest as standard ONNX operators, so a tree package runs on an accelerator.

ONNX Runtime's tree operator exists for the CPU only: given ``device="cuda"`` or
``"openvino"``, the TreeEnsemble node of a graph runs on the CPU. :func:`tensor_form`
replaces that node with ordinary operators every execution provider has (Gather,
GatherElements, comparisons, ReduceSum, Softmax...), built at load time from the
node's own numbers, never stored in the package: the tree-traversal strategy known
from Hummingbird. All trees step down together, one level per step, as tensors of
shape (rows, trees):

    node  = roots                              # level 0 reads the roots' splits as constants
    repeat depth times:
        x     = GatherElements(X, feature[node])
        left  = x <= threshold[node]  or  (isnan(x) and nan_left[node])
                (an equality split: x == threshold[node] in place of x <= ...)
        node  = left_child[node] + 1 - left    # a leaf points to itself and goes left
    scores = ReduceSum(values[leaf_row[node]], over trees)

then base values, the average, the post transform and the labels, as ONNX
Runtime's kernel computes them (:mod:`.engine` holds the same rules in numpy). The
result is compared with ONNX Runtime's TreeEnsemble on the probe batch before it is
used, on the CPU, as the engine is (:mod:`.backend`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .forest import Forest, Unsupported
from .layouts import levels_layout

__all__ = ["replace_node", "tensor_form"]

#: Largest forest turned into tensors: (rows x trees) indices per step must stay modest.
MAX_TREES = 4096


def tensor_form(forest: Forest, node: Any) -> tuple[list[Any], list[Any]]:
    """(nodes, initializers) computing ``node``'s outputs from its input with standard operators."""
    from onnx import helper, numpy_helper

    if forest.n_trees > MAX_TREES:
        raise Unsupported(f"{forest.n_trees} trees (the tensor form takes up to {MAX_TREES})")
    if forest.threshold.dtype != np.float32:
        raise Unsupported("double-precision thresholds in the tensor form (it compares in float32)")
    prefix = f"{node.name or 'trees'}_tf_"
    a = _absorbing(forest)
    constants = {
        "feature": a["feature"].astype(np.int64), "threshold": a["threshold"],
        "nan_left": a["nan_left"].astype(bool), "left": a["left"].astype(np.int64),
        "leaf_row": a["leaf_row"].astype(np.int64), "values": forest.leaf_values.astype(np.float32),
    }
    if forest.has_equal:
        constants["ordered"] = a["equal"] == 0
    def n(name: str) -> str:  # names of our own values, apart from the graph's
        return prefix + name

    inits = [numpy_helper.from_array(v, n(k)) for k, v in constants.items()]
    nodes: list[Any] = []

    def add(op: str, inputs: list[str], **attrs: Any) -> str:
        out = n(f"v{len(nodes)}")
        nodes.append(helper.make_node(op, inputs, [out], name=out, **attrs))
        return out

    def const(name: str, value: Any, dtype: Any) -> str:
        inits.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), n(name)))
        return n(name)

    x = node.input[0]  # float32: replace_node refuses other element types
    if forest.depth == 0:
        raise Unsupported("a forest of single leaves")
    # Operators every provider takes: IsNaN and Cast from bool stay on the CPU under some.
    zero_i, one_i = const("zero_i", 0, np.int64), const("one_i", 1, np.int64)

    def isnan(v: str) -> str:
        return add("Not", [add("Equal", [v, v])])

    def right(le: str, missing: str) -> str:
        return add("Where", [add("Or", [le, missing]), zero_i, one_i])

    def below(value: str, threshold: str, ordered: str | None) -> str:
        # Left on x <= t; at an equality split (not ``ordered``: None where the forest has none)
        # on x == t, which is x <= t and x >= t.
        le = add("LessOrEqual", [value, threshold])
        if ordered is None:
            return le
        return add("And", [le, add("Or", [add("Equal", [value, threshold]), ordered])])

    # Level 0: every row is at its tree's root, so the root's split is a constant (trees,).
    roots = forest.roots
    value = add("Gather", [x, const("root_feature", a["feature"][roots].astype(np.int64), np.int64)], axis=1)
    le = below(value, const("root_threshold", a["threshold"][roots], np.float32),
               const("root_ordered", constants["ordered"][roots], bool) if forest.has_equal else None)
    missing = add("And", [isnan(value), const("root_nan_left", a["nan_left"][roots].astype(bool), bool)])
    idx = add("Add", [const("root_left", a["left"][roots].astype(np.int64), np.int64), right(le, missing)])
    for _ in range(forest.depth - 1):
        feature = add("Gather", [n("feature"), idx])
        value = add("GatherElements", [x, feature], axis=1)
        le = below(value, add("Gather", [n("threshold"), idx]),
                   add("Gather", [n("ordered"), idx]) if forest.has_equal else None)
        missing = add("And", [isnan(value), add("Gather", [n("nan_left"), idx])])
        idx = add("Add", [add("Gather", [n("left"), idx]), right(le, missing)])
    leaf_values = add("Gather", [n("values"), add("Gather", [n("leaf_row"), idx])])  # (rows, trees, width)
    if forest.scalar_leaves:
        # One value per leaf, for the tree's target: spread it over the targets first.
        onehot = np.zeros((forest.n_trees, forest.n_targets), np.float32)
        onehot[np.arange(forest.n_trees), forest.tree_target] = 1
        leaf_values = add("Mul", [leaf_values, const("onehot", onehot.reshape(1, forest.n_trees, -1), np.float32)])
    s = add("ReduceSum", [leaf_values, const("axis1", [1], np.int64)], keepdims=0)  # (rows, targets)
    outputs = _finish(forest, s, add, const)
    for produced, wanted in zip(outputs, [o for o in node.output if o], strict=False):
        nodes.append(helper.make_node("Identity", [produced], [wanted], name=n(f"out_{wanted}")))
    return nodes, inits


def _absorbing(forest: Forest) -> dict[str, np.ndarray]:
    """The levels layout (each leaf pointing to itself and always going left), every entry an index."""
    a = levels_layout(forest)
    return {"feature": np.maximum(a["feature"], 0), "threshold": a["threshold"].astype(np.float32),
            "nan_left": a["nan_left"], "equal": a["equal"], "left": a["left"],
            "leaf_row": np.maximum(a["leaf_row"], 0)}


def _finish(forest: Forest, s: str, add: Any, const: Any) -> list[str]:
    """Base values, average, transform and labels: :mod:`.engine`'s rules as operators."""
    f = forest
    base = f.base_values
    if not f.classifier:
        if f.aggregate == "AVERAGE":
            s = add("Div", [s, const("trees", np.float32(f.n_trees), np.float32)])
        if f.n_targets == 1:
            return [add("Add", [s, const("base", base[:1], np.float32)]) if len(base) == 1 else s]
        if len(base) == f.n_targets:
            s = add("Add", [s, const("base", base, np.float32)])
        if f.has_score is not None and not f.has_score.all():
            s = add("Mul", [s, const("scored", f.has_score.astype(np.float32), np.float32)])
        return [_transform(f.post_transform, s, add, const)]
    assert f.labels is not None and f.has_score is not None  # noqa: S101 (a classifier's)
    labels = const("labels", f.labels, None)
    if f.n_targets > 2:
        scored = f.has_score.copy()
        if len(base):
            padded = np.zeros(f.n_targets, np.float32)
            padded[:len(base)] = base
            s = add("Add", [s, const("base", padded, np.float32)])
            scored[:len(base)] = True
        if not scored.all():
            s = add("Mul", [s, const("scored", scored.astype(np.float32), np.float32)])
            ranked = add("Add", [s, const("unscored", np.where(scored, 0, -np.inf).astype(np.float32), np.float32)])
        else:
            ranked = s
        label = add("Gather", [labels, add("ArgMax", [ranked], axis=1, keepdims=0)])
        return [label, _transform(f.post_transform, s, add, const)]
    return _two_classes(f, s, labels, add, const)


def _two_classes(f: Forest, s: str, labels: str, add: Any, const: Any) -> list[str]:
    assert f.has_score is not None and f.labels is not None  # noqa: S101 (a classifier's)
    has = f.has_score
    base = f.base_values
    axis = const("axis", [1], np.int64)
    s0 = add("Gather", [s, const("i0", 0, np.int64)], axis=1)  # (rows,)
    s1 = add("Gather", [s, const("i1", 1, np.int64)], axis=1)
    if len(base) == 2 and has[1]:
        s1 = add("Add", [s0, const("base1", base[1], np.float32)])
        s0 = add("Neg", [s1])
    elif len(base) == 2:
        s0 = add("Add", [s0, const("base0", base[0], np.float32)])
    elif len(base) == 1:
        s0 = add("Add", [s0, const("base0", base[0], np.float32)])
    positive = s1 if has[1] else s0
    threshold = 0.5 if f.binary_case and f.weights_positive else 0.0
    wins = add("Where", [add("Greater", [positive, const("half", threshold, np.float32)]),
                         const("one_w", 1, np.int64), const("zero_w", 0, np.int64)])
    label = wins if not f.binary_case and f.labels.dtype != object else add("Gather", [labels, wins])

    def column(v: str) -> str:
        return add("Unsqueeze", [v, axis])

    if len(base) < 2 and not has[1]:
        if f.post_transform == "LOGISTIC":
            first, second = add("Sigmoid", [add("Neg", [s0])]), add("Sigmoid", [s0])
        else:
            first = add("Sub", [const("one_f", 1, np.float32), s0]) if f.weights_positive else add("Neg", [s0])
            second = s0
        return [label, add("Concat", [column(first), column(second)], axis=1)]
    zero = const("zero_f", 0, np.float32)  # a class without a score reads as 0
    pair = add("Concat", [column(s0 if has[0] else add("Mul", [s0, zero])),
                          column(s1 if has[1] else add("Mul", [s1, zero]))], axis=1)
    return [label, _transform(f.post_transform, pair, add, const)]


def _transform(post: str, s: str, add: Any, const: Any) -> str:
    if post == "LOGISTIC":
        return add("Sigmoid", [s])
    if post == "SOFTMAX":
        return add("Softmax", [s], axis=1)
    if post == "SOFTMAX_ZERO":
        # ONNX Runtime's rule (engine._transform): a score within 1e-7 of zero keeps s * exp(-max)
        # and stays out of the sum.
        axis = const("sz_axis", [1], np.int64)
        # The maximum through ArgMax: ReduceMax moved its axes from attribute to input at opset 18.
        top = add("GatherElements", [s, add("ArgMax", [s], axis=1, keepdims=1)], axis=1)
        nonzero = add("Or", [add("Greater", [s, const("sz_eps", 1e-7, np.float32)]),
                             add("Less", [s, const("sz_neg_eps", -1e-7, np.float32)])])
        e = add("Where", [nonzero, add("Exp", [add("Sub", [s, top])]), add("Mul", [s, add("Exp", [add("Neg", [top])])])])
        total = add("ReduceSum", [add("Where", [nonzero, e, const("sz_zero", 0, np.float32)]), axis], keepdims=1)
        return add("Div", [e, total])
    return s


def replace_node(model: Any, node: Any, nodes: list[Any], initializers: list[Any]) -> bytes:
    """``model`` with ``node`` replaced by ``nodes`` (and their constants), serialized."""
    import onnx

    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    position = next(i for i, n in enumerate(graph.node) if n.output == node.output and n.op_type == node.op_type)
    kept = list(graph.node)
    del graph.node[:]
    graph.node.extend(kept[:position] + nodes + kept[position + 1:])
    graph.initializer.extend(initializers)
    _default_opset_at_least(out, 13, kept[:position] + kept[position + 1:])
    _declare_rank(out, node.input[0])
    return out.SerializeToString()


def _declare_rank(model: Any, name: str) -> None:
    """Give the ensemble's input its rank: a device compiles its part of the graph from the
    shapes it is given, and ``ai.onnx.ml`` operators before it (a Scaler) leave none."""
    from onnx import TensorProto, helper

    from .split import value_types

    declared = {v.name: v for v in (*model.graph.input, *model.graph.value_info)}
    if name in declared:
        if declared[name].type.tensor_type.elem_type != TensorProto.FLOAT:
            raise Unsupported("the ensemble's input is not float")
        return
    element = value_types(model, {name})[name].tensor_type.elem_type
    if element != TensorProto.FLOAT:
        raise Unsupported(f"the ensemble's input is of element type {element}, not float")
    model.graph.value_info.append(helper.make_tensor_value_info(name, element, [None, None]))


#: Operators whose meaning is the same at every opset from 7 to 21: a graph holding only
#: these may have its default-domain opset raised to 13, which the tensor form needs.
_STABLE = frozenset({"Identity", "Cast", "Add", "Sub", "Mul", "Div", "Neg", "Abs", "Exp", "Log", "Sigmoid",
                     "Tanh", "Relu", "Concat", "Transpose", "Gather", "Greater", "Less", "Equal", "Not",
                     "And", "Or", "Where", "ArgMax", "ArgMin"})


def _default_opset_at_least(model: Any, version: int, others: list[Any]) -> None:
    opsets = [o for o in model.opset_import if o.domain in ("", "ai.onnx")]
    current = max((o.version for o in opsets), default=0)
    if current >= version:
        return
    changed = sorted({n.op_type for n in others if n.domain in ("", "ai.onnx")} - _STABLE)
    if changed:
        raise Unsupported(f"the graph's opset {current} operators ({', '.join(changed)}) would change meaning "
                          f"at opset {version}, which the tensor form needs")
    for o in opsets:
        model.opset_import.remove(o)
    model.opset_import.append(_opset(version))


def _opset(version: int) -> Any:
    from onnx import helper

    return helper.make_opsetid("", version)
