"""Make the ONNX graph onnxmltools writes agree with the manifest.

onnxmltools names a regressor's output ``variable`` and leaves batch dimensions
unnamed; the manifest calls them ``value`` and ``N``. Writing the declared names
and shapes into the file keeps the two descriptions of the model identical.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from modelpack.manifest import TensorSpec

__all__ = ["declare"]


def declare(model: Any, inputs: Sequence[TensorSpec], outputs: Mapping[str, TensorSpec]) -> bytes:
    """Rename and reshape the graph's inputs and outputs as declared; return the file bytes.

    ``outputs`` maps each output name onnxmltools chose to its spec.
    """
    graph = model.graph
    for value, spec in zip(graph.input, inputs):
        _set_shape(value, spec.shape)
    for value in graph.output:
        spec = outputs[value.name]
        if spec.name != value.name:
            _rename(graph, value.name, spec.name)
        _set_shape(value, spec.shape)
    return bytes(model.SerializeToString())


def _rename(graph: Any, old: str, new: str) -> None:
    for node in graph.node:
        node.output[:] = [new if name == old else name for name in node.output]
        node.input[:] = [new if name == old else name for name in node.input]
    for value in graph.output:
        if value.name == old:
            value.name = new


def _set_shape(value: Any, shape: tuple[Any, ...] | None) -> None:
    if shape is None:
        return
    dims = value.type.tensor_type.shape.dim
    del dims[:]
    for size in shape:
        dim = dims.add()
        if isinstance(size, int):
            dim.dim_value = size
        elif isinstance(size, str):
            dim.dim_param = size
