"""What the outputs mean (roles) and what the source model computes for them (reference).

skl2onnx names and orders outputs by model kind: ``label`` then ``probabilities``
for classifiers (with ZipMap off), ``variable`` for regressors and transformers,
``label`` then ``scores`` for KMeans and outlier detectors. The reference is the
scikit-learn model's own result on the sample, keyed by role, or by output name for
a transformer, in the layout of the ONNX output it will be compared with.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from modelpack.plugin import InputError, TensorSpec

from ._estimators import final_estimator

__all__ = ["align_scores", "assign_roles", "reference"]


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


def reference(model: Any, task: str, data: Any, outputs: Sequence[TensorSpec]) -> dict[str, np.ndarray]:
    """The source model's outputs on ``data``, keyed by role, or by output name for a transformer."""
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
    for spec in outputs:
        if spec.role in methods:
            result = methods[spec.role]()
            if not isinstance(result, list):  # multi-output classifiers give one array per target
                ref[spec.role] = np.asarray(result)
    return ref


def align_scores(ref: dict[str, np.ndarray], outputs: Sequence[TensorSpec],
                 exported: Sequence[Any]) -> dict[str, np.ndarray]:
    """``ref`` with decision scores laid out as the exported graph lays them out.

    For two classes scikit-learn gives one score per row, and skl2onnx one column or
    two opposite ones, in an order that depends on the converter: the layout closest
    to the exported values is kept (the values themselves are not changed).
    """
    position = [i for i, spec in enumerate(outputs) if spec.role == "scores"]
    if "scores" not in ref or not position:
        return ref
    scores, got = ref["scores"], np.asarray(exported[position[0]])
    if scores.ndim != 1 or got.shape != (len(scores), 2):
        return ref
    candidates = [np.column_stack([-scores, scores]), np.column_stack([scores, -scores])]
    best = min(candidates, key=lambda c: float(np.abs(c - got).max(initial=0.0)))
    return {**ref, "scores": best}


def _call(model: Any, method: str, data: Any) -> Any:
    try:
        return getattr(model, method)(data)
    except Exception as exc:  # any failure of the source model on the sample is the sample's
        raise InputError(f"{type(model).__name__}.{method}() fails on it: {type(exc).__name__}: {exc}",
                         input="sample",
                         fix="Pass rows like the training data (same columns, dtypes and categories).") from exc
