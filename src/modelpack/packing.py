"""``pack``: wrap a model file made elsewhere (ONNX or PMML) into a package.

Also holds what :func:`modelpack.export` shares with ``pack``: building the
manifest from a model file's description, running the model in memory on the
sample, and writing the package with its ``samples/``.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import ManifestError, PackageError, PackageNotFoundError
from .formats import Description, describe, format_of
from .manifest import Manifest, Runtime, Samples, Source, TensorSpec, now_utc
from .package import Package, write_package

if TYPE_CHECKING:
    from ._types import InputData, PathLike
    from .model import Model

__all__ = ["build_manifest", "memory_model", "pack", "read_model_file", "write_with_samples"]

MAX_SAMPLE_ROWS = 1_000  # rows kept in samples/ (fidelity is measured on the whole sample)
REQUIRES = {"onnx": ("onnxruntime>=1.17",), "pmml": ("pypmml>=1.5", "java>=8")}


def read_model_file(path: PathLike) -> tuple[str, bytes, dict[str, bytes], Description]:
    """(format, bytes, external data files, description) of a bare model file."""
    p = Path(path)
    if not p.is_file():
        raise PackageNotFoundError(f"no model file at {p}", package=str(p), fix="Check the path.")
    fmt = format_of(p.name)
    if fmt is None:
        raise PackageError(f"{p.name} is neither an .onnx nor a .pmml file", package=str(p),
                           fix="Pass a model file whose name ends in .onnx or .pmml.")
    data = p.read_bytes()
    desc = describe(fmt, data, name=f"model.{fmt}")
    external = {}
    for location in desc.model.external_data:
        source = p.parent / location
        if not source.is_file():
            raise PackageNotFoundError(f"{p.name} keeps tensors in {location}, which is not beside it",
                                       package=str(p), fix=f"Put {location} next to {p.name}.")
        external[location] = source.read_bytes()
    return fmt, data, external, desc


def build_manifest(desc: Description, *, name: str, version: str = "0.0.0", description: str = "",
                   metadata: Mapping[str, Any] | None = None, task: str | None = None,
                   classes: Sequence[Any] | None = None, source: Source | None = None,
                   inputs: tuple[TensorSpec, ...] | None = None,
                   outputs: tuple[TensorSpec, ...] | None = None, **fields: Any) -> Manifest:
    """The manifest of a model described by ``desc``, with the caller's overrides."""
    from . import __version__
    from .formats.onnx import assign_roles

    task = task or desc.task or "other"
    outs = outputs or desc.outputs
    if desc.model.format == "onnx":
        outs = assign_roles(outs, task)
    if source is None:
        source = Source(converter=desc.model.producer, converter_version=desc.model.producer_version)
    try:
        return Manifest(
            name=name, version=version, description=description, created=now_utc(),
            generator=f"modelpack {__version__}", task=task, model=desc.model,
            inputs=inputs or desc.inputs, outputs=outs,
            classes=tuple(_plain(c) for c in classes) if classes is not None else desc.classes,
            source=source, runtime=Runtime(requires=REQUIRES[desc.model.format]),
            metadata=dict(metadata or {}), **fields)
    except (TypeError, ValueError) as exc:
        if isinstance(exc, ManifestError):
            raise
        raise ManifestError(f"cannot build the manifest ({exc})", fix="Check the arguments.") from exc


def _plain(value: Any) -> Any:
    """numpy scalars -> Python scalars, so the manifest is plain JSON."""
    return value.item() if isinstance(value, np.generic) else value


def memory_model(manifest: Manifest, files: Mapping[str, bytes], **load_args: Any) -> Model:
    """A Model over files held in memory: used to check a package before it is written."""
    from .model import Model
    from .runtime import open_backend

    package = Package(path=Path(manifest.name), manifest=manifest, manifest_bytes=b"", _data=dict(files))
    return Model(package, open_backend(package, **load_args), load_args=load_args)


def _npz(arrays: Mapping[str, Any]) -> bytes:
    buffer = io.BytesIO()
    # Strings are stored as fixed-width unicode: object arrays would need pickle to load.
    np.savez_compressed(buffer, **{k: _storable(v) for k, v in arrays.items()})
    return buffer.getvalue()


def _storable(value: Any) -> np.ndarray:
    arr = np.asarray(value)
    if arr.dtype == object:
        arr = arr.astype(str)
    return arr[:MAX_SAMPLE_ROWS] if arr.ndim else arr


def sample_files(model: Model, sample: InputData, reference: Mapping[str, Any] | None) -> tuple[dict[str, bytes], Samples]:
    """samples/ files: the adapted inputs, the model's outputs, and the source's outputs."""
    feeds = model._adapt(sample)
    outputs = model.run(feeds)
    tensors = {k: v for k, v in outputs.items() if isinstance(v, np.ndarray)}
    rows = min(len(next(iter(feeds.values()))) if feeds else 0, MAX_SAMPLE_ROWS)
    files = {"samples/inputs.npz": _npz(feeds), "samples/outputs.npz": _npz(tensors)}
    samples = Samples(rows=rows)
    if reference:
        files["samples/reference.npz"] = _npz(reference)
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
    from .placement import forecast

    placement = forecast(model_files[manifest.model.file])
    return manifest.replace(runtime=replace(manifest.runtime, placement=placement))


def write_with_samples(dest: PathLike, manifest: Manifest, model_files: Mapping[str, bytes], *,
                       sample: InputData | None, reference: Mapping[str, Any] | None = None,
                       extra: Mapping[str, bytes] | None = None, model: Model | None = None) -> Manifest:
    """Run the sample (if any), then write the package atomically."""
    files = dict(model_files)
    extra = dict(extra or {})
    manifest = _with_forecast(manifest.replace(extra=tuple(sorted(extra))), model_files)
    if sample is not None:
        model = model or memory_model(manifest, model_files)
        sample_data, samples = sample_files(model, sample, reference)
        files.update(sample_data)
        manifest = manifest.replace(samples=samples)
    files.update(extra)
    return write_package(dest, manifest, files)


def pack(model_file: PathLike, dest: PathLike, *, name: str | None = None, version: str = "0.0.0",
         description: str = "", metadata: Mapping[str, Any] | None = None,
         sample: InputData | None = None, task: str | None = None, classes: Sequence[Any] | None = None,
         extra: Mapping[str, PathLike] | Sequence[PathLike] | None = None) -> Manifest:
    """Wrap an ONNX or PMML file made elsewhere into a package at ``dest``.

    The manifest is filled from the model file (inputs, outputs, dtypes,
    symbolic dimensions, opsets, producer; for PMML the data dictionary) and from
    the arguments. With ``sample``, the model is run on it and inputs and outputs
    are stored in ``samples/`` so :func:`modelpack.verify` can re-check them on
    another machine. ``dest`` ending in ``.mpk`` gives an archive, else a folder.

    Example
    -------
    >>> import modelpack
    >>> modelpack.pack("model.onnx", "churn.mpk", name="churn", version="1.0.0",
    ...                metadata={"auc": 0.91}, sample=X[:100])   # doctest: +SKIP
    <Manifest churn 1.0.0 classification onnx: 1 input(s), 2 output(s)>
    """
    fmt, data, external, desc = read_model_file(model_file)
    manifest = build_manifest(desc, name=name or Path(model_file).stem, version=version,
                              description=description, metadata=metadata, task=task, classes=classes)
    files = {manifest.model.file: data, **external}
    return write_with_samples(dest, manifest, files, sample=sample, extra=extra_files(extra))


