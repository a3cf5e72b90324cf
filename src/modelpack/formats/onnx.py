"""What an ONNX file declares: inputs, outputs, opsets, external data, classes.

The graph is parsed with ``onnx`` (never run). External-data locations are
checked here: a location that is absolute or climbs out of the package folder
is refused, because ONNX readers would otherwise open any file on the machine.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import PurePosixPath
from typing import Any

from ..errors import ConversionError, PackageError, UnsafePackageError
from ..manifest import Dim, ModelInfo, TensorSpec
from . import Description

__all__ = ["check_external_data", "declare_signature", "describe", "onnx_dtype_name", "rename_values"]

CLASSIFIER_OPS = {"TreeEnsembleClassifier", "LinearClassifier", "SVMClassifier", "ZipMap"}
REGRESSOR_OPS = {"TreeEnsembleRegressor", "LinearRegressor", "SVMRegressor"}


def onnx_dtype_name(elem_type: int) -> str:
    """ONNX element type -> the dtype name used in manifests ("float32", "string"...)."""
    import onnx

    if elem_type == onnx.TensorProto.STRING:
        return "string"
    if elem_type == onnx.TensorProto.BFLOAT16:
        return "bfloat16"
    try:
        return str(onnx.helper.tensor_dtype_to_np_dtype(elem_type))
    except (KeyError, ValueError):
        return onnx.TensorProto.DataType.Name(elem_type).lower()


def _type_spec(tp: Any) -> tuple[str, str, tuple[Dim, ...] | None]:
    """(kind, dtype, shape) of an onnx TypeProto."""
    which = tp.WhichOneof("value")
    if which == "tensor_type":
        tt = tp.tensor_type
        shape = None
        if tt.HasField("shape"):
            shape = tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or None)
                          for d in tt.shape.dim)
        return "tensor", onnx_dtype_name(tt.elem_type), shape
    if which == "sequence_type":
        kind, dtype, _ = _type_spec(tp.sequence_type.elem_type)
        return "sequence", dtype if kind == "tensor" else f"{kind}:{dtype}", None
    if which == "map_type":
        mt = tp.map_type
        _, value, _ = _type_spec(mt.value_type)
        return "map", f"{onnx_dtype_name(mt.key_type)}->{value}", None
    if which == "optional_type":
        _, dtype, shape = _type_spec(tp.optional_type.elem_type)
        return "optional", dtype, shape
    return "tensor", "unknown", None


def _spec(value_info: Any) -> TensorSpec:
    kind, dtype, shape = _type_spec(value_info.type)
    return TensorSpec(name=value_info.name, dtype=dtype, shape=shape, kind=kind,
                      description=value_info.doc_string or None)


def _load(data: bytes, name: str) -> Any:
    import onnx
    from google.protobuf.message import DecodeError

    try:
        model = onnx.load_model_from_string(data)
    except (DecodeError, ValueError, RuntimeError) as exc:
        raise PackageError(f"{name} is not a valid ONNX model ({exc})", package=name,
                           fix="Check that the file is an .onnx model, e.g. with onnx.checker.") from exc
    if not model.graph.node and not model.graph.output:
        raise PackageError(f"{name} is not a valid ONNX model (empty graph)", package=name,
                           fix="Check that the file is an .onnx model, e.g. with onnx.checker.")
    return model


def _external_locations(model: Any, name: str) -> tuple[str, ...]:
    import onnx

    locations = []
    for tensor in onnx.external_data_helper._get_all_tensors(model):
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        location = next((e.value for e in tensor.external_data if e.key == "location"), "")
        path = PurePosixPath(location.replace("\\", "/"))
        if not location or path.is_absolute() or ".." in path.parts or ":" in location:
            raise UnsafePackageError(
                f"tensor {tensor.name!r} keeps its data at {location!r}, outside the package",
                package=name, fix="Do not load this model; external data must sit beside the model file.")
        if location not in locations:
            locations.append(location)
    return tuple(locations)


def check_external_data(data: bytes, listed: tuple[str, ...], package: str) -> None:
    """Refuse a model whose tensors read data from files the manifest does not list.

    Runtimes resolve a location against the model's folder, or against the working
    directory when the model is given as bytes: an unlisted location could read any
    file. The byte search is a fast pre-check: a graph with external data always
    holds the key ``location``, so most models are never parsed here.
    """
    if b"location" not in data:
        return
    for location in _external_locations(_load(data, package), package):
        if location not in listed:
            raise UnsafePackageError(
                f"a tensor keeps its data in {location!r}, which the manifest does not list",
                package=package, fix="Do not load this package; ask its author to re-export it.")


def _classes(model: Any) -> tuple[Any, ...] | None:
    for node in model.graph.node:
        if node.op_type not in CLASSIFIER_OPS:
            continue
        for attr in node.attribute:
            if attr.name in ("classlabels_strings", "classlabels_int64s", "classlabels_ints") and (attr.strings or attr.ints):
                if attr.strings:
                    return tuple(s.decode() for s in attr.strings)
                return tuple(int(i) for i in attr.ints)
    return None


def _task(model: Any) -> str | None:
    ops = {node.op_type for node in model.graph.node}
    if ops & CLASSIFIER_OPS:
        return "classification"
    if ops & REGRESSOR_OPS:
        return "regression"
    return None


def assign_roles(outputs: tuple[TensorSpec, ...], task: str | None) -> tuple[TensorSpec, ...]:
    """Give classifier and regressor outputs their role when the graph makes it plain."""
    if any(o.role for o in outputs) or task not in ("classification", "regression"):
        return outputs
    roles: dict[str, str] = {}
    if task == "regression":
        floats = [o for o in outputs if o.kind == "tensor" and o.dtype.startswith("float")]
        if len(floats) == 1:
            roles[floats[0].name] = "value"
    else:
        for o in outputs:
            rank = len(o.shape) if o.shape is not None else None
            if o.kind == "sequence" and "map" in o.dtype and "probabilities" not in roles.values():
                roles[o.name] = "probabilities"
            elif (o.kind == "tensor" and o.dtype.startswith("float") and rank == 2
                  and "probabilities" not in roles.values()):
                roles[o.name] = "probabilities"
            elif (o.kind == "tensor" and rank in (1, None) and not o.dtype.startswith("float")
                  and "label" not in roles.values()):
                roles[o.name] = "label"
    return tuple(o if o.name not in roles else _with_role(o, roles[o.name]) for o in outputs)


def _with_role(spec: TensorSpec, role: str) -> TensorSpec:
    from dataclasses import replace

    return replace(spec, role=role)


def describe(data: bytes, *, name: str) -> Description:
    """Describe an ONNX model file from its bytes."""
    model = _load(data, name)
    initializers = {t.name for t in model.graph.initializer}
    inputs = tuple(_spec(v) for v in model.graph.input if v.name not in initializers)
    task = _task(model)
    outputs = assign_roles(tuple(_spec(v) for v in model.graph.output), task)
    info = ModelInfo(
        format="onnx", file=name, ir_version=int(model.ir_version),
        opsets={(o.domain or "ai.onnx"): int(o.version) for o in model.opset_import},
        producer=model.producer_name or None, producer_version=model.producer_version or None,
        external_data=_external_locations(model, name))
    metadata = {p.key: p.value for p in model.metadata_props}
    return Description(model=info, inputs=inputs, outputs=outputs, task=task,
                       classes=_classes(model), metadata=metadata)


# -- editing, for converters ---------------------------------------------------------------------
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
