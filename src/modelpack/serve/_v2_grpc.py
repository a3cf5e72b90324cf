"""Open Inference Protocol tensors over gRPC: protobuf messages to numpy and back.

Knows the messages of ``_proto/grpc_service.proto`` and numpy, nothing of the
server. An input comes either as typed contents (``fp32_contents``,
``int64_contents``, ...) or as one entry of ``raw_input_contents`` per input, in
input order, holding the little-endian elements (a ``BYTES`` element: a 4-byte
little-endian length, then its bytes); a request uses one form for all its
inputs. The response answers in the form the request used: raw when it sent
raw contents (as tritonclient does), typed otherwise, and raw whenever an
output has no typed field (``FP16``).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..errors import InputError
from ._classification import top_k
from ._errors import RequestError
from ._proto import grpc_service_pb2 as pb
from ._v2 import InferRequest, OutputTensor, check_tensor, datatype_of, tensor_bytes, unpack_strings

__all__ = ["decode_grpc_request", "encode_grpc_response", "parameter_value"]

# The typed field of InferTensorContents for each datatype (FP16 has none: raw only).
_FIELDS = {"BOOL": "bool_contents", "INT8": "int_contents", "INT16": "int_contents", "INT32": "int_contents",
           "INT64": "int64_contents", "UINT8": "uint_contents", "UINT16": "uint_contents",
           "UINT32": "uint_contents", "UINT64": "uint64_contents", "FP32": "fp32_contents",
           "FP64": "fp64_contents", "BYTES": "bytes_contents"}


def parameter_value(param: Any) -> Any:
    """The value of an ``InferParameter`` (whichever of its choices is set), or None."""
    choice = param.WhichOneof("parameter_choice")
    return None if choice is None else getattr(param, choice)


def decode_grpc_request(request: pb.ModelInferRequest) -> InferRequest:
    """The inputs and wanted outputs of a ``ModelInferRequest``, as numpy arrays.

    Example
    -------
    >>> r = pb.ModelInferRequest(inputs=[pb.ModelInferRequest.InferInputTensor(
    ...     name="x", datatype="INT32", shape=[2], contents=pb.InferTensorContents(int_contents=[1, 2]))])
    >>> decode_grpc_request(r).inputs["x"]
    ('INT32', array([1, 2], dtype=int32))
    """
    raw = request.raw_input_contents
    if raw and len(raw) != len(request.inputs):
        raise RequestError(f"{len(raw)} raw_input_contents for {len(request.inputs)} inputs",
                           fix="Send one raw_input_contents entry per input, in input order, or none.")
    inputs: dict[str, tuple[str, np.ndarray]] = {}
    for k, tensor in enumerate(request.inputs):
        if tensor.name in inputs:
            raise RequestError(f"input {tensor.name!r} is given twice", fix="Send each input once.")
        if "shared_memory_region" in tensor.parameters:
            raise RequestError(f"input {tensor.name!r} uses shared memory, which this server does not implement",
                               fix="Send the tensor in the request (contents or raw_input_contents).")
        if raw and tensor.HasField("contents"):
            raise RequestError(f"input {tensor.name!r} has contents in a request with raw_input_contents",
                               fix="Send every input the same way: all raw, or all typed contents.")
        array = _from_raw(tensor, raw[k]) if raw else _from_contents(tensor)
        inputs[tensor.name] = (tensor.datatype, array)
    outputs, classification = _requested(request, raw=bool(raw) or not request.inputs)
    return InferRequest(id=request.id or None, inputs=inputs, outputs=outputs,
                        binary_output=bool(raw) or not request.inputs, classification=classification)


def _requested(request: pb.ModelInferRequest, *, raw: bool) -> tuple[dict[str, bool] | None, dict[str, int]]:
    if not request.outputs:
        return None, {}
    wanted: dict[str, bool] = {}
    classification: dict[str, int] = {}
    for out in request.outputs:
        if "shared_memory_region" in out.parameters:
            raise RequestError(f"output {out.name!r} asks for shared memory, an extension this server does not "
                               "implement", fix="Drop that parameter: outputs come back in the response.")
        if "classification" in out.parameters:
            classification[out.name] = top_k(parameter_value(out.parameters["classification"]), out.name)
        wanted[out.name] = raw
    return wanted, classification


def _count_error(tensor: Any, count: int) -> InputError:
    return InputError(f"holds {count} element(s), its shape {list(tensor.shape)} needs {math.prod(tensor.shape)}",
                      input=tensor.name, fix="Send as many elements as the shape says, in row-major order.")


def _from_raw(tensor: Any, buf: bytes) -> np.ndarray:
    shape = list(tensor.shape)
    dtype = check_tensor(tensor.name, tensor.datatype, shape)
    count = math.prod(shape)
    if tensor.datatype == "BYTES":
        values = unpack_strings(memoryview(buf), tensor.name, count)
        if len(values) != count:
            raise _count_error(tensor, len(values))
        arr = np.empty(count, dtype=object)
        arr[:] = values
        return arr.reshape(shape)
    if len(buf) != count * dtype.itemsize:
        raise InputError(f"raw_input_contents holds {len(buf)} bytes; shape {shape} of {tensor.datatype} takes "
                         f"{count * dtype.itemsize}", input=tensor.name,
                         fix="Send the shape and the raw little-endian bytes of the same tensor.")
    return np.frombuffer(buf, dtype=dtype).reshape(shape)


def _from_contents(tensor: Any) -> np.ndarray:
    shape = list(tensor.shape)
    dtype = check_tensor(tensor.name, tensor.datatype, shape)
    field = _FIELDS.get(tensor.datatype)
    if field is None:
        raise InputError(f"{tensor.datatype} has no typed contents field", input=tensor.name,
                         fix="Send it in raw_input_contents.")
    values = getattr(tensor.contents, field)
    if len(values) != math.prod(shape):
        elsewhere = sorted({f for f in _FIELDS.values() if f != field and len(getattr(tensor.contents, f))})
        if not values and elsewhere:
            raise InputError(f"its elements are in {elsewhere[0]}, where those of a {tensor.datatype} tensor go "
                             f"in {field}", input=tensor.name,
                             fix=f"Send them in {field}, or give the datatype that {elsewhere[0]} holds.")
        raise _count_error(tensor, len(values))
    if tensor.datatype == "BYTES":
        return _strings(values, tensor.name).reshape(shape)
    wide = np.array(values, dtype=np.int64 if field == "int_contents" else None)
    if dtype.kind in "iu" and wide.size and (wide.min() < np.iinfo(dtype).min or wide.max() > np.iinfo(dtype).max):
        raise InputError(f"values beyond the range of {tensor.datatype}", input=tensor.name,
                         fix="Send a wider integer datatype.")
    return wide.astype(dtype, copy=False).reshape(shape)


def _strings(values: Any, name: str) -> np.ndarray:
    arr = np.empty(len(values), dtype=object)
    try:
        arr[:] = [v.decode("utf-8") for v in values]
    except UnicodeDecodeError as exc:
        raise InputError("a BYTES element is not UTF-8 text", input=name,
                         fix="Send text encoded as UTF-8; the model takes strings.") from exc
    return arr


def encode_grpc_response(model_name: str, model_version: str, request_id: str | None,
                         outputs: list[OutputTensor]) -> pb.ModelInferResponse:
    """The ``ModelInferResponse`` for these outputs: raw if any asks for raw or has no typed field."""
    response = pb.ModelInferResponse(model_name=model_name, model_version=model_version, id=request_id or "")
    raw = any(out.binary or datatype_of(out.array.dtype) not in _FIELDS for out in outputs)
    for out in outputs:
        datatype = datatype_of(out.array.dtype)
        tensor = response.outputs.add(name=out.name, datatype=datatype, shape=out.array.shape)
        if raw:
            response.raw_output_contents.append(tensor_bytes(out.array, datatype))
        elif datatype == "BYTES":
            tensor.contents.bytes_contents.extend(
                v if isinstance(v, bytes) else str(v).encode("utf-8") for v in out.array.reshape(-1))
        else:
            getattr(tensor.contents, _FIELDS[datatype]).extend(out.array.reshape(-1).tolist())
    return response
