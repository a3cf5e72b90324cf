"""``Model``: what :func:`modelpack.load` returns.

``predict``, ``predict_proba`` and ``run`` are written once here, above every
backend, from the manifest's output roles: a classifier's labels come from the
output whose role is ``label`` and its probabilities from ``probabilities``
(one ``[N, C]`` tensor, a ZipMap sequence of dicts, or one output per class),
always in :attr:`Model.classes` order. Backends only map feeds to outputs.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ._display import TensorSpecs
from ._inputs import InputAdapter, numpy_dtype
from ._inputs.arrow import frame_kind, lazy_batches
from ._inputs.results import as_table, check_output, columns_of, joined
from .errors import TaskError
from .manifest import Manifest, TensorSpec

if TYPE_CHECKING:
    from ._card import ModelCard
    from ._package import Package
    from ._runtime import Backend
    from ._types import InputData

__all__ = ["Model"]


class Model:
    """A loaded package, ready to predict. Create it with :func:`modelpack.load`.

    Example
    -------
    >>> import modelpack
    >>> with modelpack.load("iris.mpk") as m:   # doctest: +SKIP
    ...     m.predict(X[:2]), m.classes
    (array([0, 0]), array([0, 1, 2]))

    A ``Model`` may be shared by threads (ONNX Runtime sessions are thread-safe
    for ``run``). It pickles by re-opening its package, never by pickling a
    session, so it can be sent to worker processes.
    """

    def __init__(self, package: Package, backend: Backend, *,
                 reopen: Callable[[], Model] | None = None) -> None:
        self._package = package
        self._backend = backend
        # How to open this package again in another process; None for a model built in memory.
        self._reopen = reopen
        self._lock = threading.Lock()
        manifest = package.manifest
        self.manifest: Manifest = manifest
        self._adapt = InputAdapter(manifest.inputs, str(package.path),
                                   missing_passes=manifest.model.format == "pmml",
                                   coded=getattr(backend, "coded_inputs", ()))
        self._output_names = [o.name for o in manifest.outputs]
        self._classes = _classes_array(manifest.classes)
        by_role: dict[str, list[TensorSpec]] = {}
        for spec in manifest.outputs:
            if spec.role:
                by_role.setdefault(spec.role, []).append(spec)
        self._roles = by_role
        predicted = by_role.get(_PREDICT_ROLE.get(manifest.task, ""), [])[:1]
        self._predict_names = [s.name for s in predicted]
        self._finish_predict = _finisher(predicted[0] if predicted else None, self._classes, manifest.task)
        self._proba = by_role.get("probabilities", [])
        self._proba_names = [s.name for s in self._proba]

    # -- description ----------------------------------------------------------------
    @property
    def inputs(self) -> tuple[TensorSpec, ...]:
        """The model's inputs: name, dtype, shape (named dynamic dimensions), columns."""
        return TensorSpecs(self.manifest.inputs)

    @property
    def outputs(self) -> tuple[TensorSpec, ...]:
        """The model's outputs, in the order :meth:`run` returns them."""
        return TensorSpecs(self.manifest.outputs)

    @property
    def classes(self) -> np.ndarray | None:
        """Class labels of a classifier, in ``predict_proba`` column order (None otherwise)."""
        return self._classes

    @property
    def providers(self) -> list[str]:
        """The execution providers that really run this model, best first."""
        return list(self._backend.providers)

    @property
    def backend(self) -> Backend:
        """The runtime backend (e.g. its ONNX Runtime session), for expert use."""
        return self._backend

    @property
    def engine(self) -> str:
        """What runs the model: ``"onnxruntime"``, ``"modelpack-trees"`` or ``"pmml"``.

        Example
        -------
        >>> m = modelpack.load("xgb.mpk")   # doctest: +SKIP
        >>> m.engine, m.engine_reason       # doctest: +SKIP
        ('modelpack-trees', '200 trees, depth 6, 1 targets (regressor, complete layout); batches of 32+ rows')
        """
        return str(getattr(self._backend, "engine", self.manifest.model.format))

    @property
    def engine_reason(self) -> str:
        """Why :attr:`engine` runs the model (for a tree model on ONNX Runtime: what stopped the engine)."""
        return str(getattr(self._backend, "engine_reason", ""))

    @property
    def placement(self) -> dict[str, dict[str, Any]] | None:
        """Nodes and operator types per execution provider, as really run.

        None for PMML, or with an onnxruntime too old to report it.
        """
        placement = getattr(self._backend, "placement", None)
        return placement() if placement is not None else None

    @property
    def path(self) -> Path:
        return self._package.path

    def card(self, *, plots: bool = True) -> ModelCard:
        """A model card from the manifest and the stored samples: README.md and an HTML page.

        The card shows the description, intended uses and other user metadata, the
        inputs (columns, dtypes, categories), outputs and classes, the fidelity
        certificate with a plot of per-row differences (matplotlib, from the
        ``modelpack[card]`` extra; without it the card is complete but for the plot),
        the placement forecast, provenance, the signature status and sample
        predictions. Nothing is re-run: the card is a view of the package.

        Example
        -------
        >>> with modelpack.load("churn.mpk") as m:   # doctest: +SKIP
        ...     m.card().save("churn-card")
        """
        from ._card import build_card, signature_status

        return build_card(self.manifest, self._package.read_bytes, package=str(self.path), plots=plots,
                          signature=signature_status(self._package.signature, str(self.path)))

    # -- prediction ------------------------------------------------------------------
    def run(self, X: InputData, *, output: str = "numpy") -> Any:
        """Every output of the model, by name, in model order, exactly as computed.

        ``output="pandas"``, ``"arrow"`` or ``"polars"`` gives one table instead of the
        dict: a column per output, or per value for outputs with several per row
        (``<output>_<j>``; ``<output>_<class>`` for probabilities).

        Example
        -------
        >>> m.run(X)["probabilities"].shape   # doctest: +SKIP
        (2, 3)
        """
        if output != "numpy" or X.__class__.__name__ == "LazyFrame":
            return self._shaped(self.run, X, output)
        values = self._backend.run(self._adapt(X), None)
        return dict(zip(self._output_names, values, strict=True))

    def predict(self, X: InputData, *, output: str = "numpy") -> Any:
        """Labels for a classifier or clusterer, values for a regressor.

        Labels keep the kind of :attr:`classes` (object, holding None, where a PMML model
        gives no prediction for a row); a single-target regressor gives
        shape ``(n,)``. For other tasks, the model's only output. ``X`` may also be a
        pyarrow Table or RecordBatch, or a polars DataFrame or LazyFrame (collected
        65,536 rows at a time). ``output="pandas"``, ``"arrow"`` or ``"polars"`` gives a
        table with a ``prediction`` column (``prediction_<j>`` for several targets);
        a pandas result keeps a pandas input's index.

        Example
        -------
        >>> m.predict(pyarrow_table, output="arrow").column_names   # doctest: +SKIP
        ['prediction']
        """
        if output != "numpy" or X.__class__.__name__ == "LazyFrame":
            return self._shaped(self.predict, X, output)
        if self._predict_names:
            out = self._backend.run(self._adapt(X), self._predict_names)[0]
            finish = self._finish_predict
            return out if finish is None else finish(out)
        if self._proba and self._classes is not None:
            return self._classes[np.argmax(self.predict_proba(X), axis=1)]
        if len(self._output_names) == 1:
            return np.asarray(self._backend.run(self._adapt(X), None)[0])
        raise TaskError(f"predict() does not know which of the outputs {self._output_names} to return "
                        f"for a {self.manifest.task} model", package=self.manifest.name,
                        fix="Use run(), which returns every output by name.")

    def predict_proba(self, X: InputData, *, output: str = "numpy") -> Any:
        """Class probabilities, shape ``(n, n_classes)``, columns in :attr:`classes` order.

        With ``output="pandas"``, ``"arrow"`` or ``"polars"``: a table of ``proba_<class>`` columns.
        """
        if output != "numpy" or X.__class__.__name__ == "LazyFrame":
            return self._shaped(self.predict_proba, X, output)
        if not self._proba:
            raise TaskError(f"predict_proba() needs a classifier with probabilities; this is a "
                            f"{self.manifest.task} model", package=self.manifest.name,
                            fix=_classifier_fix(self.manifest))
        feeds = self._adapt(X)
        run_proba = getattr(self._backend, "run_proba", None)
        if run_proba is not None and len(self._proba_names) == 1:
            # The tree engine's backend reads a ZipMap's tensor without building the dicts.
            dense = run_proba(feeds, self._proba_names[0], self._classes)
            if dense is not None:
                return dense
        values = self._backend.run(feeds, self._proba_names)
        if len(values) > 1:  # one output per class (PMML)
            order = _class_order(self._proba, self._classes)
            return np.column_stack([np.asarray(values[i], dtype=np.float64).reshape(-1) for i in order])
        out = values[0]
        if isinstance(out, list):  # ZipMap: a list of {class: probability}
            return _decode_zipmap(out, self._classes)
        return out

    def _shaped(self, method: Callable[[Any], Any], X: Any, output: str) -> Any:
        """``method(X)`` over a LazyFrame's batches, and as the table ``output`` names."""
        check_output(output)
        if frame_kind(X) == "lazy":
            batches = lazy_batches(X, self._adapt.wanted_columns(), _LAZY_ROWS, str(self.path))
            value = joined([method(batch) for batch in batches])
        else:
            value = method(X)
        if output == "numpy":
            return value
        if method == self.run:
            columns: dict[str, Any] = {}
            for spec in self.outputs:
                labels = self._classes if spec.role == "probabilities" else None
                columns.update(columns_of(spec.name, value[spec.name], labels))
        elif method == self.predict:
            columns = columns_of("prediction", value, None)
        else:
            columns = columns_of("proba", value, self._classes, always_split=True)
        index = X.index if type(X).__module__.startswith("pandas") and hasattr(X, "index") else None
        return as_table(columns, output, index)

    def run_on_device(self, feeds: Any, outputs: Sequence[str] | None = None) -> dict[str, Any]:
        """Run on DLPack tensors (torch, cupy), OrtValues or numpy; outputs stay on the device.

        For GPU pipelines: no copy to the host on the way in or out (IO binding).
        Outputs are ``onnxruntime.OrtValue`` objects; ``.numpy()`` copies one to the host.
        """
        run_bound = getattr(self._backend, "run_bound", None)
        if run_bound is None:
            raise TaskError(f"run_on_device() needs an ONNX model, not {self.manifest.model.format}",
                            package=self.manifest.name, fix="Use run().")
        names = list(outputs) if outputs is not None else self._output_names
        return dict(zip(names, run_bound(feeds, names), strict=True))

    # -- lifecycle ---------------------------------------------------------------------
    def close(self) -> None:
        """Release the runtime session and the package's temporary files. Idempotent."""
        with self._lock:
            self._backend.close()
            self._package.close()

    def __enter__(self) -> Model:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __reduce__(self) -> tuple[Any, ...]:
        if self._reopen is None:
            raise TypeError(f"{self.manifest.name} was built in memory and cannot be pickled; "
                            "write it with modelpack.pack() and load it from there")
        return (_reopened, (self._reopen,))

    # -- display -------------------------------------------------------------------------
    def __repr__(self) -> str:
        m = self.manifest
        classes = f", {len(m.classes)} classes" if m.classes else ""
        return (f"<modelpack.Model {m.name} {m.version}: {m.task}, {m.model.format}{classes}, "
                f"{len(m.inputs)} input(s), on {self.providers[0] if self.providers else '?'}>")

    def _repr_html_(self) -> str:
        from ._display import manifest_html

        return manifest_html(self.manifest, providers=self.providers)


