"""``export``: convert a trained model, certify its fidelity, write the package.

The converter plugin turns the model into ONNX or PMML and computes the source
model's own outputs on the sample; the exported model is then run in memory on
the same sample and compared. Beyond the tolerance nothing is written (unless
``strict=False``). Any failure of a converter library is raised here as a
:class:`~modelpack.ConversionError` chained to the original.
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import ConversionError, FidelityError, ModelpackError
from .fidelity import measure, summary
from .formats import describe
from .manifest import Manifest
from .packing import build_manifest, extra_files, memory_model, write_with_samples
from .registry import Conversion, find_converter

if TYPE_CHECKING:
    from ._types import InputData, PathLike

__all__ = ["export"]


def _convert(model: Any, sample: Any, format: str, options: dict[str, Any]) -> Conversion:
    converter = find_converter(model, format)
    try:
        return converter.convert(model, sample, format=format, options=options)
    except ModelpackError:
        raise
    except Exception as exc:
        raise ConversionError(
            f"the {converter.name} converter failed on {type(model).__name__}: {type(exc).__name__}: {exc}",
            fix="Check that the model is fitted and that sample= looks like its training data; "
                "if a step is unsupported, try format='pmml' or register a custom converter.") from exc


def export(model: Any, dest: PathLike, *, sample: InputData, format: str = "onnx", name: str | None = None,
           version: str = "0.0.0", description: str = "", metadata: Mapping[str, Any] | None = None,
           tolerance: float | Mapping[str, float] | None = None, strict: bool = True,
           dtype: str | None = None, options: Mapping[str, Any] | None = None,
           extra: Mapping[str, PathLike] | Sequence[PathLike] | None = None) -> Manifest:
    """Export a trained model to a package, with a fidelity certificate.

    Parameters
    ----------
    model:
        A fitted model of a framework with an installed converter plugin
        (see :func:`modelpack.list_converters`).
    dest:
        Where to write: a path ending in ``.mpk`` gives an archive, else a folder.
    sample:
        Representative input rows (e.g. ``X_train[:200]``): they fix the input
        signature, and the exported model must reproduce the source's outputs on them.
    format:
        ``"onnx"`` (default) or ``"pmml"`` where the plugin supports it.
    tolerance:
        Allowed ``|exported - source| <= tol + tol * |source|`` for numeric outputs
        (default 1e-4 for float32, 1e-7 for float64 exports), or a mapping per
        output role; for ``label`` it is the fraction of rows allowed to differ (0).
    strict:
        If True (default) a model beyond the tolerance raises
        :class:`~modelpack.FidelityError` and nothing is written; if False the
        package is written with the measured figures and a warning.
    dtype:
        ``"float64"`` to export in double precision where the converter supports it.
    options:
        Converter-specific options, passed through.

    Example
    -------
    >>> import modelpack
    >>> modelpack.export(clf, "churn.mpk", sample=X_train[:200], name="churn")   # doctest: +SKIP
    <Manifest churn 0.0.0 classification onnx: 1 input(s), 2 output(s)>
    """
    conv = _convert(model, sample, format, {**(options or {}), "dtype": dtype})
    file = f"model.{conv.format}"
    desc = describe(conv.format, conv.model, name=file)
    manifest = build_manifest(
        desc, name=name or _default_name(model), version=version, description=description,
        metadata={**conv.metadata, **(metadata or {})}, task=conv.task, classes=conv.classes,
        source=conv.source, inputs=conv.inputs, outputs=conv.outputs)
    model_files = {file: conv.model, **conv.external_data}
    if conv.external_data:
        manifest = manifest.replace(model=dataclasses.replace(
            manifest.model, external_data=tuple(sorted(conv.external_data))))
    exported = memory_model(manifest, model_files)
    try:
        fidelity = measure(exported, sample, conv.reference, tolerance=tolerance, dtype=conv.dtype)
        if not fidelity.passed:
            _refuse_or_warn(manifest, fidelity, strict)
        return write_with_samples(dest, manifest.replace(fidelity=fidelity), model_files, sample=sample,
                                  reference=conv.reference, extra=extra_files(extra), model=exported)
    finally:
        exported.close()


def _default_name(model: Any) -> str:
    if isinstance(model, (str, os.PathLike)):  # a saved model folder
        return Path(model).name
    return type(model).__name__.lower()


def _refuse_or_warn(manifest: Manifest, fidelity: Any, strict: bool) -> None:
    message = f"the exported model differs from the source on the sample: {summary(fidelity)}"
    fix = ("Export with dtype='float64' if the converter supports it, pass a larger tolerance=, or "
           "strict=False to write the package anyway with these figures recorded.")
    if strict:
        raise FidelityError(message, package=manifest.name, fix=fix)
    warnings.warn(f"{manifest.name}: {message}", RuntimeWarning, stacklevel=3)
