"""The engine's array layouts of a :class:`~.forest.Forest` (described in :mod:`.forest`)."""

from __future__ import annotations

import numpy as np

from .forest import Forest

__all__ = ["COMPLETE_MAX_DEPTH", "COMPLETE_MAX_NODES", "EARLIER", "FEW_LEAVES", "FIXED_GAP", "SKEW_GAP", "complete",
           "keyed_splits", "levels_layout", "oblivious_layout", "packed_splits"]

#: Deepest tree the complete layout takes, and the most nodes it may hold in all.
COMPLETE_MAX_DEPTH = 10
COMPLETE_MAX_NODES = 1 << 24


def complete(forest: Forest) -> dict[str, np.ndarray] | None:
    """The complete layout, or None when the trees are too deep for it or split on equality."""
    if forest._complete is not None:
        return forest._complete
    if forest.has_equal or forest.depth > COMPLETE_MAX_DEPTH or forest.n_trees << forest.depth > COMPLETE_MAX_NODES:
        return None
    layout = _complete_layout(forest)
    object.__setattr__(forest, "_complete", layout)  # kept with the (frozen) forest
    return layout


def oblivious_layout(forest: Forest) -> dict[str, np.ndarray] | None:
    """One split per level of each tree (CatBoost's trees), or None when some level has two.

    Read from the complete layout: every tree of the forest's full depth with no leaf
    above the bottom, and all nodes of a level alike in feature, threshold and the
    way a missing value goes.
    """
    padded = complete(forest)
    depth = forest.depth
    if padded is None or depth == 0:
        return None
    feature = np.empty((forest.n_trees, depth), np.int32)
    threshold = np.empty((forest.n_trees, depth), forest.threshold.dtype)
    nan_left = np.empty((forest.n_trees, depth), np.uint8)
    for level in range(depth):
        nodes = slice((1 << level) - 1, (1 << (level + 1)) - 1)
        for name, out in (("feature", feature), ("threshold", threshold), ("nan_left", nan_left)):
            values = padded[name][:, nodes]
            same = values == values[:, :1]
            if name == "threshold":
                same |= np.isnan(values) & np.isnan(values[:, :1])
            if not same.all():
                return None
            out[:, level] = values[:, 0]
    if not _leaves_at_bottom(forest):
        return None
    return {"feature": feature, "threshold": threshold, "nan_left": nan_left, "leaf": padded["leaf"]}


def _leaves_at_bottom(forest: Forest) -> bool:
    # A leaf above the bottom is padded with copies whose splits may look shared.
    return len(forest.leaf_values) == forest.n_trees << forest.depth


#: A tree whose deepest leaf lies at most this many levels below its leaves' mean depth is
#: walked its full depth without a leaf test (measured in docs/trees.md: a random forest of
#: depth 12, mean gap 0.7, 1.5x faster; LightGBM's leaf-wise trees, mean gap 3.2, keep the
#: row compaction, which is faster for them).
FIXED_GAP = 2.5

#: Trees of at most :data:`FEW_LEAVES` leaves whose deepest leaf lies more than
#: :data:`SKEW_GAP` levels below their leaves' mean depth (LightGBM's and
#: HistGradientBoosting's, grown leaf by leaf) stop the walk without a leaf test
#: :data:`EARLIER` levels sooner, no higher than their shallowest leaf: such a tree splits
#: where the gain is, often a small group of rows, so most rows end in its shallow leaves.
#: Measured (docs/trees.md): LightGBM 136 -> 121 ms, HistGradientBoosting 74 -> 68 ms; trees of
#: thousands of leaves (random forests, XGBoost of depth 12) were slower with it.
FEW_LEAVES = 255
SKEW_GAP = 1.0
EARLIER = 2


def levels_layout(forest: Forest) -> dict[str, np.ndarray]:
    """The linked layout, ``leaf_row`` (each leaf's row in ``leaf_values``, -1 for a split) and
    ``free`` (per tree, the steps every row takes without a leaf test).

    A leaf steps to itself (a split every value passes, whose left child is the leaf),
    so a row that reaches it early waits there: ``free`` is the tree's full depth where
    its leaves lie near the bottom (:data:`FIXED_GAP`), else its leaves' mean depth
    (rounded down), below which rows that reached their leaf leave the walk. (Measured
    against the shallowest leaf's level, which wastes no step: LightGBM 240 -> 224 ms,
    HistGradientBoosting 85 -> 78 ms on 100k rows; docs/trees.md.) Trees of few leaves with
    deep branches stop :data:`EARLIER` levels sooner (:data:`FEW_LEAVES`).
    """
    leaf = forest.feature < 0
    depth = np.zeros(len(leaf), np.int64)
    level, nodes = 0, forest.roots.astype(np.int64)
    while nodes.size:  # breadth first: a tree's nodes follow its root, up to the next root
        depth[nodes] = level
        inner = forest.left[nodes[~leaf[nodes]]].astype(np.int64)
        nodes = np.concatenate([inner, inner + 1])
        level += 1
    leaf_depth = np.where(leaf, depth, 0)
    deepest = np.maximum.reduceat(leaf_depth, forest.roots)
    shallowest = np.minimum.reduceat(np.where(leaf, depth, np.iinfo(np.int64).max), forest.roots)
    leaves = np.add.reduceat(leaf.astype(np.int64), forest.roots)
    mean = np.add.reduceat(leaf_depth, forest.roots) / leaves
    free = np.where(deepest - mean <= FIXED_GAP, deepest, np.floor(mean))
    skewed = (leaves <= FEW_LEAVES) & (deepest - mean > SKEW_GAP)
    free = np.where(skewed, np.maximum(free - EARLIER, shallowest), free)
    return {"feature": forest.feature, "threshold": np.where(leaf, forest.threshold.dtype.type(np.inf), forest.threshold),
            "nan_left": np.where(leaf, 1, forest.nan_left).astype(np.uint8),
            "equal": np.where(leaf, 0, forest.equal).astype(np.uint8),
            "left": np.where(leaf, np.arange(len(leaf)), forest.left).astype(np.int32),
            "leaf_row": np.where(leaf, forest.left, -1).astype(np.int32), "free": free.astype(np.uint32)}


