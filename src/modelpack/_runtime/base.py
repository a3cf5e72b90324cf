"""The protocol every runtime backend implements.

A backend runs one model file and knows nothing of tasks, classes or input
adaptation: :class:`modelpack.Model` does that once, above every backend, so the
ONNX and PMML paths cannot drift apart in shapes, names or class order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

__all__ = ["Backend", "CodedColumn"]


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


@dataclass(frozen=True)
class CodedColumn:
    """A string input given as its distinct values and each row's position among them.

    ``categories`` has the input's dtype and rank, one entry per distinct value
    (already under the casting policy); ``codes`` is int64, one per row, each a
    valid position in ``categories``. Only a backend that names the input in its
    ``coded_inputs`` is given one (:mod:`.coded`).
    """

    categories: np.ndarray
    codes: np.ndarray
