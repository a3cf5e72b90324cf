"""Tracing the target into one serving ``tf.function`` and converting it with tf2onnx.

The serving function takes the inputs positionally (their ``TensorSpec`` names become
the ONNX input names), flattens the model's outputs, adds the softmax a classifier
asks for, and returns a dict whose keys become the ONNX output names. The reference
outputs are computed by that same function, so the exported graph and the reference
cannot drift apart.

tf2onnx keeps going when it meets an operator it cannot translate and leaves the
TensorFlow node in the graph; :func:`unsupported_ops` finds such nodes so the export
fails here, naming them, rather than at load time.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from modelpack.plugin import ConversionError, InputError, OutputPlan

from ._targets import Target, sample_arrays

__all__ = ["convert_function", "feeds_for", "flatten", "serving_function", "unsupported_ops"]

logger = logging.getLogger("modelpack_keras")


def feeds_for(target: Target, sample: Any) -> list[np.ndarray]:
    """The sample as one array per input spec, cast to the spec's dtype."""
    arrays, keys = sample_arrays(sample)
    if keys is not None:
        missing = [n for n in target.names if n not in keys]
        if missing:
            raise InputError(f"the sample lacks input(s) {missing}", input=missing[0],
                             expected=f"keys {list(target.names)}", got=f"{keys}",
                             fix="Key the sample by the model's input names.")
        arrays = [arrays[keys.index(n)] for n in target.names]
    elif len(arrays) != len(target.specs):
        raise InputError(f"the model takes {len(target.specs)} input(s) {list(target.names)}",
                         expected=f"{len(target.specs)} array(s)", got=f"{len(arrays)}",
                         fix="Pass one array per input, as a tuple or a dict keyed by input name.")
    return [_cast(a, s) for a, s in zip(arrays, target.specs, strict=True)]


def _cast(arr: np.ndarray, spec: Any) -> np.ndarray:
    dtype = np.dtype(spec.dtype.as_numpy_dtype)
    if dtype.kind in "iu" and arr.dtype.kind == "f":
        raise InputError("holds floats where the model takes integers", input=spec.name,
                         expected=str(dtype), got=f"{arr.dtype} array",
                         fix=f"Pass integer ids, e.g. X.astype({dtype.name!r}).")
    return arr.astype(dtype, copy=False)


def flatten(out: Any, what: str) -> tuple[list[Any], list[str] | None]:
    """The outputs as a list of tensors, with the keys of a dict output."""
    import tensorflow as tf

    if isinstance(out, Mapping):
        keys = [str(k) for k in out]
        values = list(out.values())
    else:
        keys = None
        values = list(out) if isinstance(out, (tuple, list)) else [out]
    if not values or not all(tf.is_tensor(v) for v in values):
        raise ConversionError(f"the {what} returns {type(out).__name__}, not tensors",
                              fix="Return a tensor, a list of tensors or a dict of tensors.")
    return values, keys


def serving_function(target: Target, plan: OutputPlan, names: Sequence[str], binary: bool) -> Any:
    """The ``tf.function`` that is both exported and run for the reference."""
    import tensorflow as tf

    def serve(*args: Any) -> dict[str, Any]:
        values, _ = flatten(target.call(args), target.kind)
        if plan.classifier:
            values[0] = _probabilities(values[0], plan.logits, binary)
        return {name: tf.identity(v) for name, v in zip(names, values, strict=True)}

    return tf.function(serve, input_signature=list(target.specs), autograph=False)


def _probabilities(scores: Any, logits: bool, binary: bool) -> Any:
    import tensorflow as tf

    if binary:
        positive = tf.sigmoid(scores) if logits else scores
        return tf.concat([1 - positive, positive], axis=1)
    return tf.nn.softmax(scores, axis=-1) if logits else scores


def convert_function(fn: Any, target: Target, names: Sequence[str], *, opset: int | None,
                     extra: Mapping[str, Any]) -> bytes:
    """The serving function as ONNX bytes; refuses graphs with untranslated TensorFlow ops."""
    import tf2onnx

    try:
        proto, _ = tf2onnx.convert.from_function(fn, input_signature=list(target.specs), opset=opset, **extra)
    except Exception as exc:  # tf2onnx raises assorted types; each means the conversion failed
        raise ConversionError(
            f"tf2onnx could not convert the {target.kind}: {type(exc).__name__}: {exc}",
            fix="Check that the model runs on the sample; for an unsupported operator pass "
                "custom_op_handlers through options={'tf2onnx_kwargs': {...}}.") from exc
    missing = unsupported_ops(proto)
    if missing:
        raise ConversionError(
            f"tf2onnx could not translate the {target.kind}'s TensorFlow operator(s) {', '.join(missing)} "
            "to ONNX", fix=f"Rewrite the model without {missing[0]} (compute it outside the model), "
                           "translate it yourself with options={'tf2onnx_kwargs': {'custom_op_handlers': "
                           "{...}}}, or try a newer opset with options={'opset': 18}.")
    _order_outputs(proto, names)
    name_dynamic_dims(proto)
    return proto.SerializeToString()  # type: ignore[no-any-return]


def _order_outputs(proto: Any, names: Sequence[str]) -> None:
    """Outputs in the model's order: TensorFlow returns a dict's entries sorted by key."""
    import copy

    by_name = {o.name: copy.deepcopy(o) for o in proto.graph.output}
    if set(by_name) == set(names):
        del proto.graph.output[:]
        proto.graph.output.extend(by_name[n] for n in names)


def name_dynamic_dims(proto: Any) -> None:
    """Name tf2onnx's ``unk__12`` dimensions: ``N`` for the batch, ``<input>_<axis>`` for others.

    Output dimensions are then re-derived by ONNX shape inference, so an output
    whose first axis follows the inputs' says ``N`` too; what inference cannot
    derive stays unnamed.
    """
    import onnx

    for value in proto.graph.input:
        for axis, dim in enumerate(value.type.tensor_type.shape.dim):
            if dim.dim_param:
                dim.dim_param = "N" if axis == 0 else f"{value.name}_{axis}"
    for value in proto.graph.output:
        for dim in value.type.tensor_type.shape.dim:
            if dim.dim_param.startswith("unk__"):
                dim.ClearField("dim_param")
    del proto.graph.value_info[:]  # their unk__ names would contradict the new ones
    try:
        inferred = onnx.shape_inference.infer_shapes(proto).graph.output
    except (onnx.shape_inference.InferenceError, ValueError, RuntimeError):  # leave them unnamed
        logger.debug("ONNX shape inference failed; output dimensions stay unnamed", exc_info=True)
        return
    for value, known in zip(proto.graph.output, inferred, strict=False):
        dims, found_dims = value.type.tensor_type.shape.dim, known.type.tensor_type.shape.dim
        for dim, found in zip(dims, found_dims, strict=False):  # a rank inference could not see
            if not dim.HasField("dim_value") and found.dim_param:
                dim.dim_param = found.dim_param


def unsupported_ops(proto: Any) -> list[str]:
    """Op types of the standard domains that ONNX does not define (TensorFlow ops left as is)."""
    import onnx

    found: list[str] = []
    for node in _nodes(proto.graph):
        if node.domain in ("", "ai.onnx") and not onnx.defs.has(node.op_type) and node.op_type not in found:
            found.append(node.op_type)
    return found


def _nodes(graph: Any) -> Iterator[Any]:
    import onnx

    for node in graph.node:
        yield node
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                yield from _nodes(attr.g)
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for sub in attr.graphs:
                    yield from _nodes(sub)
