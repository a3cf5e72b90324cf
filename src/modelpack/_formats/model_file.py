"""A bare model file, and the manifest that what it declares implies."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from importlib import import_module
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .._version import __version__
from ..errors import ManifestError, PackageError, PackageNotFoundError
from ..manifest import Manifest, ModelInfo, Runtime, Source, TensorSpec, now_utc
from .description import Description
from .runtime_versions import onnxruntime_requirement

if TYPE_CHECKING:
    from .._types import PathLike

__all__ = ["REQUIRES", "build_manifest", "describe", "format_of", "read_model_file", "requires"]

SUFFIXES = {".onnx": "onnx", ".pmml": "pmml", ".xml": "pmml"}
#: What a PMML package needs; an ONNX package's onnxruntime follows its versions (:func:`requires`).
REQUIRES = {"pmml": ("pypmml>=1.5", "java>=8")}


def format_of(filename: str) -> str | None:
    """The model format a file name implies, or None."""
    lowered = filename.lower()
    return next((fmt for suffix, fmt in SUFFIXES.items() if lowered.endswith(suffix)), None)


def describe(fmt: str, data: bytes, *, name: str) -> Description:
    """Describe the model file ``data`` of format ``fmt`` (``"onnx"`` or ``"pmml"``)."""
    module = import_module(f".{fmt}", __package__)
    return module.describe(data, name=name)


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
    from .onnx import assign_roles

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
            source=source, runtime=Runtime(requires=requires(desc.model)),
            metadata=dict(metadata or {}), **fields)
    except (TypeError, ValueError) as exc:
        if isinstance(exc, ManifestError):
            raise
        raise ManifestError(f"cannot build the manifest ({exc})", fix="Check the arguments.") from exc


def requires(model: ModelInfo) -> tuple[str, ...]:
    """The runtime requirements of a model: for ONNX, the oldest onnxruntime reading its versions."""
    if model.format != "onnx":
        return REQUIRES[model.format]
    return (onnxruntime_requirement(model.ir_version, model.opsets or {}, installed=_installed_onnxruntime),)


def _installed_onnxruntime() -> str | None:
    # Asked only past the compatibility table's end; the writer then checks that this
    # runtime reads the model, so its version is a minimum that is known to work.
    try:
        import onnxruntime
    except ImportError:
        return None
    version = getattr(onnxruntime, "__version__", None)
    return version if isinstance(version, str) else None


def _plain(value: Any) -> Any:
    """numpy scalars -> Python scalars, so the manifest is plain JSON."""
    return value.item() if isinstance(value, np.generic) else value