def packed_splits(layout: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Each split as one int64, ``(feature * 4 + equal * 2 + nan_left) << 32 | threshold bits``,
    and the kernels' ``thr``: the thresholds of a double forest, or an empty float32 array.

    One read per step (a float32 forest). A leaf's entry (feature -1) is never read as a split.
    """
    flags = _equal(layout).astype(np.int64) * 2 + layout["nan_left"]
    threshold = layout["threshold"]
    if threshold.dtype == np.float64:
        return _packed(layout, flags, 0), threshold
    bits = threshold.view(np.uint32).astype(np.int64)
    return _packed(layout, flags, bits), np.empty(threshold.shape[:-1] + (0,), np.float32)


def keyed_splits(layout: dict[str, np.ndarray]) -> np.ndarray | None:
    """Each split as one int64 for rows holding a missing value, ``(feature * 4 + o) << 32 | key``,
    or None for a double forest or one with equality splits (they keep the missing-value test).

    ``key`` is the threshold's unsigned key less ``o``, and ``o`` is 1 where a missing value goes
    right (:mod:`.kernels` compares a value's key less ``o`` with it; -0.0 is keyed as 0.0, as
    ``<=`` holds them equal). A split no present value passes (a NaN threshold) gets key 0,
    below every number's key less one: only a missing value (key 0) can go left, where ``o``
    is 0. A leaf (``x <= inf``, missing left) sends every row left.
    """
    threshold = layout["threshold"]
    if threshold.dtype != np.float32 or _equal(layout).any():
        return None
    o = 1 - layout["nan_left"].astype(np.int64)
    bits = (threshold + np.float32(0)).view(np.uint32).astype(np.int64)  # -0.0 as 0.0
    key = np.where(bits >> 31, bits ^ 0xFFFFFFFF, bits ^ 0x80000000)
    return _packed(layout, o, np.where(np.isnan(threshold), 0, key - o))


def _equal(layout: dict[str, np.ndarray]) -> np.ndarray:
    # The padded layouts hold no equality splits, and no ``equal``.
    return layout.get("equal", np.zeros(1, np.uint8))


def _packed(layout: dict[str, np.ndarray], flags: np.ndarray, low: np.ndarray | int) -> np.ndarray:
    """``(feature * 4 + flags) << 32 | low`` per split (a leaf's feature -1 as 0), as int64."""
    split = np.maximum(layout["feature"], 0).astype(np.int64) * 4 + flags
    return np.asarray((split << 32) | low, dtype=np.int64)


def _complete_layout(forest: Forest) -> dict[str, np.ndarray]:
    depth = max(forest.depth, 1)
    inner = (1 << depth) - 1
    width = 1 << depth
    n = forest.n_trees
    feature = np.zeros((n, inner), np.int32)
    threshold = np.zeros((n, inner), forest.threshold.dtype)
    nan_left = np.zeros((n, inner), np.uint8)
    leaf = np.zeros((n, width), np.int32)  # the row in leaf_values each bottom slot reaches
    for t in range(n):
        stack = [(int(forest.roots[t]), 0, 0)]
        while stack:
            node, at, level = stack.pop()
            if forest.feature[node] < 0:
                # A leaf above the bottom fills every bottom slot under it.
                span = 1 << (depth - level)
                first = ((at + 1) << (depth - level)) - 1 - inner
                leaf[t, first:first + span] = forest.left[node]
                continue
            feature[t, at] = forest.feature[node]
            threshold[t, at] = forest.threshold[node]
            nan_left[t, at] = forest.nan_left[node]
            child = int(forest.left[node])
            stack.append((child, 2 * at + 1, level + 1))
            stack.append((child + 1, 2 * at + 2, level + 1))
    return {"feature": feature, "threshold": threshold, "nan_left": nan_left, "leaf": leaf}
