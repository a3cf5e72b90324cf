"""The tree engine put in front of an ONNX Runtime session: :func:`wrap`.

The graph is cut around its tree ensemble (:mod:`.split`); ONNX Runtime runs
what comes before and after it (a scaler, a ColumnTransformer, a ZipMap, a
LabelEncoder), the engine runs the ensemble. The whole-graph session is kept:
batches below :data:`MIN_ROWS` rows go to it, since one ONNX Runtime call costs
less than three calls at a handful of rows, and so do feeds the engine does not
take. A user never has to know; ``Model.engine`` says which engine runs and why.

Before the engine is used it answers a probe batch (every threshold, one float32
step either side of it, missing values, infinities) and its outputs are compared
with ONNX Runtime's on the ensemble node alone: labels must be identical and
scores equal within the float32 tolerance of the fidelity certificate. A
disagreement leaves the model on ONNX Runtime, with the reason.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from ...errors import ModelpackError, RuntimeBackendError
from ..base import batch_rows
from . import ENGINE_NAME, ENGINES, check_engine
from .engine import TreeEngine
from .forest import Forest, Unsupported, attributes_of, describe, read_forest
from .split import Dense, NotSplittable, Split, dense_after, split

__all__ = ["ENGINES", "MIN_ROWS", "TreeBackend", "accelerator_source", "wrap"]

#: Batches smaller than this run on the whole-graph session under ``engine="auto"``
#: (measured: below it ONNX Runtime's single call is faster; see docs/trees.md).
MIN_ROWS = 32
_PROBE_ROWS = 512
_TOLERANCE = 1e-4  # the fidelity certificate's float32 atol = rtol


class TreeBackend:
    """An :class:`~modelpack._runtime.onnx.OnnxBackend` whose tree ensemble runs on the engine."""

    engine = ENGINE_NAME

    def __init__(self, inner: Any, cut: Split, engine: TreeEngine, before: Any, after: Any,
                 min_rows: int, reason: str, dense: tuple[Dense, Any] | None = None) -> None:
        self._inner = inner
        self._cut = cut
        self._engine = engine
        self._before = before
        self._after = after
        self._min_rows = min_rows
        self.engine_reason = reason
        self.providers = inner.providers
        self.output_names = inner.output_names
        self.input_names = inner.input_names
        self._tree_outputs = cut.tree_outputs
        self._dense: Dense | None = dense[0] if dense is not None else None
        self._dense_after: Any = dense[1] if dense is not None else None

    def run(self, feeds: Mapping[str, np.ndarray], outputs: Sequence[str] | None = None) -> list[Any]:
        wanted = list(outputs or self.output_names)
        if batch_rows(feeds) < self._min_rows:
            return self._inner.run(feeds, outputs)
        values = self._values(feeds, wanted, self._after, self._cut.after_inputs, self._cut.after_outputs)
        return self._inner.run(feeds, outputs) if values is None else [values[name] for name in wanted]

    def run_proba(self, feeds: Mapping[str, np.ndarray], name: str, classes: np.ndarray | None) -> Any:
        """What ``predict_proba`` makes of output ``name``, a ZipMap's, without building the ZipMap.

        The ZipMap's tensor, its columns in ``classes`` order, float32 as decoded from the
        dicts; None where the whole graph runs instead (small batches), or ``name`` is no
        ZipMap's, or its classes are not ``classes``.
        """
        dense = self._dense
        if dense is None or name not in dense.tensors or batch_rows(feeds) < self._min_rows:
            return None
        keys = dense.keys[name]
        position = {k: i for i, k in enumerate(keys)}  # looked up as the ZipMap's dicts are
        order = list(range(len(keys))) if classes is None else [position.get(c, -1) for c in classes.tolist()]
        if -1 in order or len(position) != len(keys):
            return None
        tensor = dense.tensors[name]
        values = self._values(feeds, [tensor], self._dense_after, dense.after_inputs, dense.after_outputs)
        if values is None:
            return None
        out = values[tensor]
        if not (isinstance(out, np.ndarray) and out.ndim == 2 and out.shape[1] == len(keys)):
            return None  # the ZipMap itself would refuse it: let it say why
        out = out.astype(np.float32, copy=False)
        return out if order == list(range(len(keys))) else out[:, order]

    def _values(self, feeds: Mapping[str, np.ndarray], wanted: list[str], after: Any,
                after_inputs: Sequence[str], after_outputs: Sequence[str]) -> dict[str, Any] | None:
        """Every value the parts compute towards ``wanted``; None to leave the batch to the whole graph."""
        cut = self._cut
        values: dict[str, Any] = dict(feeds)
        try:
            if self._before is not None:
                got = self._before.run(list(cut.before_outputs), {k: feeds[k] for k in cut.before_inputs})
                values.update(zip(cut.before_outputs, got, strict=True))
            x = values[cut.tree_input]
        except Exception:
            # Whatever the part refused, the whole graph refuses with ONNX Runtime's own message.
            return None
        if not (isinstance(x, np.ndarray) and x.dtype == self._engine.dtype and x.ndim == 2):
            return None
        if cut.transposed:  # the matrix is [features, N]: read through its transpose, not copied
            x = x.T
        if x.shape[1] < self._engine.forest.n_features:
            return None
        if not (x.flags.c_contiguous or x.flags.f_contiguous):
            x = np.ascontiguousarray(x)
        values.update(zip(self._tree_outputs, self._engine.run(x), strict=True))
        # The after part computes only what is asked for (a label without the ZipMap beside it).
        asked = [o for o in after_outputs if o in wanted]
        if after is not None and asked:
            got = after.run(asked, {k: values[k] for k in after_inputs})
            values.update(zip(asked, got, strict=True))
        return values

    @contextlib.contextmanager
    def every_batch(self) -> Iterator[None]:
        """Run every batch on the engine, however small (``verify`` checks the engine this way)."""
        kept, self._min_rows = self._min_rows, 0
        try:
            yield
        finally:
            self._min_rows = kept

    # The whole-graph session serves everything else.
    def placement(self) -> dict[str, dict[str, Any]] | None:
        return self._inner.placement()

    def run_bound(self, feeds: Any, outputs: Sequence[str] | None = None) -> list[Any]:
        return self._inner.run_bound(feeds, outputs)

    @property
    def session(self) -> Any:
        return self._inner.session

    def close(self) -> None:
        self._before = self._after = self._dense_after = None
        self._inner.close()

    def __getstate__(self) -> None:
        raise TypeError("a runtime backend cannot be pickled; pickle the Model, which reopens its package")


def wrap(inner: Any, model_bytes: bytes | None, *, engine: str, ort: Any, options: Any, threads: int,
         on_cpu: bool, package: str) -> Any:
    """``inner`` with its tree ensemble on the engine, or ``inner`` itself, told why not.

    ``engine="auto"`` falls back quietly; naming the engine makes a reason to fall
    back an error.
    """
    check_engine(engine, package)
    if engine == "onnxruntime":
        return _stay(inner, "onnxruntime", "chosen by the caller (engine='onnxruntime')")
    try:
        backend = _build(inner, model_bytes, ort=ort, options=options, threads=threads, on_cpu=on_cpu,
                         min_rows=MIN_ROWS if engine == "auto" else 0)
    except (Unsupported, NotSplittable) as why:
        if engine == ENGINE_NAME:
            raise RuntimeBackendError(f"the tree engine cannot run this model: {why}", package=package,
                                      fix="Load it with engine='auto' (ONNX Runtime runs what the engine "
                                          "cannot) or engine='onnxruntime'.") from None
        return _stay(inner, "onnxruntime", str(why))
    return backend


def _stay(inner: Any, name: str, reason: str) -> Any:
    inner.engine = name
    inner.engine_reason = reason
    return inner


def _build(inner: Any, model_bytes: bytes | None, *, ort: Any, options: Any, threads: int, on_cpu: bool,
           min_rows: int) -> TreeBackend:
    if not on_cpu:
        raise Unsupported("the model runs on an accelerator, where ONNX Runtime keeps the whole graph")
    if model_bytes is None:
        raise Unsupported("the model keeps tensors in external files")
    import onnx

    try:
        model = onnx.load_from_string(model_bytes)
    except Exception as exc:  # the session read it; a failure here is ours to report as a fallback
        raise Unsupported(f"the model could not be read again ({exc})") from None
    cut = split(model)
    forest = read_forest(cut.node.op_type, attributes_of(cut.node))
    try:
        import numba  # noqa: F401
    except ImportError:
        raise Unsupported("numba is not installed (pip install 'modelpack[trees]')") from None
    engine = TreeEngine(forest, threads, order="F" if cut.transposed else "C")
    _probe(lambda x: engine.run(np.asarray(x, order=engine.order)), forest, cut, model, ort)  # as it will be fed

    def session(part: bytes | None) -> Any:
        if part is None:
            return None
        return _Runner(ort.InferenceSession(part, options, providers=["CPUExecutionProvider"]))

    try:
        before, after = session(cut.before), session(cut.after)
        dense = dense_after(model, cut)
        dense_part = (dense, session(dense.after)) if dense is not None else None
    except NotSplittable:
        raise
    except Exception as exc:
        raise Unsupported(f"ONNX Runtime refused a part of the cut graph ({str(exc).splitlines()[0]})") from None
    what = engine.describe()
    reason = f"{what}; batches of {min_rows}+ rows (smaller ones: ONNX Runtime)" if min_rows else what
    return TreeBackend(inner, cut, engine, before, after, min_rows, reason, dense_part)


class _Runner:
    """A session's binding called directly, as :class:`OnnxBackend` does, for the parts."""

    def __init__(self, session: Any) -> None:
        self._session = session
        binding = getattr(getattr(session, "_sess", None), "run", None)
        self._run = binding or (lambda outputs, feeds, _options: session.run(outputs, feeds))

    def run(self, outputs: list[str], feeds: Mapping[str, Any]) -> list[Any]:
        return list(self._run(outputs, feeds, None))


