"""What a model file declares about itself, whatever its format."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..manifest import ModelInfo, TensorSpec

__all__ = ["Description"]


@dataclass(frozen=True)
class Description:
    """What a model file declares; ``task`` and ``classes`` may be None when it is silent."""

    model: ModelInfo
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    task: str | None = None
    classes: tuple[Any, ...] | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
