"""The gRPC service against a real server on loopback: tritonclient's gRPC client, the raw
stubs tritonclient ships (generated from Triton's own .proto), and our own messages."""

from __future__ import annotations

import concurrent.futures
from pathlib import Path

import numpy as np
import pytest

grpc = pytest.importorskip("grpc", reason="modelpack[grpc] is not installed")
tc = pytest.importorskip("tritonclient.grpc", reason="tritonclient[grpc] is not installed")
from tritonclient.grpc import service_pb2 as tpb  # noqa: E402
from tritonclient.grpc import service_pb2_grpc as tstub  # noqa: E402
from tritonclient.utils import InferenceServerException  # noqa: E402

from modelpack.serve._proto import grpc_service_pb2 as pb  # noqa: E402

from .conftest import create_app, make_arith, make_churn, make_fragile, make_slow, make_text, running  # noqa: E402


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("grpc")
    app = create_app([make_arith(folder), make_text(folder), make_fragile(folder), make_churn(folder)],
                     grpc_port=0, max_body_bytes=1 << 20)
    with running(app) as url:
        yield url, f"127.0.0.1:{app.state.grpc_port}"


@pytest.fixture(scope="module")
def client(served):
    c = tc.InferenceServerClient(served[1])
    yield c
    c.close()


@pytest.fixture(scope="module")
def stub(served):
    channel = grpc.insecure_channel(served[1])
    yield tstub.GRPCInferenceServiceStub(channel)
    channel.close()


def _inputs(a: np.ndarray, b: np.ndarray) -> list:
    items = [tc.InferInput("a", list(a.shape), "FP32"), tc.InferInput("b", list(b.shape), "INT64")]
    items[0].set_data_from_numpy(a)
    items[1].set_data_from_numpy(b)
    return items


def _int32_b():
    item = tc.InferInput("b", [1], "INT32")
    item.set_data_from_numpy(np.ones(1, np.int32))
    return item


# -- tritonclient.grpc ---------------------------------------------------------------------
def test_health_and_metadata(client) -> None:
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("arith") and client.is_model_ready("arith", "1.2.0")
    assert not client.is_model_ready("nope") and not client.is_model_ready("arith", "9")
    meta = client.get_model_metadata("arith", as_json=True)
    assert meta["versions"] == ["1.2.0"] and meta["platform"] == "onnxruntime_onnx"
    assert [(i["name"], i["datatype"], i["shape"]) for i in meta["inputs"]] == [
        ("a", "FP32", ["-1", "3"]), ("b", "INT64", ["-1"])]
    assert [o["datatype"] for o in meta["outputs"]] == ["FP32", "INT64", "BOOL"]
    server = client.get_server_metadata(as_json=True)
    assert server["name"] == "modelpack" and "classification" in server["extensions"]


def test_infer_fp32_int64_bool_with_an_id_and_chosen_outputs(client) -> None:
    a = np.array([[1, 2, 3], [-1, -2, -3.5]], dtype=np.float32)
    b = np.array([5, 1], dtype=np.int64)
    result = client.infer("arith", _inputs(a, b), request_id="r1", model_version="1.2.0")
    np.testing.assert_allclose(result.as_numpy("total"), a.sum(axis=1) + b)
    np.testing.assert_array_equal(result.as_numpy("doubled"), 2 * b)
    np.testing.assert_array_equal(result.as_numpy("positive"), [True, False])
    assert result.get_response().id == "r1" and result.get_response().model_version == "1.2.0"
    only = client.infer("arith", _inputs(a, b), outputs=[tc.InferRequestedOutput("doubled")])
    assert [o.name for o in only.get_response().outputs] == ["doubled"]


def test_bytes_tensors_round_trip_unicode_and_empty_strings(client) -> None:
    s = np.array(["dog", "cat", "ünïcode", ""], dtype=object)
    item = tc.InferInput("s", [4], "BYTES")
    item.set_data_from_numpy(s)
    result = client.infer("text", [item])
    assert [v.decode() for v in result.as_numpy("echo")] == list(s)
    np.testing.assert_array_equal(result.as_numpy("code"), [2, 1, -1, -1])