# Rows of a polars LazyFrame collected at a time: bounds the memory of its conversion.
_LAZY_ROWS = 65_536
_PREDICT_ROLE = {"classification": "label", "regression": "value", "clustering": "cluster"}


def _reopened(reopen: Callable[[], Model]) -> Model:
    return reopen()


def _classes_array(classes: tuple[Any, ...] | None) -> np.ndarray | None:
    if classes is None:
        return None
    arr = np.asarray(classes)
    arr.setflags(write=False)
    return arr


def _finisher(spec: TensorSpec | None, classes: np.ndarray | None, task: str) -> Any:
    """What predict() does to the raw output: None when it can be returned as is (hot path)."""
    if spec is None:
        return None
    column = spec.shape is not None and len(spec.shape) == 2 and spec.shape[1] == 1
    if task == "classification" and classes is not None:
        if numpy_dtype(spec.dtype).kind == classes.dtype.kind and not column:
            return None
        return lambda out: _as_labels(out, classes)
    if column or spec.shape is None:
        return _flatten_column
    return None


def _flatten_column(out: Any) -> Any:
    arr = np.asarray(out)
    return arr.reshape(-1) if arr.ndim == 2 and arr.shape[1] == 1 else arr


def _as_labels(out: Any, classes: np.ndarray) -> np.ndarray:
    labels = _flatten_column(out)
    if labels.dtype.kind == classes.dtype.kind:
        return labels
    if labels.dtype == object and any(v is None for v in labels.tolist()):
        return labels  # "no prediction" (PMML) stays None: a cast to str would write "N" or "None"
    # str, not the classes' own width: a longer label must not be cut to it
    return labels.astype(str if classes.dtype.kind == "U" else classes.dtype)


