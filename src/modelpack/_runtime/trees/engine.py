"""The tree engine: a :class:`~.forest.Forest` predicted by compiled loops.

:meth:`TreeEngine.run` returns what the ONNX node returns: ``[Y]`` for a
regressor, ``[labels, scores]`` for a classifier. The scores are summed by
:mod:`.kernels`; what follows (base values, the average, the post transform, the
label) is ONNX Runtime's own arithmetic, rule by rule, in float32, including its
two-class conventions, which the ONNX specification leaves open. The engine is
checked against ONNX Runtime on a probe batch each time it is built
(:func:`modelpack._runtime.trees.backend.wrap`), so a case written here wrongly
falls back instead of answering differently.

The loops are compiled by numba on first use and kept in numba's cache (under
modelpack's cache folder, ``$MODELPACK_CACHE_DIR``, when that folder is the
user's alone: see :func:`_kernels`); only our own code is compiled: the package
supplies arrays of numbers, never code, and nothing compiled is stored in or
read from a package.
"""

from __future__ import annotations

import os
import stat
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ..settings import cache_dir
from . import ENGINE_NAME
from .forest import Forest, describe, nan_stand_ins, present_only
from .layouts import complete, keyed_splits, levels_layout, oblivious_layout, packed_splits

__all__ = ["ENGINE_NAME", "TreeEngine", "import_numba"]

_LOCK = threading.Lock()
_CACHING: bool | None = None  # numba's disk cache in use, decided once per process


def import_numba() -> Any:
    """numba, its cache folder modelpack's own unless the user chose one (``NUMBA_CACHE_DIR``)."""
    with _LOCK:
        os.environ.setdefault("NUMBA_CACHE_DIR", str(cache_dir() / "numba"))  # read by numba's import
        import numba

    return numba


def _kernels() -> Any:
    """The kernels, with numba's disk cache on only where its folder is this user's alone.

    numba's cache entries are pickles: one written by someone else would run their code
    here. A folder owned by another user or writable by others is not used; the loops are
    then compiled in each process (about 3 s at each load).
    """
    global _CACHING
    import_numba()
    from . import kernels

    with _LOCK:
        if _CACHING is None:
            _CACHING = _private(Path(os.environ["NUMBA_CACHE_DIR"]))
            if _CACHING:
                for name in kernels.__all__:
                    getattr(kernels, name).enable_caching()
    return kernels


def _private(folder: Path) -> bool:
    try:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        info = folder.stat()
    except OSError:
        return False
    if not hasattr(os, "getuid"):  # Windows: the user's own profile folder
        return True
    return info.st_uid == os.getuid() and not info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)


