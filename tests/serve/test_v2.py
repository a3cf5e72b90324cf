"""The V2 codec on its own: request bodies made by tritonclient, responses read back by it."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest

from modelpack import InputError
from modelpack.manifest import TensorSpec
from modelpack.serve._body import inflate
from modelpack.serve._errors import ModelNotFoundError, RequestError, RequestTooLargeError, status_of
from modelpack.serve._v2 import (
    OutputTensor,
    datatype_of,
    decode_infer_request,
    encode_infer_response,
    output_metadata,
    to_tensor,
)

httpclient = pytest.importorskip("tritonclient.http", reason="tritonclient[http] is not installed")
Client = httpclient.InferenceServerClient

ARRAYS = {
    "BOOL": np.array([[True, False, True]]),
    "UINT8": np.array([[0, 7, 255]], dtype=np.uint8),
    "UINT16": np.array([[0, 7, 65535]], dtype=np.uint16),
    "UINT32": np.array([[0, 7, 2**32 - 1]], dtype=np.uint32),
    "UINT64": np.array([[0, 7, 2**63]], dtype=np.uint64),
    "INT8": np.array([[-128, 0, 127]], dtype=np.int8),
    "INT16": np.array([[-3, 0, 3]], dtype=np.int16),
    "INT32": np.array([[-(2**31), 0, 2**31 - 1]], dtype=np.int32),
    "INT64": np.array([[-(2**62), 0, 2**62]], dtype=np.int64),
    "FP16": np.array([[0.5, -1.25, 65504]], dtype=np.float16),
    "FP32": np.array([[0.1, -2.5, 3e38]], dtype=np.float32),
    "FP64": np.array([[0.1, -2.5, 1e300]], dtype=np.float64),
    "BYTES": np.array([["cat", "", "naïve ✓"]], dtype=object),
}


def triton_body(arrays: dict[str, np.ndarray], binary: bool, **kwargs: object) -> tuple[bytes, str | None]:
    inputs = []
    for name, arr in arrays.items():
        item = httpclient.InferInput(name, list(arr.shape), datatype_of(arr.dtype) if arr.dtype != object
                                     else "BYTES")
        item.set_data_from_numpy(arr, binary_data=binary)
        inputs.append(item)
    body, length = Client.generate_request_body(inputs, **kwargs)
    return body, None if length is None else str(length)


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
@pytest.mark.parametrize("datatype", list(ARRAYS))
def test_every_datatype_decodes_as_tritonclient_encodes_it(datatype: str, binary: bool) -> None:
    arr = ARRAYS[datatype]
    body, length = triton_body({"x": arr}, binary)
    assert (length is not None) == binary
    request = decode_infer_request(body, length)
    got_type, got = request.inputs["x"]
    assert got_type == datatype
    assert got.shape == arr.shape
    if datatype == "BYTES":
        assert got.tolist() == arr.tolist()
    else:
        assert got.dtype == arr.dtype
        np.testing.assert_array_equal(got, arr)


def test_several_binary_inputs_are_cut_in_order_and_json_inputs_mix_in() -> None:
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    s = np.array(["x", "yz"], dtype=object)
    inputs = []
    for name, arr, dt, binary in (("a", a, "FP32", True), ("j", np.array([1, 2], dtype=np.int64), "INT64", False),
                                  ("s", s, "BYTES", True)):
        item = httpclient.InferInput(name, list(arr.shape), dt)
        item.set_data_from_numpy(arr, binary_data=binary)
        inputs.append(item)
    body, length = Client.generate_request_body(inputs, outputs=[httpclient.InferRequestedOutput("y")],
                                                request_id="7")
    r = decode_infer_request(body, str(length))
    np.testing.assert_array_equal(r.inputs["a"][1], a)
    np.testing.assert_array_equal(r.inputs["j"][1], [1, 2])
    assert r.inputs["s"][1].tolist() == ["x", "yz"]
    assert r.id == "7"
    assert r.outputs == {"y": True}


def test_numbers_beside_a_bool_tensor_are_still_read() -> None:
    """A BOOL tensor puts true/false in the header: the numbers beside it are searched and pass."""
    r = decode_infer_request(_json([{"name": "b", "shape": [2], "datatype": "BOOL", "data": [True, False]},
                                    {"name": "x", "shape": [2], "datatype": "FP32", "data": [1, 2.5]}]), None)
    assert r.inputs["b"][1].tolist() == [True, False]
    assert r.inputs["x"][1].tolist() == [1.0, 2.5]


def test_nested_json_data_is_read_row_major() -> None:
    body = json.dumps({"inputs": [{"name": "x", "shape": [2, 2], "datatype": "FP32", "data": [[1, 2], [3, 4]]},
                                  {"name": "s", "shape": [2, 1], "datatype": "BYTES", "data": [["a"], ["b"]]}]})
    r = decode_infer_request(body.encode(), None)
    np.testing.assert_array_equal(r.inputs["x"][1], [[1, 2], [3, 4]])
    assert r.inputs["s"][1].tolist() == [["a"], ["b"]]


def test_outputs_default_to_json_unless_binary_data_output() -> None:
    body, _ = triton_body({"x": ARRAYS["FP32"]}, False)  # no outputs named: tritonclient asks for binary
    assert decode_infer_request(body, None).binary_output is True
    plain = b'{"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1]}]}'
    r = decode_infer_request(plain, None)
    assert r.binary_output is False and r.outputs is None


def _json(inputs: list[dict], **extra: object) -> bytes:
    return json.dumps({"inputs": inputs, **extra}).encode()


BAD_JSON = {
    "not JSON": (b'{"inputs": [', "not valid JSON"),
    "no inputs": (b'{"id": "1"}', "inputs"),
    "shape of strings": (_json([{"name": "x", "shape": ["2"], "datatype": "FP32", "data": [1, 2]}]), "shape"),
    "id a number": (b'{"id": 5, "inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1]}]}', "id"),
    "unknown datatype": (_json([{"name": "x", "shape": [1, 3], "datatype": "INT322", "data": [1, 2, 3]}]),
                         "unknown datatype 'INT322'"),
    "BF16": (_json([{"name": "x", "shape": [1], "datatype": "BF16", "data": [1]}]), "BF16"),
    "count": (_json([{"name": "x", "shape": [2, 2], "datatype": "FP32", "data": [1, 2, 3]}]),
              "holds 3 element(s), its shape [2, 2] needs 4"),
    "negative dim": (_json([{"name": "x", "shape": [-1], "datatype": "FP32", "data": [1]}]), "negative"),
    "strings for FP32": (_json([{"name": "x", "shape": [1], "datatype": "FP32", "data": ["1"]}]), "strings"),
    "floats for INT32": (_json([{"name": "x", "shape": [1], "datatype": "INT32", "data": [1.5]}]),
                         "non-integer numbers"),
    "ints for BOOL": (_json([{"name": "x", "shape": [1], "datatype": "BOOL", "data": [1]}]), "integers"),
    "true among FP32": (_json([{"name": "x", "shape": [3], "datatype": "FP32", "data": [1.5, True, 2]}]),
                        "mixes true/false with numbers"),
    "false among INT64 rows": (_json([{"name": "x", "shape": [2, 2], "datatype": "INT64",
                                       "data": [[1, 2], [False, 4]]}]), "mixes true/false"),
    # "true" past 64 other t's (each a place the word could start): the plain search decides
    "true after many t's": (_json([{"name": "t" * 70, "shape": [3], "datatype": "FP32", "data": [1.5, True, 2]}]),
                            "mixes true/false with numbers"),
    "out of range": (_json([{"name": "x", "shape": [1], "datatype": "UINT8", "data": [256]}]), "range of UINT8"),
    "negative uint": (_json([{"name": "x", "shape": [1], "datatype": "UINT32", "data": [-1]}]), "range"),
    "ragged": (_json([{"name": "x", "shape": [2, 2], "datatype": "FP32", "data": [[1, 2], [3]]}]), "regular"),
    "number for BYTES": (_json([{"name": "x", "shape": [1], "datatype": "BYTES", "data": [3]}]), "JSON strings"),
    "no data": (_json([{"name": "x", "shape": [1], "datatype": "FP32"}]), "has no data"),
    "twice": (_json([{"name": "x", "shape": [1], "datatype": "FP32", "data": [1]}] * 2), "given twice"),
    "classification": (_json([{"name": "x", "shape": [1], "datatype": "FP32", "data": [1]}],
                             outputs=[{"name": "y", "parameters": {"classification": 0}}]), "classification 0"),
    "shared memory": (_json([{"name": "x", "shape": [1], "datatype": "FP32",
                              "parameters": {"shared_memory_region": "r"}}]), "shared memory"),
    "binary flag not bool": (_json([{"name": "x", "shape": [1], "datatype": "FP32", "data": [1]}],
                                   parameters={"binary_data_output": "yes"}), "binary_data_output"),
}


@pytest.mark.parametrize("case", list(BAD_JSON))
def test_bad_json_requests_raise_client_errors_that_say_what(case: str) -> None:
    body, words = BAD_JSON[case]
    with pytest.raises((RequestError, InputError)) as info:
        decode_infer_request(body, None)
    assert words in str(info.value)
    assert status_of(info.value) == 400


def _binary(header: dict, payload: bytes, length: int | None = None) -> tuple[bytes, str]:
    head = json.dumps(header).encode()
    return head + payload, str(len(head) if length is None else length)


def _one(datatype: str, shape: list[int], size: int) -> dict:
    return {"inputs": [{"name": "x", "shape": shape, "datatype": datatype,
                        "parameters": {"binary_data_size": size}}]}


BAD_BINARY = {
    "header length not a number": (b'{"inputs": []}', "twelve", "Inference-Header-Content-Length"),
    "header length past the end": (b'{"inputs": []}', "999", "for a body of"),
    "size past the end": (*_binary(_one("FP32", [2], 8), b"\0" * 4), "only 4 bytes follow"),
    "bytes left over": (*_binary(_one("FP32", [1], 4), b"\0" * 6), "2 bytes follow"),
    "size and shape disagree": (*_binary(_one("FP32", [3], 8), b"\0" * 8), "takes 12"),
    "size negative": (*_binary(_one("FP32", [1], -4), b""), "binary_data_size -4"),
    "BYTES length cut": (*_binary(_one("BYTES", [1], 2), b"\x01\x00"), "cut short"),
    "BYTES element cut": (*_binary(_one("BYTES", [1], 6), struct.pack("<I", 5) + b"ab"), "declares 5 bytes"),
    "BYTES count": (*_binary(_one("BYTES", [2], 5), struct.pack("<I", 1) + b"a"), "holds 1 element(s)"),
    "BYTES not UTF-8": (*_binary(_one("BYTES", [1], 6), struct.pack("<I", 2) + b"\xff\xfe"), "not UTF-8"),
}


@pytest.mark.parametrize("case", list(BAD_BINARY))
def test_bad_binary_framing_raises_client_errors(case: str) -> None:
    body, length, words = BAD_BINARY[case]
    with pytest.raises((RequestError, InputError)) as info:
        decode_infer_request(body, length)
    assert words in str(info.value)
    assert status_of(info.value) == 400


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_responses_read_back_by_tritonclient(binary: bool) -> None:
    outputs = [OutputTensor(name, arr, binary) for name, arr in ARRAYS.items()]
    body, length = encode_infer_response("m", "1", "id-9", outputs)
    assert (length is not None) == binary
    result = Client.parse_response_body(body, header_length=length)
    assert result.get_response()["id"] == "id-9"
    for name, arr in ARRAYS.items():
        got = result.as_numpy(name)
        if name == "BYTES":  # tritonclient gives bytes for BYTES
            assert [v.decode() if isinstance(v, bytes) else v for v in got.reshape(-1)] == arr.reshape(-1).tolist()
        else:
            np.testing.assert_array_equal(got, arr)
            assert got.dtype == arr.dtype


def test_zipmap_becomes_a_tensor_in_class_order() -> None:
    spec = TensorSpec("p", "map:string->float32", None, kind="sequence", role="probabilities")
    rows = [{"yes": 0.25, "no": 0.75}, {"no": 0.1, "yes": 0.9}]
    arr = to_tensor(rows, spec, ("no", "yes"))
    np.testing.assert_allclose(arr, [[0.75, 0.25], [0.1, 0.9]])
    assert arr.dtype == np.float32
    assert output_metadata(spec, ("no", "yes")) == ("FP32", [-1, 2])
    assert to_tensor([], spec, ("no", "yes")).shape == (0, 2)


def test_other_outputs_become_tensors_or_json_text() -> None:
    seq = TensorSpec("s", "float32", None, kind="sequence")
    stacked = to_tensor([np.ones(2, np.float32), np.zeros(2, np.float32)], seq, None)
    assert stacked.shape == (2, 2)
    ragged = to_tensor([np.ones(2), np.zeros(3)], seq, None)
    assert ragged.dtype == object and json.loads(ragged[1]) == [0.0, 0.0, 0.0]
    mapping = to_tensor({"a": 1}, TensorSpec("m", "string->int64", None, kind="map"), None)
    assert json.loads(mapping[0]) == {"a": 1}
    assert output_metadata(TensorSpec("m", "string->int64", None, kind="map"), None) == ("BYTES", [1])
    strings = to_tensor(np.array(["a", "b"]), TensorSpec("t", "string", ("N",)), None)
    assert strings.dtype == object


def test_datatypes_of_manifest_names() -> None:
    assert [datatype_of(n) for n in ("bool", "uint16", "int8", "float16", "float64", "string", "bfloat16")] == \
        ["BOOL", "UINT16", "INT8", "FP16", "FP64", "BYTES", "BF16"]
    assert datatype_of(np.dtype(">f4")) == "FP32"


def test_status_codes() -> None:
    assert status_of(RequestTooLargeError("big", fix="Send less.")) == 413
    assert status_of(ModelNotFoundError("no such model", fix="Check.")) == 404
    assert status_of(InputError("bad", fix="Fix.")) == 400
    assert status_of(RuntimeError("boom")) == 500


def test_compressed_bodies_inflate_within_the_limit() -> None:
    import gzip
    import zlib

    body = b'{"inputs": []}' * 10
    assert inflate(gzip.compress(body), "gzip", 1000) == body
    assert inflate(zlib.compress(body), "Deflate", 1000) == body
    assert inflate(body, "identity", 1000) == body
    bomb = gzip.compress(b"\0" * 10_000_000)
    assert len(bomb) < 20_000
    with pytest.raises(RequestTooLargeError, match="inflates past the limit"):
        inflate(bomb, "gzip", 1_000_000)
    with pytest.raises(RequestError, match="not supported"):
        inflate(body, "br", 1000)
    with pytest.raises(RequestError, match="not valid gzip"):
        inflate(b"not gzip at all", "gzip", 1000)
    with pytest.raises(RequestError, match="cut short"):
        inflate(zlib.compress(body)[:-6], "deflate", 1000)


def test_a_flood_of_bytes_elements_stops_at_the_first_one_past_the_shape() -> None:
    flood = b"\x00\x00\x00\x00" * 250_000  # empty strings: cheap to send, slow to count one by one
    header = json.dumps({"inputs": [{"name": "s", "shape": [1], "datatype": "BYTES",
                                     "parameters": {"binary_data_size": len(flood)}}]}).encode()
    with pytest.raises(InputError, match="more than the 1 BYTES element"):
        decode_infer_request(header + flood, str(len(header)))