def _probe(run: Callable[[np.ndarray], list[np.ndarray]], forest: Forest, cut: Split, model: Any, ort: Any,
           what: str = "engine") -> None:
    """Compare ``run`` with ONNX Runtime on the ensemble node alone; Unsupported if they differ."""
    from onnx import TensorProto, helper

    x = probe_rows(forest, _PROBE_ROWS)
    node = cut.node
    element = TensorProto.DOUBLE if x.dtype == np.float64 else TensorProto.FLOAT
    graph = helper.make_graph(
        [node], "probe", [helper.make_tensor_value_info(node.input[0], element, [None, x.shape[1]])],
        [helper.make_empty_tensor_value_info(o) for o in cut.tree_outputs])
    alone = helper.make_model(graph, opset_imports=list(model.opset_import))
    alone.ir_version = model.ir_version
    try:
        expected = _cpu_session(ort, alone.SerializeToString()).run(list(cut.tree_outputs), {node.input[0]: x})
    except Exception as exc:
        raise Unsupported(f"ONNX Runtime could not run the ensemble alone ({str(exc).splitlines()[0]})") from None
    try:
        got = run(x)
    except ModelpackError:
        raise
    except Exception as exc:  # numba's typing errors and the like: our bug, reported as a fallback
        raise Unsupported(f"the {what} failed on the probe batch ({type(exc).__name__}: {exc})") from None
    scores = np.asarray(expected[-1]) if forest.classifier else None
    for name, want, have in zip(cut.tree_outputs, expected, got, strict=True):
        problem = disagreement(np.asarray(want), np.asarray(have), scores)
        if problem:
            raise Unsupported(f"the {what}'s {name!r} differs from ONNX Runtime's on the probe batch ({problem})")