class TreeEngine:
    """Predicts one forest; thread-safe (the loops hold no state between calls)."""

    def __init__(self, forest: Forest, threads: int, layout: str | None = None,
                 order: Literal["C", "F"] = "C") -> None:
        self.forest = forest
        #: The memory order of the rows it will be given ("C", or "F": a matrix read through its
        #: transpose); the loops are compiled for it at load.
        self.order = order
        self.threads = max(1, int(threads))
        self._numba = import_numba()
        kernels = _kernels()
        self._n_out = forest.n_targets
        self.layout = layout or choose_layout(forest)
        arrays = {"oblivious": oblivious_layout, "complete": complete, "levels": levels_layout}
        if self.layout not in arrays:
            raise ValueError(f"no layout {self.layout!r}; there are {sorted(arrays)}")
        a = arrays[self.layout](forest)
        if a is None:
            raise ValueError(f"the {self.layout} layout does not fit this forest")
        self._kernel = getattr(kernels, self.layout)
        self._missing_rows = kernels.missing_rows
        # The kernel's arguments between the rows and the output.
        # tree_target: -1 per tree when leaves hold every target.
        if self.layout == "levels":
            nodes, thr = packed_splits(a)
            args: tuple[Any, ...] = (nodes, thr, a["left"].astype(np.uint32), a["leaf_row"],
                                     forest.roots.astype(np.uint32), a["free"], forest.leaf_values, forest.tree_target,
                                     forest.has_equal, *_dirty(a, nodes, thr))
        elif self.layout == "complete":
            nodes, thr = packed_splits(a)
            args = (nodes, thr, _slots(forest, a["leaf"]), forest.tree_target, max(forest.depth, 1),
                    *_dirty(a, nodes, thr))
        else:
            args = (a["feature"], a["threshold"], a["nan_left"], _slots(forest, a["leaf"]), forest.tree_target,
                    np.empty(0, np.uint8 if forest.depth <= 8 else np.int32))
        self._args = args
        # A missing value is walked as its feature's stand-in, where every split agrees on one.
        self._stand_in = nan_stand_ins(forest)
        # two rows: a one-row matrix is C-ordered whatever its order, and would compile C only
        x = np.zeros((2, forest.n_features), self.dtype, order=order)
        self._first_call(lambda: self._scores(x))
        # Rows without a missing value skip the splits that only test for one (PMML's nullPrediction).
        present = present_only(forest) if layout is None else None
        self._present = TreeEngine(present, threads, order=order) if present is not None else None
        if self._present is not None:
            self._first_call(lambda: self._missing_rows(x, np.empty(2, np.bool_)))

    @property
    def dtype(self) -> np.dtype[Any]:
        """The element type of the rows :meth:`run` takes: float32, or float64 for a double forest."""
        return self.forest.threshold.dtype

    def describe(self) -> str:
        """One line for ``Model.engine_reason``: the forest and the layouts that walk it."""
        what = describe(self.forest, self.layout)
        if self._present is None:
            return what
        p = self._present
        return f"{what}; rows without a missing value: depth {p.forest.depth}, {p.layout} layout"

    @staticmethod
    def _first_call(call: Callable[[], object]) -> None:
        """Compile a loop ``call`` runs, or read it from the cache; a damaged cache is emptied."""
        try:
            call()
        except Exception:
            if not _CACHING:
                raise
            # An entry that does not load (truncated, overwritten): drop our entries, compile afresh.
            # numba names them <folder>/<package folder>_<hash>/<module>.<function>-<line>...
            for entry in Path(os.environ["NUMBA_CACHE_DIR"]).glob("trees_*/kernels.*"):
                entry.unlink(missing_ok=True)
            call()

    def scores(self, x: np.ndarray) -> np.ndarray:
        """The summed leaf values, float32 ``(rows, targets)``, before anything ONNX adds."""
        if self._present is None or x.shape[0] == 0:
            return self._scores(x)
        missing = np.empty(x.shape[0], np.bool_)
        self._missing_rows(x, missing)  # 0.2 ms for 100k rows of 10, where isnan().any(axis=1) took 2
        if not missing.any():
            return self._present.scores(x)
        if missing.all():
            return self._scores(x)
        out = np.empty((x.shape[0], self._n_out), np.float32)
        out[~missing] = self._present.scores(_rows(x, ~missing))
        out[missing] = self._scores(_rows(x, missing))
        return out

    def _scores(self, x: np.ndarray) -> np.ndarray:
        out = np.zeros((x.shape[0], self._n_out), np.float64)
        if x.shape[0] == 0:
            return out.astype(np.float32)
        self._numba.set_num_threads(min(self.threads, self._numba.config.NUMBA_NUM_THREADS))
        self._kernel(x, *self._args, self._stand_ins(x.shape[1]), out)
        return out.astype(np.float32)

    def _stand_ins(self, width: int) -> np.ndarray:
        """One stand-in per column of rows ``width`` wide: the loops read one for every column,
        and rows may be wider than the forest reads (a column no split reads takes 0)."""
        stand_in = self._stand_in
        return stand_in if len(stand_in) >= width else np.concatenate(
            [stand_in, np.zeros(width - len(stand_in), stand_in.dtype)])

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        """The node's outputs for ``x``, :attr:`dtype` ``(rows, features)``, C- or
        Fortran-contiguous (:attr:`order` is the one compiled at load; the other compiles
        on its first call)."""
        s = self.scores(x)
        f = self.forest
        if not f.classifier:
            return [_finish_regressor(f, s)]
        return _finish_classifier(f, s)


