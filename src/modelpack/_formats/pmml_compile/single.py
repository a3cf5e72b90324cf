"""A forest's splits made exact in float32, so that modelpack's tree engine can run it.

PMML compares in double; the tree engine (and ONNX Runtime's fast tree path) compares
float32 inputs with float32 thresholds. Each input ``x`` of a split column is carried
as a float32 ``y`` that keeps every comparison of the forest:

* ``y = float32(x)``, unless ``float32(x)`` is the float32 image ``s`` of one of the
  column's thresholds ``t``;
* then ``y`` is ``s`` when ``x == t``, the float32 just below ``s`` when ``x < t``,
  and the one just above when ``x > t`` (found with a LabelEncoder on float32 keys,
  then compared in double).

Rounding to float32 is monotonic, so ``x <= t`` if and only if ``y <= s`` and ``x < t``
if and only if ``y < s`` for every threshold of the column, provided no two threshold
images of a column are within two float32 steps of each other; a forest where some
are stays in double. An equality split becomes a split on a 0/1 column computed in
double. Missing values stay NaN.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from onnx import TensorProto

from .graph import Graph
from .nodes import TreeNodes

__all__ = ["FloatForest", "float_forest"]


@dataclass
class FloatForest:
    """The float32 [N, F] input of the rewritten trees, and the trees."""

    features: str
    trees: list[TreeNodes]


def _thresholds(trees: list[TreeNodes], n_columns: int) -> list[np.ndarray]:
    found: list[set[float]] = [set() for _ in range(n_columns)]
    for tree in trees:
        for feature, mode, threshold in zip(tree.features, tree.modes, tree.thresholds, strict=True):
            if mode in ("BRANCH_LEQ", "BRANCH_LT") and np.isfinite(threshold):
                found[feature].add(threshold)
    return [np.array(sorted(s), dtype=np.float64) for s in found]


def _separated(t: np.ndarray) -> bool:
    """The float32 images of ``t`` are finite and at least two float32 steps apart."""
    with np.errstate(over="ignore"):
        s = t.astype(np.float32)
    if not np.isfinite(s).all() or not np.isfinite(np.nextafter(s, np.float32(np.inf))).all() \
            or not np.isfinite(np.nextafter(s, np.float32(-np.inf))).all():
        return False
    return bool((s[1:] > np.nextafter(s[:-1], np.float32(np.inf))).all())


def float_forest(g: Graph, trees: list[TreeNodes], columns: list[str]) -> FloatForest | None:
    """The trees over a float32 input that keeps their double comparisons; None where none can."""
    thresholds = _thresholds(trees, len(columns))
    if not all(_separated(t) for t in thresholds if len(t)):
        return None
    equal: dict[tuple[int, float], int] = {}
    for tree in trees:
        for feature, mode, threshold in zip(tree.features, tree.modes, tree.thresholds, strict=True):
            if mode == "BRANCH_EQ":
                equal.setdefault((feature, threshold), len(columns) + len(equal))
    encoded = [c for c in range(len(columns)) if len(thresholds[c])]
    parts = [_encode(g, [columns[c] for c in encoded], [thresholds[c] for c in encoded])] if encoded else []
    plain = [c for c in range(len(columns)) if not len(thresholds[c])]
    parts += [g.op("Cast", _stack(g, [columns[c] for c in plain]), to=TensorProto.FLOAT)] if plain else []
    if equal:
        hits = [g.missing_if(g.is_nan(columns[c]), g.as_double(g.op("Equal", columns[c], g.const(v))))
                for c, v in equal]
        parts.append(g.op("Cast", _stack(g, hits), to=TensorProto.FLOAT))
    order = encoded + plain + [equal[k] for k in equal]  # new position -> old column (or equality column)
    position = {old: new for new, old in enumerate(order)}
    features = parts[0] if len(parts) == 1 else g.op("Concat", *parts, axis=1)
    return FloatForest(features, [_rewrite(t, position, thresholds, equal) for t in trees])


def _stack(g: Graph, columns: list[str]) -> str:
    axis = g.const([1], dtype=np.int64)
    unsqueezed = [g.op("Unsqueeze", c, axis) for c in columns]
    return unsqueezed[0] if len(unsqueezed) == 1 else g.op("Concat", *unsqueezed, axis=1)


def _encode(g: Graph, columns: list[str], thresholds: list[np.ndarray]) -> str:
    x = _stack(g, columns)  # [N, F] double
    # +0.0 turns -0.0 into 0.0, which the float keys hold
    y0 = g.op("Add", g.op("Cast", x, to=TensorProto.FLOAT), g.const(0.0, dtype=np.float32))
    pieces = g.op("Split", y0, axis=1, num_outputs=len(columns), outputs=len(columns)) if len(columns) > 1 \
        else [y0]
    found, start = [], 0
    for piece, t in zip(pieces, thresholds, strict=True):
        found.append(g.op("LabelEncoder", piece, domain="ai.onnx.ml", keys_floats=t.astype(np.float32).tolist(),
                          values_int64s=list(range(start, start + len(t))), default_int64=-1))
        start += len(t)
    index = found[0] if len(found) == 1 else g.op("Concat", *found, axis=1)
    near = g.op("GreaterOrEqual", index, g.const(0, dtype=np.int64))
    safe = g.op("Max", index, g.const(0, dtype=np.int64))
    every_t = np.concatenate(thresholds)
    every_s = every_t.astype(np.float32)
    t = g.op("Gather", g.const(every_t), safe, axis=0)
    below, above = g.op("Less", x, t), g.op("Greater", x, t)
    lower = g.op("Gather", g.const(np.nextafter(every_s, np.float32(-np.inf)), dtype=np.float32), safe, axis=0)
    upper = g.op("Gather", g.const(np.nextafter(every_s, np.float32(np.inf)), dtype=np.float32), safe, axis=0)
    exact = g.op("Gather", g.const(every_s, dtype=np.float32), safe, axis=0)
    moved = g.where(below, lower, g.where(above, upper, exact))
    return g.where(near, moved, y0)


def _rewrite(tree: TreeNodes, position: dict[int, int], thresholds: list[np.ndarray],
             equal: dict[tuple[int, float], int]) -> TreeNodes:
    out = replace(tree, features=list(tree.features), modes=list(tree.modes), thresholds=list(tree.thresholds),
                  true_ids=list(tree.true_ids), false_ids=list(tree.false_ids),
                  missing_true=list(tree.missing_true), leaves=dict(tree.leaves))
    for i, (feature, mode, threshold) in enumerate(zip(tree.features, tree.modes, tree.thresholds, strict=True)):
        if mode == "LEAF":
            continue
        if mode == "BRANCH_EQ":  # x == v: the 0/1 column is above 0.5
            out.features[i] = position[equal[(feature, threshold)]]
            out.modes[i], out.thresholds[i] = "BRANCH_LEQ", 0.5
            out.true_ids[i], out.false_ids[i] = tree.false_ids[i], tree.true_ids[i]
            out.missing_true[i] = 1 - tree.missing_true[i]
            continue
        out.features[i] = position[feature]
        if np.isfinite(threshold):
            out.thresholds[i] = float(np.float32(threshold))
    return out
