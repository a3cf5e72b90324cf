"""Fidelity: how far a packaged model's outputs are from reference outputs.

Used by :func:`modelpack.export` (source model vs exported model, on the
sample) and by :func:`modelpack.verify` (recorded outputs vs a re-run on the
target machine). References are keyed by role: ``label`` and ``cluster`` are
compared for equality (agreement rate), numeric roles (``probabilities``,
``value``, ``distances``, ``scores``) and named outputs within
``|got - ref| <= atol + rtol * |ref|``. The relative difference reported is
``|got - ref| / max(|ref|, tol)``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from .manifest import Fidelity, OutputFidelity

if TYPE_CHECKING:
    from ._model import Model
    from ._types import InputData

__all__ = ["DEFAULT_TOLERANCE", "measure", "summary"]

#: atol = rtol per exported float precision; label roles must agree on every row.
DEFAULT_TOLERANCE = {"float16": 1e-2, "float32": 1e-4, "float64": 1e-7}
LABEL_ROLES = ("label", "cluster")

def _tolerance_for(output: str, tolerance: Any, dtype: str | None) -> float:
    if isinstance(tolerance, Mapping):
        if output in tolerance:
            return float(tolerance[output])
        tolerance = None
    if tolerance is not None and output not in LABEL_ROLES:
        return float(tolerance)
    if output in LABEL_ROLES:
        return 0.0  # fraction of rows allowed to disagree
    return DEFAULT_TOLERANCE.get(dtype or "float32", 1e-4)


def _model_output(model: Model, role: str, data: InputData) -> Any:
    if role in ("label", "value", "cluster"):
        return model.predict(data)
    if role == "probabilities":
        return model.predict_proba(data)
    outputs = model.run(data)
    by_role = {s.role: s.name for s in model.outputs if s.role}
    return outputs[by_role.get(role, role)]


def compare(output: str, got: Any, ref: Any, tol: float) -> OutputFidelity:
    """One output's figures; ``tol`` is a disagreement fraction for labels, else atol=rtol."""
    got, ref = np.asarray(got), np.asarray(ref)
    if got.size == ref.size and got.shape != ref.shape:
        ref = ref.reshape(got.shape)
    if got.shape != ref.shape:
        return OutputFidelity(output=output, max_abs_diff=float("inf"), max_rel_diff=float("inf"),
                              worst_row=0, tolerance=tol, passed=False)
    if output in LABEL_ROLES or got.dtype.kind in "OUSb" or ref.dtype.kind in "OUSb":
        return _compare_labels(output, got, ref, tol)
    g, r = got.astype(np.float64), ref.astype(np.float64)
    diff = np.abs(g - r)
    both_nan = np.isnan(g) & np.isnan(r)
    diff[both_nan] = 0.0
    diff[np.isnan(diff)] = np.inf
    # Relative to |ref|, but not below the tolerance: near zero a relative figure says nothing.
    rel = diff / np.maximum(np.abs(r), max(tol, np.finfo(np.float64).tiny))
    excess = diff - (tol + tol * np.where(both_nan, 0.0, np.abs(r)))  # missing on both sides agrees
    per_row = excess.reshape(len(excess), -1).max(axis=1) if excess.size else excess
    return OutputFidelity(output=output, max_abs_diff=float(diff.max(initial=0.0)),
                          max_rel_diff=float(np.where(diff == 0, 0.0, rel).max(initial=0.0)),
                          worst_row=int(np.argmax(per_row)) if per_row.size else 0, tolerance=tol,
                          passed=bool((excess <= 0).all()))


def _compare_labels(output: str, got: np.ndarray, ref: np.ndarray, tol: float) -> OutputFidelity:
    same = np.asarray(got.astype(str) == ref.astype(str)) if got.dtype != ref.dtype else got == ref
    same = same.reshape(len(same), -1).all(axis=1) if same.ndim > 1 else same
    agreement = float(same.mean()) if same.size else 1.0
    diff = 0.0
    if got.dtype.kind in "iuf" and ref.dtype.kind in "iuf":
        diff = float(np.abs(got.astype(np.float64) - ref.astype(np.float64)).max(initial=0.0))
    elif agreement < 1.0:
        diff = 1.0
    return OutputFidelity(output=output, max_abs_diff=diff, max_rel_diff=diff,
                          worst_row=int(np.argmin(same)) if same.size else 0, tolerance=tol,
                          label_agreement=agreement, passed=agreement >= 1.0 - tol)


def measure(model: Model, data: InputData, reference: Mapping[str, Any], *,
            tolerance: Any = None, dtype: str | None = None) -> Fidelity:
    """Compare ``model`` on ``data`` with ``reference`` (role or output name -> array)."""
    results = []
    for output, ref in reference.items():
        got = _model_output(model, output, data)
        results.append(compare(output, got, ref, _tolerance_for(output, tolerance, dtype)))
    rows = len(next(iter(reference.values()))) if reference else 0
    return Fidelity(rows=rows, passed=all(r.passed for r in results), outputs=tuple(results), dtype=dtype)


def summary(fidelity: Fidelity) -> str:
    """One line per output, e.g. ``probabilities: max abs diff 2.1e-07 (row 3), tolerance 1e-04``."""
    lines = []
    for o in fidelity.outputs:
        if o.label_agreement is not None:
            lines.append(f"{o.output}: {o.label_agreement:.2%} of rows agree"
                         + (f" (first difference at row {o.worst_row})" if o.label_agreement < 1 else ""))
        else:
            lines.append(f"{o.output}: max abs diff {o.max_abs_diff:.3g}, max rel diff {o.max_rel_diff:.3g} "
                         f"(worst row {o.worst_row}), tolerance {o.tolerance:g}")
    return "; ".join(lines)
