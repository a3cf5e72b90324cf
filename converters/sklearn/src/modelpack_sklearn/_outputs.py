"""What the outputs mean (roles) and what the source model computes for them (reference).

skl2onnx names and orders outputs by model kind: ``label`` then ``probabilities``
for classifiers (with ZipMap off), ``variable`` for regressors and transformers,
``label`` then ``scores`` for KMeans and outlier detectors. The reference is the
scikit-learn model's own result on the sample, keyed by role, or by output name for
a transformer, in the layout of the ONNX output it will be compared with.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Callable, Sequence

import numpy as np

from modelpack.errors import InputError
from modelpack.manifest import TensorSpec

from ._estimators import final_estimator

__all__ = ["assign_roles", "reference"]


def _second_role(model: Any, task: str) -> str:
    if task == "classification":
        return "probabilities" if hasattr(model, "predict_proba") else "scores"
    if task == "clustering":
        if hasattr(final_estimator(model), "predict_proba"):  # Gaussian mixtures
            return "probabilities"
        return "distances" if hasattr(model, "transform") else "scores"
    return "scores"  # outlier detectors: decision_function


def assign_roles(outputs: Sequence[TensorSpec], task: str, model: Any) -> tuple[TensorSpec, ...]:
    """The outputs with their roles: first the prediction, then probabilities or scores."""
    first = {"classification": "label", "regression": "value", "clustering": "cluster",
             "other": "label"}.get(task)
    if first is None:
        return tuple(outputs)
    roles = [first, _second_role(model, task)]
    return tuple(replace(spec, role=roles[i] if i < len(roles) else None) for i, spec in enumerate(outputs))


def reference(model: Any, task: str, data: Any, outputs: Sequence[TensorSpec],
              exported: Sequence[Any]) -> dict[str, np.ndarray]:
    """The source model's outputs on ``data``, keyed by role or output name.

    ``exported`` are the ONNX outputs on the same data, used only to lay out
    decision scores the way the ONNX graph does (one or two columns for two classes).
    """
    if task == "transform":
        dense = _call(model, "transform", data)
        return {outputs[0].name: dense.toarray() if hasattr(dense, "toarray") else np.asarray(dense)}
    methods: dict[str, Callable[[], Any]] = {
        "label": lambda: _call(model, "predict", data),
        "value": lambda: _call(model, "predict", data),
        "cluster": lambda: _call(model, "predict", data),
        "probabilities": lambda: _call(model, "predict_proba", data),
        "distances": lambda: _call(model, "transform", data),
        "scores": lambda: _call(model, "decision_function", data),
    }
    ref: dict[str, np.ndarray] = {}
    for spec, value in zip(outputs, exported):
        if spec.role not in methods:
            continue
        result = methods[spec.role]()
        if isinstance(result, list):  # multi-output classifiers: one array per target
            continue
        ref[spec.role] = _align_scores(np.asarray(result), value) if spec.role == "scores" else np.asarray(result)
    return ref


def _call(model: Any, method: str, data: Any) -> Any:
    try:
        return getattr(model, method)(data)
    except Exception as exc:  # any failure of the source model on the sample is the sample's
        raise InputError(f"{type(model).__name__}.{method}() fails on it: {type(exc).__name__}: {exc}",
                         input="sample",
                         fix="Pass rows like the training data (same columns, dtypes and categories).") from exc


def _align_scores(ref: np.ndarray, got: Any) -> np.ndarray:
    # For two classes scikit-learn gives one score per row, and skl2onnx one column or
    # two opposite ones, in an order that depends on the converter: take the layout
    # that the exported values follow.
    got = np.asarray(got)
    if ref.ndim != 1 or got.ndim != 2 or got.shape != (len(ref), 2):
        return ref
    candidates = [np.column_stack([-ref, ref]), np.column_stack([ref, -ref])]
    return min(candidates, key=lambda c: float(np.abs(c - got).max(initial=0.0)))