def _class_order(specs: list[TensorSpec], classes: np.ndarray | None) -> list[int]:
    if classes is None:
        return list(range(len(specs)))
    position = {str(s.for_class): i for i, s in enumerate(specs)}
    return [position[str(c)] for c in classes if str(c) in position]


def _decode_zipmap(rows: list[dict[Any, float]], classes: np.ndarray | None) -> np.ndarray:
    if not rows:
        return np.empty((0, 0 if classes is None else len(classes)), dtype=np.float32)
    keys = list(rows[0]) if classes is None else classes.tolist()
    return np.array([[row[k] for k in keys] for row in rows], dtype=np.float32)


#: Frameworks whose plugins are told a network is a classifier by options (modelpack.plugin.plan_outputs).
_TOLD_BY_OPTIONS = ("torch", "keras", "tensorflow")


def _classifier_fix(manifest: Manifest) -> str:
    """How to make a package a classifier, when its outputs do not already say it."""
    if manifest.task not in ("other", "transform") or not any(
            o.kind == "tensor" and o.dtype.startswith("float") and o.shape is not None and len(o.shape) == 2
            for o in manifest.outputs):
        return "Use predict() or run()."
    if manifest.source.framework in _TOLD_BY_OPTIONS:
        return ("Use run(); or, if the first output holds class probabilities, export again with "
                "options={'task': 'classification'} (add 'logits': True when it holds raw scores, and "
                "'classes': [...] for the labels).")
    return ("Use run(); or, if an output holds class probabilities, pack again with task='classification' "
            "and classes=[...] (command line: modelpack pack --task classification).")
