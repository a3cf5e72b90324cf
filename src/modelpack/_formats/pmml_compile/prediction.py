"""What a compiled model hands to its caller: the prediction and the figures around it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["Prediction"]


@dataclass
class Prediction:
    """One model's result as tensors of the graph.

    ``value`` is a double [N] tensor: the predicted number, or for a classifier the
    index of the predicted class in ``classes``; NaN where there is no prediction.
    ``probabilities`` is a double [N, len(classes)] tensor. ``extras`` builds other
    Output features on demand (``"confidence"``, ``"entityId"``...).
    """

    function: str
    value: str
    classes: tuple[str, ...] | None = None
    probabilities: str | None = None
    extras: dict[str, Callable[[], str]] = field(default_factory=dict)

    @property
    def classification(self) -> bool:
        return self.classes is not None