def test_classification_extension_returns_top_classes_with_labels(client) -> None:
    rows = {"age": np.array([[30.0], [60.0]], np.float32), "spend": np.array([[90.0], [5.0]], np.float32),
            "plan": np.array([["pro"], ["basic"]], dtype=object)}
    items = []
    for name, value in rows.items():
        items.append(tc.InferInput(name, list(value.shape), "BYTES" if value.dtype == object else "FP32"))
        items[-1].set_data_from_numpy(value)
    plain = client.infer("churn", items).as_numpy("output_probability")
    top = client.infer("churn", items, outputs=[tc.InferRequestedOutput("output_probability", class_count=2)])
    labels = top.as_numpy("output_probability")
    assert labels.shape == (2, 2)
    for row, probs in zip(labels, plain, strict=True):
        score, index, label = row[0].decode().split(":")
        assert int(index) == int(np.argmax(probs)) and label == ["no", "yes"][int(index)]
        assert float(score) == pytest.approx(float(probs.max()))


@pytest.mark.parametrize(("call", "code", "words"), [
    (lambda c: c.infer("arith", _inputs(np.ones((1, 3), np.float32), np.ones(1, np.int64))[:1]),
     "INVALID_ARGUMENT", "Send every input"),
    (lambda c: c.infer("nope", _inputs(np.ones((1, 3), np.float32), np.ones(1, np.int64))),
     "NOT_FOUND", "no model 'nope'"),
    (lambda c: c.infer("arith", _inputs(np.ones((1, 4), np.float32), np.ones(1, np.int64))),
     "INVALID_ARGUMENT", "does not fit"),
    (lambda c: c.infer("arith", [_inputs(np.ones((1, 3), np.float32), np.ones(1, np.int64))[0], _int32_b()]),
     "INVALID_ARGUMENT", "Send the tensor as INT64"),
    (lambda c: c.get_model_metadata("nope"), "NOT_FOUND", "no model"),
    (lambda c: c.infer("arith", _inputs(np.ones((1, 3), np.float32), np.ones(1, np.int64)),
                       outputs=[tc.InferRequestedOutput("nope")]), "INVALID_ARGUMENT", "unknown output"),
])
def test_errors_are_statuses_whose_message_names_the_fix(client, call, code: str, words: str) -> None:
    with pytest.raises(InferenceServerException) as info:
        call(client)
    assert code in str(info.value.status()) and words in info.value.message()
    assert client.is_server_live()


def test_a_model_failure_is_internal_and_the_server_keeps_serving(client) -> None:
    x = tc.InferInput("x", [1], "INT64")
    x.set_data_from_numpy(np.array([4], np.int64))
    with pytest.raises(InferenceServerException, match="fragile: ONNX Runtime"):
        client.infer("fragile", [x])
    x = tc.InferInput("x", [2], "INT64")
    x.set_data_from_numpy(np.array([3, 2], np.int64))
    assert client.infer("fragile", [x]).as_numpy("y").shape == (3, 2)


# -- the raw stubs ------------------------------------------------------------------------
def test_typed_contents_get_typed_contents_back(stub) -> None:
    request = tpb.ModelInferRequest(model_name="arith", id="t")
    a = request.inputs.add(name="a", datatype="FP32", shape=[2, 3])
    a.contents.fp32_contents.extend([1, 2, 3, 4, 5, 6.5])
    b = request.inputs.add(name="b", datatype="INT64", shape=[2])
    b.contents.int64_contents.extend([10, -20])
    response = stub.ModelInfer(request)
    assert not response.raw_output_contents
    out = {o.name: o for o in response.outputs}
    assert list(out["total"].contents.fp32_contents) == [16.0, -4.5]
    assert list(out["doubled"].contents.int64_contents) == [20, -40]
    assert list(out["positive"].contents.bool_contents) == [True, False]
    assert list(out["total"].shape) == [2] and response.id == "t"


def test_raw_contents_get_raw_contents_back(stub) -> None:
    request = tpb.ModelInferRequest(model_name="text")
    request.inputs.add(name="s", datatype="BYTES", shape=[2])
    request.raw_input_contents.append(b"\x03\x00\x00\x00dog\x03\x00\x00\x00cow")
    response = stub.ModelInfer(request)
    names = [o.name for o in response.outputs]
    codes = np.frombuffer(response.raw_output_contents[names.index("code")], dtype="<i8")
    assert codes.tolist() == [2, -1]
    assert response.raw_output_contents[names.index("echo")] == b"\x03\x00\x00\x00dog\x03\x00\x00\x00cow"