def _dirty(layout: dict[str, np.ndarray], nodes: np.ndarray, thr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The splits rows holding a missing value walk, and how the loops read them (:mod:`.kernels`):
    keyed where :func:`.layouts.keyed_splits` takes the forest, else the forest's own."""
    keyed = keyed_splits(layout)
    return (nodes, thr) if keyed is None else (keyed, np.empty(thr.shape, np.uint32))


def _rows(x: np.ndarray, chosen: np.ndarray) -> np.ndarray:
    """The ``chosen`` rows of ``x`` in ``x``'s own order: rows of a Fortran-ordered matrix
    stay Fortran-ordered, so the loops are compiled for one order only."""
    return x.T[:, chosen].T if not x.flags.c_contiguous else x[chosen]


#: The most values the padded layouts' table of leaf values per bottom slot may hold.
MAX_SLOT_VALUES = 1 << 25


def _slots(forest: Forest, leaf: np.ndarray) -> np.ndarray:
    """The values each bottom slot of each padded tree reaches, ``(trees, slots, values)``."""
    if leaf.size * forest.leaf_values.shape[1] > MAX_SLOT_VALUES:
        raise ValueError("the padded layouts' leaf table would be too large for this forest")
    return forest.leaf_values[leaf]


def choose_layout(forest: Forest) -> str:
    """The fastest layout that fits (measured in benchmarks/bench_trees.py; docs/trees.md)."""
    padded = (forest.n_trees << max(forest.depth, 1)) * forest.leaf_values.shape[1] <= MAX_SLOT_VALUES
    if padded and oblivious_layout(forest) is not None:
        return "oblivious"
    if padded and complete(forest) is not None:
        return "complete"
    return "levels"


def _finish_regressor(f: Forest, s: np.ndarray) -> np.ndarray:
    base = f.base_values
    if f.n_targets == 1:
        # One target: ONNX Runtime adds a single base value and applies no transform but PROBIT.
        if f.aggregate == "AVERAGE":
            s /= np.float32(f.n_trees)
        if len(base) == 1:
            s += base[0]
        return s
    if f.aggregate == "AVERAGE":
        s /= np.float32(f.n_trees)
    if len(base) == f.n_targets:
        s += base
    if f.has_score is not None:
        s[:, ~f.has_score] = 0  # a target without a score reads as 0
    return _transform(s, f.post_transform)


def _finish_classifier(f: Forest, s: np.ndarray) -> list[np.ndarray]:
    assert f.labels is not None and f.has_score is not None  # noqa: S101 (a classifier's)
    base = f.base_values
    labels = f.labels
    if f.n_targets > 2:
        scored = f.has_score.copy()
        if len(base):
            s[:, :len(base)] += base
            scored[:len(base)] = True  # a base value gives a class its score
        s[:, ~scored] = 0  # a class without a score reads as 0
        label = labels[np.argmax(np.where(scored, s, -np.inf), axis=1)]
        return [label, _transform(s, f.post_transform)]
    return _finish_two_classes(f, s)


def _finish_two_classes(f: Forest, s: np.ndarray) -> list[np.ndarray]:
    """ONNX Runtime's two-class rules, as they run in the installed version (checked at build)."""
    assert f.labels is not None and f.has_score is not None  # noqa: S101 (a classifier's)
    has = f.has_score
    base = f.base_values
    if len(base) == 2:
        if has[1]:
            # Runtime's own arithmetic: the second class from the first's sum (often 0) and its base.
            s[:, 1] = base[1] + s[:, 0]
            s[:, 0] = -s[:, 1]
        else:
            s += base
    elif len(base) == 1:
        s[:, 0] += base[0]
    positive = s[:, 1] if has[1] else s[:, 0]
    if f.binary_case:
        wins = positive > (np.float32(0.5) if f.weights_positive else 0)
        label = f.labels[wins.astype(np.intp)]
    else:
        # Outside its binary case ONNX Runtime returns 1 or 0 itself (for string labels, their index).
        wins = positive > 0
        label = f.labels[wins.astype(np.intp)] if f.labels.dtype == object else wins.astype(np.int64)
    if len(base) < 2 and not has[1]:
        # One score kept (read_forest lets this through in the binary case only); the
        # second is written from it.
        s0 = s[:, 0]
        if f.post_transform == "LOGISTIC":
            return [label, np.column_stack([_logistic(-s0), _logistic(s0)])]
        first = np.float32(1) - s0 if f.weights_positive else -s0
        return [label, np.column_stack([first, s0]).astype(np.float32)]
    s[:, ~has] = 0  # a class without a score reads as 0
    return [label, _transform(s, f.post_transform)]


def _logistic(v: np.ndarray) -> np.ndarray:
    e = np.float32(1) / (np.float32(1) + np.exp(-np.abs(v)))
    return np.where(v < 0, np.float32(1) - e, e).astype(np.float32)


def _transform(s: np.ndarray, post: str) -> np.ndarray:
    if post == "LOGISTIC":
        return _logistic(s)
    if post == "SOFTMAX":
        e = np.exp(s - s.max(axis=1, keepdims=True))
        return (e / e.sum(axis=1, keepdims=True, dtype=np.float32)).astype(np.float32)
    if post == "SOFTMAX_ZERO":
        top = s.max(axis=1, keepdims=True)
        nonzero = (s > np.float32(1e-7)) | (s < np.float32(-1e-7))
        e = np.where(nonzero, np.exp(s - top), s * np.exp(-top))
        total = np.where(nonzero, e, 0).sum(axis=1, keepdims=True, dtype=np.float32)
        return (e / total).astype(np.float32)
    return s
