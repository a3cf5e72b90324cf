"""``verify``: check a package on the machine and device where it will run.

Checks the checksums (by opening the package), then re-runs the stored sample
inputs and compares with the outputs recorded when the package was written,
and with the source model's outputs recorded at export.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ._fidelity import compare, measure, summary
from ._formats.samples import read_samples
from ._runtime.trees import ENGINE_NAME, NO_TREES
from .errors import ModelpackError, PackageError
from .manifest import OutputFidelity

if TYPE_CHECKING:
    from ._model import Model
    from ._types import DeviceSpec, PathLike

__all__ = ["VerifyReport", "verify"]

#: Recorded outputs vs a re-run may differ across CPUs and providers by this much (atol = rtol).
RERUN_TOLERANCE = {"float16": 1e-2, "float32": 1e-4, "float64": 1e-9}


@dataclass(frozen=True)
class VerifyReport:
    """What :func:`verify` found; ``ok`` is True when every check passed."""

    path: str
    ok: bool
    checks: tuple[tuple[str, bool, str], ...]
    providers: tuple[str, ...] = ()
    outputs: tuple[OutputFidelity, ...] = field(default=())

    def __str__(self) -> str:
        lines = [f"{self.path}: {'OK' if self.ok else 'FAILED'}"
                 + (f" (on {', '.join(self.providers)})" if self.providers else "")]
        lines += [f"  [{'ok' if ok else 'FAIL'}] {name}: {detail}" for name, ok, detail in self.checks]
        return "\n".join(lines)

    def __bool__(self) -> bool:
        return self.ok

    def __repr__(self) -> str:
        failed = [name for name, ok, _ in self.checks if not ok]
        where = f" on {self.providers[0]}" if self.providers else ""
        return (f"<VerifyReport {self.path}: {'OK' if self.ok else 'FAILED'}, {len(self.checks)} checks{where}"
                + (f", failed: {', '.join(failed)}" if failed else "") + ">")

    def _repr_html_(self) -> str:
        from html import escape

        from ._display import FAIL, OK, table

        where = f" on {escape(', '.join(self.providers))}" if self.providers else ""
        rows = [[OK if ok else FAIL, escape(name), escape(detail)] for name, ok, detail in self.checks]
        return (f"<div><strong>verify</strong> <code>{escape(self.path)}</code>: {OK if self.ok else FAIL}"
                f"{where}" + table(["", "check", "detail"], rows) + "</div>")


def _load_npz(model: Model, name: str) -> dict[str, np.ndarray]:
    return read_samples(model._package.read_bytes(name), name, str(model._package.path))


def _rerun(model: Model) -> list[OutputFidelity]:
    samples = model.manifest.samples
    if samples is None:
        return []
    feeds = _load_npz(model, samples.inputs)
    recorded = _load_npz(model, samples.outputs)
    got = model.run(feeds)
    results = []
    for name, ref in recorded.items():
        if name not in got:
            raise PackageError(f"{samples.outputs} records an output {name!r} the model does not have",
                               package=str(model._package.path),
                               fix="Re-export the package (its samples do not match its model).")
        tol = RERUN_TOLERANCE.get(str(ref.dtype), 1e-4) if ref.dtype.kind == "f" else 0.0
        results.append(compare(name, got[name], ref, tol))
    return results


def verify(path: PathLike, *, device: DeviceSpec = "cpu", providers: Sequence[Any] | None = None,
           trusted_keys: Sequence[Any] | None = None, strict: bool = False, engine: str = "auto",
           compile: str = "auto") -> VerifyReport:
    """Verify checksums and re-run the stored samples on this machine and device.

    The report names the providers that really ran the samples: a device that is
    not here is replaced by the next one, with a warning, unless ``strict`` makes
    that a failed check. The samples run on the engine :func:`modelpack.load` picks
    with the same ``engine`` (for a tree model, the tree engine, however few rows).

    Example
    -------
    >>> import modelpack
    >>> report = modelpack.verify("churn.mpk")   # doctest: +SKIP
    >>> report.ok                                # doctest: +SKIP
    True
    """
    from ._load import load

    checks: list[tuple[str, bool, str]] = []
    try:
        model = load(path, device=device, providers=providers, trusted_keys=trusted_keys, fallback=not strict,
                     engine=engine, compile=compile)
    except ModelpackError as exc:
        return VerifyReport(str(path), False, (("load", False, str(exc)),))
    with model:
        checks.append(("checksums", True, f"{len(model.manifest.files)} files match the manifest"))
        checks.append(_signature_check(model, trusted_keys))
        outputs: list[OutputFidelity] = []
        if model.manifest.samples is None:
            checks.append(("samples", True, "no samples stored; nothing to re-run"))
            return VerifyReport(str(path), all(ok for _, ok, _ in checks), tuple(checks), tuple(model.providers))
        if model.manifest.model.format == "pmml":  # the compiled model, or the evaluator and why
            checks.append(("engine", True, f"{model.engine}: {model.engine_reason}; the samples run on it"))
        elif model.engine == ENGINE_NAME:
            checks.append(("engine", True, f"{model.engine}: {model.engine_reason}; the samples run on it"))
        elif model.engine_reason and model.engine_reason != NO_TREES:
            checks.append(("engine", True, f"{model.engine}; the tree engine is not used: {model.engine_reason}"))
        try:
            with getattr(model.backend, "every_batch", contextlib.nullcontext)():
                outputs = _rerun(model)
                reference = _reference_check(model)
            bad = [o.output for o in outputs if not o.passed]
            worst = max((o.max_abs_diff for o in outputs), default=0.0)
            checks.append(("recorded outputs", not bad,
                           f"{model.manifest.samples.rows} rows re-run, max abs diff {worst:.3g}"
                           + (f"; outside tolerance: {bad}" if bad else "")))
            checks.extend(reference)
        except ModelpackError as exc:  # samples are package data, as hostile as the rest
            checks.append(("samples", False, str(exc)))
        return VerifyReport(str(path), all(ok for _, ok, _ in checks), tuple(checks),
                            tuple(model.providers), tuple(outputs))


def _signature_check(model: Model, trusted_keys: Sequence[Any] | None) -> tuple[str, bool, str]:
    from ._package import short_ids, signers, verify_signature

    package = model._package
    if trusted_keys is not None:  # load() has checked it already and kept the key's id
        signer = package.trusted_signer or verify_signature(package, trusted_keys)
        return "signature", True, f"signed by trusted key {short_ids([signer])}"
    try:
        claimed = signers(package.signature, str(package.path))
    except ModelpackError as exc:
        return "signature", False, str(exc)
    if not claimed:
        return "signature", True, "not signed"
    return "signature", True, (f"signed by key {short_ids(claimed)}, not checked: "
                               "pass trusted_keys= (--trusted-key KEY.pub) to check it")


def _reference_check(model: Model) -> list[tuple[str, bool, str]]:
    manifest = model.manifest
    if manifest.samples is None or manifest.samples.reference is None:
        return []
    feeds = _load_npz(model, manifest.samples.inputs)
    reference = _load_npz(model, manifest.samples.reference)
    rows = manifest.samples.rows
    reference = {k: v[:rows] for k, v in reference.items()}
    tolerance = {o.output: o.tolerance for o in manifest.fidelity.outputs
                 if o.tolerance is not None} if manifest.fidelity else None
    fid = measure(model, feeds, reference, tolerance=tolerance,
                  dtype=manifest.fidelity.dtype if manifest.fidelity else None)
    return [("source model outputs", fid.passed, summary(fid))]
