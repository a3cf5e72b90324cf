"""What an ONNX file declares: inputs, outputs, opsets, external data, classes.

The graph is parsed with ``onnx`` (never run). External-data locations are
checked here: a location that is absolute or climbs out of the package folder
is refused, because ONNX readers would otherwise open any file on the machine.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import PurePosixPath
from typing import Any

from ..errors import PackageError, UnsafePackageError
from ..manifest import Dim, ModelInfo, TensorSpec
from .description import Description

__all__ = ["all_tensors", "assign_roles", "check_external_data", "describe", "onnx_dtype_name"]

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


def _graph_tensors(graph: Any) -> Iterator[Any]:
    yield from graph.initializer
    for sparse in graph.sparse_initializer:
        yield sparse.values
        yield sparse.indices
    yield from _node_tensors(graph.node)


def _node_tensors(nodes: Any) -> Iterator[Any]:
    for node in nodes:
        for attribute in node.attribute:
            if attribute.HasField("t"):
                yield attribute.t
            yield from attribute.tensors
            for sparse in (*((attribute.sparse_tensor,) if attribute.HasField("sparse_tensor") else ()),
                           *attribute.sparse_tensors):
                yield sparse.values
                yield sparse.indices
            if attribute.HasField("g"):
                yield from _graph_tensors(attribute.g)
            for graph in attribute.graphs:
                yield from _graph_tensors(graph)


def all_tensors(model: Any) -> Iterator[Any]:
    """Every TensorProto a runtime could read from ``model``, wherever it sits.

    ``onnx.external_data_helper`` walks dense initializers and tensor attributes only;
    a runtime also reads sparse initializers (values and indices), sparse attributes
    (``Constant``'s ``sparse_value``), the graphs inside control-flow nodes, functions and
    training graphs, and each of them may keep its bytes in a file.
    """
    yield from _graph_tensors(model.graph)
    for function in model.functions:
        yield from _node_tensors(function.node)
    for info in model.training_info:
        yield from _graph_tensors(info.initialization)
        yield from _graph_tensors(info.algorithm)


def _external_locations(model: Any, name: str) -> tuple[str, ...]:
    import onnx

    locations = []
    for tensor in all_tensors(model):
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


def _classes(model: Any, outputs: tuple[TensorSpec, ...]) -> tuple[Any, ...] | None:
    found = _classes_of_operators(model)
    pair = _label_and_probabilities(outputs)
    if found is not None or pair is None:
        return found
    label, probabilities = pair
    table, from_argmax = _label_source(model, label.name)
    classes = _constant_values(table) if table is not None and from_argmax else None
    columns = (probabilities.shape or (None, None))[1]
    if classes is None or (isinstance(columns, int) and columns != len(classes)):
        return None
    return classes


def _classes_of_operators(model: Any) -> tuple[Any, ...] | None:
    for node in model.graph.node:
        if node.op_type not in CLASSIFIER_OPS:
            continue
        for attr in node.attribute:
            if attr.name in ("classlabels_strings", "classlabels_int64s", "classlabels_ints") and (attr.strings or attr.ints):
                if attr.strings:
                    return tuple(s.decode() for s in attr.strings)
                return tuple(int(i) for i in attr.ints)
    return None


def _task(model: Any, outputs: tuple[TensorSpec, ...]) -> str | None:
    ops = {node.op_type for node in model.graph.node}
    if ops & CLASSIFIER_OPS or _classifier_outputs(model, outputs):
        return "classification"
    if ops & REGRESSOR_OPS:
        return "regression"
    return None


def _classifier_outputs(model: Any, outputs: tuple[TensorSpec, ...]) -> bool:
    """A classifier by its outputs, whatever operators compute its probabilities.

    A ZipMap-shaped output (a sequence of maps); or exactly two outputs, labels (integer
    or string, one per row) and a float matrix over the same rows, where the labels are
    the ArgMax of the row (perhaps looked up in a table of classes). This is what
    converters emit when they build a classifier from plain operators (skl2onnx's float64
    pipelines: MatMul, Softmax or Sigmoid, ArgMax). The ArgMax tells a classifier from
    a clusterer, whose labels are the ArgMin of a distance matrix of the same shape; a
    third output (a detector's boxes and scores...) means something else.
    """
    if any(o.kind == "sequence" and o.dtype.startswith("map:") for o in outputs):
        return True
    pair = _label_and_probabilities(outputs)
    return pair is not None and _label_source(model, pair[0].name)[1]


def _label_and_probabilities(outputs: tuple[TensorSpec, ...]) -> tuple[TensorSpec, TensorSpec] | None:
    """(labels, probabilities) when the outputs are exactly these two, else None."""
    if len(outputs) != 2 or any(o.kind != "tensor" or o.shape is None for o in outputs):
        return None
    labels, probabilities = sorted(outputs, key=lambda o: len(o.shape or ()))
    rows = (labels.shape or (None,))[0] == (probabilities.shape or (None,))[0]
    if (len(labels.shape or ()) == 1 and len(probabilities.shape or ()) == 2 and rows
            and (labels.dtype == "string" or labels.dtype.startswith(("int", "uint")))
            and probabilities.dtype.startswith("float")):
        return labels, probabilities
    return None


#: Operators that pass a label through unchanged on its way to the graph's output.
_PASS_THROUGH = {"Identity", "Cast", "Reshape", "Squeeze", "Flatten", "Unsqueeze"}
#: At most this many classes are read from a graph's constants.
_MAX_CLASSES = 100_000


def _label_source(model: Any, label: str) -> tuple[Any, bool]:
    """(the constant table of classes the label is looked up in or None, whether it comes from an ArgMax).

    Walks back from the label output through operators that pass it on unchanged and
    through a lookup (ArrayFeatureExtractor or Gather of a constant, by its indices).
    """
    producers = {out: node for node in model.graph.node for out in node.output}
    constants = {t.name: t for t in model.graph.initializer}
    name, seen, table = label, set(), None
    while name in producers and name not in seen:
        seen.add(name)
        node = producers[name]
        if node.op_type == "ArgMax":
            return table, True
        if (table is None and node.op_type in ("ArrayFeatureExtractor", "Gather") and len(node.input) == 2
                and node.input[0] in constants):
            table, name = constants[node.input[0]], node.input[1]
        elif node.op_type in _PASS_THROUGH and node.input:
            name = node.input[0]
        else:
            break
    return table, False


def _constant_values(table: Any) -> tuple[Any, ...] | None:
    """The values of a 1-D constant of at most :data:`_MAX_CLASSES`, or None."""
    import onnx
    from onnx import numpy_helper

    if (table.data_location == onnx.TensorProto.EXTERNAL or len(table.dims) != 1
            or not 0 < table.dims[0] <= _MAX_CLASSES):
        return None
    try:  # the graph is the package author's: a constant may not hold what its header says
        values = numpy_helper.to_array(table).tolist()
        return tuple(v.decode() if isinstance(v, bytes) else v for v in values)
    except (ValueError, TypeError, UnicodeDecodeError):
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
    declared = tuple(_spec(v) for v in model.graph.output)
    task = _task(model, declared)
    outputs = assign_roles(declared, task)
    info = ModelInfo(
        format="onnx", file=name, ir_version=int(model.ir_version),
        opsets={(o.domain or "ai.onnx"): int(o.version) for o in model.opset_import},
        producer=model.producer_name or None, producer_version=model.producer_version or None,
        external_data=_external_locations(model, name))
    metadata = {p.key: p.value for p in model.metadata_props}
    return Description(model=info, inputs=inputs, outputs=outputs, task=task,
                       classes=_classes(model, declared), metadata=metadata)
