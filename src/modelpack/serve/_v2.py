"""Open Inference Protocol (KServe V2) tensors: decoding requests, encoding responses.

Knows the protocol and numpy, nothing of the web framework or of models. An
inference body is either one JSON document, or, with the binary tensor data
extension that ``tritonclient`` uses by default, a JSON header of
``Inference-Header-Content-Length`` bytes followed by the raw bytes of every
input whose parameters carry ``binary_data_size``, in input order. Numbers are
little-endian; a ``BYTES`` element is a 4-byte little-endian length and its
bytes. Responses use the same framing for outputs asked for with
``binary_data`` (or ``binary_data_output`` on the request).
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pydantic import BaseModel, ValidationError

from .._inputs import numpy_dtype
from ..errors import InputError
from ..manifest import TensorSpec
from ._classification import top_k
from ._errors import RequestError
from ._schemas import InferenceRequest, RequestInput

__all__ = [
    "DATATYPES",
    "InferRequest",
    "OutputTensor",
    "check_tensor",
    "datatype_of",
    "decode_infer_request",
    "encode_infer_response",
    "output_metadata",
    "tensor_bytes",
    "to_tensor",
    "unpack_strings",
    "validate_json",
]

DATATYPES: dict[str, np.dtype] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype("<u1"), "UINT16": np.dtype("<u2"), "UINT32": np.dtype("<u4"), "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("<i1"), "INT16": np.dtype("<i2"), "INT32": np.dtype("<i4"), "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"), "FP32": np.dtype("<f4"), "FP64": np.dtype("<f8"),
    "BYTES": np.dtype(object),
}
_NAMES = {dtype: name for name, dtype in DATATYPES.items() if name != "BYTES"}
# JSON values numpy may read for each datatype family (dtype kinds).
_JSON_KINDS = {"b": "b", "u": "iu", "i": "iu", "f": "iuf"}
_LENGTH = struct.Struct("<I")
_MAX_NESTING = 32


@dataclass
class InferRequest:
    """A decoded inference request: arrays by input name and the outputs asked for."""

    id: str | None
    inputs: dict[str, tuple[str, np.ndarray]]  # name -> (datatype, array)
    outputs: dict[str, bool] | None  # name -> binary; None: every output
    binary_output: bool  # the default for outputs not listed with binary_data
    classification: dict[str, int] = field(default_factory=dict)  # output -> top k (classification extension)


@dataclass
class OutputTensor:
    """One output ready for the response: its array and whether it goes as bytes."""

    name: str
    array: np.ndarray
    binary: bool


# -- datatypes ---------------------------------------------------------------------
def datatype_of(dtype: str | np.dtype) -> str:
    """The V2 datatype of a manifest dtype name or numpy dtype (strings -> ``BYTES``).

    Example
    -------
    >>> datatype_of("float32"), datatype_of("string"), datatype_of(np.dtype("int64"))
    ('FP32', 'BYTES', 'INT64')
    """
    if isinstance(dtype, str):
        if dtype == "bfloat16":
            return "BF16"
        dtype = numpy_dtype(dtype)
    return _NAMES.get(dtype.newbyteorder("<") if dtype.byteorder == ">" else dtype, "BYTES")


def _dims(shape: tuple[Any, ...] | None) -> list[int]:
    if shape is None:
        return [-1]
    return [d if isinstance(d, int) and d >= 0 else -1 for d in shape]


def output_metadata(spec: TensorSpec, classes: tuple[Any, ...] | None) -> tuple[str, list[int]]:
    """(datatype, shape) under which an output is served; see :func:`to_tensor`."""
    if spec.kind == "sequence" and spec.dtype.startswith("map:"):
        # ZipMap: served as an [N, C] tensor of its values, columns in class order.
        return datatype_of(spec.dtype.split("->")[-1]), [-1, len(classes) if classes else -1]
    if spec.kind == "sequence":
        return datatype_of(spec.dtype), [-1]
    if spec.kind == "map":
        return "BYTES", [1]
    return datatype_of(spec.dtype), _dims(spec.shape)


def input_metadata(spec: TensorSpec) -> tuple[str, list[int]]:
    """(datatype, shape) a client must send for one model input."""
    return datatype_of(spec.dtype), _dims(spec.shape)


# -- requests -------------------------------------------------------------------------
def validate_json(model: type[BaseModel], data: bytes | memoryview, what: str) -> Any:
    """Parse and validate a JSON document with a schema, or raise :class:`RequestError`."""
    try:
        return model.model_validate_json(bytes(data) if isinstance(data, memoryview) else data)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        first = errors[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        more = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
        if first["type"] == "json_invalid":
            message = f"the {what} is not valid JSON: {first['msg']}"
        else:
            message = f"the {what} is invalid at {where}: {first['msg']}{more}"
        raise RequestError(message, fix=f"Send a {what} as the Open Inference Protocol describes it "
                                        "(see the OpenAPI document at /openapi.json).") from exc


def _split_body(body: bytes, header_length: str | None) -> tuple[memoryview, memoryview]:
    view = memoryview(body)
    if header_length is None:
        return view, view[len(view):]
    try:
        n = int(header_length)
    except ValueError:
        n = -1
    if not 0 <= n <= len(body):
        raise RequestError(f"Inference-Header-Content-Length is {header_length!r} for a body of "
                           f"{len(body)} bytes", fix="Send the byte length of the JSON header.")
    return view[:n], view[n:]


def decode_infer_request(body: bytes, header_length: str | None) -> InferRequest:
    """Decode an inference request body (JSON, or JSON header + binary tensor data).

    Example
    -------
    >>> r = decode_infer_request(b'{"inputs": [{"name": "x", "shape": [2], '
    ...                          b'"datatype": "INT32", "data": [1, 2]}]}', None)
    >>> r.inputs["x"]
    ('INT32', array([1, 2], dtype=int32))
    """
    view, rest = _split_body(body, header_length)
    header = bytes(view)
    request: InferenceRequest = validate_json(InferenceRequest, header, "inference request")
    inputs: dict[str, tuple[str, np.ndarray]] = {}
    offset = 0
    # numpy reads true/false among numbers as 1/0; only a header that holds the words is searched for them
    booleans = _holds(header, b"true") or _holds(header, b"false")
    for item in request.inputs:
        if item.name in inputs:
            raise RequestError(f"input {item.name!r} is given twice", fix="Send each input once.")
        size = _binary_size(item)
        if size is None:
            array = _from_json(item, booleans)
        else:
            if offset + size > len(rest):
                raise RequestError(
                    f"input {item.name!r} declares binary_data_size {size} but only "
                    f"{len(rest) - offset} bytes follow", fix="Append every binary tensor after the JSON header.")
            array = _from_binary(rest[offset:offset + size], item)
            offset += size
        inputs[item.name] = (item.datatype, array)
    if offset != len(rest):
        raise RequestError(f"{len(rest) - offset} bytes follow the binary tensors that no input declares",
                           fix="Give every binary input its binary_data_size, or send "
                               "Inference-Header-Content-Length equal to the JSON header's length.")
    outputs, classification = _requested(request)
    return InferRequest(id=request.id, inputs=inputs, outputs=outputs,
                        binary_output=_flag(request.parameters, "binary_data_output"),
                        classification=classification)


def _holds(text: bytes, word: bytes) -> bool:
    """``word in text``, sought from its first letter: CPython's substring search reads a body of
    digits at about 1.5 GB/s (0.26 ms for 1,000 rows of 20 numbers), the search for one byte
    at memory speed. Past 64 places with that letter, the plain search decides.

    >>> _holds(b'{"data": [1, true]}', b"true"), _holds(b'{"datatype": "FP32"}', b"true")
    (True, False)
    """
    first = word[:1]
    at = text.find(first)
    for _ in range(64):
        if at < 0:
            return False
        if text.startswith(word, at):
            return True
        at = text.find(first, at + 1)
    return word in text


def _flag(parameters: dict[str, Any] | None, key: str, default: bool = False) -> bool:
    value = (parameters or {}).get(key, default)
    if not isinstance(value, bool):
        raise RequestError(f"parameter {key!r} is {value!r}", fix="Send true or false.")
    return value


def _requested(request: InferenceRequest) -> tuple[dict[str, bool] | None, dict[str, int]]:
    if request.outputs is None:
        return None, {}
    default = _flag(request.parameters, "binary_data_output")
    wanted: dict[str, bool] = {}
    classification: dict[str, int] = {}
    for out in request.outputs:
        params = out.parameters or {}
        if "shared_memory_region" in params:
            raise RequestError(f"output {out.name!r} asks for shared memory, an extension this server does not "
                               "implement", fix="Drop that parameter: outputs come back in the response.")
        if "classification" in params:
            classification[out.name] = top_k(params["classification"], out.name)
        wanted[out.name] = _flag(params, "binary_data", default)
    return wanted, classification


def _binary_size(item: RequestInput) -> int | None:
    params = item.parameters or {}
    if "shared_memory_region" in params:
        raise RequestError(f"input {item.name!r} uses shared memory, which this server does not implement",
                           fix="Send the tensor in the body (JSON or binary_data_size).")
    size = params.get("binary_data_size")
    if size is None:
        return None
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise RequestError(f"input {item.name!r} has binary_data_size {size!r}",
                           fix="Send the tensor's byte length as a non-negative integer.")
    return size


_MAX_RANK = 64  # numpy's limit on dimensions
_MAX_DIM = 2**63 - 1  # a shape's byte span must fit an int64, as numpy and every runtime index with one


def _target(item: RequestInput) -> np.dtype:
    return check_tensor(item.name, item.datatype, item.shape)


def check_tensor(name: str, datatype: str, shape: Sequence[int]) -> np.dtype:
    """The numpy dtype of a V2 tensor, once its datatype and shape are known to make an array.

    Example
    -------
    >>> check_tensor("x", "FP32", [2, 3])
    dtype('float32')
    """
    dtype = DATATYPES.get(datatype)
    if dtype is None:
        raise InputError(f"unknown datatype {datatype!r}", input=name,
                         expected=", ".join(DATATYPES), got=datatype,
                         fix="Use one of the V2 datatypes (BF16 is not supported).")
    if any(d < 0 for d in shape):
        raise InputError(f"negative dimension in shape {list(shape)}", input=name,
                         fix="Send the tensor's actual shape.")
    # numpy refuses a shape whose non-zero dimensions span more than 2**63 bytes, even when another is 0.
    span = math.prod(d for d in shape if d) * max(dtype.itemsize, 1)
    if len(shape) > _MAX_RANK or span > _MAX_DIM:
        raise InputError(f"shape {list(shape[:8])}{'...' if len(shape) > 8 else ''} of {len(shape)} "
                         f"dimensions cannot be an array (at most {_MAX_RANK} dimensions, and fewer than 2**63 "
                         "bytes over its non-zero dimensions)", input=name, fix="Send the tensor's actual shape.")
    return dtype


def _count_error(item: RequestInput, count: int) -> InputError:
    return InputError(f"holds {count} element(s), its shape {item.shape} needs {math.prod(item.shape)}",
                      input=item.name, fix="Send as many elements as the shape says, in row-major order.")


def _from_json(item: RequestInput, booleans: bool) -> np.ndarray:
    dtype = _target(item)
    if item.data is None:
        raise InputError("has no data", input=item.name,
                         fix="Send its elements in 'data', or its bytes with parameters.binary_data_size.")
    if item.datatype == "BYTES":
        flat: list[Any] = []
        _flatten(item.data, flat, 0)
        bad = [v for v in flat if not isinstance(v, str)]
        if bad:
            raise InputError(f"a BYTES element is {type(bad[0]).__name__} {bad[0]!r:.40}", input=item.name,
                             fix="Send BYTES elements as JSON strings.")
        arr = np.empty(len(flat), dtype=object)
        arr[:] = flat
    else:
        arr = _numbers(item, dtype, booleans)
    if arr.size != math.prod(item.shape):
        raise _count_error(item, arr.size)
    return arr.reshape(item.shape)


def _numbers(item: RequestInput, dtype: np.dtype, booleans: bool) -> np.ndarray:
    """``booleans``: the request may hold true/false somewhere (numpy would read them as 1/0)."""
    try:
        arr = np.asarray(item.data)
    except (ValueError, TypeError) as exc:
        raise InputError(f"data is not a regular array ({exc})", input=item.name,
                         fix="Send a flat list, or nested lists of equal lengths.") from exc
    if arr.size == 0:
        return np.empty(0, dtype=dtype)
    if booleans and dtype.kind != "b" and arr.dtype.kind in "iuf":
        flat: list[Any] = []
        _flatten(item.data, flat, 0)
        if any(type(v) is bool for v in flat):
            raise InputError(f"data mixes true/false with numbers for datatype {item.datatype}", input=item.name,
                             fix=f"Send {_json_kind_wanted(dtype)} only (1 and 0, not true and false), or "
                                 "datatype BOOL for a boolean tensor.")
    if dtype.kind in "iu" and arr.dtype.kind in "fO":
        arr = _wide_integers(item, dtype, arr)
    if arr.dtype.kind not in _JSON_KINDS[dtype.kind]:
        raise InputError(f"data holds {_json_kind(arr)} for datatype {item.datatype}", input=item.name,
                         fix=f"Send {_json_kind_wanted(dtype)}, or the datatype that matches the values.")
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        if arr.min() < info.min or arr.max() > info.max:
            raise InputError(f"values beyond the range of {item.datatype}", input=item.name,
                             fix="Send a wider integer datatype.")
    return arr.astype(dtype, copy=False)


def _wide_integers(item: RequestInput, dtype: np.dtype, arr: np.ndarray) -> np.ndarray:
    """Integers past int64 make numpy guess float64 or object: read them exactly, or refuse."""
    flat: list[Any] = []
    _flatten(item.data, flat, 0)
    if not all(type(v) is int for v in flat):
        return arr
    try:
        return np.array(flat, dtype=dtype)
    except OverflowError as exc:
        raise InputError(f"values beyond the range of {item.datatype}", input=item.name,
                         fix="Send a wider integer datatype.") from exc


def _flatten(data: Any, out: list[Any], depth: int) -> None:
    if isinstance(data, list) and depth < _MAX_NESTING:
        for value in data:
            _flatten(value, out, depth + 1)
    else:
        out.append(data)


def _json_kind(arr: np.ndarray) -> str:
    return {"b": "booleans", "i": "integers", "u": "integers", "f": "non-integer numbers",
            "U": "strings"}.get(arr.dtype.kind, "mixed or out-of-range values")


def _json_kind_wanted(dtype: np.dtype) -> str:
    return {"b": "true/false", "i": "integers", "u": "non-negative integers", "f": "numbers"}[dtype.kind]


def _from_binary(buf: memoryview, item: RequestInput) -> np.ndarray:
    dtype = _target(item)
    count = math.prod(item.shape)
    if item.datatype == "BYTES":
        values = unpack_strings(buf, item.name, count)
        if len(values) != count:
            raise _count_error(item, len(values))
        arr = np.empty(count, dtype=object)
        arr[:] = values
        return arr.reshape(item.shape)
    if len(buf) != count * dtype.itemsize:
        raise InputError(f"binary_data_size is {len(buf)} bytes; shape {item.shape} of {item.datatype} "
                         f"takes {count * dtype.itemsize}", input=item.name,
                         fix="Send the shape and the raw little-endian bytes of the same tensor.")
    return np.frombuffer(buf, dtype=dtype).reshape(item.shape)


def unpack_strings(buf: memoryview, name: str, count: int) -> list[str]:
    """The ``count`` BYTES elements of raw tensor data (each a little-endian uint32 length, then UTF-8 text)."""
    values: list[str] = []
    offset, end = 0, len(buf)
    while offset < end:
        if len(values) == count:  # stop at once: a flood of empty elements would take long to count
            raise InputError(f"holds more than the {count} BYTES element(s) its shape needs", input=name,
                             fix="Send as many elements as the shape says, in row-major order.")
        if offset + 4 > end:
            raise InputError("a BYTES element's 4-byte length is cut short", input=name,
                             fix="Prefix each element with its length as a little-endian uint32.")
        (length,) = _LENGTH.unpack_from(buf, offset)
        offset += 4
        if offset + length > end:
            raise InputError(f"a BYTES element declares {length} bytes, {end - offset} remain", input=name,
                             fix="Prefix each element with its length as a little-endian uint32.")
        try:
            values.append(bytes(buf[offset:offset + length]).decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise InputError(f"BYTES element {len(values)} is not UTF-8 text", input=name,
                             fix="Send text encoded as UTF-8; the model takes strings.") from exc
        offset += length
    return values


# -- responses --------------------------------------------------------------------------
def to_tensor(value: Any, spec: TensorSpec, classes: tuple[Any, ...] | None) -> np.ndarray:
    """One value of ``Model.run`` as the array the protocol sends (see :func:`output_metadata`).

    A ZipMap (a list of ``{class: probability}``) becomes an ``[N, C]`` array in
    class order; a sequence of equal-shaped tensors is stacked; anything else that
    is not an array is sent as ``BYTES`` holding JSON text.
    """
    if isinstance(value, np.ndarray):
        return value.astype(object) if value.dtype.kind in "US" else value
    if isinstance(value, list) and spec.dtype.startswith("map:"):
        return _zipmap(value, spec, classes)
    if isinstance(value, list) and value and all(isinstance(v, np.ndarray) for v in value):
        if len({(v.shape, v.dtype) for v in value}) == 1:
            return np.stack(value)
    text = [json.dumps(v, default=_plain) for v in (value if isinstance(value, list) else [value])]
    arr = np.empty(len(text), dtype=object)
    arr[:] = text
    return arr


def _plain(value: Any) -> Any:
    return value.tolist() if isinstance(value, (np.ndarray, np.generic)) else str(value)


def _zipmap(rows: list[dict[Any, Any]], spec: TensorSpec, classes: tuple[Any, ...] | None) -> np.ndarray:
    dtype = numpy_dtype(spec.dtype.split("->")[-1])
    keys = list(classes) if classes is not None else (list(rows[0]) if rows else [])
    if rows and set(rows[0]) != set(keys):
        keys = list(rows[0])
    if not rows:
        return np.empty((0, len(keys)), dtype=dtype)
    return np.array([[row[k] for k in keys] for row in rows], dtype=dtype)


def encode_infer_response(model_name: str, model_version: str, request_id: str | None,
                          outputs: list[OutputTensor]) -> tuple[bytes, int | None]:
    """The response body, and the JSON header's length when binary outputs follow it."""
    entries, blobs = [], []
    for out in outputs:
        datatype = datatype_of(out.array.dtype)
        entry: dict[str, Any] = {"name": out.name, "datatype": datatype, "shape": list(out.array.shape)}
        if out.binary:
            blob = tensor_bytes(out.array, datatype)
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            entry["data"] = _to_list(out.array, datatype)
        entries.append(entry)
    doc: dict[str, Any] = {"model_name": model_name, "model_version": model_version}
    if request_id is not None:
        doc["id"] = request_id
    doc["outputs"] = entries
    header = json.dumps(doc, separators=(",", ":")).encode()
    if not blobs:
        return header, None
    return b"".join([header, *blobs]), len(header)


def _to_list(arr: np.ndarray, datatype: str) -> list[Any]:
    flat = arr.reshape(-1)
    if datatype == "BYTES":
        return [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in flat]
    return flat.tolist()


def tensor_bytes(arr: np.ndarray, datatype: str) -> bytes:
    """The raw bytes of a tensor: little-endian elements, or length-prefixed UTF-8 for ``BYTES``."""
    if datatype != "BYTES":
        return np.ascontiguousarray(arr, dtype=DATATYPES[datatype]).tobytes()
    parts = []
    for v in arr.reshape(-1):
        data = v if isinstance(v, bytes) else str(v).encode("utf-8")
        parts.append(_LENGTH.pack(len(data)))
        parts.append(data)
    return b"".join(parts)

