"""pandas DataFrames read without their fixed costs: one numpy block, or the blocks' rows.

These read pandas internals (``_mgr.blocks``) where they look as expected and fall
back to the public API otherwise, so a pandas release that moves them costs speed,
never correctness.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ["frame_columns", "frame_values", "is_dataframe"]


def is_dataframe(data: Any) -> bool:
    cls = type(data)
    return cls.__name__ == "DataFrame" and cls.__module__.startswith("pandas")


def frame_values(df: Any) -> np.ndarray:
    """``df.to_numpy()``, without its fixed cost when the frame is one numpy block.

    ``to_numpy`` costs several microseconds even for one row, more than the whole
    ONNX Runtime call of a small model.
    """
    block = _one_block(df)
    return np.ascontiguousarray(block.T) if block is not None else df.to_numpy()


def frame_columns(df: Any, names: list[Any] | None = None,
                  target: Callable[[str], np.dtype | None] | None = None) -> dict[str, Any]:
    """The frame's columns by name, in order: numpy rows of its blocks, or extension arrays.

    Selecting a Series costs tens of microseconds per column in pandas 3, more than
    a small model's run; the blocks behind the frame hold the same data. A frame
    whose internals look unfamiliar takes the public path. ``names`` is
    ``df.columns.tolist()``, if the caller has it already. ``target`` gives the float
    dtype each column is going to (None: none): a float block whose columns all go to
    one float dtype is cast in one call, not one per column (100k rows of 4 float64
    columns to float32: 50 against 60-120 µs), as casting each would round them.
    """
    names = df.columns.tolist() if names is None else names
    try:
        rows = len(df)
        if len(set(names)) == len(names):
            found: list[Any] = [None] * len(names)
            for block in df._mgr.blocks:
                values, locs = block.values, block.mgr_locs.as_array
                if type(values) is np.ndarray and values.ndim == 2 and len(values) == len(locs):
                    if target is not None and values.dtype.kind == "f" and len(locs) > 1:
                        values = _cast_block(values, [target(str(names[loc])) for loc in locs])
                    for row, loc in enumerate(locs):
                        found[loc] = values[row]
                elif getattr(values, "ndim", 0) == 1 and len(locs) == 1 and hasattr(values, "to_numpy"):
                    found[locs[0]] = values  # an extension array (Arrow strings, nullable ints)
                else:
                    break
            else:
                if all(v is not None and len(v) == rows for v in found):
                    return {str(c): v for c, v in zip(names, found, strict=True)}
    except (AttributeError, TypeError, IndexError):
        pass
    return {str(c): df[c] for c in names}


def _cast_block(values: np.ndarray, targets: list[np.dtype | None]) -> np.ndarray:
    first = targets[0]
    if first is None or first.kind != "f" or first == values.dtype or any(t != first for t in targets):
        return values
    return values.astype(first)


def _one_block(df: Any) -> np.ndarray | None:
    """The frame's data as one ``(columns, rows)`` numpy array, if pandas holds it so.

    A frame of one dtype usually holds its data as one 2-D block whose rows are the
    columns in order. Anything else (several blocks, reordered locations, extension
    arrays, a pandas whose internals moved) gives None, and the public path is taken.
    """
    try:
        blocks = df._mgr.blocks
        if len(blocks) == 1:
            block = blocks[0]
            values, locs = block.values, block.mgr_locs
            if (type(values) is np.ndarray and values.ndim == 2 and locs.is_slice_like
                    and locs.as_slice == slice(0, len(df.columns), 1)):
                return values
    except AttributeError:
        pass
    return None
