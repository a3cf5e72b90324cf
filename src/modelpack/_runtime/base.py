"""The protocol every runtime backend implements.

A backend runs one model file and knows nothing of tasks, classes or input
adaptation: :class:`modelpack.Model` does that once, above every backend, so the
ONNX and PMML paths cannot drift apart in shapes, names or class order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

__all__ = ["Backend"]


@runtime_checkable
class Backend(Protocol):
    """A loaded model that maps named input arrays to named outputs."""

    #: Names of the execution providers really running the model, best first.
    providers: list[str]

    def run(self, feeds: Mapping[str, np.ndarray], outputs: Sequence[str] | None = None) -> list[Any]:
        """Run the model; return the requested outputs (all, in model order, if None).

        Errors of the underlying runtime are raised as :class:`~modelpack.ModelpackError`
        subclasses, chained to the original.
        """
        ...

    def close(self) -> None:
        """Release the session, its memory and any helper process. Idempotent."""
        ...
