"""Reading model files: what an ONNX or PMML file says about itself.

Each format module exposes ``describe(data: bytes, *, name: str) -> Description``.
It parses the file safely (an ONNX graph with ``onnx``, a PMML document with a
parser that refuses DOCTYPEs and entities) and reports the inputs, outputs, task
and classes, so :func:`modelpack.pack` can fill the manifest. Nothing here runs a
model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import import_module
from typing import Any

from ..manifest import ModelInfo, TensorSpec

__all__ = ["Description", "describe", "format_of"]

SUFFIXES = {".onnx": "onnx", ".pmml": "pmml", ".xml": "pmml"}


@dataclass(frozen=True)
class Description:
    """What a model file declares; ``task`` and ``classes`` may be None when it is silent."""

    model: ModelInfo
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    task: str | None = None
    classes: tuple[Any, ...] | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


def format_of(filename: str) -> str | None:
    """The model format a file name implies, or None."""
    lowered = filename.lower()
    return next((fmt for suffix, fmt in SUFFIXES.items() if lowered.endswith(suffix)), None)


def describe(fmt: str, data: bytes, *, name: str) -> Description:
    """Describe the model file ``data`` of format ``fmt`` (``"onnx"`` or ``"pmml"``)."""
    module = import_module(f".{fmt}", __name__)
    return module.describe(data, name=name)  # type: ignore[no-any-return]
