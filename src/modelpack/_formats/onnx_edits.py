"""Edits of ONNX graphs, for converter plugins: renaming values and declaring the signature.

Converters (skl2onnx, onnxmltools, torch.onnx, tf2onnx) name inputs and outputs
in their own ways; these edits give a graph the names, dtypes and shapes the
manifest promises, without touching what it computes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ..errors import ConversionError
from ..manifest import Dim, TensorSpec

__all__ = ["declare_signature", "rename_values"]


def rename_values(graph: Any, names: Mapping[str, str], *, graph_outputs: bool = True) -> None:
    """Rename values (``names``: old -> new) everywhere an ONNX graph refers to them.

    Node inputs and outputs, graph inputs and the bodies of control-flow nodes
    follow the new names; ``value_info`` (optional type hints) is left as it is.
    With ``graph_outputs=False`` the graph's outputs keep their names: the way to
    put a new node in front of an output is to rename what produces it, then add
    the node that writes the output.

    Parameters
    ----------
    graph:
        An ``onnx.GraphProto``, edited in place.
    names:
        Old name -> new name.
    graph_outputs:
        Whether the graph's own outputs are renamed too.

    Example
    -------
    >>> from onnx import TensorProto, helper
    >>> graph = helper.make_graph(
    ...     [helper.make_node("Relu", ["x"], ["variable"])], "g",
    ...     [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 3])],
    ...     [helper.make_tensor_value_info("variable", TensorProto.FLOAT, [None, 3])])
    >>> rename_values(graph, {"variable": "value"})
    >>> list(graph.node[0].output), [o.name for o in graph.output]
    (['value'], ['value'])
    """
    if not names:
        return
    for value in [*graph.input, *(graph.output if graph_outputs else ())]:
        value.name = names.get(value.name, value.name)
    for node in graph.node:
        node.input[:] = [names.get(n, n) for n in node.input]
        node.output[:] = [names.get(n, n) for n in node.output]
        for attr in node.attribute:  # subgraphs may read the outer graph's values
            for body in (*([attr.g] if attr.HasField("g") else []), *attr.graphs):
                rename_values(body, names)


def declare_signature(model: Any, specs: Iterable[TensorSpec], *,
                      renames: Mapping[str, str] | None = None) -> bytes:
    """Give a converted model's inputs and outputs the declared names and shapes; return its bytes.

    Converters call this so that the model file and the manifest describe the
    same signature: ``renames`` (old -> new, see :func:`rename_values`) is applied
    first, then each tensor input and output takes the shape of its spec (ints
    are fixed sizes, strings named dimensions such as ``"N"``, ``None`` unknown
    ones; a spec whose shape is ``None`` leaves the graph's as it is).

    Parameters
    ----------
    model:
        An ``onnx.ModelProto``, edited in place.
    specs:
        One spec for every input (initializers aside) and output, by its new name.
    renames:
        Old name -> new name for the inputs and outputs the converter renames.

    Returns
    -------
    bytes
        The serialized model.

    Raises
    ------
    ConversionError
        When ``renames`` or ``specs`` names a value the graph lacks, or the
        graph has an input or output no spec declares.

    Example
    -------
    >>> from onnx import TensorProto, helper
    >>> from modelpack.manifest import TensorSpec
    >>> model = helper.make_model(helper.make_graph(
    ...     [helper.make_node("Relu", ["X"], ["variable"])], "g",
    ...     [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, 3])],
    ...     [helper.make_tensor_value_info("variable", TensorProto.FLOAT, [None, 3])]))
    >>> specs = [TensorSpec("X", "float32", ("N", 3)), TensorSpec("value", "float32", ("N", 3))]
    >>> data = declare_signature(model, specs, renames={"variable": "value"})
    >>> [d.dim_param or d.dim_value for d in model.graph.output[0].type.tensor_type.shape.dim]
    ['N', 3]
    """
    graph = model.graph
    shapes = {s.name: s.shape for s in specs}
    _check_signature(graph, shapes, renames or {})
    rename_values(graph, renames or {})
    for value in [*graph.input, *graph.output]:
        shape = shapes.get(value.name)
        if shape is not None and value.type.HasField("tensor_type"):
            _set_shape(value.type.tensor_type.shape, shape)
    return bytes(model.SerializeToString())


def _check_signature(graph: Any, shapes: Mapping[str, Any], renames: Mapping[str, str]) -> None:
    initializers = {t.name for t in graph.initializer}
    known = {n for node in graph.node for n in (*node.input, *node.output)}
    known |= {v.name for v in (*graph.input, *graph.output)}
    missing = sorted(set(renames) - known)
    signature = [renames.get(v.name, v.name) for v in (*graph.input, *graph.output)
                 if v.name not in initializers]
    undeclared = [n for n in signature if n not in shapes]
    absent = sorted(set(shapes) - set(signature))
    if missing or undeclared or absent:
        raise ConversionError(
            f"the converted graph does not have the declared signature (renamed but absent: {missing}, "
            f"undeclared: {undeclared}, declared but absent: {absent}); the graph has {signature}",
            fix="Report this model to the converter's maintainers: the conversion library changed "
                "the names it writes.")


def _set_shape(shape: Any, dims: tuple[Dim, ...]) -> None:
    del shape.dim[:]
    for size in dims:
        dim = shape.dim.add()
        if isinstance(size, int):
            dim.dim_value = size
        elif isinstance(size, str):
            dim.dim_param = size