def _cpu_session(ort: Any, model: bytes) -> Any:
    options = ort.SessionOptions()
    options.log_severity_level = 4
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def accelerator_source(source: bytes, *, engine: str, ort: Any, package: str) -> tuple[bytes, str]:
    """The model with its tree ensemble as standard operators, and why; or ``source`` and why not.

    For a device other than the CPU, where ONNX Runtime's tree operator cannot run.
    """
    from .tensor_form import replace_node, tensor_form

    try:
        import onnx

        model = onnx.load_from_string(source)
        cut = split(model)
        forest = read_forest(cut.node.op_type, attributes_of(cut.node))
        nodes, initializers = tensor_form(forest, cut.node)
        rewritten = replace_node(model, cut.node, nodes, initializers)
        alone = _tensor_model(cut, nodes, initializers, forest)
        session = _cpu_session(ort, alone)
        _probe(lambda x: session.run(list(cut.tree_outputs), {cut.node.input[0]: x}), forest, cut, model, ort,
               what="tensor form")
    except (Unsupported, NotSplittable) as why:
        if engine == ENGINE_NAME:
            raise RuntimeBackendError(f"the tree engine cannot run this model on the device: {why}",
                                      package=package,
                                      fix="Load it with engine='auto' (ONNX Runtime places the tree operator "
                                          "itself) or engine='onnxruntime'.") from None
        return source, str(why)
    return rewritten, (f"{describe(forest, 'tensor')} form in standard operators, {max(forest.depth, 1)} "
                       "steps, placed by the device's provider")


