"""The protocol every runtime backend implements.

A backend runs one model file and knows nothing of tasks, classes or input
adaptation: :class:`modelpack.Model` does that once, above every backend, so the
ONNX and PMML paths cannot drift apart in shapes, names or class order.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

__all__ = ["Backend", "BesideExported", "CodedColumn", "batch_rows"]


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


def batch_rows(feeds: Mapping[str, Any]) -> int:
    """A call's rows: its longest feed's first axis (a string column given coded holds only its
    distinct values, :mod:`.coded`); a scalar counts as one row, no feed as none."""
    rows = 0
    for value in feeds.values():  # (no max() or int() per feed: this is the one-record path too)
        shape = getattr(value, "shape", None)
        n = shape[0] if shape else 1
        if n > rows:
            rows = n
    return int(rows)


class BesideExported:
    """A backend on a rewritten graph (``_inner``), with one on the graph as exported
    (``_exported``, or None) for the calls the rewrite does not pay for.

    Subclasses decide which call goes where (every call to ``_inner`` while ``_exported``
    is None); ``session`` is the exported graph's where there is one, and every other
    attribute the rewritten graph's backend's.
    """

    def __init__(self, inner: Any, exported: Any = None) -> None:
        self._inner = inner
        self._exported = exported

    @property
    def session(self) -> Any:
        """The ONNX Runtime session on the graph as exported, where there is one; else the rewritten graph's."""
        return (self._exported or self._inner).session

    @contextlib.contextmanager
    def every_batch(self) -> Iterator[None]:
        """Run every call on the rewritten graph, and on the inner backend's engine however
        small where it has one: ``verify`` checks what large calls run this way."""
        kept, self._exported = self._exported, None
        try:
            with getattr(self._inner, "every_batch", contextlib.nullcontext)():
                yield
        finally:
            self._exported = kept

    def close(self) -> None:
        self._inner.close()
        if self._exported is not None:
            self._exported.close()

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name in ("_inner", "_exported"):
            raise AttributeError(name)
        return getattr(self._inner, name)

    def __getstate__(self) -> None:
        raise TypeError("a runtime backend cannot be pickled; pickle the Model, which reopens its package")