def _arith_request(**raw: list[bytes]) -> tpb.ModelInferRequest:
    request = tpb.ModelInferRequest(model_name="arith")
    request.inputs.add(name="a", datatype="FP32", shape=[1, 3])
    request.inputs.add(name="b", datatype="INT64", shape=[1])
    request.raw_input_contents.extend(raw.get("raw", [np.ones(3, "<f4").tobytes(), np.ones(1, "<i8").tobytes()]))
    return request


def _bad(kind: str) -> tpb.ModelInferRequest:
    if kind == "count":
        return _arith_request(raw=[np.ones(3, "<f4").tobytes()])
    if kind == "size":
        return _arith_request(raw=[np.ones(2, "<f4").tobytes(), np.ones(1, "<i8").tobytes()])
    request = _arith_request()
    if kind == "both":
        request.inputs[0].contents.fp32_contents.extend([1, 2, 3])
    elif kind == "shm":
        request.inputs[0].parameters["shared_memory_region"].string_param = "r"
    elif kind == "datatype":
        request.inputs[0].datatype = "FLOAT"
    elif kind == "classification":
        request.outputs.add(name="total").parameters["classification"].int64_param = 0
    elif kind == "negative":
        request.inputs[1].shape[0] = -1
    elif kind == "span":  # no element, yet numpy cannot make the shape
        request.inputs[0].shape[:] = [0, 2**62, 2**62]
        request.raw_input_contents[0] = b""
    return request


@pytest.mark.parametrize(("kind", "words"), [
    ("count", "1 raw_input_contents for 2 inputs"), ("size", "takes 12"), ("both", "all raw, or all typed"),
    ("shm", "shared memory"), ("datatype", "unknown datatype 'FLOAT'"), ("classification", "positive integer"),
    ("negative", "negative dimension"), ("span", "fewer than 2**63 bytes"),
])
def test_malformed_requests_are_invalid_argument(stub, kind: str, words: str) -> None:
    with pytest.raises(grpc.RpcError) as info:
        stub.ModelInfer(_bad(kind))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert words in info.value.details()


def test_typed_contents_errors_name_the_fix(stub) -> None:
    request = tpb.ModelInferRequest(model_name="arith")
    a = request.inputs.add(name="a", datatype="FP16", shape=[1, 3])
    a.contents.fp32_contents.extend([1, 2, 3])
    with pytest.raises(grpc.RpcError, match="raw_input_contents"):
        stub.ModelInfer(request)
    request.inputs[0].datatype = "FP32"
    request.inputs[0].contents.fp32_contents.append(4)
    with pytest.raises(grpc.RpcError, match="holds 4 element"):
        stub.ModelInfer(request)
    request.inputs[0].contents.Clear()
    request.inputs[0].contents.fp64_contents.extend([1, 2, 3])
    with pytest.raises(grpc.RpcError, match="in fp64_contents, where those of a FP32 tensor go in fp32_contents"):
        stub.ModelInfer(request)


def test_garbage_bytes_do_not_stop_the_server(served, stub) -> None:
    channel = grpc.insecure_channel(served[1])
    call = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer")
    with pytest.raises(grpc.RpcError) as info:
        call(b"\xff\xff\xff\xff garbage")
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "not an inference.ModelInferRequest message" in info.value.details()
    channel.close()
    assert stub.ServerLive(tpb.ServerLiveRequest()).live


def test_our_messages_and_tritons_agree_on_the_wire(served) -> None:
    channel = grpc.insecure_channel(served[1])
    infer = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer",
                                request_serializer=pb.ModelInferRequest.SerializeToString,
                                response_deserializer=pb.ModelInferResponse.FromString)
    request = pb.ModelInferRequest(model_name="arith")
    request.inputs.add(name="a", datatype="FP32", shape=[1, 3]).contents.fp32_contents.extend([1, 1, 1])
    request.inputs.add(name="b", datatype="INT64", shape=[1]).contents.int64_contents.append(2)
    response = infer(request)
    theirs = tstub.GRPCInferenceServiceStub(channel).ModelInfer(
        tpb.ModelInferRequest.FromString(request.SerializeToString()))
    assert tpb.ModelInferResponse.FromString(response.SerializeToString()) == theirs
    assert list({o.name: o for o in response.outputs}["total"].contents.fp32_contents) == [5.0]
    channel.close()


