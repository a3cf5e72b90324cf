"""The export side of the API: ``export`` and ``pack``, and the pipeline they share.

``export`` finds the converter plugin for a model, which turns it into ONNX or
PMML and computes the source model's own outputs on the sample; the exported
model is then run in memory on the same sample and compared. Beyond the
tolerance nothing is written (unless ``strict=False``). Any failure of a
converter library is raised here as a :class:`~modelpack.ConversionError`
chained to the original. ``pack`` wraps a model file made elsewhere.

Both end in :func:`write_with_samples`: run the sample, store inputs and
outputs under ``samples/``, forecast the placement, write the package atomically.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ._compiling import with_compiled
from ._fidelity import measure, summary
from ._formats import build_manifest, describe, read_model_file
from ._formats.samples import MAX_SAMPLE_ROWS, write_samples
from ._load import load_memory
from ._package import write_package
from ._registry import Conversion, find_converter
from .errors import (
    ConversionError,
    FidelityError,
    ModelpackError,
    PackageError,
    PackageNotFoundError,
    _unrelated_to_the_caller,
)
from .manifest import FORMATS, Fidelity, Manifest, Samples

if TYPE_CHECKING:
    from ._model import Model
    from ._types import InputData, PathLike

__all__ = ["export", "pack", "write_with_samples"]



def sample_files(model: Model, sample: InputData, reference: Mapping[str, Any] | None) -> tuple[dict[str, bytes], Samples]:
    """samples/ files: the adapted inputs, the model's outputs, and the source's outputs."""
    feeds = model._adapt(sample)
    outputs = model.run(feeds)
    tensors = {k: v for k, v in outputs.items() if isinstance(v, np.ndarray)}
    rows = min(len(next(iter(feeds.values()))) if feeds else 0, MAX_SAMPLE_ROWS)
    files = {"samples/inputs.npz": write_samples(feeds), "samples/outputs.npz": write_samples(tensors)}
    samples = Samples(rows=rows)
    if reference:
        files["samples/reference.npz"] = write_samples(reference)
        samples = replace(samples, reference="samples/reference.npz")
    return files, samples


def extra_files(extra: Mapping[str, PathLike] | Sequence[PathLike] | None) -> dict[str, bytes]:
    """User files for extra/, from {name: path} or a list of paths."""
    if not extra:
        return {}
    items = extra.items() if isinstance(extra, Mapping) else ((Path(p).name, p) for p in extra)
    files = {}
    for name, path in items:
        p = Path(path)
        if not p.is_file():
            raise PackageNotFoundError(f"extra file {p} does not exist", package=str(p), fix="Check the path.")
        files[f"extra/{name}"] = p.read_bytes()
    return files


def _with_forecast(manifest: Manifest, model_files: Mapping[str, bytes]) -> Manifest:
    """Record which installed provider would run which operators (ONNX, inline weights only:
    a forecast of a model with external data would need it on disk twice)."""
    if manifest.model.format != "onnx" or manifest.model.external_data:
        return manifest
    from ._devices.placement import forecast

    placement = forecast(model_files[manifest.model.file])
    if placement is not None:
        from ._runtime.trees import forecast_engine

        trees = forecast_engine(model_files[manifest.model.file])
        if trees is not None:
            placement["trees"] = trees  # which engine the CPU gives the ensemble (docs/trees.md)
    return manifest.replace(runtime=replace(manifest.runtime, placement=placement))


def write_with_samples(dest: PathLike, manifest: Manifest, model_files: Mapping[str, bytes], *,
                       sample: InputData | None, reference: Mapping[str, Any] | None = None,
                       extra: Mapping[str, bytes] | None = None, model: Model | None = None,
                       card: bool = False) -> Manifest:
    """Run the sample (if any), add the card (if asked), then write the package atomically."""
    files = dict(model_files)
    extra = dict(extra or {})
    manifest = _with_forecast(manifest.replace(extra=tuple(sorted(extra))), model_files)
    if sample is not None:
        model = model or load_memory(manifest, model_files)
        sample_data, samples = sample_files(model, sample, reference)
        files.update(sample_data)
        manifest = manifest.replace(samples=samples)
    if card:
        extra.update(_card_files(manifest, files, extra))
        manifest = manifest.replace(extra=tuple(sorted(extra)))
    files.update(extra)
    return write_package(dest, manifest, files)


def _card_files(manifest: Manifest, files: Mapping[str, bytes], extra: Mapping[str, bytes]) -> dict[str, bytes]:
    """The model card's files under extra/card/, listed and checksummed like any extra file."""
    from ._card import CARD_DIR, build_card

    taken = [name for name in extra if name.startswith(CARD_DIR + "/")]
    if taken:
        raise PackageError(f"extra file(s) {taken[:5]} would be overwritten by the model card",
                           package=manifest.name, fix="Rename those extra files, or pass card=False.")
    card = build_card(manifest, files.__getitem__, package=manifest.name,
                      signature="Not signed when the card was written; a signature added later "
                                "covers this card, as the manifest lists its checksums.")
    return {f"{CARD_DIR}/{name}": data for name, data in card.files().items()}


