"""Small tools the load-time graph rewrites share (:mod:`.coded`, :mod:`.elementwise`).

A rewrite adds tensors and nodes to a graph it did not write: their names must not
meet any name already there, and the operators it adds need the default domain,
which a graph of ``ai.onnx.ml`` operators alone may not import.
"""

from __future__ import annotations

from typing import Any

__all__ = ["add_default_opset", "default_opset", "has_subgraphs", "names_in", "unique"]


def has_subgraphs(graph: Any) -> bool:
    """Whether a node holds a subgraph (If, Loop, Scan), which may read any tensor by name."""
    import onnx

    graphs = (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)
    return any(a.type in graphs for n in graph.node for a in n.attribute)


def names_in(graph: Any) -> set[str]:
    """Every name a new tensor or node of ``graph`` (one without subgraphs) must not take."""
    return {i.name for i in graph.input} | {o for n in graph.node for o in n.output} | {
        t.name for t in graph.initializer} | {t.values.name for t in graph.sparse_initializer} | {
        n.name for n in graph.node} | {o.name for o in graph.output}


def unique(name: str, taken: set[str]) -> str:
    """``name``, or ``name.2``, ``name.3``... the first not in ``taken``; taken from now on.

    Example
    -------
    >>> taken = {"x", "x.2"}
    >>> unique("x", taken), unique("y", taken)
    ('x.3', 'y')
    """
    candidate, k = name, 1
    while candidate in taken:
        k += 1
        candidate = f"{name}.{k}"
    taken.add(candidate)
    return candidate


def default_opset(model: Any) -> int:
    """The version of the default domain the model imports, or 0 where it imports none."""
    return max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)


def add_default_opset(model: Any) -> int:
    """Import the default domain into a model that has none (an ML-only graph); its version."""
    import onnx

    version = default_opset(model)
    if not version:
        version = 13 if model.ir_version >= 7 else 9
        model.opset_import.append(onnx.helper.make_opsetid("", version))
    return version