def _tensor_model(cut: Split, nodes: list[Any], initializers: list[Any], forest: Forest) -> bytes:
    """The tensor form alone, reading the ensemble's input: for the probe."""
    from onnx import TensorProto, helper

    graph = helper.make_graph(nodes, "tensor_form",
                              [helper.make_tensor_value_info(cut.node.input[0], TensorProto.FLOAT, [None, None])],
                              [helper.make_empty_tensor_value_info(o) for o in cut.tree_outputs],
                              initializer=initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


def disagreement(want: np.ndarray, have: np.ndarray, scores: np.ndarray | None = None) -> str | None:
    """Why ``have`` does not stand for ``want``, or None.

    Floats must agree within the tolerance; labels exactly, except on a row whose two
    best scores tie within it: there the label follows float32 rounding, and ONNX
    Runtime's own choice changes with its thread count (it sums trees in another
    order when it spreads them over threads).
    """
    if want.shape != have.shape:
        return f"shape {have.shape} for {want.shape}"
    if want.dtype.kind in "fc":
        close = np.isclose(have, want, rtol=_TOLERANCE, atol=_TOLERANCE, equal_nan=True)
        if not close.all():
            row = int(np.argwhere(~close)[0][0])
            return (f"row {row}: {have.reshape(len(have), -1)[row].tolist()} for "
                    f"{want.reshape(len(want), -1)[row].tolist()}")
        return None
    differ = np.flatnonzero(want != have)
    if len(differ) and scores is not None and scores.ndim == 2 and scores.shape[1] >= 2:
        top = np.sort(scores[differ], axis=1)[:, -2:]
        tied = np.isclose(top[:, 0], top[:, 1], rtol=_TOLERANCE, atol=_TOLERANCE)
        differ = differ[~tied]
    if len(differ):
        row = int(differ[0])
        return f"row {row}: {have[row]!r} for {want[row]!r}"
    return None


def probe_rows(forest: Forest, rows: int, seed: int = 0) -> np.ndarray:
    """Rows that meet every split: thresholds, one step either side, NaN, infinities (in the
    forest's precision)."""
    rng = np.random.default_rng(seed)
    n = max(forest.n_features, 1)
    dtype = forest.threshold.dtype.type
    x = rng.normal(size=(rows, n)).astype(dtype)
    inner = forest.feature >= 0
    features = forest.feature[inner]
    thresholds = forest.threshold[inner]
    finite = np.isfinite(thresholds)
    features, thresholds = features[finite], thresholds[finite]
    if len(features):
        picks = rng.integers(0, len(features), size=(rows, n))
        # Per column, a threshold of a split on that column where there is one.
        for j in range(n):
            mine = thresholds[features == j]
            if len(mine):
                t = mine[picks[:, j] % len(mine)]
                step = rng.integers(-1, 2, size=rows)
                with np.errstate(over="ignore"):  # the step above the largest float is infinity
                    x[:, j] = np.where(step < 0, np.nextafter(t, dtype(-np.inf)),
                                       np.where(step > 0, np.nextafter(t, dtype(np.inf)), t))
    special = rng.random(x.shape)
    x[special < 0.1] = np.nan
    x[(special >= 0.1) & (special < 0.12)] = np.inf
    x[(special >= 0.12) & (special < 0.14)] = -np.inf
    return x