@_unrelated_to_the_caller
def pack(model_file: PathLike, dest: PathLike, *, name: str | None = None, version: str = "0.0.0",
         description: str = "", metadata: Mapping[str, Any] | None = None,
         sample: InputData | None = None, task: str | None = None, classes: Sequence[Any] | None = None,
         extra: Mapping[str, PathLike] | Sequence[PathLike] | None = None,
         session: Mapping[str, Any] | None = None, card: bool = False,
         compile: str = "auto") -> Manifest:
    """Wrap an ONNX or PMML file made elsewhere into a package at ``dest``.

    The manifest is filled from the model file (inputs, outputs, dtypes,
    symbolic dimensions, opsets, producer; for PMML the data dictionary) and from
    the arguments. An ONNX graph is a classifier when it holds a classifier operator
    (``TreeEnsembleClassifier``, ``LinearClassifier``, ``SVMClassifier``, ``ZipMap``) or,
    built from plain operators, when its two outputs are a label that is the ArgMax of
    a float matrix beside it (the classes then come from the table the label is looked
    up in); ``task=`` and ``classes=`` say it otherwise. ``runtime.requires`` names the
    oldest onnxruntime that reads the file's IR version and opsets. With ``sample``,
    the model is run on it and inputs and outputs are stored in ``samples/`` so
    :func:`modelpack.verify` can re-check them on another machine. ``session`` stores
    ONNX Runtime settings every loader starts from (``intra_op_num_threads``,
    ``graph_optimization_level``...; docs/devices.md).
    ``dest`` ending in ``.mpk`` gives an archive, else a folder. ``card=True``
    writes a model card (README.md, card.html) into the package's ``extra/card/``.

    A PMML document is also compiled to ONNX (``compile="auto"``, the default): the
    package keeps both, and the compiled model runs by default where it agrees with
    the PMML evaluator on the sample and on probe rows; ``compile="onnx"`` makes
    that a requirement (an error naming the element that stops it), ``"never"``
    keeps the evaluator only (docs/pmml.md).

    Example
    -------
    >>> import modelpack
    >>> modelpack.pack("model.onnx", "churn.mpk", name="churn", version="1.0.0",
    ...                metadata={"auc": 0.91}, sample=X[:100])   # doctest: +SKIP
    <Manifest churn 1.0.0 classification onnx: 1 input(s), 2 output(s)>
    """
    fmt, data, external, desc = read_model_file(model_file)
    manifest = _with_environment(_with_session(build_manifest(
        desc, name=name or Path(model_file).stem, version=version, description=description, metadata=metadata,
        task=task, classes=classes), session))
    if fmt == "onnx" and sample is None:  # a package this machine's runtime cannot open is not written;
        # with a sample, the session that runs it refuses the same versions in the same words
        from ._runtime.onnx import check_versions

        check_versions(manifest.model.ir_version, manifest.model.opsets, str(model_file))
    files = {manifest.model.file: data, **external}
    manifest, files = with_compiled(manifest, files, compile=compile, sample=sample)
    return write_with_samples(dest, manifest, files, sample=sample, extra=extra_files(extra), card=card)


