"""A test kit for converter plugins: export, reload, and check fidelity for real.

Plugins (ours and third parties') use one assertion so every converter is held
to the same standard:

>>> from modelpack.testing import assert_roundtrip
>>> m = assert_roundtrip(fitted_model, X[:50], tmp_path,                 # doctest: +SKIP
...                      expected={"label": fitted_model.predict(X_test)}, X=X_test)
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ._export import export
from ._fidelity import compare, measure, summary
from ._load import load
from ._model import Model
from ._verify import verify
from .manifest import OutputFidelity

__all__ = ["assert_outputs_close", "assert_roundtrip", "compare_outputs", "missing_java"]


def assert_outputs_close(model: Model, X: Any, expected: Mapping[str, Any], *,
                         tolerance: float | Mapping[str, float] | None = None) -> None:
    """Assert ``model`` reproduces ``expected`` (role or output name -> array) on ``X``.

    Labels must be identical; numeric outputs within ``atol = rtol = tolerance``
    (default: the tolerance recorded in the package, else 1e-4).
    """
    recorded = ({o.output: o.tolerance for o in model.manifest.fidelity.outputs if o.tolerance is not None}
                if model.manifest.fidelity else {})
    if tolerance is None:
        tolerance = recorded or None
    fid = measure(model, X, dict(expected), tolerance=tolerance,
                  dtype=model.manifest.fidelity.dtype if model.manifest.fidelity else None)
    if not fid.passed:
        raise AssertionError(f"{model.manifest.name}: outputs differ: {summary(fid)}")


def assert_roundtrip(model: Any, sample: Any, directory: str | Path, *, X: Any = None,
                     expected: Mapping[str, Any] | None = None, archive: bool = True,
                     **export_args: Any) -> Model:
    """Export ``model`` into ``directory``, load it back, verify it, and compare.

    Checks: the export's fidelity certificate passed, ``modelpack.verify``
    passes, and (if ``expected`` is given) the loaded package reproduces
    ``expected`` on ``X`` (default: on ``sample``). Returns the loaded model;
    close it when done.
    """
    dest = Path(directory) / ("model.mpk" if archive else "model")
    manifest = export(model, dest, sample=sample, **export_args)
    if manifest.fidelity is None or not manifest.fidelity.passed:
        raise AssertionError(f"export fidelity failed: {manifest.fidelity}")
    report = verify(dest)
    if not report.ok:
        raise AssertionError(str(report))
    loaded = load(dest)
    if expected:
        assert_outputs_close(loaded, sample if X is None else X, expected)
    return loaded


def compare_outputs(name: str, got: Any, reference: Any, tolerance: float) -> OutputFidelity:
    """Compare one output with its reference as the fidelity certificate does.

    Numbers within ``atol = rtol = tolerance`` (the relative part floored at the
    tolerance); labels (``tolerance`` 0 and non-float data) must be equal.
    ``.passed`` says whether they agree; the other fields say by how much.

    Example
    -------
    >>> import numpy as np
    >>> compare_outputs("value", np.array([1.0, 2.0]), np.array([1.0, 2.00001]), 1e-4).passed
    True
    """
    return compare(name, got, reference, tolerance)


def missing_java() -> str | None:
    """Why no Java virtual machine can be found for PMML, or None when one can.

    For plugin tests that need Java (PMML export) to skip with the reason.

    Example
    -------
    >>> reason = missing_java()   # doctest: +SKIP
    >>> if reason: pytest.skip(reason)   # doctest: +SKIP
    """
    from ._runtime.pmml import java_missing

    problem = java_missing()
    return None if problem is None else str(problem)
