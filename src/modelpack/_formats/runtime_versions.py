"""The oldest onnxruntime release that reads a model's IR version and opsets.

The table is data, copied by hand from ONNX Runtime's published compatibility table
("ONNX Runtime compatibility", section "ONNX opset support",
https://onnxruntime.ai/docs/reference/compatibility.html, source file
docs/reference/compatibility.md of microsoft/onnxruntime; its rows end at 1.20). Each
row is (release, newest ai.onnx opset, newest ai.onnx.ml opset, newest IR version) that
release implements; every release also reads every older version back to opset 7.

A model newer than the table's last row gets no guessed figure: the requirement is
then the installed onnxruntime when that one reads the model (``pack`` and ``export``
have just checked it), else "newer than the last release in the table".
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

__all__ = ["ORT_RELEASES", "oldest_release", "onnxruntime_requirement"]

#: (release, ai.onnx opset, ai.onnx.ml opset, IR version), oldest first.
ORT_RELEASES: tuple[tuple[str, int, int, int], ...] = (
    ("0.1", 8, 1, 3), ("0.2", 8, 1, 3), ("0.3", 9, 1, 3), ("0.4", 10, 1, 5), ("0.5", 10, 1, 5),
    ("1.0", 11, 2, 6), ("1.1", 11, 2, 6), ("1.2", 11, 2, 6), ("1.3", 12, 2, 7), ("1.4", 12, 2, 7),
    ("1.5", 12, 2, 7), ("1.6", 13, 2, 7), ("1.7", 13, 2, 7), ("1.8", 14, 2, 7), ("1.9", 15, 2, 8),
    ("1.10", 15, 2, 8), ("1.11", 16, 2, 8), ("1.12", 17, 3, 8), ("1.13", 17, 3, 8), ("1.14", 18, 3, 8),
    ("1.15", 19, 3, 8), ("1.16", 19, 3, 9), ("1.17", 20, 4, 9), ("1.18", 21, 4, 10), ("1.19", 21, 4, 10),
    ("1.20", 21, 4, 10),
)


def oldest_release(ir_version: int | None, opsets: Mapping[str, int]) -> str | None:
    """The oldest release in the table that reads these versions, or None past the table's end.

    Only the default domain (``ai.onnx`` or ``""``) and ``ai.onnx.ml`` are in the
    table; other domains (``com.microsoft``...) do not move the minimum.

    Example
    -------
    >>> oldest_release(8, {"ai.onnx": 17, "ai.onnx.ml": 3})
    '1.12'
    >>> oldest_release(11, {"ai.onnx": 23}) is None
    True
    """
    opset = max((v for d, v in opsets.items() if d in ("", "ai.onnx")), default=0)
    ml = opsets.get("ai.onnx.ml", 0)
    ir = ir_version or 0
    return next((release for release, max_opset, max_ml, max_ir in ORT_RELEASES
                 if opset <= max_opset and ml <= max_ml and ir <= max_ir), None)


def onnxruntime_requirement(ir_version: int | None, opsets: Mapping[str, int], *,
                            installed: Callable[[], str | None] = lambda: None) -> str:
    """The requirement string for the oldest onnxruntime that reads these versions.

    ``installed`` gives an onnxruntime version known to read the model; it is asked
    only past the table's end.

    Example
    -------
    >>> onnxruntime_requirement(10, {"ai.onnx": 21, "ai.onnx.ml": 1})
    'onnxruntime>=1.18'
    >>> onnxruntime_requirement(11, {"ai.onnx": 23}, installed=lambda: "1.22.1")
    'onnxruntime>=1.22'
    >>> onnxruntime_requirement(11, {"ai.onnx": 23})
    'onnxruntime>1.20'
    """
    release = oldest_release(ir_version, opsets)
    if release is not None:
        return f"onnxruntime>={release}"
    known = installed()
    if known:
        return f"onnxruntime>={'.'.join(known.split('.')[:2])}"
    return f"onnxruntime>{ORT_RELEASES[-1][0]}"