def _convert(model: Any, sample: Any, format: str, options: dict[str, Any]) -> Conversion:
    if format not in FORMATS:
        close = difflib.get_close_matches(str(format).lower(), FORMATS, n=1, cutoff=0.5)
        raise ConversionError(f"format {format!r} is not one of {', '.join(FORMATS)}",
                              fix=f"Pass format={close[0]!r}." if close else
                              "Pass format='onnx' (the default) or format='pmml'.")
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


@_unrelated_to_the_caller
def export(model: Any, dest: PathLike, *, sample: InputData, format: str = "onnx", name: str | None = None,
           version: str = "0.0.0", description: str = "", metadata: Mapping[str, Any] | None = None,
           tolerance: float | Mapping[str, float] | None = None, strict: bool = True,
           dtype: str | None = None, options: Mapping[str, Any] | None = None,
           extra: Mapping[str, PathLike] | Sequence[PathLike] | None = None,
           session: Mapping[str, Any] | None = None, card: bool = False,
           compile: str = "auto") -> Manifest:
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
    session:
        ONNX Runtime settings stored in the package, which every loader starts from
        (``{"intra_op_num_threads": 1}``...; see docs/devices.md for what a package may set).
    card:
        Also write a model card (README.md with Hugging Face front matter, card.html and,
        with matplotlib, a plot of per-row differences) into the package's ``extra/card/``,
        listed and checksummed like any extra file.
    compile:
        With ``format="pmml"``: ``"auto"`` also compiles the document to ONNX and runs
        that by default where it agrees with the PMML evaluator; ``"onnx"`` requires it;
        ``"never"`` keeps the evaluator only (see :func:`pack`).

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
    manifest = _with_environment(_with_session(manifest, session))
    model_files = {file: conv.model, **conv.external_data}
    manifest, model_files = with_compiled(manifest, model_files, compile=compile, sample=sample)
    if conv.external_data:
        manifest = manifest.replace(model=dataclasses.replace(
            manifest.model, external_data=tuple(sorted(conv.external_data))))
    exported = load_memory(manifest, model_files)
    try:
        fidelity = measure(exported, sample, conv.reference, tolerance=tolerance, dtype=conv.dtype)
        if not fidelity.passed:
            _refuse_or_warn(manifest, fidelity, strict)
        return write_with_samples(dest, manifest.replace(fidelity=fidelity), model_files, sample=sample,
                                  reference=conv.reference, extra=extra_files(extra), model=exported, card=card)
    finally:
        exported.close()


def environment() -> dict[str, str]:
    """Where a package is written: python, platform, and the versions of the libraries that made it.

    Example
    -------
    >>> {"python", "platform", "numpy"} <= set(environment())
    True
    """
    import platform
    import sys

    found = {"python": platform.python_version(), "platform": f"{platform.system()}-{platform.machine()}"}
    for name in ("numpy", "onnx", "onnxruntime", "skl2onnx", "onnxmltools", "tf2onnx", "onnxscript"):
        module = sys.modules.get(name)  # what this export used is imported already; nothing more is
        if module is not None and isinstance(getattr(module, "__version__", None), str):
            found[name] = module.__version__
    return found


def _with_environment(manifest: Manifest) -> Manifest:
    return manifest.replace(source=dataclasses.replace(manifest.source, environment=environment()))


def _with_session(manifest: Manifest, session: Mapping[str, Any] | None) -> Manifest:
    if session is None:
        return manifest
    from ._runtime.settings import storable

    return manifest.replace(runtime=dataclasses.replace(manifest.runtime, session=storable(session)))


def _default_name(model: Any) -> str:
    if isinstance(model, (str, os.PathLike)):  # a saved model folder
        return Path(model).name
    return type(model).__name__.lower()


def _refuse_or_warn(manifest: Manifest, fidelity: Fidelity, strict: bool) -> None:
    message = f"the exported model differs from the source on the sample: {summary(fidelity)}"
    fix = ("Export with dtype='float64' if the converter supports it, pass a larger tolerance=, or "
           "strict=False to write the package anyway with these figures recorded.")
    if strict:
        raise FidelityError(message, package=manifest.name, fix=fix)
    warnings.warn(f"{manifest.name}: {message}", RuntimeWarning, stacklevel=3)
