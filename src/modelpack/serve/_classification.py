"""The classification extension of the Open Inference Protocol: the top classes of a score output.

A requested output with the parameter ``classification: k`` comes back as a BYTES
tensor ``[N, k]`` whose elements are ``"score:index"``, or ``"score:index:label"``
when labels are known, for the ``k`` highest scores of every row.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ._errors import RequestError

__all__ = ["classify", "top_k"]


def top_k(value: Any, output: str) -> int:
    """The ``classification`` parameter of a requested output: how many classes to return."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise RequestError(f"output {output!r} asks for classification {value!r}",
                           fix="Send the number of top classes wanted as a positive integer.")
    return value


def classify(array: np.ndarray, k: int, labels: Sequence[Any] | None) -> np.ndarray:
    """The classification extension: the top ``k`` scores of every row as ``"score:index[:label]"``.

    Example
    -------
    >>> classify(np.array([[0.1, 0.7, 0.2]]), 2, ["a", "b", "c"])
    array([['0.7:1:b', '0.2:2:c']], dtype=object)
    """
    scores = array.reshape(1, -1) if array.ndim < 2 else array.reshape(array.shape[0], -1)
    if scores.dtype.kind not in "iufb":
        raise RequestError(f"classification needs numeric scores, the output holds {scores.dtype}",
                           fix="Ask for classification only on a score or probability output.")
    k = min(k, scores.shape[1])
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    names = list(labels) if labels is not None and len(labels) == scores.shape[1] else None
    out = np.empty(order.shape, dtype=object)
    for r, row in enumerate(order):
        for c, i in enumerate(row):
            text = f"{scores[r, i].item()}:{i}"
            out[r, c] = f"{text}:{names[i]}" if names is not None else text
    return out
