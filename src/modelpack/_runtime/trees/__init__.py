"""Tree ensembles on modelpack's tree engine (docs/trees.md).

split.py cuts the graph around its ensemble, forest.py reads the trees into arrays
(opset5.py rewrites the opset-5 operator for it first), layouts.py arranges them for
kernels.py and engine.py, which predict them on the CPU, tensor_form.py writes them as
standard operators for a device, backend.py puts either in front of ONNX Runtime.
"""

from __future__ import annotations

from typing import Any

#: ``Model.engine_reason`` of a model that holds no tree ensemble.
NO_TREES = "no tree ensemble in the graph"
#: ``Model.engine`` when the tree engine (or its tensor form, on a device) runs the ensemble.
ENGINE_NAME = "modelpack-trees"
#: The values of ``modelpack.load(engine=...)``.
ENGINES = ("auto", "onnxruntime", ENGINE_NAME)
#: Nodes a forest may gain when nodes shared by several splits are copied (besides 4x its own).
MAX_UNFOLDED = 1 << 20


class Unsupported(ValueError):
    """The node holds something the engine does not reproduce; the message says what."""


def check_engine(engine: str, package: str) -> None:
    """A RuntimeBackendError naming the choices, for an engine that is not one of them."""
    if engine not in ENGINES:
        from ...errors import RuntimeBackendError

        raise RuntimeBackendError(f"unknown engine {engine!r}", package=package,
                                  fix=f"Use one of {', '.join(map(repr, ENGINES))}.")


def forecast_engine(model: bytes) -> dict[str, str] | None:
    """Which engine ``engine="auto"`` would give a model's tree ensemble on the CPU, and why.

    Read from the node's attributes only (no runtime, no compiler): ``{"engine", "reason"}``,
    None for a model without trees. At load the engine is also checked against ONNX
    Runtime on a probe batch, which may still leave the ensemble to ONNX Runtime.

    Example
    -------
    >>> forecast_engine(open("xgb.onnx", "rb").read())   # doctest: +SKIP
    {'engine': 'modelpack-trees', 'reason': '200 trees, depth 6, 1 target, complete layout'}
    """
    import onnx

    from .engine import choose_layout
    from .forest import Unsupported, attributes_of, describe, read_forest
    from .split import tree_nodes

    try:
        graph = onnx.load_from_string(model).graph
    except Exception:  # noqa: BLE001 - an unreadable model has no forecast; the load says why
        return None
    nodes = tree_nodes(graph)
    if not nodes:
        return None
    if len(nodes) > 1:
        return _onnxruntime(f"{len(nodes)} tree ensemble operators (one is supported)")
    try:
        forest = read_forest(nodes[0].op_type, attributes_of(nodes[0]))
    except Unsupported as why:
        return _onnxruntime(str(why))
    try:
        import numba  # noqa: F401
    except ImportError:
        return _onnxruntime("numba is not installed here (pip install 'modelpack[trees]')")
    return {"engine": ENGINE_NAME, "reason": describe(forest, choose_layout(forest))}


def _onnxruntime(reason: str) -> dict[str, Any]:
    return {"engine": "onnxruntime", "reason": reason}
