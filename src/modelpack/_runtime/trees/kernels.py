"""The tree engine's compiled loops (numba), one per layout and leaf kind.

Rows are taken in blocks, each block by a function of its own called from the parallel
loop (numba analyses a parallel loop's body at length when it compiles it; a call is
quick to analyse); each block walks every tree in turn, so one tree's
nodes stay in the first-level cache while the block's rows go through it, and
blocks run on separate threads. A block goes down one level at a time, all its
rows together: the rows' steps do not depend on each other, so the processor
overlaps them, where a walk of one row to its leaf waits on every step (measured
on XGBoost-shaped trees: 1.9x; on LightGBM's deeper ones: 1.6x).

* ``complete``: shallow trees, padded to full depth: a fixed number of steps;
* ``levels``: trees of any depth: a leaf steps to itself, so the first ``free`` steps
  of a tree go without a leaf test (its full depth where its leaves lie near the
  bottom, else its leaves' mean depth, less for trees of few leaves with deep
  branches: :func:`.layouts.levels_layout`); below that a row that reaches its leaf
  leaves the list of rows still walking, so a pass costs only those;
* ``oblivious``: one split per level (CatBoost): each level adds one bit of the
  leaf's index, read from one column of the block, which the compiler turns into
  vector instructions (measured 9x ONNX Runtime, the speed of CatBoost's own).

Scores are summed in float64 and rounded to float32 once, as LightGBM, CatBoost
and scikit-learn sum theirs. ONNX Runtime sums in float32 in an order that
depends on its thread count (one thread: tree after tree; more: a share of the
trees per thread, then the shares), so its own answers move by a float32 step
from one thread count to another; ours do not, and stay within that step of it.

A split sends a row right unless ``x <= threshold``; a missing value goes the
way ``nan_left`` says (see :mod:`.forest`). A float32 forest keeps each threshold
in its packed split; a double one (PMML compiled to ONNX compares in double) reads
it from ``thr``, which a float32 forest passes empty: :func:`_threshold` is chosen
by that array's type when the loop is compiled, so neither pays for the other.

Rows holding a missing value that no stand-in replaces walk the splits of
``dirty``, read by ``dirty_thr``'s type. A float32 forest without equality splits
gives them its splits *keyed* (:func:`.layouts.keyed_splits`, ``dirty_thr`` an empty
uint32 array): each value becomes an unsigned integer in the order of the floats,
a missing value 0, below them all, and a split sends a row left when ``key - o <=
threshold's key - o`` in 32-bit arithmetic, ``o`` 1 where a missing value goes
right (``0 - 1`` wraps to the top). One subtraction more than a row without a
missing value, where the test for one took twice its time (:func:`_goes_left`).
Other forests pass their own splits, and such rows take that test.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange, types
from numba.extending import overload

__all__ = ["complete", "levels", "missing_rows", "oblivious"]

#: Rows per block of the linked and complete layouts: as many as keep the block's copy of
#: its rows within 32 KiB (the first-level cache), from 64 to 256. Longer blocks give
#: each level of a tree more independent steps to overlap (measured, 100k rows of 20
#: float32 features, one thread, against 64 rows: 256 rows 10 % faster on LightGBM,
#: 8 % on HistGradientBoosting, 11 % on a random forest of depth 12, 2 % on XGBoost;
#: 512 and 1,024 rows no better). Wide rows keep 64.
BLOCK = 256
MIN_BLOCK = 64


@njit(nogil=True, boundscheck=False, inline="always")
def _block_rows(x):  # pragma: no cover
    return max(MIN_BLOCK, min(BLOCK, 32768 // max(x.shape[1] * x.itemsize, 1)))


#: The oblivious loops vectorize: longer blocks amortize the transposition (measured on
#: CatBoost, 200 trees of depth 6: 64 rows 2.2e6 rows/s, 512 rows 2.7e6, as CatBoost's own).
OBLIVIOUS_BLOCK = 512


@njit(nogil=True, boundscheck=False)
def missing_rows(x, out):  # pragma: no cover
    # out[r]: row r holds a missing value, found by its sum (NaN propagates; inf and -inf
    # together count as missing too, and such a row is answered by the full forest). Not
    # ``x @ ones``: numpy's BLAS leaves a thread spinning after its call, which took a core
    # from the loops that follow (measured on a PMML random forest, 2 threads: 19 ms with
    # this, 33-40 ms with the product).
    for r in range(x.shape[0]):
        s = 0.0
        for f in range(x.shape[1]):
            s += x[r, f]
        out[r] = s != s


@njit(nogil=True, boundscheck=False, inline="always")
def _u(i):  # pragma: no cover
    # An index as an unsigned integer: numba then drops the test for a negative index
    # (Python's wrap-around), six instructions per array read (measured: 1.5x faster descent).
    return np.uintp(i)


def _threshold(node, thr, i):  # pragma: no cover - compiled code calls the overload below
    raise NotImplementedError


@overload(_threshold, inline="always")
def _threshold_of(node, thr, i):  # pragma: no cover
    # A double forest's thresholds live in ``thr``; a float32 one's in the split itself, as
    # is a keyed split's key (``thr`` uint32).
    if thr.dtype == types.float64:
        return lambda node, thr, i: thr[np.uintp(i)]
    if thr.dtype == types.uint32:
        return lambda node, thr, i: np.uint32(node & 0xFFFFFFFF)
    return lambda node, thr, i: np.uint32(node & 0xFFFFFFFF).view(np.float32)


@njit(nogil=True, boundscheck=False, inline="always")
def _goes_left(v, node, th):  # pragma: no cover
    # ``node``: the split packed in an int64, (feature * 4 + equal * 2 + nan_left) << 32 | the
    # threshold's bits (float32 forests); an equality split (``equal``) sends left ``x == t``
    # (``t <= x <= t``).
    split = np.uint32(node >> 32)
    below = np.uint32(v <= th) & (np.uint32(v >= th) | ((split >> np.uint32(1)) ^ np.uint32(1)))
    return below | (np.uint32(v != v) & (split & np.uint32(1)))


@njit(nogil=True, boundscheck=False, inline="always")
def _feature(node):  # pragma: no cover
    return np.uint32(node >> 32) >> np.uint32(2)


@njit(nogil=True, boundscheck=False, inline="always")
def _add_leaves(sums, m, leaf_of, idx, values, target):  # pragma: no cover
    # The block's leaves into its sums, one contiguous row per output (added in vector
    # steps): one value for the tree's target (boosting), or, with target -1, one per target.
    if target >= 0:
        acc = sums[_u(target)]
        for r in range(m):
            acc[r] += values[_u(leaf_of[_u(idx[r])]), 0]
    else:
        for j in range(sums.shape[0]):
            acc = sums[_u(j)]
            for r in range(m):
                acc[r] += values[_u(leaf_of[_u(idx[r])]), _u(j)]


@njit(nogil=True, boundscheck=False, inline="always")
def _add_slots(sums, m, slots, idx, offset, target):  # pragma: no cover
    # As _add_leaves, for the padded layouts: ``slots`` holds the values each bottom slot
    # of the tree reaches, one read per row instead of two.
    if target >= 0:
        acc = sums[_u(target)]
        for r in range(m):
            acc[r] += slots[_u(idx[r] - offset), 0]
    else:
        for j in range(sums.shape[0]):
            acc = sums[_u(j)]
            for r in range(m):
                acc[r] += slots[_u(idx[r] - offset), _u(j)]


@njit(nogil=True, boundscheck=False, inline="always")
def _write_sums(out, lo, order, m, sums):  # pragma: no cover
    # Position r of the block holds row ``order[r]``.
    for r in range(m):
        row = _u(lo + order[r])
        for j in range(sums.shape[0]):
            out[row, _u(j)] += sums[_u(j), _u(r)]


@njit(nogil=True, boundscheck=False, inline="always")
def _present(v, stand_in, f):  # pragma: no cover
    # A missing value as its feature's stand-in (forest.nan_stand_ins), which every split sends
    # its way; NaN still where the feature has none.
    return stand_in[_u(f)] if v != v else v


@njit(nogil=True, boundscheck=False, inline="always")
def _gather_block(x, lo, m, flat, order, stand_in):  # pragma: no cover
    # The block's rows copied side by side, those without a missing value first: they
    # take a step without the missing-value test (measured 1.6x faster). A missing value
    # is copied as its stand-in (:func:`_present`); a row still holding one walks the splits
    # for such rows (``dirty``, module docstring). Returns the count of the others.
    n_features = x.shape[1]
    clean = 0
    dirty = m
    for r in range(m):
        missing = False
        for f in range(n_features):
            v = _present(x[lo + r, f], stand_in, f)
            missing |= v != v
        if missing:
            dirty -= 1
            at = dirty
        else:
            at = clean
            clean += 1
        order[at] = r
        for f in range(n_features):
            flat[_u(at * n_features + f)] = _present(x[lo + r, f], stand_in, f)
    return clean


def _step(v, node, th, missing):  # pragma: no cover - compiled code calls the overload below
    raise NotImplementedError


# _step and _walked are left to LLVM to inline (it does: the same speed), not inlined by
# numba: its inlining of an overload took a cold load of an XGBoost package from 4.0 to
# 5.0-5.8 s, of a HistGradientBoosting one from 4.6-5.5 to 6.4-6.7 s; left to LLVM, 3.9-4.0 s
# and 4.9-5.3 s.
@overload(_step)
def _step_of(v, node, th, missing):  # pragma: no cover
    # 1 when the row goes left. A keyed split (``th`` uint32) tests keys (module docstring).
    # Otherwise ``missing`` is a constant at each call site: the tests for a missing value
    # and for an equality split are compiled only where a row may need them (a forest with
    # equality splits takes every row this way: ``equal`` of :func:`levels`).
    if th == types.uint32:
        def keyed(v, node, th, missing):
            o = np.uint32(node >> 32) & np.uint32(1)
            return np.uint32(np.uint32(v - o) <= th)
        return keyed

    def ordered(v, node, th, missing):
        if missing:
            return _goes_left(v, node, th)
        return np.uint32(v <= th)
    return ordered


@njit(nogil=True, boundscheck=False, inline="always")
def _key(v):  # pragma: no cover
    # A float32 as an unsigned integer in the same order (-0.0 as 0.0); NaN as 0, below all.
    bits = np.float32(v + np.float32(0)).view(np.uint32)
    key = bits ^ (np.uint32(0xFFFFFFFF) if bits >> np.uint32(31) else np.uint32(0x80000000))
    return np.uint32(0) if v != v else key


def _walked(flat, start, stop, thr):  # pragma: no cover - compiled code calls the overload below
    raise NotImplementedError


@overload(_walked)
def _walked_of(flat, start, stop, thr):  # pragma: no cover
    # The block's rows as the splits read by ``thr`` take them: for keyed splits, the values
    # ``flat[start:stop]`` turned into their keys in place (a uint32 view of the block).
    if thr.dtype == types.uint32:
        def keyed(flat, start, stop, thr):
            keys = flat.view(np.uint32)
            for k in range(start, stop):
                keys[_u(k)] = _key(flat[_u(k)])
            return keys
        return keyed
    return lambda flat, start, stop, thr: flat


@njit(nogil=True, boundscheck=False, inline="always")
def _descend_complete(flat, start, stop, n_features, nodes, thr, depth, idx, missing):  # pragma: no cover
    for r in range(start, stop):
        idx[_u(r)] = 0
    for _ in range(depth):
        for r in range(start, stop):
            i = idx[_u(r)]
            node = nodes[_u(i)]
            v = flat[_u(r * n_features + _feature(node))]
            idx[_u(r)] = np.uint32(2) * i + np.uint32(2) - _step(v, node, _threshold(node, thr, i), missing)


@njit(nogil=True, parallel=True, boundscheck=False)
def complete(x, nodes, thr, slots, tree_target, depth, dirty, dirty_thr, stand_in, out):  # pragma: no cover
    block = _block_rows(x)
    for b in prange((x.shape[0] + block - 1) // block):
        _complete_block(x, b * block, block, nodes, thr, slots, tree_target, depth, dirty, dirty_thr, stand_in, out)


@njit(nogil=True, boundscheck=False)
def _complete_block(x, lo, block, nodes, thr, slots, tree_target, depth, dirty, dirty_thr, stand_in,
                    out):  # pragma: no cover
    # A block's work in a function of its own, not in the parallel loop's body: numba's
    # analysis of a parallel loop grows with its body, and each layout's loop is compiled
    # at a first load (measured on XGBoost's trees: a cold load's processor time 4.2 s
    # before, 3.4 s after; the same speed and answers).
    n_features = x.shape[1]
    m = min(x.shape[0], lo + block) - lo
    inner = (1 << depth) - 1
    idx = np.zeros(block, np.uint32)
    order = np.empty(block, np.uint32)
    flat = np.empty(block * n_features, x.dtype)
    sums = np.zeros((out.shape[1], block), np.float64)
    clean = _gather_block(x, lo, m, flat, order, stand_in)
    walked = _walked(flat, clean * n_features, m * n_features, dirty_thr)
    for t in range(nodes.shape[0]):
        _descend_complete(flat, 0, clean, n_features, nodes[t], thr[t], depth, idx, False)
        _descend_complete(walked, clean, m, n_features, dirty[t], dirty_thr[t], depth, idx, True)
        _add_slots(sums, m, slots[t], idx, inner, tree_target[t])
    _write_sums(out, lo, order, m, sums)


@njit(nogil=True, boundscheck=False, inline="always")
def _descend_levels(flat, start, stop, n_features, nodes, thr, left, leaf_row, root, free, idx, active,
                    missing):  # pragma: no cover
    # All rows of the block step down together. The first ``free`` steps go without a
    # test (a row at a leaf steps to the leaf itself); then a row that reaches its leaf
    # leaves the list of active rows, so each pass costs only the rows still on their way.
    for r in range(start, stop):
        idx[_u(r)] = root
    for _ in range(free):
        for r in range(start, stop):
            i = idx[_u(r)]
            node = nodes[_u(i)]
            v = flat[_u(r * n_features + _feature(node))]
            idx[_u(r)] = left[_u(i)] + np.uint32(1) - _step(v, node, _threshold(node, thr, i), missing)
    n_active = 0
    for r in range(start, stop):
        active[_u(n_active)] = r
        n_active += leaf_row[_u(idx[_u(r)])] < 0
    while n_active > 0:
        kept = 0
        for k in range(n_active):
            r = active[k]
            i = idx[_u(r)]
            node = nodes[_u(i)]
            v = flat[_u(r * n_features + _feature(node))]
            j = left[_u(i)] + np.uint32(1) - _step(v, node, _threshold(node, thr, i), missing)
            idx[_u(r)] = j
            active[_u(kept)] = r
            kept += leaf_row[_u(j)] < 0
        n_active = kept


@njit(nogil=True, parallel=True, boundscheck=False)
def levels(x, nodes, thr, left, leaf_row, roots, free, values, tree_target, equal, dirty, dirty_thr, stand_in,
           out):  # pragma: no cover
    block = _block_rows(x)
    for b in prange((x.shape[0] + block - 1) // block):
        _levels_block(x, b * block, block, nodes, thr, left, leaf_row, roots, free, values, tree_target, equal,
                      dirty, dirty_thr, stand_in, out)


@njit(nogil=True, boundscheck=False)
def _levels_block(x, lo, block, nodes, thr, left, leaf_row, roots, free, values, tree_target, equal, dirty,
                  dirty_thr, stand_in, out):  # pragma: no cover
    n_features = x.shape[1]
    m = min(x.shape[0], lo + block) - lo
    idx = np.zeros(block, np.uint32)
    active = np.zeros(block, np.uint32)
    order = np.empty(block, np.uint32)
    flat = np.empty(block * n_features, x.dtype)
    sums = np.zeros((out.shape[1], block), np.float64)
    clean = _gather_block(x, lo, m, flat, order, stand_in)
    if equal:
        clean = 0
    walked = _walked(flat, clean * n_features, m * n_features, dirty_thr)
    for t in range(roots.shape[0]):
        _descend_levels(flat, 0, clean, n_features, nodes, thr, left, leaf_row, roots[t], free[t], idx, active,
                        False)
        _descend_levels(walked, clean, m, n_features, dirty, dirty_thr, left, leaf_row, roots[t], free[t], idx,
                        active, True)
        _add_leaves(sums, m, leaf_row, idx, values, tree_target[t])
    _write_sums(out, lo, order, m, sums)


@njit(nogil=True, boundscheck=False, inline="always")
def _descend_oblivious(columns, m, feature, threshold, nan_left, idx, missing):  # pragma: no cover
    # Every node of a level shares one split: each level adds one bit, from one column.
    for r in range(m):
        idx[r] = 0
    for level in range(feature.shape[0]):
        col = columns[_u(feature[level])]
        th = threshold[level]
        nl = np.int32(nan_left[level])
        if missing:
            for r in range(m):
                v = col[r]
                go_left = np.int32(v <= th) | (np.int32(v != v) & nl)
                idx[r] = (idx[r] << 1) | (1 - go_left)  # below 2**depth: fits the index's type
        else:
            for r in range(m):
                idx[r] = (idx[r] << 1) | np.int32(not col[r] <= th)


@njit(nogil=True, boundscheck=False, inline="always")
def _columns(x, lo, m, columns, stand_in):  # pragma: no cover
    for r in range(m):
        for f in range(x.shape[1]):
            columns[f, r] = _present(x[lo + r, f], stand_in, f)


@njit(nogil=True, parallel=True, boundscheck=False)
def oblivious(x, feature, threshold, nan_left, slots, tree_target, index, stand_in, out):  # pragma: no cover
    # ``index``: an empty array of the leaf index's type, uint8 up to depth 8 (more lanes per vector).
    for b in prange((x.shape[0] + OBLIVIOUS_BLOCK - 1) // OBLIVIOUS_BLOCK):
        _oblivious_block(x, b * OBLIVIOUS_BLOCK, feature, threshold, nan_left, slots, tree_target, index,
                         stand_in, out)


@njit(nogil=True, boundscheck=False)
def _oblivious_block(x, lo, feature, threshold, nan_left, slots, tree_target, index, stand_in,
                     out):  # pragma: no cover
    m = min(x.shape[0], lo + OBLIVIOUS_BLOCK) - lo
    idx = np.zeros(OBLIVIOUS_BLOCK, index.dtype)
    columns = np.empty((x.shape[1], OBLIVIOUS_BLOCK), x.dtype)
    # The block's sums, one contiguous row per output: the leaves are added in vector steps.
    sums = np.zeros((out.shape[1], OBLIVIOUS_BLOCK), np.float64)
    _columns(x, lo, m, columns, stand_in)
    missing = np.isnan(columns[:, :m]).any()
    order = np.arange(OBLIVIOUS_BLOCK).astype(np.uint32)
    for t in range(feature.shape[0]):
        if missing:
            _descend_oblivious(columns, m, feature[t], threshold[t], nan_left[t], idx, True)
        else:
            _descend_oblivious(columns, m, feature[t], threshold[t], nan_left[t], idx, False)
        _add_slots(sums, m, slots[t], idx, 0, tree_target[t])
    _write_sums(out, lo, order, m, sums)
