"""PMML compiled to ONNX when a package is written, and certified against the evaluator.

``pack`` and ``export(format="pmml")`` call :func:`with_compiled`: the document is
compiled (:mod:`modelpack._formats.pmml_compile`); both the PMML evaluator and the
compiled model then score the certification rows (the caller's sample, if any,
and rows probing every constant the document compares with, with missing values
and unseen categories), and the comparison is recorded in the manifest's
``compiled`` entry. The compiled model becomes the default only where it agrees
within 1e-6 (relative, or absolute near zero) on every output.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np

from ._fidelity import measure, summary
from ._load import load_memory
from .errors import ConversionError, FidelityError, ModelpackError
from .manifest import Compiled, Fidelity, Manifest

if TYPE_CHECKING:
    from ._types import InputData

__all__ = ["COMPILED_FILE", "TOLERANCE", "with_compiled"]

COMPILED_FILE = "model.onnx"
#: How close the compiled model's outputs must be to the evaluator's to run by default.
TOLERANCE = 1e-6
_COMPILE = ("auto", "onnx", "never")


def with_compiled(manifest: Manifest, files: Mapping[str, bytes], *, compile: str,
                  sample: InputData | None) -> tuple[Manifest, dict[str, bytes]]:
    """The manifest with its ``compiled`` entry, and the files with the compiled model."""
    if compile not in _COMPILE:
        raise ConversionError(f"compile={compile!r} is not one of {', '.join(_COMPILE)}",
                              fix="Pass compile='auto' (the default), 'onnx' or 'never'.")
    files = dict(files)
    if manifest.model.format != "pmml":
        return manifest, files
    if compile == "never":
        return manifest.replace(compiled=Compiled(reason="packed with compile='never'")), files
    from ._formats.pmml_compile import NotCompiled, compile_pmml

    try:
        files[COMPILED_FILE] = compile_pmml(files[manifest.model.file], name=manifest.name)
    except NotCompiled as exc:
        if compile == "onnx":
            raise ConversionError(f"the PMML document cannot be compiled to ONNX: {exc}", package=manifest.name,
                                  fix="Pack with compile='auto' to keep it on the PMML evaluator (Java), or "
                                      "ask for a model without that element.") from None
        return manifest.replace(compiled=Compiled(reason=f"the PMML document is not compiled: {exc}")), files
    # Where pmml4s departs from the specification, the evaluator is compared with a twin
    # translation that departs as it does; the rows where the two translations differ
    # are the rows the shipped model scores by the specification instead.
    record, checked = _certified(manifest, files, sample, exact=False)
    if isinstance(checked, tuple) and not checked[0].passed:  # float32 tree sums too coarse here?
        exact = compile_pmml(files[manifest.model.file], name=manifest.name, exact=True)
        if exact != files[COMPILED_FILE]:  # the model has such sums: certify the exact form instead
            files[COMPILED_FILE] = exact
            record, checked = _certified(manifest, files, sample, exact=True)
    if isinstance(checked, str):
        return manifest.replace(compiled=replace(record, reason=checked)), files
    fidelity, departures = checked
    note = (f"follows the PMML specification where pmml4s does not on {departures} of {fidelity.rows} "
            "certification rows (docs/pmml.md)") if departures else ""
    if not fidelity.passed:
        message = f"the compiled model differs from the PMML evaluator: {summary(fidelity)}"
        if compile == "onnx":
            raise FidelityError(message, package=manifest.name,
                                fix="Pack with compile='auto' to keep the PMML evaluator as the default.")
        record = Compiled(default="pmml", file=COMPILED_FILE, reason=message, fidelity=fidelity)
    else:
        record = Compiled(default="onnx", file=COMPILED_FILE, reason=note, fidelity=fidelity)
    return manifest.replace(compiled=record), files


def _certified(manifest: Manifest, files: Mapping[str, bytes], sample: InputData | None,
               *, exact: bool) -> tuple[Compiled, tuple[Fidelity, int] | str]:
    from ._formats.pmml_compile import compile_pmml

    twin = compile_pmml(files[manifest.model.file], name=manifest.name, evaluator_compatible=True, exact=exact)
    record = Compiled(default="onnx", file=COMPILED_FILE)
    return record, _certify(manifest.replace(compiled=record), files, twin, sample)


def _certify(manifest: Manifest, files: Mapping[str, bytes], twin: bytes,
             sample: InputData | None) -> tuple[Fidelity, int] | str:
    """(the evaluator-compatible translation against the evaluator, rows where the shipped
    translation departs from it), or why it could not be compared."""
    from ._formats.pmml_compile.probe import probe_rows

    try:
        evaluator = load_memory(manifest, files, compile="never")
    except ModelpackError as exc:  # no Java, no pypmml, or a document pmml4s refuses
        return f"not compared with the PMML evaluator, which did not open here ({exc})"
    shipped = load_memory(manifest, files, compile="onnx")
    compatible = shipped if twin == files[COMPILED_FILE] else \
        load_memory(manifest, {**files, COMPILED_FILE: twin}, compile="onnx")
    try:
        rows = probe_rows(files[manifest.model.file], manifest.inputs)
        if sample is not None:
            rows = _joined(evaluator._adapt(sample), rows)
        fidelity = measure(compatible, rows, evaluator.run(rows), tolerance=TOLERANCE, dtype="float64")
        return fidelity, 0 if compatible is shipped else _rows_differing(shipped.run(rows), compatible.run(rows))
    finally:
        for model in {id(m): m for m in (evaluator, shipped, compatible)}.values():
            model.close()


def _rows_differing(a: Mapping[str, Any], b: Mapping[str, Any]) -> int:
    differ = None
    for name, left in a.items():
        x, y = np.asarray(left), np.asarray(b[name])
        same = (x == y) | (_missing(x) & _missing(y))
        differ = ~same if differ is None else differ | ~same
    return int(differ.sum()) if differ is not None else 0


def _missing(values: np.ndarray) -> np.ndarray:
    """True where a value is missing (NaN or None)."""
    if values.dtype == object:
        return np.array([v is None or v != v for v in values.tolist()], dtype=bool)
    return np.isnan(values) if values.dtype.kind == "f" else np.zeros(values.shape, dtype=bool)


def _joined(first: Mapping[str, Any], second: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The caller's rows, then the probe rows (a field the caller left out is missing in theirs)."""
    n = len(np.asarray(next(iter(first.values()))).reshape(-1)) if first else 0
    out = {}
    for name, extra in second.items():
        missing = np.full(n, None, dtype=object) if extra.dtype == object else np.full(n, np.nan)
        given = np.asarray(first[name]).reshape(-1) if name in first else missing
        kind = object if given.dtype.kind in "OUSb" or extra.dtype == object else np.float64
        out[name] = np.concatenate([given.astype(kind), extra.astype(kind)])
    return out