def test_repository_load_takes_only_served_names_and_no_contents(stub) -> None:
    with pytest.raises(grpc.RpcError) as info:
        stub.RepositoryModelLoad(tpb.RepositoryModelLoadRequest(model_name="../../etc/passwd"))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    request = tpb.RepositoryModelLoadRequest(model_name="arith")
    request.parameters["file:1/model.onnx"].bytes_param = b"a model of the client's"
    with pytest.raises(grpc.RpcError) as info:
        stub.RepositoryModelLoad(request)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "'file:1/model.onnx'" in info.value.details() and "without parameters" in info.value.details()


def test_concurrent_grpc_requests_share_the_micro_batcher(tmp_path: Path) -> None:
    app = create_app([make_arith(tmp_path)], grpc_port=0, max_batch_size=64, max_latency_ms=20)
    with running(app):
        c = tc.InferenceServerClient(f"127.0.0.1:{app.state.grpc_port}")
        rng = np.random.default_rng(0)
        cases = [(rng.normal(size=(1, 3)).astype(np.float32), rng.integers(-5, 5, 1)) for _ in range(48)]
        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            results = list(pool.map(lambda ab: c.infer("arith", _inputs(*ab)).as_numpy("total"), cases))
        c.close()
        stats = app.state.batchers["arith", "1.2.0"].stats
    for (a, b), total in zip(cases, results, strict=True):
        np.testing.assert_allclose(total, a.sum(axis=1) + b, rtol=1e-6)
    assert stats.requests == 48 and stats.batches < 48


def test_range_text_and_size_checks(stub) -> None:
    request = tpb.ModelInferRequest(model_name="arith")
    a = request.inputs.add(name="a", datatype="INT8", shape=[1])
    a.contents.int_contents.append(300)
    with pytest.raises(grpc.RpcError, match="beyond the range of INT8") as info:
        stub.ModelInfer(request)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    text = tpb.ModelInferRequest(model_name="text")
    text.inputs.add(name="s", datatype="BYTES", shape=[1]).contents.bytes_contents.append(b"\xff\xfe")
    with pytest.raises(grpc.RpcError, match="not UTF-8") as info:
        stub.ModelInfer(text)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    big = _arith_request(raw=[bytes(2 << 20), np.ones(1, "<i8").tobytes()])  # over the 1 MiB limit
    with pytest.raises(grpc.RpcError) as info:
        stub.ModelInfer(big)
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert stub.ServerReady(tpb.ServerReadyRequest()).ready


def test_large_typed_requests_are_answered_in_kind(tmp_path: Path) -> None:
    app = create_app([make_slow(tmp_path, layers=1)], grpc_port=0)
    x = np.random.default_rng(2).normal(size=(300, 256)).astype(np.float32)  # past the inline limit
    with running(app):
        channel = grpc.insecure_channel(f"127.0.0.1:{app.state.grpc_port}")
        request = tpb.ModelInferRequest(model_name="slow")
        request.inputs.add(name="X", datatype="FP32", shape=list(x.shape)).contents.fp32_contents.extend(x.ravel())
        response = tstub.GRPCInferenceServiceStub(channel).ModelInfer(request)
        channel.close()
    y = np.array(response.outputs[0].contents.fp32_contents, np.float32).reshape(x.shape)
    np.testing.assert_allclose(y, x, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", ["x" * 20_000, "ü" * 20_000])
def test_a_long_message_is_cut_to_fit_the_status_not_dropped(stub, name: str) -> None:
    with pytest.raises(grpc.RpcError) as info:
        stub.ModelInfer(tpb.ModelInferRequest(model_name=name))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    details = info.value.details()
    assert details.startswith(f"no model '{name[:100]}") and " … " in details
    assert details.endswith("Use a name and version from the model metadata or the repository index.")
